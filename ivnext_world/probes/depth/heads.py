"""Depth heads on frozen ViT features (Probe3D / DINOv2 depth protocols).

- ``linear``: BatchNorm + 1x1 conv on the last layer's patch tokens (DINOv2 "lin. 1").
- ``linear4``: the same on the channel-concatenation of 4 layers at L/4, L/2, 3L/4, L ("lin. 4").
- ``dpt``: a small DPT decoder (Ranftl et al., ICCV 2021): the 4 layers are reassembled at
  4x, 2x, 1x and 1/2x the token grid, fused from coarse to fine with residual conv units down to
  4x the grid, and a conv head predicts the bins there.

Output: ``bins`` (default) = logits over ``num_bins`` log-spaced depth centres in ``[min_depth,
max_depth]``, the prediction being the softmax-expected depth (Probe3D, AdaBins-style);
``regression`` = one channel squashed by a sigmoid onto ``[log min_depth, log max_depth]``.

Shapes: features are a list of ``(B, D, h, w)`` maps (one per consumed layer); ``forward(feats,
out_size)`` returns depth ``(B, H, W)`` in metres, bilinearly resized to ``out_size``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from timm.layers import ConvNormAct
from torch import nn

HEAD_KINDS = ("linear", "linear4", "dpt")
OUTPUTS = ("bins", "regression")


@dataclass
class DepthHeadConfig:
    kind: str = "linear"  # linear | linear4 | dpt
    output: str = "bins"  # bins (expected value over log-spaced bins) | regression
    num_bins: int = 256  # Probe3D: 256
    min_depth: float = 0.1  # metres; the built-in scenes span ~0.7-3.5 m
    max_depth: float = 10.0
    upsample: int = 4  # linear heads: logits are upsampled this much before the softmax (DINOv2: 4)
    dpt_features: int = 32  # DPT width (paper: 256; small for CPU probes)

    def __post_init__(self):
        if self.kind not in HEAD_KINDS:
            raise ValueError(f"head kind must be one of {HEAD_KINDS}, got {self.kind!r}")
        if self.output not in OUTPUTS:
            raise ValueError(f"head output must be one of {OUTPUTS}, got {self.output!r}")
        if not 0 < self.min_depth < self.max_depth:
            raise ValueError(f"need 0 < min_depth < max_depth, got {self.min_depth}, {self.max_depth}")

    @property
    def num_inputs(self) -> int:
        """How many encoder layers the head consumes."""
        return 1 if self.kind == "linear" else 4


def probe_layers(depth: int, n: int = 4) -> list[int]:
    """Block indices at L/4, L/2, 3L/4, L (0-based) for an encoder of ``depth`` blocks: 12 -> [2, 5, 8, 11]."""
    return [max(1, round(depth * k / n)) - 1 for k in range(1, n + 1)]


class DepthOutput(nn.Module):
    """Channels -> depth: expected value over log-spaced bins, or a sigmoid in log-depth."""

    def __init__(self, cfg: DepthHeadConfig):
        super().__init__()
        self.cfg = cfg
        self.channels = cfg.num_bins if cfg.output == "bins" else 1
        lo, hi = math.log(cfg.min_depth), math.log(cfg.max_depth)
        self.register_buffer("centres", torch.linspace(lo, hi, cfg.num_bins).exp(), persistent=False)
        self.log_range = (lo, hi)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, channels, h, w)`` -> ``(B, h, w)`` metres."""
        if self.cfg.output == "bins":
            return torch.einsum("bkhw,k->bhw", x.float().softmax(1), self.centres)
        lo, hi = self.log_range
        return (lo + (hi - lo) * torch.sigmoid(x[:, 0].float())).exp()


class LinearDepthHead(nn.Module):
    """BN + 1x1 conv on ``n_inputs`` concatenated layers; logits upsampled ``cfg.upsample`` x."""

    def __init__(self, cfg: DepthHeadConfig, embed_dim: int):
        super().__init__()
        self.cfg = cfg
        self.out = DepthOutput(cfg)
        c_in = embed_dim * cfg.num_inputs
        self.norm = nn.BatchNorm2d(c_in)  # frozen features of different encoders differ wildly in scale
        self.proj = nn.Conv2d(c_in, self.out.channels, 1)

    def forward(self, feats: list[torch.Tensor], out_size: tuple[int, int]) -> torch.Tensor:
        x = self.proj(self.norm(torch.cat(feats, 1)))  # (B, K, h, w)
        x = F.interpolate(x, scale_factor=self.cfg.upsample, mode="bilinear", align_corners=False)
        d = self.out(x)  # (B, h*u, w*u)
        return F.interpolate(d[:, None], size=out_size, mode="bilinear", align_corners=False)[:, 0]


