"""Backbones x head kinds on one labelled dataset: a Markdown table, and the main job's hook.

``compare_backbones`` runs :func:`~.run.run_classify` once per backbone (the same data, grid, steps and
seed; each run trains every head kind at once) and tables the test top-1 of the head picked on
validation for each kind. ``run_classify_probe`` is the call the README's main job can make: it
renders the temporal benchmark at the encoders' input size (if not there yet) and compares random
init, the pretrained stages, a per-frame image model at random init and the single-frame baseline.
"""
from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

from ...utils.io import atomic_write_text
from .config import ClassifyConfig
from .run import run_classify

log = logging.getLogger(__name__)
KINDS = ("linear", "pooler", "attentive")


def slug(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower() or "backbone"


def compare_backbones(backbones: dict[str, str], base: ClassifyConfig, out_dir: str | Path,
                      backbone_kwargs: dict[str, dict] | None = None) -> dict:
    """``backbones``: display name -> spec. Writes ``comparison.md`` / ``comparison.json`` in ``out_dir``."""
    out = Path(out_dir)
    rows = []
    for name, spec in backbones.items():
        cfg = copy.deepcopy(base)
        cfg.backbone, cfg.out = spec, str(out / slug(name))
        cfg.backbone_kwargs = dict((backbone_kwargs or {}).get(name, cfg.backbone_kwargs))
        log.info("classification probe: %s (%s)", name, spec)
        s = run_classify(cfg)
        res = json.loads((Path(cfg.out) / "results.json").read_text())
        row = {"backbone": name, "spec": spec, "chance": s["chance"], "split": s["split"],
               "confusion_png": s["confusion_png"], "results": str(Path(cfg.out) / "results.json")}
        for kind in KINDS:
            if kind in res["selected"]:
                row[kind] = res["selected"][kind][s["split"]]["top1"]
                row[f"{kind}_head"] = res["selected"][kind]["head"]
        rows.append(row)
    md = markdown_table(rows)
    result = {"rows": rows, "markdown": str(out / "comparison.md"), "json": str(out / "comparison.json")}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "comparison.md", md)
    atomic_write_text(out / "comparison.json", json.dumps(result, indent=2))
    return result


def markdown_table(rows: list[dict]) -> str:
    kinds = [k for k in KINDS if any(k in r for r in rows)]
    lines = ["| backbone | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
    for r in rows:
        lines.append(f"| {r['backbone']} | " + " | ".join("-" if r.get(k) is None else f"{r[k]:.3f}" for k in kinds) + " |")
    chance = rows[0]["chance"] if rows else float("nan")
    return "\n".join(lines) + f"\n\nTest top-1 of the head picked on validation per kind; chance {chance:.3f}.\n"


def run_classify_probe(encoder_ckpts: dict[str, str | None], out_dir: str | Path, bench_root: str | Path | None = None,
                       steps: int = 300, clips_per_class: tuple[int, int, int] = (32, 8, 16)) -> dict:
    """The main job's classification section on the temporal benchmark.

    Args:
        encoder_ckpts: display name -> pretraining run/checkpoint folder (None: random init of the
            first checkpoint's architecture).
        bench_root: an existing benchmark folder; None: rendered into ``out_dir/bench`` at the
            encoders' input size with ``clips_per_class`` (train, val, test) clips per class.

    Returns ``{"rows", "table", "markdown", "images"}``: ``table`` maps ``"<backbone>"`` to its three
    test top-1s for :meth:`Report.add`, ``images`` the best head's confusion matrix per backbone.
    """
    from ...pretrain.epd import EPDConfig
    from ...pretrain.run import resolve_checkpoint
    from ...sim.temporal_bench import TemporalBenchConfig, make_temporal_bench

    out = Path(out_dir)
    ckpts = {k: v for k, v in encoder_ckpts.items() if v}
    if not ckpts:
        raise ValueError("run_classify_probe needs at least one pretraining checkpoint (for the architecture)")
    model = json.loads((resolve_checkpoint(next(iter(ckpts.values()))) / "state.json").read_text())["extra"]["model"]
    size, frames, patch = model["img_size"], model["num_frames"], model["patch_size"]
    if bench_root is None:
        tr, va, te = clips_per_class
        bench_root = out / "bench"
        make_temporal_bench(TemporalBenchConfig(image_size=size, frames=2 * frames, train_per_class=tr, val_per_class=va,
                                                test_per_class=te, out=str(bench_root)))
    bench_root = Path(bench_root)
    base = ClassifyConfig(random_model=EPDConfig(**{k: v for k, v in model.items() if k in EPDConfig.__dataclass_fields__}))
    d = base.data
    d.train, d.val, d.test = (str(bench_root / f"{s}.csv") for s in ("train", "val", "test"))
    d.classes = str(bench_root / "classes.txt")
    d.num_frames, d.resolution = frames, size
    base.loop.steps = steps
    base.loop.batch_size = 16
    backbones = {name: (spec or "random") for name, spec in encoder_ckpts.items()}
    enc = model.get("encoder_kwargs", {})
    # the per-frame baseline: a timm ViT at random init, as wide and deep as the encoder, same patches
    small_vit = {**{k: enc[k] for k in ("embed_dim", "depth", "num_heads") if k in enc}, "patch_size": patch}
    backbones["per-frame ViT (random init)"] = "timm:vit_tiny_patch16_224"
    backbones["single frame (random init)"] = "frame:timm:vit_tiny_patch16_224"
    kwargs = {"per-frame ViT (random init)": small_vit, "single frame (random init)": small_vit}
    res = compare_backbones({k: str(v) for k, v in backbones.items()}, base, out, kwargs)
    table = {r["backbone"]: ", ".join(f"{k} {r[k]:.3f}" for k in KINDS if k in r) + f" (chance {r['chance']:.3f})"
             for r in res["rows"]}
    return {"rows": res["rows"], "table": table, "markdown": res["markdown"], "images": [r["confusion_png"] for r in res["rows"]]}
