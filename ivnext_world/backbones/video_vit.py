"""Our InternVideo-Next encoder as a :class:`~.base.Backbone`: any pretraining run, a random init,
or an official released checkpoint (same architecture, loaded by :mod:`ivnext_world.models.official`).

Per frame, the frame is one clip of ``tubelet_size`` copies (the time position table is interpolated
to one token-frame): a frame's tokens never depend on other frames, which a causal world model and a
planner that only has the current observation both need. Outputs keep the encoder's cls tokens as
prefix tokens (what the Stage-1 predictor and diffusion decoder were trained on, so latents decode).
The encoder has no final norm: hidden states are the raw block outputs.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..models import VideoViT
from .base import Backbone, BackboneOutput

__all__ = ["VideoViTBackbone"]


class VideoViTBackbone(Backbone):
    """A :class:`~ivnext_world.models.VideoViT` (``encoder``) frozen behind the backbone interface.

    Args:
        encoder: the video encoder.
        img_size: frame side it runs at (its pretraining size; the position table interpolates others).
        spec, record: how it was named / how to rebuild it (see :func:`~ivnext_world.backbones.load_backbone`).
        kind: ``"ours"`` (a pretraining run or random init) or ``"official"`` (released weights).
    """

    def __init__(self, encoder: VideoViT, img_size: int, spec: str, record: dict | None = None, kind: str = "ours",
                 is_pretrained: bool = True):
        super().__init__()
        if not isinstance(encoder, VideoViT):
            raise TypeError(f"VideoViTBackbone wraps a VideoViT, got {type(encoder).__name__}")
        self.kind = kind
        self.encoder = encoder
        self._setup(spec=spec, record=record or {"spec": spec, "img_size": img_size}, img_size=img_size,
                    patch_size=encoder.patch_size, tubelet_size=encoder.tubelet_size, embed_dim=encoder.embed_dim,
                    pool_dim=encoder.pool_dim, depth=encoder.depth, num_heads=encoder.num_heads,
                    num_prefix_tokens=encoder.num_prefix_tokens, is_pretrained=is_pretrained)

    @classmethod
    def from_epd(cls, epd, spec: str, record: dict | None = None) -> "VideoViTBackbone":
        """The encoder of a pretrained :class:`~ivnext_world.pretrain.epd.EPDModel`, at its training size."""
        return cls(epd.encoder, epd.cfg.img_size, spec, record or {"spec": spec, "img_size": epd.cfg.img_size})

    def forward_frames(self, x: torch.Tensor, layers: Sequence[int] | None = None,
                       pooled: bool = True) -> BackboneOutput:
        enc, p = self.encoder, self.num_prefix_tokens
        clips = x.unsqueeze(2)  # (R, 3, 1, S, S): one frame = one clip
        if self.tubelet_size > 1:
            clips = clips.expand(-1, -1, self.tubelet_size, -1, -1)  # the frame repeated to fill a tubelet
        take = self.resolve_layers(layers) if layers else []
        if take:
            final, hidden = enc.forward_intermediates(clips, indices=take)  # hidden: (R, N, D), cls dropped
        else:
            final, hidden = enc.forward_features(clips), []  # (R, p + N, D)
        pool = enc.forward_head(final) if pooled else None  # (R, pool_dim)
        return BackboneOutput(final[:, p:], final[:, :p], pool, self.grid, list(hidden))

    def forward_clip(self, video: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = video.shape
        self.check_input(t, w)
        tokens = self.encoder.forward_features(video)[:, self.num_prefix_tokens:]  # (B, T'*h'*w', D)
        _, gh, gw = self.encoder.token_grid((t, h, w))
        return tokens.unflatten(1, (t // self.tubelet_size, gh * gw))
