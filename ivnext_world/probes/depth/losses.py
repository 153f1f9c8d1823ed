"""Probe3D's depth loss (El Banani et al., CVPR 2024): 10 x scale-invariant log loss + 0.5 x gradient loss.

- Scale-invariant log loss (Eigen et al. 2014, BTS's form): with ``g = log d - log d*`` over the
  valid pixels of an image, ``sqrt(mean(g^2) - lambda * mean(g)^2)``; ``lambda = 0.85`` keeps a
  little of the absolute scale error (``lambda = 1`` would ignore scale entirely).
- Multi-scale gradient matching loss (Li & Snavely, MegaDepth 2018): the same log-difference ``g``
  should have no edges; ``sum_s mean |grad_x g_s| + |grad_y g_s|`` over 4 scales (every 1st, 2nd,
  4th, 8th pixel), using only pixel pairs that are both valid.

Shapes: ``pred, gt (B, H, W)`` metres; invalid ground truth (0, NaN, inf, out of range) is ignored.
"""
from __future__ import annotations

import torch

from .metrics import valid_mask


def silog_loss(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, lam: float = 0.85, eps: float = 1e-6) -> torch.Tensor:
    """Mean over images of ``sqrt(mean g^2 - lam * (mean g)^2)``; ``(B, H, W) x3 -> ()``."""
    g = (pred.clamp_min(eps).log() - gt.clamp_min(eps).log()) * mask
    n = mask.flatten(1).sum(1).clamp_min(1)
    mean_sq = (g**2).flatten(1).sum(1) / n
    mean = g.flatten(1).sum(1) / n
    per_image = (mean_sq - lam * mean**2).clamp_min(0) + eps  # eps: finite gradient when g == 0
    has = mask.flatten(1).any(1)
    return per_image.sqrt()[has].mean() if has.any() else pred.sum() * 0


def gradient_loss(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, scales: int = 4, eps: float = 1e-6) -> torch.Tensor:
    """Multi-scale gradient matching of the log-depth difference; ``(B, H, W) x3 -> ()``."""
    g = pred.clamp_min(eps).log() - gt.clamp_min(eps).log()
    total = pred.new_zeros(())
    for s in range(scales):
        step = 2**s
        gs, ms = g[:, ::step, ::step], mask[:, ::step, ::step].float()
        if gs.shape[-1] < 2 or gs.shape[-2] < 2:
            break
        mx = ms[:, :, 1:] * ms[:, :, :-1]
        my = ms[:, 1:, :] * ms[:, :-1, :]
        gx = (gs[:, :, 1:] - gs[:, :, :-1]).abs() * mx
        gy = (gs[:, 1:, :] - gs[:, :-1, :]).abs() * my
        total = total + (gx.sum() + gy.sum()) / (mx.sum() + my.sum()).clamp_min(1)
    return total


class Probe3DDepthLoss:
    """``w_silog * silog + w_grad * gradient``; Probe3D's weights 10 and 0.5, lambda 0.85."""

    def __init__(self, w_silog: float = 10.0, w_grad: float = 0.5, lam: float = 0.85,
                 min_depth: float = 1e-3, max_depth: float = 1e3):
        self.w_silog, self.w_grad, self.lam = w_silog, w_grad, lam
        self.min_depth, self.max_depth = min_depth, max_depth

    def __call__(self, pred: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if pred.shape != gt.shape:
            raise ValueError(f"prediction {tuple(pred.shape)} and ground truth {tuple(gt.shape)} differ in shape")
        mask = valid_mask(gt, self.min_depth, self.max_depth)
        gt = gt.where(mask, torch.ones_like(gt))  # keep NaN/inf out of the graph
        si = silog_loss(pred, gt, mask, self.lam)
        gr = gradient_loss(pred, gt, mask)
        return self.w_silog * si + self.w_grad * gr, {"loss_silog": si.detach(), "loss_grad": gr.detach()}
