"""Token masks for masked video modelling (InternVideo-Next, arXiv 2512.01342, Sec. 3).

Every mask here is a bool tensor ``(B, N)`` over the ``N = T' * H' * W'`` patch tokens of a
``(T', H', W')`` token grid, flattened time-major (``t * H' * W' + h * W' + w``, the order the
encoder emits tokens in). ``True`` means *masked*: the token is dropped from the encoder input
and, in Stage 1 / Stage 2, it is where the predictor has to produce a target. Every row of a
batch has the same number of visible tokens, so the encoder can run on a dense
``(B, num_cls + N_visible, D)`` tensor.

Generators:

- :func:`random_tube_mask`: one random spatial mask repeated over all frames (VideoMAE tubes).
- :func:`attention_guided_mask`: Stage 1's mask. Per frame, the visible tokens are sampled
  without replacement with probability proportional to the frozen image teacher's pooling
  attention, so salient tokens tend to stay visible (the official code does the same with
  ``torch.multinomial``; we use the equivalent Gumbel top-k, which tolerates zero weights).
- :func:`multiblock_tube_mask` / :func:`stage2_mask_views`: Stage 2's V-JEPA multi-block tubes.

Index helpers (:func:`visible_indices`, :func:`masked_indices`, :func:`gather_tokens`) turn a
mask into gather indices that keep the tokens' original order.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

Grid = Sequence[int]  # (T', H', W') token grid


def _check_grid(grid: Grid) -> tuple[int, int, int]:
    if len(grid) != 3 or any(int(g) < 1 for g in grid):
        raise ValueError(f"grid must be (T', H', W') with positive entries, got {tuple(grid)}")
    t, h, w = (int(g) for g in grid)
    return t, h, w


def _check_ratio(ratio: float) -> None:
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio}")


def _gen_device(generator: torch.Generator | None, device: torch.device | str | None) -> torch.device:
    # Random draws must happen on the generator's device, or torch raises.
    if generator is not None:
        return generator.device
    return torch.device(device) if device is not None else torch.device("cpu")


def _keep_k_per_row(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Bool ``(R, M)``: True at the ``k`` largest scores of each row."""
    keep = torch.zeros_like(scores, dtype=torch.bool)
    keep.scatter_(1, scores.topk(k, dim=1).indices, True)
    return keep


