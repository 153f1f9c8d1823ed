"""Token masks for masked video modelling (InternVideo-Next, arXiv 2512.01342, Sec. 3).

Every mask here is a bool tensor ``(B, N)`` over the ``N = T' * H' * W'`` patch tokens of a
``(T', H', W')`` token grid, flattened time-major (``t * H' * W' + h * W' + w``, the order the
encoder emits tokens in). ``True`` means *masked*: the token is dropped from the encoder input
and, in Stage 1 / Stage 2, it is where the predictor has to produce a target. Every row of a
batch has the same number of visible tokens, so the encoder can run on a dense
``(B, num_cls + N_visible, D)`` tensor.

Generators:

- :func:`random_tube_mask`: one random spatial mask repeated over all frames (VideoMAE tubes).
- :func:`motion_guided_mask`: moving tokens masked more often (Stage 1 without a teacher, optional).
- :func:`attention_guided_mask`: Stage 1's mask. Per frame, the visible tokens are sampled
  without replacement with probability proportional to the frozen image teacher's pooling
  attention, so salient tokens tend to stay visible (the official code does the same with
  ``torch.multinomial``; we use the equivalent Gumbel top-k, which tolerates zero weights).
- :func:`multiblock_tube_mask` / :func:`stage2_mask_views`: Stage 2's V-JEPA multi-block tubes.

Index helpers (:func:`visible_indices`, :func:`masked_indices`, :func:`gather_tokens`) turn a
mask into gather indices that keep the tokens' original order. Given the per-row count
(:func:`visible_count` for the ratio-based masks) they read nothing back from the device, so a
training step on a GPU never waits for them and ``torch.compile`` traces them without a break.
"""

from __future__ import annotations

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
    num_visible = _visible_per_frame(h * w, ratio)
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
    num_visible = _visible_per_frame(n, ratio)
    weights = attn.detach().float().clamp_min(0).reshape(b * t, n)
    # A tiny floor keeps log finite so zero-attention tokens can still fill the quota.
    logp = torch.log(weights / weights.sum(1, keepdim=True).clamp_min(1e-12) + 1e-20)
    u = torch.rand(logp.shape, generator=generator, device=logp.device).clamp_(1e-10, 1 - 1e-10)
    gumbel = -torch.log(-torch.log(u))
    visible = _keep_k_per_row(logp + gumbel, num_visible)
    return (~visible).reshape(b, t * n)


