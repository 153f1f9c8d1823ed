"""Line plots of training curves and evaluation results."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def save_figure(fig, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` to ``path`` (parent folders created), close it, return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_curves(history: Sequence[dict], path: str | Path, keys: Sequence[str] | None = None, title: str = "", warning: str = "") -> Path:
    """Plot every ``loss*`` column of ``history`` (rows with a ``step``) against step, log-scaled y."""
    path = Path(path)
    keys = keys or sorted({k for row in history for k in row if k.startswith("loss")})
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for k in keys:
        pts = [(r["step"], r[k]) for r in history if k in r]
        if pts:
            ax.plot(*zip(*pts), label=k, lw=1.2)
    ax.set_xlabel("step")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if keys:
        ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    if warning:
        fig.text(0.01, 0.01, warning[:110] + ("..." if len(warning) > 110 else ""), color="#b00", fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
