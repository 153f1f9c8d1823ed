"""Write our encoder at random init as a run folder that ``ivnext-world-model encoder=<out>`` accepts: the
"random init" row of a comparison (the Stage-1 architecture of ``EPDConfig``, seeded, never trained).

    python scripts/save_random_encoder.py --out outputs/encoders/random --img-size 112
    # the main job's CPU architecture (64 px, 8-px patches), the random-init twin of its Stage 1
    python scripts/save_random_encoder.py --out outputs/encoders/random64 --img-size 64 --patch-size 8
"""
from __future__ import annotations

import argparse

import torch

from ivnext_world.pretrain import EPDConfig, build_epd
from ivnext_world.train.checkpoint import TrainState, save_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--img-size", type=int, default=EPDConfig.img_size)
    ap.add_argument("--patch-size", type=int, default=EPDConfig.patch_size)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    model = build_epd(EPDConfig(img_size=args.img_size, patch_size=args.patch_size))
    path = save_checkpoint(f"{args.out}/checkpoints", model, None,
                           TrainState(step=0, data={}, extra={"model": model.config_dict(), "stage": 1}))
    print(f"random-init encoder ({model.config_dict()['encoder']}, {args.img_size} px, {args.patch_size}-px patches, seed {args.seed}) -> {path}")


if __name__ == "__main__":
    main()
