"""Scoring a head grid: multi-view averaging, top-1/top-5, per-class accuracy, confusion matrices.

A video's prediction is the average over its ``clips x crops`` views. We average *logits*; V-JEPA 2's
frozen evaluation averages softmax probabilities (``average="softmax"`` does that). With one view the
two are the same; with several they rank classes almost always alike.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import torch


@torch.no_grad()
def grid_view_logits(grid, batches: Iterable[dict]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Apply every head to every view: ``(logits (H, N, V, C), labels (N,), indices (N,))``.

    ``batches`` yield ``{"tokens": (B, V, N_tok, D), "label": (B,), "index": (B,)}`` (see
    :func:`~.features.view_batches` or :func:`token_batches`).
    """
    was = grid.training
    grid.eval()
    out, labels, indices = [], [], []
    try:
        for batch in batches:
            tok = batch["tokens"].float()
            b, v = tok.shape[:2]
            logits = grid(tok.flatten(0, 1))  # (H, B*V, C)
            out.append(logits.unflatten(1, (b, v)).cpu())
            labels.append(batch["label"].cpu())
            indices.append(batch["index"].cpu())
    finally:
        grid.train(was)
    return torch.cat(out, 1), torch.cat(labels), torch.cat(indices)


def token_batches(cache: dict, batch_size: int):
    """Batches over cached tokens in :func:`grid_view_logits`'s format."""
    for i in range(0, len(cache["tokens"]), batch_size):
        yield {"tokens": cache["tokens"][i:i + batch_size], "label": cache["labels"][i:i + batch_size],
               "index": cache["indices"][i:i + batch_size]}


def average_views(view_logits: torch.Tensor, mode: str = "logits") -> torch.Tensor:
    """``(..., V, C) -> (..., C)``: the mean of the views' logits, or (``"softmax"``) of their probabilities."""
    if mode == "logits":
        return view_logits.mean(-2)
    if mode == "softmax":
        return view_logits.softmax(-1).mean(-2)
    raise ValueError(f"view averaging must be 'logits' or 'softmax', got {mode!r}")


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Fraction of rows whose label is among the ``k`` highest scores (``k`` capped at the class count)."""
    k = min(k, scores.shape[-1])
    return float((scores.topk(k, dim=-1).indices == labels[:, None]).any(-1).float().mean())


def confusion_matrix(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> np.ndarray:
    """``cm[true, predicted]`` counts, ``(C, C)`` int64."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (labels.numpy(), pred.numpy()), 1)
    return cm


def metrics(scores: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> dict:
    """top-1, top-5, per-class accuracy (None for a class with no clip), mean per-class accuracy, confusion."""
    pred = scores.argmax(-1)
    cm = confusion_matrix(pred, labels, len(classes))
    support = cm.sum(1)
    per_class = {c: (float(cm[i, i] / support[i]) if support[i] else None) for i, c in enumerate(classes)}
    present = [v for v in per_class.values() if v is not None]
    return {
        "top1": topk_accuracy(scores, labels, 1),
        "top5": topk_accuracy(scores, labels, 5),
        "mean_class_accuracy": float(np.mean(present)) if present else None,
        "per_class": per_class,
        "confusion": cm.tolist(),
        "videos": int(len(labels)),
    }


def plot_confusion(cm, classes: list[str], path: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix (true class per row), counts in the cells; written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ...viz.plots import save_figure

    cm = np.asarray(cm)
    rows = cm.sum(1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros(cm.shape, float), where=rows > 0)
    n = len(classes)
    side = max(4.0, 0.45 * n + 2)
    fig, ax = plt.subplots(figsize=(side + 1, side))
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    if n <= 30:
        ax.set_xticks(range(n), classes, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(n), classes, fontsize=8)
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the true class")
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
