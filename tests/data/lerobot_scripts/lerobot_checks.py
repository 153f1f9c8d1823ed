"""Checks that run inside the LeRobot virtualenv (``.venv-lerobot``), on datasets our writer made.

Usage: ``python lerobot_checks.py SPEC.json`` where SPEC names the folders (see
tests/data/test_lerobot_interop.py, which writes it). Each check runs on its own: its failure is
recorded with the traceback under ``report["errors"][name]`` so every pytest test reports its own
cause. Results go to ``<out>/report.json`` (numbers, shapes) and ``<out>/<name>.npz`` (arrays).
Uses only lerobot's public modules; needs ``HF_HUB_OFFLINE=1`` (nothing is downloaded).
"""
from __future__ import annotations

import json
import shutil
import sys
import traceback
from pathlib import Path

import numpy as np
import torch


def shapes(stats: dict) -> dict:
    """feature -> stat -> shape list, for a LeRobot stats dict of numpy arrays."""
    return {k: {s: list(np.asarray(v).shape) for s, v in d.items()} for k, d in stats.items()}


def dump(ds, out: Path) -> dict:
    """Every frame of a LeRobot ``LeRobotDataset`` as uint8 plus its numeric columns, into ``out``."""
    cams = ds.meta.camera_keys
    cols: dict[str, list] = {}
    for i in range(len(ds)):
        item = ds[i]
        for key, value in item.items():
            if isinstance(value, torch.Tensor):
                if key in cams:  # float (C, H, W) in [0, 1], decoded by lerobot (torchcodec by default)
                    value = (value * 255).round().to(torch.uint8).permute(1, 2, 0)
                cols.setdefault(key, []).append(value.numpy())
    np.savez(out, **{k: np.stack(v) for k, v in cols.items()})
    return {"len": len(ds), "num_episodes": ds.num_episodes, "camera_keys": cams, "features": sorted(ds.features),
            "fps": ds.fps, "video_backend": ds.video_backend}


def check_load(spec: dict, out: Path) -> dict:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = Path(spec["v30_root"]) / spec["v30_repo_ids"][0]
    ds = LeRobotDataset(spec["v30_repo_ids"][0], root=root)
    result = dump(ds, out / "load.npz")
    result["meta_stats_shapes"] = shapes(ds.meta.stats)
    return result


def check_stats(spec: dict, out: Path) -> dict:
    """LeRobot's own statistics pass over our dataset: every frame through its loader, per-episode
    stats with quantiles, then its aggregate_stats (which checks image stats are (3, 1, 1))."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.datasets.v30.augment_dataset_quantile_stats import compute_quantile_stats_for_dataset

    root = Path(spec["v30_root"]) / spec["v30_repo_ids"][0]
    stats = compute_quantile_stats_for_dataset(LeRobotDataset(spec["v30_repo_ids"][0], root=root))
    return {"shapes": shapes(stats),
            "values": {k: {s: np.asarray(v).tolist() for s, v in d.items()} for k, d in stats.items()}}


def check_multi(spec: dict, out: Path) -> dict:
    from lerobot.datasets.lerobot_dataset import MultiLeRobotDataset

    multi = MultiLeRobotDataset(spec["v30_repo_ids"], root=spec["v30_root"])
    last = multi[len(multi) - 1]
    return {"len": len(multi), "num_episodes": multi.num_episodes, "stats_shapes": shapes(multi.stats),
            "disabled": sorted(multi.disabled_features), "last_dataset_index": int(last["dataset_index"]),
            "item_keys": sorted(last)}


def check_convert(spec: dict, out: Path) -> dict:
    """LeRobot's v2.1 -> v3.0 converter on a copy of our v2.1 output (it converts in place and moves
    the original to ``<name>_old``), then LeRobot loads the result."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.datasets.v30.convert_dataset_v21_to_v30 import convert_dataset

    root, repo_id = Path(spec["convert_root"]), spec["convert_repo_id"]
    shutil.copytree(spec["v21"], root / repo_id)
    convert_dataset(repo_id, root=root, push_to_hub=False)
    ds = LeRobotDataset(repo_id, root=root / repo_id)
    result = dump(ds, out / "convert.npz")
    result["meta_stats_shapes"] = shapes(ds.meta.stats)
    result["converted"] = str(root / repo_id)
    return result


CHECKS = {"load": check_load, "stats": check_stats, "multi": check_multi, "convert": check_convert}


def main() -> None:
    import lerobot

    torch.set_num_threads(1)
    spec = json.loads(Path(sys.argv[1]).read_text())
    out = Path(spec["out"])
    report: dict = {"lerobot": lerobot.__version__, "torch": torch.__version__, "results": {}, "errors": {}}
    for name in spec.get("checks", list(CHECKS)):
        try:
            report["results"][name] = CHECKS[name](spec, out)
        except Exception:  # recorded for the pytest test of this check, which fails showing it
            report["errors"][name] = traceback.format_exc()
    (out / "report.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
