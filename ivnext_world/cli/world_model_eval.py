"""``world_model_eval``: held-out latent error vs horizon, copy-last baseline, imagined-rollout videos.

Examples::

    python -m ivnext_world.cli.world_model_eval --world-model runs/wm --data outputs/data/push \\
        --episodes 40 41 42 43 --horizon 8 --epd runs/s1 --out runs/wm/eval

Writes ``errors.json``, ``error_vs_horizon.png`` and ``rollout_XX.gif`` to ``--out``
(see :mod:`ivnext_world.world_model.evaluate`).
"""
from __future__ import annotations

import argparse
import json
import logging
from dataclasses import fields

from ..world_model.evaluate import EvalConfig


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="world_model_eval", description=__doc__.split("\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    defaults = {f.name: f.default for f in fields(EvalConfig)}
    ap.add_argument("--world-model", required=True, help="world-model run or checkpoint folder")
    ap.add_argument("--data", required=True, help="LeRobot-layout dataset folder")
    ap.add_argument("--episodes", type=int, nargs="+", default=None, help="held-out episode indices (default: all)")
    ap.add_argument("--epd", default=None, help="pretraining checkpoint: adds the action-free masked predictor")
    for name, typ in (("context", int), ("horizon", int), ("stride", int), ("max_windows", int),
                      ("batch_size", int), ("videos", int), ("decode_steps", int), ("seed", int),
                      ("camera_key", str), ("device", str), ("out", str)):
        ap.add_argument("--" + name.replace("_", "-"), type=typ, default=defaults[name])
    ap.add_argument("--video-format", choices=("gif", "mp4"), default=defaults["video_format"])
    return ap


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from ..world_model.evaluate import evaluate_world_model

    args = vars(build_parser().parse_args(argv))
    result = evaluate_world_model(EvalConfig(**args))
    m = result["methods"]
    print("horizon " + " ".join(f"{name:>17}" for name in m) + "   (latent L1, normalised patch tokens)")
    for i, h in enumerate(result["horizons"]):
        print(f"{h:7d} " + " ".join(f"{'-' if v['l1'][i] is None else format(v['l1'][i], '.4f'):>17}" for v in m.values()))
    sens = result.get("action_sensitivity") or []
    if any(v is not None for v in sens):
        print("action sensitivity (swapped actions' effect / true change), h=1..: "
              + " ".join("-" if v is None else f"{v:.3f}" for v in sens))
    print(json.dumps({"out": args["out"], "num_windows": result["num_windows"], "videos": result["videos"]}))
    # Nothing is returned: the console-script wrapper calls sys.exit(main()), and a returned dict
    # would make a successful run exit with status 1.


if __name__ == "__main__":
    main()
