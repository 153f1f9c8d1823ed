"""Side-by-side table of PushT plan-eval runs (DINO-WM's protocol): success and final T-pose error per method.

    python scripts/pusht_table.py "random init=outputs/pusht/eval_random" "DINOv2 arch=outputs/pusht/eval_dinov2"

Each argument is ``label=<plan-eval out folder>``; every method of each run becomes one row. Errors are
against the goal state at the episode's last step (``final_info`` of results.json): the T's position
(px) and angle (deg), and DINO-WM's agent + T position distance (px).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def rows(label: str, folder: str):
    res = json.loads((Path(folder) / "results.json").read_text())
    for name, m in res["methods"].items():
        det = m["episodes_detail"]
        fi = [d.get("final_info", {}) for d in det]
        pos = np.array([f.get("goal_block_pos_error", np.nan) for f in fi])
        ang = np.degrees([f.get("goal_block_angle_error", np.nan) for f in fi])
        yield (f"{label}: {name}", f"{m['successes']}/{m['episodes']}", f"{np.nanmean(pos):.1f} (median {np.nanmedian(pos):.1f})",
               f"{np.nanmean(ang):.1f}", f"{m['mean_final_distance']:.1f}", f"{m['sec_per_action']:.3f}")


def main() -> None:
    if len(sys.argv) < 2 or any("=" not in a for a in sys.argv[1:]):
        raise SystemExit(__doc__)
    head = ("run: method", "success", "T position error, px", "T angle error, deg", "agent+T distance, px", "s / action")
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for arg in sys.argv[1:]:
        label, folder = arg.split("=", 1)
        for r in rows(label, folder):
            print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
