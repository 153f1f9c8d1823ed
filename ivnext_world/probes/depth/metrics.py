"""Depth metrics (SPEC section 5): AbsRel, RMSE, delta thresholds, scale-aware and scale-invariant.

Every metric is computed per image over its valid pixels (finite ground truth inside ``[min_depth,
max_depth]``) and then averaged over images, so a large image does not outweigh a small one.

- ``abs_rel`` = mean |d - d*| / d*, ``rmse`` = sqrt(mean (d - d*)^2) in metres,
- ``d1``/``d2``/``d3`` = fraction of pixels with max(d / d*, d* / d) < 1.25, 1.25^2, 1.25^3.

The scale-invariant versions (``si_*``) first fit, per image, the least-squares scale ``s`` and shift
``t`` with ``s * d + t ~ d*`` on the valid pixels (MiDaS-style alignment), then score ``s * d + t``
(clamped to ``min_depth``, so a ratio is always defined).
"""
from __future__ import annotations

import torch

METRICS = ("abs_rel", "rmse", "d1", "d2", "d3")


def valid_mask(gt: torch.Tensor, min_depth: float = 1e-3, max_depth: float = 1e3) -> torch.Tensor:
    return torch.isfinite(gt) & (gt >= min_depth) & (gt <= max_depth)


def align_scale_shift(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image least squares ``argmin_{s,t} sum_mask (s * pred + t - gt)^2``.

    ``pred, gt, mask (B, H, W)`` -> ``scale (B,), shift (B,)``. An image whose valid prediction is
    constant (singular system) gets scale 0 and the mean ground truth as shift.
    """
    m = mask.flatten(1).double()
    p, g = pred.flatten(1).double() * m, gt.flatten(1).double() * m
    n = m.sum(1).clamp_min(1)
    sp, sg, spp, spg = p.sum(1), g.sum(1), (p * p).sum(1), (p * g).sum(1)
    det = n * spp - sp * sp
    ok = det.abs() > 1e-12 * (n * spp).clamp_min(1e-30)
    scale = torch.where(ok, (n * spg - sp * sg) / torch.where(ok, det, torch.ones_like(det)), torch.zeros_like(det))
    shift = (sg - scale * sp) / n
    return scale.to(pred.dtype), shift.to(pred.dtype)


def _per_image(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    m = mask.flatten(1).float()
    n = m.sum(1).clamp_min(1)
    p, g = pred.flatten(1), gt.flatten(1).where(mask.flatten(1), torch.ones_like(gt.flatten(1)))
    ratio = torch.maximum(p / g, g / p.clamp_min(1e-12))
    out = {
        "abs_rel": ((p - g).abs() / g * m).sum(1) / n,
        "rmse": (((p - g) ** 2 * m).sum(1) / n).sqrt(),
    }
    for k in (1, 2, 3):
        out[f"d{k}"] = ((ratio < 1.25**k).float() * m).sum(1) / n
    return out


@torch.no_grad()
def depth_metrics(
    pred: torch.Tensor, gt: torch.Tensor, min_depth: float = 1e-3, max_depth: float = 1e3, per_image: bool = False
) -> dict[str, float] | dict[str, torch.Tensor]:
    """``pred, gt (B, H, W)`` (or ``(H, W)``) metres -> ``{abs_rel, rmse, d1, d2, d3, si_abs_rel, ...}``.

    Means over images that have at least one valid pixel; ``per_image=True`` returns the ``(B,)``
    tensors instead (invalid images hold NaN).
    """
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and ground truth {tuple(gt.shape)} differ in shape")
    if pred.dim() == 2:
        pred, gt = pred[None], gt[None]
    pred, gt = pred.float(), gt.float()
    mask = valid_mask(gt, min_depth, max_depth)
    has = mask.flatten(1).any(1)
    if not has.any():
        raise ValueError(f"no valid ground-truth pixel in [{min_depth}, {max_depth}] m")
    out = _per_image(pred.clamp_min(min_depth), gt, mask)
    s, t = align_scale_shift(pred, gt, mask)
    aligned = (s[:, None, None] * pred + t[:, None, None]).clamp_min(min_depth)
    out.update({f"si_{k}": v for k, v in _per_image(aligned, gt, mask).items()})
    out = {k: v.where(has, torch.full_like(v, float("nan"))) for k, v in out.items()}
    if per_image:
        return out
    return {k: float(v[has].mean()) for k, v in out.items()}


class MetricAccumulator:
    """Running per-image means of :func:`depth_metrics` over many batches."""

    def __init__(self, min_depth: float = 1e-3, max_depth: float = 1e3):
        self.min_depth, self.max_depth = min_depth, max_depth
        self.sums: dict[str, float] = {}
        self.count = 0

    def update(self, pred: torch.Tensor, gt: torch.Tensor) -> None:
        per = depth_metrics(pred, gt, self.min_depth, self.max_depth, per_image=True)
        ok = ~torch.isnan(per["abs_rel"])
        for k, v in per.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v[ok].sum())
        self.count += int(ok.sum())

    def compute(self) -> dict[str, float]:
        if not self.count:
            raise ValueError("no image with valid ground truth was scored")
        return {k: v / self.count for k, v in self.sums.items()} | {"images": self.count}
