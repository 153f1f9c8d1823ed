"""Encoders x depth heads on the same held-out episodes: JSON + Markdown table + pictures.

``compare_depth_probes`` trains one probe per (encoder, head) with the same data, steps and seed,
scores it with :func:`~.evaluate.evaluate_depth_probe`, and writes ``comparison.json``,
``comparison.md``, a depth-map sheet of one held-out frame across all probes, and per probe its
own pictures. ``run_depth_probe`` is the README main job's hook (small, CPU-minutes settings).
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from ...pretrain.epd import EPDConfig
from ...train import LoopConfig
from ...utils.io import atomic_write_text
from .encoders import build_features
from .evaluate import depth_sheet, evaluate_depth_probe, predict_depth, static_depth_map
from .heads import HEAD_KINDS, DepthHeadConfig
from .train import DepthDataConfig, DepthProbeConfig, load_depth_probe, train_depth_probe

log = logging.getLogger(__name__)

TABLE_KEYS = ("abs_rel", "rmse", "d1", "d2", "d3", "si_abs_rel", "si_rmse", "si_d1", "chamfer", "dyn_abs_rel", "dyn_rmse", "dyn_d1")
LOWER_IS_BETTER = {"abs_rel", "rmse", "si_abs_rel", "si_rmse", "chamfer"}


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower() or "encoder"


def _random_arch(specs: dict[str, str | None]) -> dict:
    """The random-init baseline copies the architecture of the first of our pretrained encoders given."""
    from ...backbones import is_backbone_spec
    from ...pretrain.run import resolve_checkpoint

    for spec in specs.values():
        if spec and spec != "random" and not is_backbone_spec(str(spec)):
            return json.loads((resolve_checkpoint(spec) / "state.json").read_text())["extra"]["model"]
    return asdict(EPDConfig(decoder="none"))


def markdown_table(rows: list[dict]) -> str:
    head = "| encoder | head | " + " | ".join(TABLE_KEYS) + " | beats random (AbsRel & d1) | beats random on dyn_ |"
    lines = [head, "|" + "---|" * (len(TABLE_KEYS) + 4)]
    yn = {True: "yes", False: "no", None: "-"}
    for r in rows:
        vals = " | ".join("-" if r.get(k) is None else f"{r[k]:.3f}" for k in TABLE_KEYS)
        lines.append(f"| {r['encoder']} | {r['head']} | {vals} | {yn[r.get('beats_random')]} | {yn[r.get('beats_random_dyn')]} |")
    legend = ("\nAbsRel, RMSE (m), Chamfer (m: mean of both directions of unsquared nearest-neighbour distances) "
              "lower is better; d1/d2/d3 higher is better; si_ = after per-image least-squares scale and shift; "
              "dyn_ = only pixels whose true depth differs by > 5% from the static map (the per-pixel mean depth "
              "of the training episodes: what moves). The 'static map' row predicts that map for every frame, "
              "without looking at the image.\n")
    return "\n".join(lines) + "\n" + legend


def compare_depth_probes(
    encoders: dict[str, str | None], source: str, train_episodes: list[int], test_episodes: list[int], out_dir: str | Path,
    heads: tuple[str, ...] = HEAD_KINDS, steps: int = 300, head_cfg: DepthHeadConfig | None = None,
    loop: LoopConfig | None = None, eval_stride: int = 2, camera_key: str | None = None, random_model: dict | None = None,
    img_size: int | None = None,
) -> dict:
    """Train and score every (encoder, head); ``encoders``: name -> spec (None = random init; any backbone
    spec, see :mod:`.encoders`). ``img_size``: frame side for every backbone but the random init (None:
    each backbone's own)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if set(train_episodes) & set(test_episodes):
        raise ValueError("train and test episodes overlap")
    random_model = random_model or _random_arch(encoders)
    head_cfg = head_cfg or DepthHeadConfig()
    loop = loop or DepthProbeConfig().loop
    data = DepthDataConfig(source=source, train_episodes=list(train_episodes), test_episodes=list(test_episodes), camera_key=camera_key)
    rows, sheet, frame = [], [], None
    static = static_depth_map(source, list(train_episodes), camera_key)
    for name, spec in encoders.items():
        size = None if not spec or spec == "random" else img_size
        features, record = build_features(spec or "random", random_model, 0, size)
        for kind in heads:
            cfg = DepthProbeConfig(encoder=spec or "random", encoder_img_size=size,
                                   random_model=EPDConfig(**random_model), head=replace(head_cfg, kind=kind),
                                   data=data, loop=replace(loop, steps=steps), out=str(out / slug(name) / kind))
            log.info("depth probe: %s / %s (%d steps)", name, kind, steps)
            summary = train_depth_probe(cfg, features, record)
            probe, _, _ = load_depth_probe(summary["checkpoint"])
            res = evaluate_depth_probe(probe, features, source, list(test_episodes), out / slug(name) / kind,
                                       camera_key=camera_key, eval_stride=eval_stride, title=f"{name} / {kind}", static_map=static)
            static_row = res.pop("static_map")
            rows.append({"encoder": name, "head": kind, **{k: res.get(k) for k in TABLE_KEYS},
                         "first_loss": summary["first_loss"], "final_loss": summary["final_loss"],
                         "checkpoint": summary["checkpoint"], "pictures": [res.get("depth_sheet"), res.get("point_cloud_png")],
                         "renderer": res.get("point_cloud_renderer")})
            if frame is None:
                frame = _one_frame(source, test_episodes[0], camera_key)
            pred = predict_depth(probe, features, frame["frames"], tuple(frame["depth"].shape[-2:]))[0].numpy()
            sheet.append({"rgb": frame["rgb"], "gt": frame["depth"][0].numpy(), "pred": pred, "label": f"{name}\n{kind}"})
    rows.append({"encoder": "static map (no image)", "head": "-", **{k: static_row.get(k) for k in TABLE_KEYS}})
    _verdicts(rows, encoders)
    sheet_png = depth_sheet(sheet, out / "depth_comparison.png", f"held-out episode {test_episodes[0]}, one frame")
    md = markdown_table(rows)
    result = {"source": source, "train_episodes": list(train_episodes), "test_episodes": list(test_episodes), "steps": steps,
              "encoders": {name: spec or "random" for name, spec in encoders.items()},
              "eval_stride": eval_stride, "rows": rows, "depth_comparison": str(sheet_png),
              "markdown": str(out / "comparison.md"), "json": str(out / "comparison.json")}
    atomic_write_text(out / "comparison.md", f"# Depth probes on held-out episodes {list(test_episodes)} of {source}\n\n" + md)
    atomic_write_text(out / "comparison.json", json.dumps(result, indent=2))
    return result


def _one_frame(source, ep, camera_key):
    from ...data import LeRobotDataset, TrajectoryDataset

    n = LeRobotDataset(source).episode_length(ep)
    it = TrajectoryDataset(source, window=1, stride=1, camera_key=camera_key, episodes=[ep], on_error="raise")[n // 2]
    return {"frames": it["frames"], "depth": it["depth"],
            "rgb": (it["frames"][0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)}


def _verdicts(rows: list[dict], encoders: dict) -> None:
    """``beats_random`` per pretrained row: lower AbsRel and higher d1 than random init with the same head."""
    random_names = {n for n, s in encoders.items() if not s or s == "random"}
    base = {r["head"]: r for r in rows if r["encoder"] in random_names}
    for r in rows:
        b = base.get(r["head"])
        skip = b is None or r["encoder"] in random_names
        r["beats_random"] = None if skip else bool(r["abs_rel"] < b["abs_rel"] and r["d1"] > b["d1"])
        has_dyn = not skip and r.get("dyn_abs_rel") is not None and b.get("dyn_abs_rel") is not None
        r["beats_random_dyn"] = bool(r["dyn_abs_rel"] < b["dyn_abs_rel"] and r["dyn_d1"] > b["dyn_d1"]) if has_dyn else None


def run_depth_probe(
    encoder_ckpts: dict[str, str | Path | None], data_root: str | Path, train_eps: list[int], test_eps: list[int],
    out_dir: str | Path, steps: int = 150, heads: tuple[str, ...] = ("linear",), world_model: str | Path | None = None,
    imagine_encoder: str | None = None, imagine_horizon: int = 8,
) -> dict:
    """The README main job's depth section: small probes per encoder, table and pictures.

    Args:
        encoder_ckpts: display name -> pretraining checkpoint/run folder, or None for random init
            (same architecture as the first checkpoint).
        world_model: optional world-model run; then the ``linear`` probe of ``imagine_encoder`` (the
            name whose checkpoint is the world model's encoder) is applied to an imagined rollout.

    Returns ``{"rows", "table", "markdown", "json", "images": [png, ...], "imagined": {...} | None}``:
    ``table`` is ``{"<encoder> / <head>": "AbsRel .. d1 .. | moving pixels: AbsRel .. d1 .."}`` for
    :meth:`Report.add`; the images are the cross-probe depth sheet, per encoder the first head's
    point-cloud view, and the imagined-depth pictures.
    """
    torch.manual_seed(0)
    specs = {k: (str(v) if v is not None else None) for k, v in encoder_ckpts.items()}
    loop = replace(DepthProbeConfig().loop, num_workers=1, ckpt_every=max(1, steps), warmup_steps=max(1, steps // 10))
    res = compare_depth_probes(specs, str(data_root), list(train_eps), list(test_eps), out_dir, heads=heads, steps=steps,
                               loop=loop, eval_stride=4)
    images = [res["depth_comparison"]] + [r["pictures"][1] for r in res["rows"] if r["head"] == heads[0] and r["pictures"][1]]
    imagined = None
    if world_model is not None:
        from ...world_model import WorldModel
        from .imagine import imagined_depth

        name = imagine_encoder or next(n for n, s in specs.items() if s)
        ckpt = next(r["checkpoint"] for r in res["rows"] if r["encoder"] == name and r["head"] == "linear")
        probe, features, _ = load_depth_probe(ckpt)
        imagined = imagined_depth(probe, features, WorldModel.load(world_model), str(data_root), list(test_eps),
                                  Path(out_dir) / "imagined", horizon=imagine_horizon, max_windows=8)
        images += [imagined["files"][k] for k in ("curve", "sheet_0", "cloud_0") if k in imagined["files"]]
    def fmt(r, k):
        return "-" if r.get(k) is None else f"{r[k]:.3f}"

    table = {f"{r['encoder']} / {r['head']}": f"AbsRel {fmt(r, 'abs_rel')}, d1 {fmt(r, 'd1')}, Chamfer {fmt(r, 'chamfer')} m"
             f" | moving pixels: AbsRel {fmt(r, 'dyn_abs_rel')}, d1 {fmt(r, 'dyn_d1')}" for r in res["rows"]}
    return {"rows": res["rows"], "table": table, "markdown": res["markdown"], "json": res["json"], "images": images,
            "imagined": imagined}
