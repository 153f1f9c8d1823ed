"""Video patchification and the encoder's 3D patch embedding (InternVideo-Next, arXiv 2512.01342).

A patch token covers ``tubelet`` frames x ``patch`` x ``patch`` pixels. Its raw pixel vector has one
of two layouts (:data:`PIXEL_ORDERS`):

- ``"cthw"``: ``(channel, tubelet, patch_h, patch_w)``, channels first. The official Stage-1 code
  builds its diffusion targets this way (``F.pixel_unshuffle`` per frame), and it is also the
  flattened layout of the patch projection's ``Conv3d`` weight;
- ``"thwc"``: ``(tubelet, patch_h, patch_w, channel)``, channels last, as the official patch
  embedding's pre-norm sees the pixels (``PatchEmbed3D.norm_before.weight`` keeps this layout).

The Stage-1 diffusion decoder reconstructs these vectors in the order its config names
(``EPDConfig.decoder_pixel_order``); encode (targets) and decode (samples) must use the same one.
Tokens are ordered time-major: ``t * H' * W' + h * W' + w``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def token_grid(video_thw: tuple[int, int, int], patch: int, tubelet: int) -> tuple[int, int, int]:
    """Token grid ``(T', H', W')`` of a ``(T, H, W)`` clip; raises if it does not tile exactly."""
    t, h, w = video_thw
    if t % tubelet or h % patch or w % patch:
        raise ValueError(f"clip (T, H, W)={video_thw} is not divisible by tubelet={tubelet}, patch={patch}")
    return t // tubelet, h // patch, w // patch


PIXEL_ORDERS = ("cthw", "thwc")
# (B, C, T', tub, H', p, W', p) -> (B, T', H', W', <pixel dims in the order's layout>)
_TO_TOKENS = {"cthw": (0, 2, 4, 6, 1, 3, 5, 7), "thwc": (0, 2, 4, 6, 3, 5, 7, 1)}


def check_pixel_order(order: str) -> str:
    if order not in PIXEL_ORDERS:
        raise ValueError(f"pixel order must be one of {PIXEL_ORDERS} (channel-first official / channel-last), got {order!r}")
    return order


def patchify(video: torch.Tensor, patch: int, tubelet: int = 1, order: str = "thwc") -> torch.Tensor:
    """Cut a clip into per-token pixel vectors.

    Args:
        video: ``(B, C, T, H, W)``.
        order: layout of each vector, ``"thwc"`` (channels last) or ``"cthw"`` (channels first,
            the official diffusion targets); see the module docstring.

    Returns:
        ``(B, N, tubelet * patch * patch * C)`` with ``N = T' * H' * W'``.
    """
    b, c, t, h, w = video.shape
    gt, gh, gw = token_grid((t, h, w), patch, tubelet)
    x = video.reshape(b, c, gt, tubelet, gh, patch, gw, patch)
    x = x.permute(*_TO_TOKENS[check_pixel_order(order)])  # (B, T', H', W', <pixel dims>)
    return x.reshape(b, gt * gh * gw, tubelet * patch * patch * c)


def unpatchify(
    tokens: torch.Tensor, grid: tuple[int, int, int], patch: int, tubelet: int = 1, channels: int = 3,
    order: str = "thwc",
) -> torch.Tensor:
    """Inverse of :func:`patchify` (same ``order``): ``(B, N, tubelet * patch * patch * C)`` -> ``(B, C, T, H, W)``."""
    b, n, p = tokens.shape
    gt, gh, gw = grid
    if n != gt * gh * gw or p != tubelet * patch * patch * channels:
        raise ValueError(
            f"tokens {tuple(tokens.shape)} do not match grid {grid}, patch {patch}, "
            f"tubelet {tubelet}, channels {channels}"
        )
    perm = _TO_TOKENS[check_pixel_order(order)]
    pixel_shape = {"cthw": (channels, tubelet, patch, patch), "thwc": (tubelet, patch, patch, channels)}[order]
    x = tokens.reshape(b, gt, gh, gw, *pixel_shape)
    inverse = [perm.index(i) for i in range(8)]  # back to (B, C, T', tub, H', p, W', p)
    x = x.permute(*inverse)
    return x.reshape(b, channels, gt * tubelet, gh * patch, gw * patch)


class PatchEmbed3D(nn.Module):
    """RMSNorm on raw patch pixels -> linear patch projection -> RMSNorm.

    The pixel-level RMSNorm (the paper's patch embedding) equalises patch contrast before the
    projection. The projection is stored as an ``nn.Conv3d`` (kernel = stride =
    ``(tubelet, patch, patch)``) named ``proj``, so checkpoints in the official layout load
    unchanged, but it is run as one matmul: the clip is patchified once into vectors ordered
    ``(C, tubelet, patch_h, patch_w)`` (the flattened layout of ``proj.weight (D, C, t, p, p)``, i.e.
    :func:`patchify`'s ``"cthw"``), normalised, and multiplied by ``proj.weight.flatten(1)``.
    ``norm_before.weight`` keeps its ``(tubelet, patch_h, patch_w, C)`` layout (``"thwc"``, the
    official one) and is permuted to match.

    Because the pixels carry no parameters, ``norm_before``'s per-element scale is folded into the
    projection weight (``(x_hat * g) W^T == x_hat (W * g)^T``): the normalised pixels then need no
    gradient, and the backward pass is a single weight-gradient matmul, as for a plain conv stem.

    ``forward(video, idx)`` with visible token indices ``idx (B, K)`` embeds only those patches.

    Shapes: ``(B, C, T, H, W)`` -> ``(B, N, D)`` (or ``(B, K, D)``), grid ``(T', H', W')`` from :meth:`grid`.
    """

    def __init__(self, patch_size: int = 14, tubelet_size: int = 1, in_chans: int = 3, embed_dim: int = 768):
        super().__init__()
        self.patch_size = patch_size
        self.tubelet_size = tubelet_size
        self.in_chans = in_chans
        self.norm_before = nn.RMSNorm(tubelet_size * patch_size * patch_size * in_chans, eps=1e-6)
        self.proj = nn.Conv3d(
            in_chans, embed_dim,
            kernel_size=(tubelet_size, patch_size, patch_size),
            stride=(tubelet_size, patch_size, patch_size),
        )
        self.norm = nn.RMSNorm(embed_dim, eps=1e-6)

    def grid(self, video_thw: tuple[int, int, int]) -> tuple[int, int, int]:
        return token_grid(video_thw, self.patch_size, self.tubelet_size)

    def patch_vectors(self, video: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        """Raw patch pixels in the projection's layout: ``(B, N or K, C * tubelet * patch * patch)``.

        With ``idx (B, K)`` only those tokens are gathered (straight from the clip, without
        materialising the other patches).
        """
        b, c, t, h, w = video.shape
        gt, gh, gw = self.grid((t, h, w))
        tub, p = self.tubelet_size, self.patch_size
        x = video.reshape(b, c, gt, tub, gh, p, gw, p).permute(0, 2, 4, 6, 1, 3, 5, 7)  # (B, T', H', W', C, t, p, p)
        if idx is None:
            return x.reshape(b, gt * gh * gw, c * tub * p * p)
        if idx.dim() != 2 or idx.shape[0] != b:
            raise ValueError(f"idx must be (B={b}, K), got {tuple(idx.shape)}")
        hw = gh * gw
        ti, rem = idx // hw, idx % hw
        rows = torch.arange(b, device=idx.device).unsqueeze(1)
        x = x[rows, ti, rem // gw, rem % gw]  # (B, K, C, t, p, p)
        return x.reshape(b, idx.shape[1], c * tub * p * p)

    def projection_weight(self) -> torch.Tensor:
        """``proj.weight`` as ``(D, C*t*p*p)`` with ``norm_before``'s scale folded in."""
        c, tub, p = self.in_chans, self.tubelet_size, self.patch_size
        weight = self.proj.weight.flatten(1)
        scale = self.norm_before.weight
        if scale is None:
            return weight
        # (t, p, p, C) -> (C, t, p, p), the layout of the patch vectors and of proj.weight.
        scale = scale.view(tub, p, p, c).permute(3, 0, 1, 2).reshape(1, -1)
        return weight * scale

    def forward(self, video: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        x = self.patch_vectors(video, idx)  # (B, N or K, C*t*p*p)
        # RMSNorm without its scale (folded into projection_weight): parameter-free on the pixels.
        x = F.rms_norm(x, self.norm_before.normalized_shape, None, self.norm_before.eps)
        x = F.linear(x, self.projection_weight(), self.proj.bias)  # (B, N or K, D)
        return self.norm(x)
