"""FSDP2 wrapping: one shard unit per transformer block plus the root, and bf16 mixed precision.

Two CPU ranks over gloo. What a CPU cannot show: NCCL, overlap of all-gathers with compute, and the
memory saved on GPUs.
"""
from __future__ import annotations

import pytest
import torch
from torch.distributed.fsdp import FSDPModule

from ivnext_world.train.loop import LoopConfig, Trainer

from ._ranks import run_ranks
from .test_ddp_objectives import Clips, _teacher, stage1


def _fsdp_stage1(rank: int, out: str, precision: str) -> dict:
    model, objective = stage1(teacher=_teacher())
    seen = {}

    def record(name):
        def hook(module, args):  # the parameters the block computes with (FSDP2 swaps in the gathered ones)
            seen[name] = next(module.parameters()).dtype
        return hook

    model.encoder.blocks[0].register_forward_pre_hook(record("encoder_block"))
    model.decoder.net.blocks[0].register_forward_pre_hook(record("decoder_block"))
    loop = LoopConfig(steps=2, batch_size=2, num_workers=0, warmup_steps=1, ckpt_every=2, log_every=1, base_lr=0.05,
                      parallel="fsdp", precision=precision)
    trainer = Trainer(model, objective, Clips(), loop, out, device="cpu")
    units = sorted(n for n, m in trainer._fsdp_step.named_modules() if isinstance(m, FSDPModule))
    history = trainer.fit()
    return {"units": units, "seen": seen, "stored": {p.dtype for p in model.parameters()},
            "steps": [r["step"] for r in history], "loss": history[-1]["loss"]}


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_fsdp_shards_each_block_and_the_root(tmp_path, precision):
    r0, r1 = run_ranks(_fsdp_stage1, (str(tmp_path / "run"), precision), tmp_path / "pg", timeout=240)
    # Root = the ObjectiveModule around the model; encoder depth 3, predictor depth 1, decoder depth 2,
    # and the decoder's denoiser (it computes in fp32). Not the teacher's blocks (frozen, outside
    # the model) nor the Linear layers inside the blocks.
    assert r0["units"] == r1["units"] == sorted([
        "", "model.encoder.blocks.0", "model.encoder.blocks.1", "model.encoder.blocks.2", "model.predictor.blocks.0",
        "model.decoder.net", "model.decoder.net.blocks.0", "model.decoder.net.blocks.1",
    ])
    assert r0["steps"] == [1, 2] and r0["loss"] == r0["loss"]
    compute = torch.bfloat16 if precision == "bf16" else torch.float32
    # MixedPrecisionPolicy(param_dtype): the gathered block weights are bf16, but not the decoder's.
    assert r0["seen"] == {"encoder_block": compute, "decoder_block": torch.float32}
    assert r0["stored"] == {torch.float32}  # the sharded master weights (and AdamW) stay fp32
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "run" / "checkpoints" / "step_00000002" / "model.safetensors"))
    assert {v.dtype for v in saved.values()} == {torch.float32}
