"""``ivnext-convert``: convert released checkpoints to this project's own format.

Subcommands::

    ivnext-convert official internvideo_next_base_p14_res224_f16.pth weights/ivnext_base_s2.safetensors

``official`` reads an official InternVideo-Next encoder checkpoint (``.pth``/``.bin`` through
``torch.load(weights_only=True)``, or ``.safetensors``; a bare state dict or one inside
``model``/``module``/``state_dict``, with or without ``module.``/``model.`` prefixes), renames the
keys to ours, drops training-only tensors, checks every tensor against an encoder of its size, and
writes a safetensors file whose metadata records the position table's grid and the model options.
Load the result with::

    timm.create_model("ivnext_vit_base_patch14_224.official_s2", pretrained=True,
                      pretrained_cfg_overlay=dict(file="weights/ivnext_base_s2.safetensors"))

A plain argparse tool (no hydra): it has two paths and one option.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ivnext-convert", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    official = sub.add_parser("official", help="official InternVideo-Next encoder checkpoint -> our safetensors")
    official.add_argument("src", type=Path, help="official checkpoint (.pth, .bin, .pt or .safetensors)")
    official.add_argument("dst", type=Path, help="output .safetensors file")
    official.add_argument("--img-size", type=int, default=224,
                          help="frame size (px) the checkpoint's position table was trained at (released: 224)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from ivnext_world.models.official import CheckpointError, convert_official

    try:
        meta = convert_official(args.src, args.dst, img_size=args.img_size)
    except CheckpointError as e:
        print(f"ivnext-convert: {e}", file=sys.stderr)
        return 2
    preset = meta.get("preset")
    load = f"{preset}.official_s2" if preset else "a preset of this size with pool_query='mean', mlp_act='gelu_tanh'"
    print(f"wrote {args.dst} (grid {meta['grid']}, pool_query={meta['pool_query']}); load it with {load}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
