"""Video patchification and the encoder's 3D patch embedding (InternVideo-Next, arXiv 2512.01342).

A patch token covers ``tubelet`` frames x ``patch`` x ``patch`` pixels. Its raw pixel vector is laid
out ``(tubelet, patch_h, patch_w, channel)`` (channels last, as the official patch embedding's
pre-norm sees it); the Stage-1 diffusion decoder reconstructs exactly these vectors. Tokens are
ordered time-major: ``t * H' * W' + h * W' + w``.
"""

from __future__ import annotations

import torch
from timm.layers import RmsNorm
from torch import nn


def token_grid(video_thw: tuple[int, int, int], patch: int, tubelet: int) -> tuple[int, int, int]:
    """Token grid ``(T', H', W')`` of a ``(T, H, W)`` clip; raises if it does not tile exactly."""
    t, h, w = video_thw
    if t % tubelet or h % patch or w % patch:
        raise ValueError(f"clip (T, H, W)={video_thw} is not divisible by tubelet={tubelet}, patch={patch}")
    return t // tubelet, h // patch, w // patch


def patchify(video: torch.Tensor, patch: int, tubelet: int = 1) -> torch.Tensor:
    """Cut a clip into per-token pixel vectors.

    Args:
        video: ``(B, C, T, H, W)``.

    Returns:
        ``(B, N, tubelet * patch * patch * C)`` with ``N = T' * H' * W'``.
    """
    b, c, t, h, w = video.shape
    gt, gh, gw = token_grid((t, h, w), patch, tubelet)
    x = video.reshape(b, c, gt, tubelet, gh, patch, gw, patch)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)  # (B, T', H', W', tubelet, p, p, C)
    return x.reshape(b, gt * gh * gw, tubelet * patch * patch * c)


def unpatchify(
    tokens: torch.Tensor, grid: tuple[int, int, int], patch: int, tubelet: int = 1, channels: int = 3
) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``(B, N, tubelet * patch * patch * C)`` -> ``(B, C, T, H, W)``."""
    b, n, p = tokens.shape
    gt, gh, gw = grid
    if n != gt * gh * gw or p != tubelet * patch * patch * channels:
        raise ValueError(
            f"tokens {tuple(tokens.shape)} do not match grid {grid}, patch {patch}, "
            f"tubelet {tubelet}, channels {channels}"
        )
    x = tokens.reshape(b, gt, gh, gw, tubelet, patch, patch, channels)
    x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)  # (B, C, T', tubelet, H', p, W', p)
    return x.reshape(b, channels, gt * tubelet, gh * patch, gw * patch)


class PatchEmbed3D(nn.Module):
    """RMSNorm on raw patch pixels -> Conv3d (kernel = stride = (tubelet, patch, patch)) -> RMSNorm.

    The pixel-level RMSNorm (the paper's patch embedding) equalises patch contrast before the
    projection; it is applied on the patchified vectors, so the convolution then runs on the
    re-assembled clip.

    Shapes: ``(B, C, T, H, W)`` -> ``(B, N, D)``, with the grid ``(T', H', W')`` from :meth:`grid`.
    """

    def __init__(self, patch_size: int = 14, tubelet_size: int = 1, in_chans: int = 3, embed_dim: int = 768):
        super().__init__()
        self.patch_size = patch_size
        self.tubelet_size = tubelet_size
        self.in_chans = in_chans
        self.norm_before = RmsNorm(tubelet_size * patch_size * patch_size * in_chans, eps=1e-6)
        self.proj = nn.Conv3d(
            in_chans, embed_dim,
            kernel_size=(tubelet_size, patch_size, patch_size),
            stride=(tubelet_size, patch_size, patch_size),
        )
        self.norm = RmsNorm(embed_dim, eps=1e-6)

    def grid(self, video_thw: tuple[int, int, int]) -> tuple[int, int, int]:
        return token_grid(video_thw, self.patch_size, self.tubelet_size)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        grid = self.grid(tuple(video.shape[2:]))
        x = self.norm_before(patchify(video, self.patch_size, self.tubelet_size))  # (B, N, p)
        x = unpatchify(x, grid, self.patch_size, self.tubelet_size, self.in_chans)  # (B, C, T, H, W)
        x = self.proj(x).flatten(2).transpose(1, 2)  # (B, N, D)
        return self.norm(x)
