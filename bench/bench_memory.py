"""Per-GPU memory of pretraining at paper scale (16 frames, 224 px, bf16), measured without a GPU.

Each row runs one real training step (forward, backward, AdamW) under FakeTensor made to behave as
on a CUDA GPU (ivnext_world.launch.memory: CUDA's autocast policy, FlashAttention, fused RMSNorm),
the measurement ``ivnext-launch ... --dry-run`` makes before it submits. Prints a Markdown table:

    .venv/bin/python bench/bench_memory.py                       # Base and Large, Stage 1 and 2, batch 16/32, ckpt off/on
    .venv/bin/python bench/bench_memory.py --models base --stages 1 --batches 32

"total" = measured peak + DDP gradient buckets (data parallel over ``--world-size`` ranks) + a
2 GiB allowance for the CUDA context/workspaces/NCCL; "fits" compares it with ``--gpu`` leaving
10% free (what the launcher requires).
"""
from __future__ import annotations

import argparse
import time

import torch

MODELS = {
    "base": ["model.encoder=ivnext_vit_base_patch14_224", "model.drop_path=0.1", "teacher.model=vit_base_patch16_siglip_224", "teacher.allow_random=true"],
    "large": ["model.encoder=ivnext_vit_large_patch14_224", "model.drop_path=0.2", "teacher.model=vit_large_patch16_siglip_256", "teacher.allow_random=true"],
}
COMMON = ["model.img_size=224", "model.num_frames=16", "model.predictor_dim=1024", "model.predictor_depth=5",
          "model.predictor_heads=16", "model.decoder_width=1536", "model.decoder_depth=6"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["base", "large"], choices=sorted(MODELS))
    p.add_argument("--stages", nargs="+", type=int, default=[1, 2])
    p.add_argument("--batches", nargs="+", type=int, default=[16, 32])
    p.add_argument("--ckpt", nargs="+", default=["off", "on"], choices=["off", "on"])
    p.add_argument("--world-size", type=int, default=32, help="data-parallel ranks (DDP buckets when > 1)")
    p.add_argument("--gpu", default="h100_80gb")
    a = p.parse_args()
    torch.set_num_threads(1)

    from omegaconf import OmegaConf

    from ivnext_world.config import load_config
    from ivnext_world.launch.memory import DEFAULT_HEADROOM, GIB, MemoryCheckError, check_fits, estimate_pretrain, gpu_memory_bytes

    gpu, gpu_bytes = gpu_memory_bytes(a.gpu)
    print(f"per-GPU memory, GiB (16x224, bf16, AdamW, DDP over {a.world_size} ranks; {gpu} = {gpu_bytes / GIB:.1f} GiB)\n")
    print("| model | stage | batch/GPU | grad ckpt | weights+AdamW | activations | peak | total | fits " + gpu + " | s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for model in a.models:
        for stage in a.stages:
            for batch in a.batches:
                for ckpt in a.ckpt:
                    ov = [f"stage={stage}", *MODELS[model], *COMMON, f"loop.batch_size={batch}",
                          f"model.grad_checkpointing={ckpt == 'on'}"]
                    cfg = OmegaConf.to_object(load_config("pretrain", ov))
                    t0 = time.perf_counter()
                    m = estimate_pretrain(cfg, a.world_size)
                    dt = time.perf_counter() - t0
                    try:
                        fits = f"yes, {check_fits(m, gpu, gpu_bytes, DEFAULT_HEADROOM):.0%} free"
                    except MemoryCheckError:
                        fits = "no"
                    g = lambda n: f"{n / GIB:.1f}"  # noqa: E731
                    print(f"| {model} | {stage} | {batch} | {ckpt} | {g(m.params + m.optimizer)} | {g(m.activations)} | "
                          f"{g(m.peak)} | {g(m.total)} | {fits} | {dt:.0f} |", flush=True)


if __name__ == "__main__":
    main()