def motion_guided_mask(motion: torch.Tensor, ratio: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Motion-aware mask: per frame, moving tokens are masked more often.

    Visible tokens are drawn as in :func:`attention_guided_mask` with weight ``1 / (1 + m / mean(m))``
    (``m``: a token's motion, the mean over the frame's tokens): a token moving ten times the frame's
    average stays visible about a tenth as often as a static one, so the decoder must predict what moves
    while the encoder still sees moving parts now and then.

    Args:
        motion: ``(B, T', H'W')`` non-negative motion per token (e.g. mean absolute frame difference).
    """
    if motion.dim() != 3:
        raise ValueError(f"motion must be (B, T', H'W'), got shape {tuple(motion.shape)}")
    m = motion.detach().float().clamp_min(0)
    return attention_guided_mask(1.0 / (1.0 + m / m.mean(-1, keepdim=True).clamp_min(1e-6)), ratio, generator)


def _sample_block_shape(
    h: int, w: int, scale: tuple[float, float], aspect_ratio: tuple[float, float], generator, dev
) -> tuple[torch.Tensor, torch.Tensor]:
    """One block shape per batch (V-JEPA's collator): area ``scale * H'W'``, then the aspect ratio.

    Returns ``(bh, bw)`` as 0-dim long tensors on ``dev``: kept on the device so that sampling
    never reads a value back to the host (a sync per read on a GPU).
    """
    r = torch.rand(2, generator=generator, device=dev)
    s = scale[0] + r[0] * (scale[1] - scale[0])
    ar = aspect_ratio[0] + r[1] * (aspect_ratio[1] - aspect_ratio[0])
    area = (h * w * s).floor().clamp_min(1)  # int(H'W' * s), at least one token
    # torch.round rounds half to even, like Python's round.
    bh = (area * ar).sqrt().round().clamp(1, h).long()
    bw = (area / ar).sqrt().round().clamp(1, w).long()
    return bh, bw


def _keep_first_k(scores: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Bool ``(R, M)``: True at the ``k`` largest scores of each row, ``k`` a 0-dim tensor.

    Same as :func:`_keep_k_per_row` without reading ``k`` on the host: rank every entry and keep
    the ranks below ``k``.
    """
    order = scores.argsort(dim=1, descending=True)
    positions = torch.arange(scores.shape[1], device=scores.device).expand_as(order)
    ranks = torch.empty_like(order).scatter_(1, order, positions)  # rank of each entry in its row
    return ranks < k


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

    Everything is tensor arithmetic on the generator's device (all tries of all samples at once):
    no value is read back to the host, so sampling on a GPU never waits for it. The visible count
    (a shape) is only known once the mask is read; :class:`~ivnext_world.pretrain.Stage2Objective`
    therefore samples on the CPU and moves the masks once.

    Returns:
        bool ``(B, T' * H' * W')``, True = masked.
    """
    t, h, w = _check_grid(grid)
    lo, hi = (scale, scale) if isinstance(scale, (int, float)) else scale
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"scale must lie in (0, 1], got {scale}")
    if num_blocks < 1 or max_tries < 1:
        raise ValueError(f"num_blocks and max_tries must be >= 1, got {num_blocks}, {max_tries}")
    dev = _gen_device(generator, device)
    bh, bw = _sample_block_shape(h, w, (lo, hi), aspect_ratio, generator, dev)

    # Top-left corners, uniform over the valid positions: (B, tries, blocks).
    u = torch.rand(2, batch_size, max_tries, num_blocks, generator=generator, device=dev)
    tops = (u[0] * (h - bh + 1)).long().clamp_max(h - bh)
    lefts = (u[1] * (w - bw + 1)).long().clamp_max(w - bw)
    ys, xs = torch.arange(h, device=dev), torch.arange(w, device=dev)
    rows = (ys >= tops[..., None]) & (ys < (tops + bh)[..., None])  # (B, tries, blocks, H')
    cols = (xs >= lefts[..., None]) & (xs < (lefts + bw)[..., None])  # (B, tries, blocks, W')
    # Union of the blocks: token (y, x) is covered by block k iff rows[k, y] and cols[k, x], so the
    # number of blocks covering it is a (H', blocks) @ (blocks, W') product per try.
    hits = rows.transpose(-1, -2).float() @ cols.float()  # (B, tries, H', W')
    cover = (hits > 0).reshape(batch_size, max_tries, h * w)
    ok = ~cover.all(-1)  # (B, tries): the try leaves something visible
    first_ok = ok.long().argmax(1)  # first accepted try (0 when none is)
    spatial = cover[torch.arange(batch_size, device=dev), first_ok]  # (B, H'W')
    # No accepted try: every try masked the whole frame; reopen one random token.
    reopen = torch.randint(0, h * w, (batch_size,), generator=generator, device=dev)
    failed = ~ok.any(1)
    spatial[torch.arange(batch_size, device=dev), reopen] &= ~failed

    visible = ~spatial
    min_visible = visible.sum(1).min()
    # Random scores on visible positions only; keep the top `min_visible` of them.
    scores = torch.rand(visible.shape, generator=generator, device=dev).masked_fill(~visible, -1.0)
    visible = _keep_first_k(scores, min_visible)
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


def _check_equal_rows(n: torch.Tensor) -> None:
    # Data-dependent check: skipped while tracing so torch.compile does not graph-break here.
    if not torch.compiler.is_compiling() and bool((n != n[0]).any()):
        raise ValueError(f"every mask row must have the same count, got {n.tolist()}")


def _assert_all(cond: torch.Tensor, msg: str) -> None:
    """Raise ``ValueError(msg)`` unless ``cond`` is all True, without a host sync: on a GPU this is a
    device-side assert (the error surfaces at the next sync); on the CPU it raises at once."""
    ok = cond.all()
    if torch.compiler.is_compiling():
        torch._assert_async(ok, msg)
        return
    try:
        torch._assert_async(ok, msg)
    except RuntimeError as e:  # raised synchronously only where the check ran synchronously (CPU)
        raise ValueError(msg) from e


def visible_indices(mask: torch.Tensor, num_visible: int | None = None) -> torch.Tensor:
    """Positions of the visible (False) tokens of each row, in increasing order.

    Args:
        mask: bool ``(B, N)``, True = masked, same visible count per row.
        num_visible: that count, if the caller knows it (e.g. :func:`visible_count` of the mask
            ratio). Without it the count is read from the mask: a device-to-host sync on a GPU and
            a graph break under ``torch.compile``. With it nothing is read back; a wrong count is
            caught by an asynchronous device-side assert.

    Returns:
        long ``(B, N_visible)``.
    """
    if mask.dim() != 2 or mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool (B, N) tensor, got {mask.dtype} {tuple(mask.shape)}")
    n = (~mask).sum(1)
    if num_visible is None:
        _check_equal_rows(n)
        num_visible = int(n[0])
    else:
        if not 0 <= num_visible <= mask.shape[1]:
            raise ValueError(f"num_visible must be in 0..{mask.shape[1]}, got {num_visible}")
        _assert_all(n == num_visible, f"every mask row must have num_visible={num_visible} visible tokens")
    # A stable sort of the 0/1 mask puts visible positions first, in their original order.
    order = torch.sort(mask.to(torch.uint8), dim=1, stable=True).indices
    return order[:, :num_visible]


def masked_indices(mask: torch.Tensor, num_masked: int | None = None) -> torch.Tensor:
    """Positions of the masked (True) tokens of each row, in increasing order: long ``(B, N_masked)``.

    ``num_masked``: the per-row count if known (spares a device-to-host sync, see :func:`visible_indices`).
    """
    return visible_indices(~mask, num_masked)


def visible_count(grid: Grid, ratio: float) -> int:
    """Visible tokens per sample of :func:`random_tube_mask` / :func:`attention_guided_mask`:
    ``T' * max(1, round((1 - ratio) * H'W'))``, fixed by the grid and the ratio."""
    t, h, w = _check_grid(grid)
    _check_ratio(ratio)
    return t * _visible_per_frame(h * w, ratio)


def _visible_per_frame(n: int, ratio: float) -> int:
    return max(1, round((1 - ratio) * n))


def gather_tokens(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Select tokens: ``x (B, N, D)``, ``idx (B, K)`` -> ``(B, K, D)``."""
    return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
