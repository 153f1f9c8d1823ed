"""The launcher on a real one-node SLURM cluster: a Stage-1 job, preemption by requeue and by signal,
a 2-task DDP job over gloo, a job array gathered into one table, and a config rejected before sbatch.

The Stage-1 jobs load data with 2 DataLoader workers (the launcher's default), which SLURM's signals
reach too: the preempted jobs must still checkpoint the step at which the signal came.

All jobs take 1 CPU, so two run at once on a 2-core machine. SLURM holds a requeued job back for
about two minutes (reason BeginTime); the tests release it at once with ``scontrol update
StartTime=now`` so the file stays well under 3 minutes.
"""
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ivnext_world.launch import LauncherConfig, LauncherConfigError, gather, launch, launch_array, submit

from launch._tiny import TinyConfig, tiny_pretrain_overrides, train_tiny

pytestmark = pytest.mark.slow

SLURM = ["launcher=slurm", "launcher.cpus_per_task=1", "launcher.mem_gb=1", "launcher.time=00:10:00",
         f"launcher.node_cpus={os.cpu_count()}"]
STEPS, EVERY = 16, 4
WORKERS = 2


def squeue(job_id: str) -> str:
    return subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T %r"], capture_output=True, text=True).stdout.strip()


def wait_for(predicate, timeout: float, what: str, job=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    log = ""
    if job is not None and job.paths.stderr.exists():
        log = "\n".join(job.paths.stderr.read_text().splitlines()[-30:])
    raise TimeoutError(f"{what} after {timeout} s\n{log}")


def results(job, timeout: float = 120):
    """Wait for every task's result pickle (submitit's own wait needs sacct, absent here)."""
    subs = job._sub_jobs or [job]
    wait_for(lambda: all(s.paths.result_pickle.exists() for s in subs), timeout, f"job {job.job_id} not done", job)
    return job.results()


def release_requeued(job_id: str, restarted, timeout: float = 60) -> None:
    """Start a requeued job now instead of after SLURM's ~2-minute requeue hold.

    Repeated until the job has restarted: an update sent while the first run is still completing
    can be overwritten by the requeue's own begin time.
    """
    end = time.monotonic() + timeout
    while not restarted():
        if time.monotonic() > end:
            raise TimeoutError(f"job {job_id} did not restart after {timeout} s (squeue: {squeue(job_id)!r})")
        if "BeginTime" in squeue(job_id):
            subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], capture_output=True)
        time.sleep(0.5)


def weights(out: Path) -> dict:
    return load_file(str(out / "checkpoints" / f"step_{STEPS:08d}" / "model.safetensors"))


