"""Backbones x head kinds on one labelled dataset: a Markdown table, and the main job's hook.

``compare_backbones`` runs :func:`~.run.run_classify` once per backbone (the same data, grid, steps and
seed; each run trains every head kind at once) and tables the test top-1 of the head picked on
validation for each kind (the main job's section on the temporal benchmark: :mod:`.demo`).
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
               "val_top1": res["selected"]["best"].get("val", {}).get("top1"),  # of the head picked overall
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
