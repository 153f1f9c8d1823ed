"""Learnable joint 3D position embedding initialised from sin-cos (InternVideo-Next, arXiv 2512.01342).

The table covers ``num_prefix`` (cls) slots plus a ``(T', H', W')`` token grid. Patch slots start
from a 3D sin-cos table with 1/4 of the channels temporal and 3/4 spatial (split equally between
height and width), built by ``diffusers.models.embeddings.get_3d_sincos_pos_embed``; cls slots
start at zero. Stage 1 trains on 16 frames and Stage 2 on 32, so at forward time the patch part is
interpolated in time (linear) and, if the grid differs, in space (bicubic), as the official code does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import get_3d_sincos_pos_embed
from torch import nn


def sincos_3d_table(dim: int, grid: tuple[int, int, int]) -> torch.Tensor:
    """Fixed 3D sin-cos table ``(T' * H' * W', dim)``, time-major, channels = [temporal | spatial]."""
    if dim % 16:
        raise ValueError(f"3D sin-cos position embedding needs dim divisible by 16, got {dim}")
    t, h, w = grid
    # diffusers takes spatial_size as (width, height) and returns (T, H*W, D), rows in (h, w) order.
    table = get_3d_sincos_pos_embed(dim, (w, h), t, output_type="pt")
    return table.reshape(t * h * w, dim).float()


class VideoPosEmbed(nn.Module):
    """Learnable position embedding for ``num_prefix`` cls tokens + a ``(T', H', W')`` grid.

    ``forward(grid)`` returns ``(1, num_prefix + T'*H'*W', D)`` for any grid, interpolating the
    stored patch table when ``grid`` differs from the one it was built for.
    """

    def __init__(self, dim: int, grid: tuple[int, int, int], num_prefix: int = 0):
        super().__init__()
        self.dim = dim
        self.grid = tuple(int(g) for g in grid)
        self.num_prefix = num_prefix
        # One parameter (prefix + patches), as the official checkpoints store `pos_embed`.
        self.pos_embed = nn.Parameter(torch.zeros(1, num_prefix + _numel(self.grid), dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.pos_embed.zero_()
            self.pos_embed[0, self.num_prefix:] = sincos_3d_table(self.dim, self.grid).to(self.pos_embed)

    def forward(self, grid: tuple[int, int, int] | None = None) -> torch.Tensor:
        grid = self.grid if grid is None else tuple(int(g) for g in grid)
        if grid == self.grid:
            return self.pos_embed
        prefix, patches = self.pos_embed[:, : self.num_prefix], self.pos_embed[:, self.num_prefix:]
        return torch.cat([prefix, resize_pos_grid(patches, self.grid, grid)], dim=1)


def resize_pos_grid(patches: torch.Tensor, grid: tuple[int, int, int], new_grid: tuple[int, int, int]) -> torch.Tensor:
    """Resize a time-major patch position table ``(1, T*H*W, D)`` to ``(1, T1*H1*W1, D)``.

    Time is resized linearly, then space bicubically (``align_corners=False``), in the order and
    modes of the official ``interpolate_pos_embed``; used at forward time and when loading a
    checkpoint built for another clip length or size.
    """
    t0, h0, w0 = (int(g) for g in grid)
    t1, h1, w1 = (int(g) for g in new_grid)
    dim = patches.shape[-1]
    if patches.shape[-2] != t0 * h0 * w0:
        raise ValueError(f"position table has {patches.shape[-2]} patch rows, grid {tuple(grid)} needs {t0 * h0 * w0}")
    x = patches.reshape(t0, h0, w0, dim)
    if t1 != t0:
        x = x.permute(1, 2, 3, 0).reshape(h0 * w0, dim, t0)  # time as the 1D axis
        x = F.interpolate(x, size=t1, mode="linear", align_corners=False)
        x = x.reshape(h0, w0, dim, t1).permute(3, 0, 1, 2)  # (T1, H0, W0, D)
    if (h1, w1) != (h0, w0):
        x = x.permute(0, 3, 1, 2)  # (T1, D, H0, W0)
        x = F.interpolate(x, size=(h1, w1), mode="bicubic", align_corners=False)
        x = x.permute(0, 2, 3, 1)
    return x.reshape(1, t1 * h1 * w1, dim)


def _numel(grid: tuple[int, ...]) -> int:
    n = 1
    for g in grid:
        n *= g
    return n
