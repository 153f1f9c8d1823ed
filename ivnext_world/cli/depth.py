"""``ivnext-depth``: depth and 3D probes of a frozen encoder (see :mod:`ivnext_world.probes.depth`).

Subcommands::

    ivnext-depth train encoder=outputs/demo/stage1 data.source=outputs/demo/data head.kind=dpt out=runs/d
    ivnext-depth eval --probe runs/d --data outputs/demo/data --episodes 18 19 --out runs/d/eval
    ivnext-depth compare --data outputs/demo/data --train-episodes 0-17 --test-episodes 18-23 \\
        --encoder "random init=random" --encoder "Stage 1=outputs/demo/stage1" \\
        --encoder "Stage 2=outputs/demo/stage2" --steps 200 --out runs/depth_compare
    ivnext-depth compare --data outputs/demo/data --train-episodes 0-17 --test-episodes 18-23 \
        --encoder "InternVideo-Next B=official:/w/internvideo_next_base_p14_res224_f16.pth" \
        --encoder "V-JEPA 2 L=vjepa2:/w/vjepa2-vitl-fpc64-256" --encoder "DINOv2 S=hf:/w/dinov2-small" \
        --img-size 224 --heads linear dpt --out runs/depth_released
    ivnext-depth imagine --probe runs/d --world-model runs/wm --data outputs/demo/data --episodes 18-23 --out runs/imag
    ivnext-depth predict video.mp4 --probe runs/d --out runs/video_depth [--intrinsics fx,fy,cx,cy] [--hfov 60]

``train`` takes hydra-style ``key=value`` overrides of ``configs/depth.yaml`` (typed: a wrong key
is an error before anything runs). An encoder is any backbone spec (:mod:`ivnext_world.backbones`):
a pretraining run, ``random``, ``official:<file>``, ``vjepa2:<folder>``, ``timm:<arch>[:<file>]``,
``hf:<folder>``; ``eval``, ``imagine`` and ``predict`` rebuild it from the probe checkpoint. Without ``--intrinsics`` ``predict`` assumes a pinhole camera
with a 60 degree horizontal field of view centred on the image.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def _episodes(text: str) -> list[int]:
    """``"0-17"`` -> [0..17]; ``"3"`` -> [3]."""
    if "-" in text:
        a, b = text.split("-", 1)
        return list(range(int(a), int(b) + 1))
    return [int(text)]


def _ep_list(values: list[str] | None) -> list[int] | None:
    return None if values is None else [e for v in values for e in _episodes(v)]


def _intrinsics(text: str | None):
    if text is None:
        return None
    vals = [float(v) for v in text.split(",")]
    if len(vals) != 4:
        raise ValueError(f"--intrinsics takes fx,fy,cx,cy (4 numbers), got {text!r}")
    return vals


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="ivnext-depth", description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("train", help="train a probe (configs/depth.yaml overrides), then score it on the held-out episodes")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. head.kind=dpt encoder=runs/s1")
    p = sub.add_parser("eval", help="score a trained probe on held-out episodes; pictures and .ply")
    p.add_argument("--probe", required=True)
    p.add_argument("--data", default=None, help="default: the probe's training dataset")
    p.add_argument("--episodes", nargs="+", default=None, help="default: the probe's held-out episodes (ranges like 18-23)")
    p.add_argument("--eval-stride", type=int, default=2)
    p.add_argument("--out", default=None)
    p = sub.add_parser("compare", help="encoders x heads on the same held-out episodes -> JSON + Markdown table")
    p.add_argument("--data", required=True)
    p.add_argument("--train-episodes", nargs="+", required=True)
    p.add_argument("--test-episodes", nargs="+", required=True)
    p.add_argument("--encoder", action="append", required=True,
                   help="NAME=SPEC; SPEC: random | pretraining run/checkpoint | official:<file> | vjepa2:<folder> "
                        "| timm:<model>[:<weights file>] | hf:<folder>")
    p.add_argument("--img-size", type=int, default=None,
                   help="frame side for every encoder but random init (default: each backbone's own)")
    p.add_argument("--heads", nargs="+", default=["linear", "linear4", "dpt"])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--eval-stride", type=int, default=2)
    p.add_argument("--out", required=True)
    p = sub.add_parser("imagine", help="depth of world-model-imagined futures vs the simulator's future depth")
    p.add_argument("--probe", required=True, help="a probe trained on the world model's encoder (linear head)")
    p.add_argument("--world-model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--episodes", nargs="+", required=True)
    p.add_argument("--context", type=int, default=1)
    p.add_argument("--horizon", type=int, default=8)
    p.add_argument("--max-windows", type=int, default=16)
    p.add_argument("--out", required=True)
    p = sub.add_parser("predict", help="depth maps (PNG) and point clouds (.ply) for every frame of a video")
    p.add_argument("video")
    p.add_argument("--probe", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--intrinsics", default=None, help="fx,fy,cx,cy in the video's pixels")
    p.add_argument("--intrinsics-file", default=None, help=".npy with one (3, 3) or per-frame (T, 3, 3) matrices")
    p.add_argument("--hfov", type=float, default=60.0, help="horizontal field of view (deg) when no intrinsics are given")
    p.add_argument("--every", type=int, default=1, help="use every n-th frame")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--no-ply", action="store_true")
    p.add_argument("--decoder", default="auto", choices=["auto", "decord", "pyav", "torchcodec"],
                   help="video decoder; auto: decord, falling back to PyAV/torchcodec for files it cannot decode (AV1)")
    return ap


def run(args: argparse.Namespace) -> dict:
    from ..probes import depth as D

    if args.cmd == "train":
        from omegaconf import OmegaConf

        from ..config import load_config
        from ..probes.depth.train import resolve_split

        cfg = OmegaConf.to_object(load_config("depth", args.overrides))
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        (Path(cfg.out) / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
        summary = D.train_depth_probe(cfg)
        probe, features, _ = D.load_depth_probe(summary["checkpoint"])
        summary["eval"] = D.evaluate_depth_probe(probe, features, cfg.data.source, resolve_split(cfg.data)[1],
                                                 Path(cfg.out) / "eval", camera_key=cfg.data.camera_key)
        (Path(cfg.out) / "eval.json").write_text(json.dumps(summary["eval"], indent=2))
        return summary
    if args.cmd == "eval":
        probe, features, info = D.load_depth_probe(args.probe)
        data = args.data or info["train_config"]["data"]["source"]
        eps = _ep_list(args.episodes) or info["test_episodes"]
        out = args.out or str(Path(args.probe) / "eval")
        res = D.evaluate_depth_probe(probe, features, data, eps, out, camera_key=info["train_config"]["data"]["camera_key"],
                                     eval_stride=args.eval_stride)
        (Path(out) / "eval.json").write_text(json.dumps(res, indent=2))
        return res
    if args.cmd == "compare":
        encoders = {}
        for item in args.encoder:
            name, sep, spec = item.partition("=")
            if not sep:
                raise ValueError(f"--encoder takes NAME=SPEC, got {item!r}")
            encoders[name] = None if spec == "random" else spec
        res = D.compare_depth_probes(encoders, args.data, _ep_list(args.train_episodes), _ep_list(args.test_episodes),
                                     args.out, heads=tuple(args.heads), steps=args.steps, eval_stride=args.eval_stride,
                                     img_size=args.img_size)
        print(Path(res["markdown"]).read_text())
        return {k: res[k] for k in ("markdown", "json", "depth_comparison")}
    if args.cmd == "imagine":
        from ..world_model import WorldModel

        probe, features, _ = D.load_depth_probe(args.probe)
        res = D.imagined_depth(probe, features, WorldModel.load(args.world_model), args.data, _ep_list(args.episodes),
                               args.out, context=args.context, horizon=args.horizon, max_windows=args.max_windows)
        (Path(args.out) / "imagined.json").write_text(json.dumps(res, indent=2))
        return res
    if args.cmd == "predict":
        K = _intrinsics(args.intrinsics)
        if args.intrinsics_file:
            if K is not None:
                raise ValueError("give --intrinsics or --intrinsics-file, not both")
            import numpy as np

            K = np.load(args.intrinsics_file)
        return D.predict_video(args.probe, args.video, args.out, intrinsics=K, hfov_deg=args.hfov, every=args.every,
                               max_frames=args.max_frames, write_clouds=not args.no_ply, decoder=args.decoder)
    raise AssertionError(args.cmd)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    args = build_parser().parse_args(argv)
    try:
        result = run(args)
    except (ValueError, FileNotFoundError, KeyError, HydraException, OmegaConfBaseException) as err:
        # bad input (video, intrinsics, config key, checkpoint path): one clear line, no traceback
        print(f"ivnext-depth {args.cmd}: error: {err}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(result, indent=2, default=str)[:4000])


if __name__ == "__main__":
    main()
