"""Launcher configs: presets compose, and every bad cluster config fails before submission, named."""
import subprocess
import sys

import pytest

from ivnext_world.launch import LauncherConfigError, check, compose_launcher, parse_time_limit
from ivnext_world.launch.__main__ import main
from ivnext_world.launch.launcher import split_overrides


def test_presets_compose_onto_the_schema():
    lc = check(compose_launcher(["launcher=h100_4x8", "launcher.account=proj", "launcher.qos=high"]))
    assert (lc.kind, lc.nodes, lc.ntasks_per_node, lc.world_size, lc.timeout_min) == ("slurm", 4, 8, 32, 2880)
    assert (lc.account, lc.qos, lc.partition) == ("proj", "high", "gpu")
    assert check(compose_launcher([])).kind == "local"  # the default: never SLURM unless asked for
    assert check(compose_launcher(["launcher=submitit_local", "launcher.tasks_per_node=2"])).world_size == 2


@pytest.mark.parametrize("text,minutes", [("45", 45), ("10:30", 11), ("01:00:00", 60), ("1-12", 2160), ("2-00:30:00", 2910)])
def test_time_limits_parse_like_sbatch(text, minutes):
    assert parse_time_limit(text) == minutes


@pytest.mark.parametrize("text,why", [("25:99:00", "minutes must be < 60"), ("1:00:75", "seconds must be < 60"),
                                      ("1-25:00:00", "hours after 'D-' must be < 24"), ("soon", "not a SLURM time limit"),
                                      ("0", "must be positive")])
def test_malformed_time_limits_are_rejected(text, why):
    with pytest.raises(LauncherConfigError, match=why):
        check(compose_launcher(["launcher=slurm", f"launcher.time='{text}'"]))


def test_unknown_launcher_keys_are_rejected_naming_the_key():
    with pytest.raises(Exception, match="launcher.gpus"):
        compose_launcher(["launcher=slurm", "launcher.gpus=8"])
    with pytest.raises(LauncherConfigError, match="gpus"):
        compose_launcher(["launcher=slurm", "+launcher.gpus=8"])
    with pytest.raises(LauncherConfigError, match="nodes"):
        compose_launcher(["launcher=slurm", "launcher.nodes=four"])


@pytest.mark.parametrize("overrides,why", [
    (["launcher=h100_4x8", "launcher.tasks_per_node=9"], "tasks_per_node=9 exceeds launcher.gpus_per_node=8"),
    (["launcher=h100_4x8", "launcher.cpus_per_task=16"], "8 tasks per node x cpus_per_task=16 = 128 CPUs exceeds launcher.node_cpus=96"),
    (["launcher=h100_4x8", "launcher.gpus_per_node=16", "launcher.tasks_per_node=8"], "gpus_per_node=16 exceeds launcher.node_gpus=8"),
    (["launcher=local", "launcher.tasks_per_node=2"], "launcher=local runs one process"),
    (["launcher=submitit_local", "launcher.nodes=2"], "submitit_local runs on this machine only"),
    (["launcher=slurm", "launcher.kind=pbs"], "launcher.kind='pbs'"),
])
def test_more_tasks_than_nodes_hold_is_rejected(overrides, why):
    with pytest.raises(LauncherConfigError, match=why.replace("(", r"\(").replace(")", r"\)")):
        check(compose_launcher(overrides))


def test_single_process_jobs_refuse_several_tasks():
    with pytest.raises(LauncherConfigError, match="single process; launcher asks for 2 tasks"):
        check(compose_launcher(["launcher=submitit_local", "launcher.tasks_per_node=2"]), distributed=False)


def test_overrides_are_split_between_launcher_and_job():
    lau, job = split_overrides(["launcher=slurm", "+launcher.qos=x", "stage=1", "loop.steps=3", "launcher_x=1"])
    assert lau == ["launcher=slurm", "+launcher.qos=x"] and job == ["stage=1", "loop.steps=3", "launcher_x=1"]


def test_cli_rejects_bad_configs_before_submitting(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["pretrain", f"out={out}"]
    assert main(base + ["launcher=h100_4x8", "--dry-run"]) == 0
    assert "4 node(s) x 8 task(s)" in capsys.readouterr().out
    for args, why in [(["launcher=h100_4x8", "launcher.time=25:99:00"], "launcher.time='25:99:00': minutes must be < 60"),
                      (["launcher=slurm", "loop.stepz=3"], "loop.stepz"),
                      (["launcher=slurm", "launcher.partion=gpu"], "launcher.partion")]:
        assert main(base + args) == 2
        assert why in capsys.readouterr().err
    assert main(["collect", "launcher=submitit_local", "launcher.tasks_per_node=2"]) == 2
    assert "single process" in capsys.readouterr().err
    assert not out.exists()  # nothing was written, nothing submitted


@pytest.mark.slow
def test_cli_entry_point_runs(tmp_path):
    r = subprocess.run([sys.executable, "-m", "ivnext_world.launch", "pretrain", f"out={tmp_path}/r", "launcher=slurm", "--dry-run"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "launcher slurm: 1 node(s) x 1 task(s)" in r.stdout, r.stderr


def test_every_job_in_the_table_has_a_config_and_a_function():
    from ivnext_world.config import load_config
    from ivnext_world.launch.jobs import JOBS

    assert {"collect", "pretrain", "world_model", "depth", "bc", "plan_eval"} <= set(JOBS)
    for name, spec in JOBS.items():
        assert callable(spec.function()), name
        assert load_config(spec.config) is not None, name
