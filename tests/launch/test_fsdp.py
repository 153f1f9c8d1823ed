"""FSDP on 2 CPU processes over gloo (FSDP2 fully_shard): trains like DDP, saves full checkpoints, resumes exactly.

What CPU/gloo cannot test: NCCL, real memory savings on GPUs, mixed precision with sharded params.
"""
import dataclasses

import pytest
import torch
from safetensors.torch import load_file

from ivnext_world.launch import LauncherConfig, submit

from ._tiny import TinyConfig, train_tiny

LC = LauncherConfig(kind="submitit_local", tasks_per_node=2, cpus_per_task=1, time="5")


def run(out, parallel, stop_after=None):
    cfg = TinyConfig(out=str(out), stop_after=stop_after)
    cfg.loop = dataclasses.replace(cfg.loop, parallel=parallel)
    return submit(train_tiny, [cfg], LC, "tiny", out.parent / f"submitit_{out.name}").wait()[0]


def ckpt(out, step=8):
    return load_file(str(out / "checkpoints" / f"step_{step:08d}" / "model.safetensors"))


@pytest.mark.slow
def test_fsdp_matches_ddp_and_resumes_bitwise(tmp_path):
    fsdp = run(tmp_path / "fsdp", "fsdp")
    ddp = run(tmp_path / "ddp", "ddp")
    assert fsdp[0]["result"]["digest"] == fsdp[1]["result"]["digest"]  # both ranks see the same full weights
    a, b = ckpt(tmp_path / "fsdp"), ckpt(tmp_path / "ddp")
    assert a.keys() == b.keys() == {"blocks.0.weight", "blocks.0.bias", "head.weight", "head.bias"}  # plain names, full shapes
    assert all(a[k].shape == b[k].shape and torch.allclose(a[k], b[k], atol=1e-5) for k in a)  # same maths as DDP
    run(tmp_path / "part", "fsdp", stop_after=5)  # checkpoint at step 4, then "killed"
    resumed = run(tmp_path / "part", "fsdp")
    assert resumed[0]["result"]["steps"] == 8 and resumed[0]["result"]["digest"] == fsdp[0]["result"]["digest"]
    c = ckpt(tmp_path / "part")
    assert all(torch.equal(a[k], c[k]) for k in a)