def attempts(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "launch" / "attempts.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(slurm_cluster, slurm_clips, tmp_path_factory):
    """An uninterrupted SLURM run of the same Stage-1 job (submitted now, waited for when compared)."""
    out = tmp_path_factory.mktemp("slurm") / "reference"
    launched = launch("pretrain", tiny_pretrain_overrides(slurm_clips, out, steps=STEPS, ckpt_every=EVERY, num_workers=WORKERS) + SLURM)
    return launched.jobs[0], out


def steps_logged(out: Path) -> int:
    metrics = out / "metrics.jsonl"
    return len(metrics.read_text().splitlines()) if metrics.exists() else 0


def _interrupted_run(slurm_clips, out, interrupt) -> tuple:
    """A run whose only checkpoint before the end is the one the signal asks for (no periodic ones),
    interrupted a few steps in. Returns the job, its summary and the step at which it stopped."""
    overrides = tiny_pretrain_overrides(slurm_clips, out, steps=STEPS, ckpt_every=STEPS, num_workers=WORKERS)
    job = launch("pretrain", overrides + SLURM).jobs[0]
    wait_for(lambda: steps_logged(out) >= 3, 120, "no training steps", job)
    interrupt(job.job_id)
    release_requeued(job.job_id, lambda: len(attempts(out)) >= 2)
    (summary,) = results(job)
    log = job.paths.stderr.read_text() + job.paths.stdout.read_text()
    assert "killed by signal" not in log  # the workers left the signal to the main process
    stopped = re.search(r"rank 0: stopped on request after step (\d+)", log)
    assert stopped, f"the first attempt wrote no checkpoint on the signal:\n{log[-3000:]}"
    return job, summary, int(stopped.group(1))


def _same_as_reference(reference, out):
    ref_job, ref_out = reference
    results(ref_job)
    assert len(attempts(ref_out)) == 1
    a, b = weights(ref_out), weights(out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_requeued_stage1_job_resumes_to_bitwise_identical_weights(slurm_clips, reference, tmp_path):
    out = tmp_path / "requeued"
    job, summary, stopped_at = _interrupted_run(slurm_clips, out, lambda jid: subprocess.run(["scontrol", "requeue", jid], check=True))
    first, second = attempts(out)
    assert (first["restart_count"], second["restart_count"]) == (0, 1) and first["job_id"] == second["job_id"] == job.job_id
    resumed_at = int(Path(second["resume_from"]).name.removeprefix("step_"))
    assert resumed_at == stopped_at and 3 <= resumed_at < STEPS  # the step the signal came in, not a periodic checkpoint
    log = job.paths.stderr.read_text()
    assert "caught SIGTERM" in log and "DUE TO JOB REQUEUE" in log and f"(step {resumed_at})" in log
    assert summary["result"]["steps"] == STEPS and summary["world_size"] == 1
    _same_as_reference(reference, out)
    launch_dir = out / "launch"
    assert {"config.yaml", "launcher.yaml", "git.json", "packages.txt", "env.json", "command.txt"} <= {p.name for p in launch_dir.iterdir()}
    assert "torch==" in (launch_dir / "packages.txt").read_text() and "steps: 16" in (launch_dir / "config.yaml").read_text()
    assert json.loads((out / "result.json").read_text())["result"]["steps"] == STEPS


def test_usr2_checkpoints_and_the_job_requeues_itself(slurm_clips, reference, tmp_path):
    """SIGUSR2 is what SLURM sends before the time limit: submitit's checkpoint() + self-requeue path."""
    out = tmp_path / "signalled"
    job, summary, stopped_at = _interrupted_run(slurm_clips, out, lambda jid: subprocess.run(["scancel", "--signal=USR2", jid], check=True))
    first, second = attempts(out)
    assert second["restart_count"] == 1 and Path(second["resume_from"]).name == f"step_{stopped_at:08d}"
    log = job.paths.stderr.read_text() + job.paths.stdout.read_text()
    # our handler, then submitit's (which calls TrainingJob.checkpoint and requeues), then SLURM's requeue
    assert "caught SIGUSR2" in log and "Caught signal SIGUSR2" in log and "requeueing pretrain" in log
    assert "DUE TO JOB REQUEUE" in log and "resumed from" in log
    assert summary["result"]["steps"] == STEPS
    _same_as_reference(reference, out)


def test_two_task_job_trains_with_ddp_over_gloo(slurm_cluster, tmp_path):
    lc = LauncherConfig(kind="slurm", tasks_per_node=2, cpus_per_task=1, mem_gb=1, time="10", node_cpus=os.cpu_count())
    job = submit(train_tiny, [TinyConfig(out=str(tmp_path / "ddp"))], lc, "tiny", tmp_path / "submitit").jobs[0]
    ranks = results(job)
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["result"]["world_size"] == 2 for r in ranks)
    assert ranks[0]["result"]["digest"] == ranks[1]["result"]["digest"]
    env = json.loads((tmp_path / "ddp" / "launch" / "env.json").read_text())
    assert (env["backend"], env["source"], env["world_size"]) == ("gloo", "submitit", 2)
    assert env["master"].startswith(slurm_cluster.host + ":")


def test_job_array_runs_and_is_gathered(slurm_cluster, slurm_clips, tmp_path):
    sweep = [["loop.base_lr=0.05"], ["loop.base_lr=0.01"]]
    launched = launch_array("pretrain", sweep, tiny_pretrain_overrides(slurm_clips, None, steps=3, ckpt_every=3) + SLURM,
sweep_dir=tmp_path / "sweep")
    ids = [j.job_id for j in launched.jobs]
    assert len({i.split("_")[0] for i in ids}) == 1 and sorted(i.split("_")[1] for i in ids) == ["0", "1"]  # one array
    for j in launched.jobs:
        results(j)
    rows = gather(tmp_path / "sweep")
    assert [r["status"] for r in rows] == ["done", "done"] and [r["steps"] for r in rows] == [3, 3]
    assert rows[0]["first_loss"] == rows[1]["first_loss"] and rows[0]["final_loss"] != rows[1]["final_loss"]
    table = (tmp_path / "sweep" / "results.md").read_text()
    assert "| 0 | loop.base_lr=0.05 | done |" in table and "| 1 | loop.base_lr=0.01 | done |" in table


def test_bad_cluster_config_fails_before_sbatch(slurm_cluster, slurm_clips, tmp_path):
    before = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout
    with pytest.raises(LauncherConfigError, match=f"exceeds launcher.node_cpus={os.cpu_count()}"):
        launch("pretrain", tiny_pretrain_overrides(slurm_clips, tmp_path / "x") + SLURM + [f"launcher.tasks_per_node={os.cpu_count() + 1}"])
    assert subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout == before
    assert not (tmp_path / "x").exists()
