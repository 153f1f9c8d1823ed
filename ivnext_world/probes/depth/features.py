"""Frozen per-frame feature maps of any backbone (:mod:`ivnext_world.backbones`) for the depth heads.

Each frame is encoded on its own, exactly as the world model encodes frames
(:meth:`~ivnext_world.backbones.Backbone.forward_frames`), so a head trained on real frames sees the
same kind of last-layer tokens the world model predicts. Frames are resized to the backbone's
``img_size`` square (no crop: predictions are resized back onto the full original frame, so the
camera intrinsics of the original pixels still apply) and normalised the backbone's way. The maps
are the backbone's hidden states at ``layers`` (default L/4, L/2, 3L/4, L), each through its final
token norm if it has one, so the last map holds the world model's latent patch tokens.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...backbones import Backbone
from ...backbones.video_vit import VideoViTBackbone
from ...data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ...models import VideoViT
from .heads import probe_layers


def normalise_frames(frames: torch.Tensor, size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """``(N, 3, H, W)`` uint8 or float in [0, 1] -> ``(N, 3, size, size)`` normalised float (default ImageNet)."""
    if frames.dim() != 4 or frames.shape[1] != 3:
        raise ValueError(f"frames must be (N, 3, H, W), got {tuple(frames.shape)}")
    x = frames.float() / 255.0 if frames.dtype == torch.uint8 else frames.float()
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return (x - x.new_tensor(mean).view(1, 3, 1, 1)) / x.new_tensor(std).view(1, 3, 1, 1)


def tokens_to_map(tokens: torch.Tensor, grid: tuple[int, int], num_prefix: int = 0) -> torch.Tensor:
    """``(B, num_prefix + h*w, D)`` tokens -> ``(B, D, h, w)`` patch map (cls tokens dropped)."""
    h, w = grid
    patches = tokens[:, num_prefix:]
    if patches.shape[1] != h * w:
        raise ValueError(f"{patches.shape[1]} patch tokens do not form a {h}x{w} grid")
    return patches.transpose(1, 2).unflatten(2, (h, w))


class BackboneFeatures:
    """``backbone`` frozen; ``__call__(frames) -> [(N, D, h, w)] * len(layers)``.

    Args:
        backbone: any :class:`~ivnext_world.backbones.Backbone`.
        layers: block indices to read (default: L/4, L/2, 3L/4, L); the last entry should be the
            last block for heads that are also applied to world-model latents.
    """

    def __init__(self, backbone: Backbone, layers: list[int] | None = None):
        self.backbone = backbone.eval()
        self.layers = list(layers) if layers is not None else probe_layers(backbone.depth)
        self.img_size = backbone.img_size
        self.grid = backbone.grid

    @property
    def encoder(self):
        """Our encoder's ``VideoViT`` (backwards compatible), else the backbone itself."""
        return getattr(self.backbone, "encoder", self.backbone)

    @property
    def embed_dim(self) -> int:
        return self.backbone.embed_dim

    @torch.no_grad()
    def __call__(self, frames: torch.Tensor, normalised: bool = False) -> list[torch.Tensor]:
        bb = self.backbone
        x = frames if normalised else normalise_frames(frames, self.img_size, bb.mean, bb.std)  # (N, 3, S, S)
        bb.to(x.device)
        hidden = bb.forward_frames(x, layers=self.layers, pooled=False).hidden  # [(N, h*w, D)]
        return [tokens_to_map(t, self.grid).float() for t in hidden]  # each (N, D, h, w)


class FrozenFeatures(BackboneFeatures):
    """:class:`BackboneFeatures` of a bare :class:`VideoViT` run at ``img_size`` (ImageNet-normalised input)."""

    def __init__(self, encoder: VideoViT, img_size: int, layers: list[int] | None = None):
        super().__init__(VideoViTBackbone(encoder, img_size, spec=f"VideoViT@{img_size}"), layers)
