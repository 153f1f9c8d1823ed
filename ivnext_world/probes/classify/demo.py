"""The main job's classification section: frozen encoders on a small temporal benchmark from the simulator.

:func:`classification_section` renders a few clips of the temporal benchmark
(:mod:`ivnext_world.sim.temporal_bench`, ``arm8`` by default: the label is how the arm turns, which no
single frame shows; balanced classes; val and test clips from held-out episodes), then runs
:func:`~.compare.compare_backbones` (one :func:`~.run.run_classify` per backbone: one pass of the frozen
backbone into a token cache, a small grid of heads trained on it, the head picked on validation,
scored on test) for every encoder of the main job and the single-frame baseline (the last encoder
seeing only the centre frame). It returns what a report section shows: a table, the best encoder's
confusion matrix and a short description.

The defaults are sized for the main job on two CPU cores (about a minute for tiny encoders): clips
at half the encoders' training size (their position tables are interpolated; 4x fewer tokens),
one evaluation view, the attentive probe only (2 blocks), 40 steps. Everything resumes: a rerun reuses the
rendered clips, the token caches and the trained heads.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from ...utils.io import atomic_write_text
from .compare import KINDS, compare_backbones, markdown_table

log = logging.getLogger(__name__)

BASELINES = ("single frame", "per-frame ViT")


def encoder_architecture(encoders: dict[str, str | None]) -> dict:
    """``EPDConfig`` fields of the first pretraining checkpoint in ``encoders`` (the architecture of
    the random-init row), read from its ``state.json`` without loading weights."""
    from ...pretrain.run import resolve_checkpoint

    ckpts = [v for v in encoders.values() if v]
    if not ckpts:
        raise ValueError("the classification section needs at least one pretraining checkpoint (for the architecture "
                         f"of the random-init row), got only random inits: {list(encoders)}")
    return json.loads((resolve_checkpoint(ckpts[0]) / "state.json").read_text())["extra"]["model"]


def _bench(bench, out: Path, size: int, frames: int, clips_per_class: Sequence[int]) -> tuple[Path, dict]:
    """Render (or reuse) the benchmark; returns its folder and ``benchmark.json``."""
    from ...sim.temporal_bench import TemporalBenchConfig, make_temporal_bench

    if isinstance(bench, (str, Path)):
        root = Path(bench)
        if not (root / "benchmark.json").is_file():
            raise FileNotFoundError(f"{root} is not a temporal benchmark (no benchmark.json): render one with "
                                    f"ivnext-make-temporal-bench, or pass None to render it here")
        return root, json.loads((root / "benchmark.json").read_text())
    if bench is None:
        tr, va, te = clips_per_class
        bench = TemporalBenchConfig(image_size=size, frames=frames, train_per_class=tr, val_per_class=va,
                                    test_per_class=te, out=str(out / "bench"))
    if not isinstance(bench, TemporalBenchConfig):
        raise TypeError(f"bench must be a TemporalBenchConfig, a benchmark folder or None, got {type(bench).__name__}")
    root = Path(bench.out)
    meta_file = root / "benchmark.json"
    if meta_file.is_file():  # rendered by an earlier run: reused if it is the same benchmark
        meta = json.loads(meta_file.read_text())
        want = json.loads(json.dumps(asdict(bench)))
        if {k: v for k, v in meta["config"].items() if k != "overwrite"} != {k: v for k, v in want.items() if k != "overwrite"}:
            raise ValueError(f"{root} holds a temporal benchmark with other settings ({meta_file}): remove it, or "
                             f"render this one elsewhere")
        return root, meta
    return root, make_temporal_bench(bench)


def classification_section(
    bench, encoders: dict[str, str | None], out_dir: str | Path, *,
    resolution: int | None = None, num_frames: int | None = None, clips_per_class: Sequence[int] = (5, 1, 2),
    kinds: Sequence[str] = ("attentive",), head_depth: int = 2, lrs: Sequence[float] = (1e-2, 3e-3),
    steps: int = 40, batch_size: int = 8, baselines: Sequence[str] = ("single frame",), seed: int = 0,
) -> dict:
    """Classify the temporal benchmark with frozen encoders; returns a report section.

    Args:
        bench: None (render ``arm8`` into ``out_dir/bench`` at ``resolution`` px, ``num_frames``
            frames, ``clips_per_class`` = (train, val, test) clips per class), a
            :class:`~ivnext_world.sim.temporal_bench.TemporalBenchConfig` to render (its ``out``), or
            the folder of a rendered benchmark.
        encoders: row label -> pretraining run/checkpoint folder, or None for a random init of the
            first checkpoint's architecture, e.g. ``{"random init": None, "Stage 1": ..., "Stage 2": ...}``.
        out_dir: one ``run_classify`` folder per row, ``comparison.md``/``.json``, ``section.json``.
        resolution: clip side in px; None: half the encoders' training size, rounded down to their patch size.
        num_frames: frames per clip (consecutive); None: the encoders' ``num_frames``.
        kinds: head kinds trained (``linear``, ``pooler``, ``attentive``); the table shows each.
        head_depth: blocks of the attentive probe (V-JEPA 2: 4; 2 here: a self-attention block and the
            cross-attention block, 2.5x cheaper at the main job's width).
        lrs, steps, batch_size: the head grid (one weight decay, 0.01) and its training.
        baselines: ``"single frame"`` (the last encoder, centre frame only: near chance if the labels
            do not leak) and/or ``"per-frame ViT"`` (a random-init timm ViT of the encoders' width,
            depth and patch, per frame with a frame-index embedding: the DINO-WM-style baseline).

    Returns:
        ``{"table": {row: "top-1 x% (chance y%)"}, "images": [confusion matrix of the best encoder
        (validation top-1)], "results": {...} (JSON-able), "text": str}``.
    """
    from ...pretrain.epd import EPDConfig
    from .config import ClassifyConfig

    if not encoders:
        raise ValueError("give at least one encoder")
    if len(clips_per_class) != 3 or min(clips_per_class) < 1:
        raise ValueError(f"clips_per_class must be (train, val, test) counts >= 1, got {tuple(clips_per_class)}")
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise ValueError(f"unknown baselines {unknown}: choose from {list(BASELINES)}")
    out = Path(out_dir)
    model = encoder_architecture(encoders)
    patch = int(model["patch_size"])
    if resolution is None:
        resolution = max(patch, model["img_size"] // 2 // patch * patch)
    num_frames = int(num_frames or model["num_frames"])
    root, meta = _bench(bench, out, resolution, num_frames, clips_per_class)

    base = ClassifyConfig(random_model=EPDConfig(**{k: v for k, v in model.items() if k in EPDConfig.__dataclass_fields__}),
                          random_seed=seed)
    d = base.data
    d.train, d.val, d.test = (str(root / f"{s}.csv") for s in ("train", "val", "test"))
    d.classes = str(root / "classes.txt")
    d.num_frames, d.frame_step, d.resolution, d.eval_clips, d.eval_crops = num_frames, 1, resolution, 1, 1
    base.heads.kinds, base.heads.depth, base.heads.lrs = list(kinds), head_depth, list(lrs)
    base.loop.steps, base.loop.batch_size, base.loop.seed = steps, batch_size, seed
    base.loop.ckpt_every, base.loop.log_every = steps, max(1, steps // 6)

    backbones = {name: str(spec) if spec else "random" for name, spec in encoders.items()}
    kwargs: dict[str, dict] = {}
    if "per-frame ViT" in baselines:
        enc = model.get("encoder_kwargs", {})
        name = "per-frame ViT (random init)"
        backbones[name] = "timm:vit_tiny_patch16_224"
        kwargs[name] = {**{k: enc[k] for k in ("embed_dim", "depth", "num_heads") if k in enc}, "patch_size": patch}
    if "single frame" in baselines:
        last = list(encoders)[-1]
        backbones[f"single frame ({last}, centre frame)"] = "frame:" + backbones[last]
    res = compare_backbones(backbones, base, out, kwargs)
    rows = res["rows"]
    shown = [k for k in KINDS if k in kinds]

    def cell(r: dict) -> str:
        acc = ", ".join(f"{k} {r[k]:.0%}" for k in shown) if len(shown) > 1 else f"top-1 {r[shown[0]]:.0%}"
        return f"{acc} (chance {r['chance']:.0%})"

    table = {r["backbone"]: cell(r) for r in rows}
    enc_rows = [r for r in rows if r["backbone"] in encoders]
    best = max(enc_rows, key=lambda r: (r["val_top1"] or 0.0, r[shown[-1]]))  # ties: test top-1 of the last kind
    splits = {s: len(v) for s, v in meta["splits"].items()}
    leak = meta.get("leak_check", {})
    results = {
        "benchmark": {"root": str(root), "name": meta["name"], "classes": meta["classes"], "clips": splits,
                      "chance": meta["chance"], "leak_check": leak},
        "settings": {"resolution": resolution, "num_frames": num_frames, "kinds": list(kinds), "head_depth": head_depth,
                     "lrs": list(lrs), "steps": steps, "batch_size": batch_size, "seed": seed},
        "rows": rows, "best": best["backbone"], "markdown": markdown_table(rows),
    }
    atomic_write_text(out / "section.json", json.dumps(results, indent=2))
    log.info("classification section:\n%s", results["markdown"])
    heads = " and ".join(f"{k} ({head_depth} blocks)" if k == "attentive" else k for k in shown)
    text = (f"{meta['name']} ({len(meta['classes'])} classes: how the arm or fingertip moves, which no single frame shows): "
            f"{splits['train']} training clips, {splits['val']} validation and {splits['test']} test clips from held-out "
            f"episodes, {num_frames} frames at {resolution} px. Frozen encoders, one pass into a token cache; {heads} "
            f"heads trained {steps} steps at lrs {', '.join(f'{lr:g}' for lr in lrs)}, picked on validation; test "
            f"top-1 (one test clip = {1 / splits['test']:.0%}). The single-frame row sees only the centre frame. "
            + (f"Ground-truth check of the benchmark (k-NN on test): one frame's pose {leak['centre_frame']:.0%}, "
               f"true motion {leak['true_motion']:.0%}. " if leak else "")
            + f"Confusion matrix: {best['backbone']} (best validation top-1).")
    return {"table": table, "images": [best["confusion_png"]], "results": results, "text": text}


__all__ = ["BASELINES", "classification_section", "encoder_architecture"]
