"""Collect the results of a sweep (one array job) into one table: ``results.json`` + ``results.md``.

Each task's row is its overrides, its status, and the scalar fields of its ``result.json`` (written
by the launcher on rank 0) or, failing that, its ``summary.json`` (written by the job itself).
Nested dicts are flattened to dotted keys; lists and long strings are left out of the table (they
stay in ``results.json``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _task_result(out: Path) -> tuple[str, dict[str, Any]]:
    if (out / "result.json").is_file():
        return "done", json.loads((out / "result.json").read_text()).get("result") or {}
    if (out / "summary.json").is_file():
        return "done", json.loads((out / "summary.json").read_text())
    return ("started" if (out / "launch" / "attempts.jsonl").is_file() else "pending"), {}


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "" if v is None else str(v).replace("|", "\\|")


def gather(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """Read ``sweep_dir/sweep.json`` and every task's result; write and return the rows."""
    sweep_dir = Path(sweep_dir)
    meta = json.loads((sweep_dir / "sweep.json").read_text())
    rows, full = [], []
    for t in meta["tasks"]:
        status, result = _task_result(Path(t["out"]))
        flat = flatten(result if isinstance(result, dict) else {"result": result})
        full.append({**t, "status": status, "result": result})
        scalars = {k: v for k, v in flat.items() if isinstance(v, (int, float, bool)) or (isinstance(v, str) and len(v) <= 80)}
        rows.append({"task": t["task"], "overrides": " ".join(t["overrides"]), "status": status, **scalars})
    (sweep_dir / "results.json").write_text(json.dumps(full, indent=1))
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in cols) + " |" for r in rows]
    (sweep_dir / "results.md").write_text(f"# Sweep: {meta['job']} ({len(rows)} tasks)\n\n" + "\n".join(lines) + "\n")
    return rows
