"""Estimate the time of ``make demo ARGS="scale=gpu"`` on one GPU from counted FLOPs.

Counts the FLOPs of one real Stage-1 and one Stage-2 training step of the ``scale=gpu`` preset (batch
2 on the CPU, scaled to the preset's batch) with PyTorch's FlopCounterMode, multiplies by the steps,
and divides by an assumed MFU of a datasheet peak. Only the two pretraining stages are counted (the
world model, probes and planning use the same frozen encoder at smaller cost); the printout says so.
This is an estimate, not a measurement: run ``scripts/gpu_check.sh`` on the GPU for real step times.

    python scripts/gpu_demo_estimate.py [--mfu 0.3] [--peak-tflops 989.4]
"""
from __future__ import annotations

import argparse
from dataclasses import replace

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mfu", type=float, default=0.3, help="assumed model FLOPs utilisation (default 0.3)")
    ap.add_argument("--peak-tflops", type=float, default=989.4, help="dense bf16 datasheet peak (H100/H200 SXM)")
    ap.add_argument("--probe-batch", type=int, default=2, help="batch counted on the CPU (scaled to the preset's)")
    args = ap.parse_args()

    from ivnext_world.config import load_config
    from ivnext_world.pretrain.epd import FrozenEncoder, build_epd
    from ivnext_world.pretrain.run import stage1_loss
    from ivnext_world.pretrain.stage1 import Stage1Objective
    from ivnext_world.pretrain.stage2 import Stage2Objective
    from ivnext_world.utils.flops import count_flops

    from omegaconf import OmegaConf

    cfg = OmegaConf.to_object(load_config("demo", ["scale=gpu"]))
    s1, s2 = cfg.stage1, cfg.stage2
    torch.manual_seed(0)
    m = s1.model
    video = torch.randn(args.probe_batch, 3, m.num_frames, m.img_size, m.img_size)
    gen = torch.Generator().manual_seed(0)
    model1 = build_epd(replace(build_epd(m).cfg, latent_head=False))
    obj1 = Stage1Objective(stage1_loss(s1), None)  # no teacher weights: reconstruction only, as the job runs

    def step1():
        loss, _ = obj1(model1, {"video": video}, gen)
        loss.backward()

    model2 = build_epd(replace(model1.cfg, decoder="none", latent_head=True))
    obj2 = Stage2Objective(FrozenEncoder(build_epd(model1.cfg).encoder))

    def step2():
        loss, _ = obj2(model2, {"video": video}, gen)
        loss.backward()

    rate = args.mfu * args.peak_tflops * 1e12
    total = 0.0
    for name, fn, stage in (("Stage 1", step1, s1), ("Stage 2", step2, s2)):
        flops = count_flops(fn, "cpu") * stage.loop.batch_size / args.probe_batch
        seconds = flops * stage.loop.steps / rate
        total += seconds
        print(f"{name}: {flops / 1e12:.2f} TFLOP per step (batch {stage.loop.batch_size}) x {stage.loop.steps} steps "
              f"= {seconds / 60:.1f} min at {args.mfu:.0%} of {args.peak_tflops:.0f} TFLOP/s")
    print(f"pretraining total: {total / 60:.1f} min (estimate; world model, probes and planning not counted)")


if __name__ == "__main__":
    main()
