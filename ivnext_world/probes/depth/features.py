"""Frozen per-frame feature maps of a :class:`VideoViT` for the depth heads.

Each frame is encoded as its own one-tubelet clip, exactly as the world model encodes frames
(:func:`~ivnext_world.world_model.latents.encode_video`), so a head trained on real frames sees
the same kind of last-layer tokens the world model predicts. Frames are resized to the encoder's
``img_size`` square (no crop: predictions are resized back onto the full original frame, so the
camera intrinsics of the original pixels still apply) and ImageNet-normalised.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ...models import VideoViT
from .heads import probe_layers


def normalise_frames(frames: torch.Tensor, size: int) -> torch.Tensor:
    """``(N, 3, H, W)`` uint8 or float in [0, 1] -> ``(N, 3, size, size)`` ImageNet-normalised float."""
    if frames.dim() != 4 or frames.shape[1] != 3:
        raise ValueError(f"frames must be (N, 3, H, W), got {tuple(frames.shape)}")
    x = frames.float() / 255.0 if frames.dtype == torch.uint8 else frames.float()
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def tokens_to_map(tokens: torch.Tensor, grid: tuple[int, int], num_prefix: int = 0) -> torch.Tensor:
    """``(B, num_prefix + h*w, D)`` tokens -> ``(B, D, h, w)`` patch map (cls tokens dropped)."""
    h, w = grid
    patches = tokens[:, num_prefix:]
    if patches.shape[1] != h * w:
        raise ValueError(f"{patches.shape[1]} patch tokens do not form a {h}x{w} grid")
    return patches.transpose(1, 2).unflatten(2, (h, w))


class FrozenFeatures:
    """``encoder`` frozen; ``__call__(frames) -> [(N, D, h, w)] * len(layers)``.

    Args:
        layers: block indices to read (default: L/4, L/2, 3L/4, L); the last entry should be the
            last block for heads that are also applied to world-model latents.
        img_size: side of the square the frames are resized to (the encoder's training size).
    """

    def __init__(self, encoder: VideoViT, img_size: int, layers: list[int] | None = None):
        self.encoder = encoder.eval().requires_grad_(False)
        self.img_size = img_size
        self.layers = layers if layers is not None else probe_layers(len(encoder.blocks))
        _, h, w = encoder.token_grid((encoder.tubelet_size, img_size, img_size))
        self.grid = (h, w)

    @property
    def embed_dim(self) -> int:
        return self.encoder.embed_dim

    @torch.no_grad()
    def __call__(self, frames: torch.Tensor, normalised: bool = False) -> list[torch.Tensor]:
        x = frames if normalised else normalise_frames(frames, self.img_size)  # (N, 3, S, S)
        self.encoder.to(x.device)
        clips = x.unsqueeze(2).expand(-1, -1, self.encoder.tubelet_size, -1, -1)  # (N, 3, tub, S, S)
        inter = self.encoder.forward_intermediates(clips, indices=self.layers, intermediates_only=True, stop_early=True)
        return [tokens_to_map(t, self.grid).float() for t in inter]  # each (N, D, h, w)
