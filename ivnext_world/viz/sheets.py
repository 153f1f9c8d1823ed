"""Contact sheets: a grid of RGB frames with their metric depth maps underneath."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: never try to open a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .plots import save_figure  # noqa: E402


def contact_sheet(
    rgb: Sequence[np.ndarray],
    depth: Sequence[np.ndarray],
    labels: Sequence[str],
    path: str | Path,
    frame_labels: Sequence[Sequence[str]] | None = None,
    title: str = "",
) -> Path:
    """Write a PNG with, per episode, a row of RGB frames and a row of depth maps.

    Args:
        rgb: per episode an array (K, H, W, 3) uint8.
        depth: per episode an array (K, H, W) float32 in metres; one colour scale (and colour bar)
            is shared by the whole sheet so depths compare across episodes.
        labels: one row label per episode.
        frame_labels: optional per-episode, per-frame captions (e.g. ``"t=12"``).
    """
    if not (len(rgb) == len(depth) == len(labels)):
        raise ValueError(f"rgb, depth and labels need one entry per episode, got {len(rgb)}, {len(depth)}, {len(labels)}")
    if not rgb:
        raise ValueError("contact_sheet needs at least one episode")
    k = max(len(r) for r in rgb)
    finite = np.concatenate([d[np.isfinite(d)].ravel() for d in depth])
    vmin, vmax = np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0)

    fig, axes = plt.subplots(2 * len(rgb), k, figsize=(1.4 * k + 1.2, 2.9 * len(rgb)), squeeze=False)
    im = None
    for e, (frames, depths, label) in enumerate(zip(rgb, depth, labels)):
        if len(frames) != len(depths):
            raise ValueError(f"episode {label!r}: {len(frames)} RGB frames but {len(depths)} depth maps")
        for j in range(k):
            top, bottom = axes[2 * e, j], axes[2 * e + 1, j]
            for ax in (top, bottom):
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_frame_on(False)
            if j >= len(frames):
                continue
            top.imshow(frames[j])
            im = bottom.imshow(depths[j], cmap="turbo", vmin=vmin, vmax=vmax)
            if frame_labels is not None:
                top.set_title(frame_labels[e][j], fontsize=7)
        axes[2 * e, 0].set_ylabel(f"{label}\nRGB", fontsize=8)
        axes[2 * e + 1, 0].set_ylabel("depth", fontsize=8)
    if im is not None:
        cbar = fig.colorbar(im, ax=axes.ravel().tolist(), fraction=0.02, pad=0.01)
        cbar.set_label("depth [m]")
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path, dpi=110)


def image_rows(rows: Sequence, path: str | Path, row_labels: Sequence[str], title: str = "") -> Path:
    """A PNG grid: one row per entry of ``rows`` (each ``(K, 3, H, W)`` float in [0, 1], tensor or array)."""
    if len(rows) != len(row_labels) or not rows:
        raise ValueError(f"image_rows needs one label per row, got {len(rows)} rows and {len(row_labels)} labels")
    rows = [np.asarray(r.detach().cpu() if hasattr(r, "detach") else r, dtype=np.float32) for r in rows]
    k = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), k, figsize=(1.5 * k + 1, 1.6 * len(rows) + 0.4), squeeze=False)
    for i, (r, label) in enumerate(zip(rows, row_labels)):
        for j in range(k):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_frame_on(False)
            if j < len(r):
                ax.imshow(np.clip(r[j].transpose(1, 2, 0), 0, 1))
        axes[i, 0].set_ylabel(label, fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)
