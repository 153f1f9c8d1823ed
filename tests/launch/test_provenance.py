"""Job-folder provenance: git commit without a git process, and what a local launch writes."""
import json

from ivnext_world.launch import LauncherConfig, submit
from ivnext_world.launch.provenance import git_info

from ._tiny import TinyConfig, train_tiny


def test_git_info_reads_loose_and_packed_refs_and_detached_heads(tmp_path):
    git = tmp_path / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / "refs" / "heads" / "main").write_text("a" * 40 + "\n")
    assert git_info(tmp_path) == {"commit": "a" * 40, "branch": "main"}
    (git / "refs" / "heads" / "main").unlink()
    (git / "packed-refs").write_text("# pack-refs\n" + "b" * 40 + " refs/heads/main\n")
    assert git_info(tmp_path)["commit"] == "b" * 40
    (git / "HEAD").write_text("c" * 40 + "\n")
    assert git_info(tmp_path) == {"commit": "c" * 40, "branch": None}
    assert git_info(tmp_path / "nowhere") == {}


def test_local_launch_writes_the_job_folder(tmp_path):
    out = tmp_path / "run"
    launched = submit(train_tiny, [TinyConfig(out=str(out))], LauncherConfig(kind="local"), "tiny", tmp_path / "unused")
    assert launched.jobs == [] and launched.results[0]["result"]["steps"] == 8
    d = out / "launch"
    assert "steps: 8" in (d / "config.yaml").read_text() and "kind: local" in (d / "launcher.yaml").read_text()
    assert any(line.startswith("torch==") for line in (d / "packages.txt").read_text().splitlines())
    (attempt,) = [json.loads(x) for x in (d / "attempts.jsonl").read_text().splitlines()]
    assert attempt["resume_from"] is None and attempt["world_size"] == 1
    assert json.loads((out / "result.json").read_text())["result"]["digest"] == launched.results[0]["result"]["digest"]
    submit(train_tiny, [TinyConfig(out=str(out))], LauncherConfig(kind="local"), "tiny", tmp_path / "unused")
    assert json.loads((d / "attempts.jsonl").read_text().splitlines()[1])["resume_from"].endswith("step_00000008")