def random_tube_mask(
    batch_size: int,
    grid: Grid,
    ratio: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Random tube mask: the same random spatial mask in every frame.

    ``round((1 - ratio) * H' * W')`` spatial positions stay visible per sample (at least one).

    Returns:
        bool ``(B, T' * H' * W')``, True = masked.
    """
    t, h, w = _check_grid(grid)
    _check_ratio(ratio)
    num_visible = max(1, round((1 - ratio) * h * w))
    dev = _gen_device(generator, device)
    scores = torch.rand(batch_size, h * w, generator=generator, device=dev)
    visible = _keep_k_per_row(scores, num_visible)  # (B, H'W')
    return (~visible).unsqueeze(1).expand(batch_size, t, h * w).reshape(batch_size, t * h * w)


def attention_guided_mask(
    attn: torch.Tensor,
    ratio: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Teacher-attention-guided mask (Stage 1).

    For every frame, ``round((1 - ratio) * H'W')`` visible tokens are drawn without replacement
    with probability proportional to ``attn`` (Gumbel top-k == sequential sampling without
    replacement), so high-attention tokens are kept visible and the rest are masked.

    Args:
        attn: ``(B, T', H'W')`` non-negative teacher pooling attention per frame (need not sum to 1).
        ratio: fraction of tokens masked per frame (0.75 in the official code).
        generator: optional generator for reproducible masks (must live on ``attn``'s device).

    Returns:
        bool ``(B, T' * H'W')``, True = masked; every frame has the same visible count.
    """
    if attn.dim() != 3:
        raise ValueError(f"attn must be (B, T', H'W'), got shape {tuple(attn.shape)}")
    _check_ratio(ratio)
    b, t, n = attn.shape
    num_visible = max(1, round((1 - ratio) * n))
    weights = attn.detach().float().clamp_min(0).reshape(b * t, n)
    # A tiny floor keeps log finite so zero-attention tokens can still fill the quota.
    logp = torch.log(weights / weights.sum(1, keepdim=True).clamp_min(1e-12) + 1e-20)
    u = torch.rand(logp.shape, generator=generator, device=logp.device).clamp_(1e-10, 1 - 1e-10)
    gumbel = -torch.log(-torch.log(u))
    visible = _keep_k_per_row(logp + gumbel, num_visible)
    return (~visible).reshape(b, t * n)


def _sample_block_shape(
    h: int, w: int, scale: tuple[float, float], aspect_ratio: tuple[float, float], generator, dev
) -> tuple[int, int]:
    # Following V-JEPA's collator: one block shape per batch, area = scale * H'W'.
    r = torch.rand(2, generator=generator, device=dev).tolist()
    s = scale[0] + r[0] * (scale[1] - scale[0])
    ar = aspect_ratio[0] + r[1] * (aspect_ratio[1] - aspect_ratio[0])
    area = max(1, int(h * w * s))
    bh = min(h, max(1, round(math.sqrt(area * ar))))
    bw = min(w, max(1, round(math.sqrt(area / ar))))
    return bh, bw


def multiblock_tube_mask(
    batch_size: int,
    grid: Grid,
    num_blocks: int,
    scale: float | tuple[float, float],
    aspect_ratio: tuple[float, float] = (0.75, 1.5),
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    max_tries: int = 20,
) -> torch.Tensor:
    """V-JEPA multi-block mask: the union of ``num_blocks`` spatial blocks, spanning all frames.

    The block shape (area ``scale * H'W'``, aspect ratio drawn from ``aspect_ratio``) is drawn once
    per batch, the block positions per sample. A sample whose blocks cover the whole frame is
    redrawn (up to ``max_tries``; after that one random token is unmasked). Visible counts are then
    equalised to the batch minimum by masking randomly chosen extra visible positions (V-JEPA's
    collator trims the context the same way), so the tube property is preserved.

    Returns:
        bool ``(B, T' * H' * W')``, True = masked.
    """
    t, h, w = _check_grid(grid)
    lo, hi = (scale, scale) if isinstance(scale, (int, float)) else scale
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"scale must lie in (0, 1], got {scale}")
    dev = _gen_device(generator, device)
    bh, bw = _sample_block_shape(h, w, (lo, hi), aspect_ratio, generator, dev)

    spatial = torch.zeros(batch_size, h, w, dtype=torch.bool, device=dev)
    for i in range(batch_size):
        for _ in range(max_tries):
            m = torch.zeros(h, w, dtype=torch.bool, device=dev)
            tops = torch.randint(0, h - bh + 1, (num_blocks,), generator=generator, device=dev).tolist()
            lefts = torch.randint(0, w - bw + 1, (num_blocks,), generator=generator, device=dev).tolist()
            for top, left in zip(tops, lefts):
                m[top:top + bh, left:left + bw] = True
            if not m.all():
                break
        else:  # every try covered the frame: reopen one random token
            j = int(torch.randint(0, h * w, (1,), generator=generator, device=dev))
            m.view(-1)[j] = False
        spatial[i] = m

    spatial = spatial.reshape(batch_size, h * w)
    visible = ~spatial
    min_visible = int(visible.sum(1).min())
    # Random scores on visible positions only; keep the top `min_visible` of them.
    scores = torch.rand(visible.shape, generator=generator, device=dev).masked_fill(~visible, -1.0)
    visible = _keep_k_per_row(scores, min_visible)
    return (~visible).unsqueeze(1).expand(batch_size, t, h * w).reshape(batch_size, t * h * w)


def stage2_mask_views(
    batch_size: int,
    grid: Grid,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 2's two mask views: 8 blocks at scale 0.15 and 2 blocks at scale 0.7 (paper, Sec. 3.3).

    Returns:
        two bool masks ``(B, T' * H' * W')``, True = masked.
    """
    view1 = multiblock_tube_mask(batch_size, grid, 8, 0.15, generator=generator, device=device)
    view2 = multiblock_tube_mask(batch_size, grid, 2, 0.7, generator=generator, device=device)
    return view1, view2


def _check_equal_rows(mask: torch.Tensor, n: torch.Tensor) -> None:
    if mask.dim() != 2 or mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool (B, N) tensor, got {mask.dtype} {tuple(mask.shape)}")
    # Data-dependent check: skipped while tracing so torch.compile does not graph-break here.
    if not torch.compiler.is_compiling() and bool((n != n[0]).any()):
        raise ValueError(f"every mask row must have the same count, got {n.tolist()}")


def visible_indices(mask: torch.Tensor) -> torch.Tensor:
    """Positions of the visible (False) tokens of each row, in increasing order.

    Args:
        mask: bool ``(B, N)``, True = masked, same visible count per row.

    Returns:
        long ``(B, N_visible)``.
    """
    n = (~mask).sum(1)
    _check_equal_rows(mask, n)
    # A stable sort of the 0/1 mask puts visible positions first, in their original order.
    order = torch.sort(mask.to(torch.uint8), dim=1, stable=True).indices
    return order[:, : int(n[0])]


def masked_indices(mask: torch.Tensor) -> torch.Tensor:
    """Positions of the masked (True) tokens of each row, in increasing order: long ``(B, N_masked)``."""
    return visible_indices(~mask)


def gather_tokens(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Select tokens: ``x (B, N, D)``, ``idx (B, K)`` -> ``(B, K, D)``."""
    return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
