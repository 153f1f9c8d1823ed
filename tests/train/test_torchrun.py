"""``torchrun ... ivnext-pretrain``: the processes join one process group instead of training N
unconnected copies (2 CPU processes over gloo)."""
import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_torchrun_starts_one_two_rank_run(tmp_path):
    from launch._tiny import tiny_pretrain_overrides, write_clips  # tests/ is on sys.path (rootdir conftest)

    manifest = write_clips(tmp_path / "clips", 4)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "ivnext_world.cli.pretrain", *tiny_pretrain_overrides(manifest, out, steps=2, ckpt_every=2)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 2
    # One run: one checkpoint folder holding every rank's RNG state.
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step_00000002"]
    state = json.loads((out / "checkpoints" / "step_00000002" / "state.json").read_text())
    assert len(state["rng"]) == 2