class ResidualConvUnit(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """DPT's feature fusion: ``rcu2(path + rcu1(skip))`` (``path`` already at ``skip``'s size), resized
    to ``size``. The coarsest block has no incoming path and, as in DPT, runs ``rcu2(skip)`` only."""

    def __init__(self, c: int, has_path: bool = True):
        super().__init__()
        self.rcu1 = ResidualConvUnit(c) if has_path else None
        self.rcu2 = ResidualConvUnit(c)
        self.proj = nn.Conv2d(c, c, 1)

    def forward(self, path: torch.Tensor | None, skip: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = skip if self.rcu1 is None else path + self.rcu1(skip)
        x = self.rcu2(x)
        return self.proj(F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False))


class DPTDepthHead(nn.Module):
    """Reassemble 4 layers at (4x, 2x, 1x, 1/2x) the ``h x w`` grid, fuse coarse-to-fine, conv head.

    The bins are predicted at 4x the token grid, like the linear heads' upsampled logits (the
    original DPT goes to full resolution; with 256 bins those last layers dominate the cost on a
    CPU), and the expected depth is resized bilinearly to the output size.
    """

    def __init__(self, cfg: DepthHeadConfig, embed_dim: int):
        super().__init__()
        self.cfg = cfg
        f = cfg.dpt_features
        self.out = DepthOutput(cfg)
        self.reassemble = nn.ModuleList([
            nn.Sequential(nn.Conv2d(embed_dim, f, 1), nn.ConvTranspose2d(f, f, 4, stride=4)),
            nn.Sequential(nn.Conv2d(embed_dim, f, 1), nn.ConvTranspose2d(f, f, 2, stride=2)),
            nn.Conv2d(embed_dim, f, 1),
            nn.Sequential(nn.Conv2d(embed_dim, f, 1), nn.Conv2d(f, f, 3, stride=2, padding=1)),
        ])
        self.fuse = nn.ModuleList([FusionBlock(f, has_path=i < 3) for i in range(4)])
        self.head = nn.Sequential(
            ConvNormAct(f, f, 3),
            nn.Conv2d(f, self.out.channels, 1),
        )

    def forward(self, feats: list[torch.Tensor], out_size: tuple[int, int]) -> torch.Tensor:
        if len(feats) != 4:
            raise ValueError(f"the DPT head takes 4 feature maps, got {len(feats)}")
        maps = [r(x) for r, x in zip(self.reassemble, feats)]  # (B, f, 4h, 4w) ... (B, f, h/2, w/2)
        path = None
        for i in (3, 2, 1, 0):
            path = self.fuse[i](path, maps[i], maps[max(i - 1, 0)].shape[-2:])  # (B, f, 4h, 4w) at the end
        d = self.out(self.head(path))  # (B, 4h, 4w): coarser than DPT's full resolution, for CPU probes
        return F.interpolate(d[:, None], size=out_size, mode="bilinear", align_corners=False)[:, 0]


class DepthProbe(nn.Module):
    """The trainable part of a depth probe: one head on frozen features of width ``embed_dim``."""

    def __init__(self, cfg: DepthHeadConfig, embed_dim: int):
        super().__init__()
        self.cfg, self.embed_dim = cfg, embed_dim
        self.head = DPTDepthHead(cfg, embed_dim) if cfg.kind == "dpt" else LinearDepthHead(cfg, embed_dim)

    def forward(self, feats: list[torch.Tensor], out_size: tuple[int, int]) -> torch.Tensor:
        """``cfg.num_inputs`` maps ``(B, D, h, w)`` -> depth ``(B, *out_size)`` metres."""
        if len(feats) != self.cfg.num_inputs:
            raise ValueError(f"{self.cfg.kind} head takes {self.cfg.num_inputs} feature maps, got {len(feats)}")
        return self.head(feats, out_size)

    def from_last_layer(self, last: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
        """Depth from last-layer maps alone (e.g. imagined latents): multi-layer heads get it repeated."""
        return self.head([last] * self.cfg.num_inputs, out_size)

    def config_dict(self) -> dict:
        return {"head": asdict(self.cfg), "embed_dim": self.embed_dim}
