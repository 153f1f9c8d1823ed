"""Image ViTs applied per frame as a :class:`~.base.Backbone` (DINOv2 as DINO-WM uses it, SigLIP/SigLIP2,
CLIP): a timm model (weights file, timm/Hugging Face cache folder, or random init) or a transformers
folder, loaded by the Stage-1 teacher's loader (:class:`~ivnext_world.models.ImageTeacher`, so the
same files, checks and error messages apply).

Outputs follow DINO-WM: the patch tokens of the last layer after the final norm (DINOv2's
``x_norm_patchtokens``), no cls or register tokens (``num_prefix_tokens = 0``); the pooled vector is
the library's own (timm ``forward_head(pre_logits=True)``, transformers ``pooler_output``: the
final-norm cls token for DINOv2, the attention-pool head for SigLIP). Hidden states are block outputs
through the same final norm (timm ``forward_intermediates(norm=True)``; transformers: DINOv2
``layernorm``, SigLIP ``post_layernorm``; CLIP has none on its tokens). Normalisation: the model's
own mean/std (timm ``pretrained_cfg``; transformers preprocessor config).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn

from .base import Backbone, BackboneOutput

__all__ = ["ImageBackbone"]

log = logging.getLogger(__name__)

RANDOM_WARNING = (
    "\n%s\n!! Backbone %s has RANDOM weights: no weights file was named. Its features are a random-\n"
    "!! network baseline (DINO-WM-style), not a pretrained model; label every result with it so.\n%s"
)


class ImageBackbone(Backbone):
    """Args:
        model_name: timm architecture, or ``"auto"`` (the folder's model, timm or transformers).
        checkpoint: local weights file / folder; None = random init (loud warning).
        img_size: frame side; None = the model's own (timm ``pretrained_cfg``, transformers preprocessor).
        spec, record: see :func:`~ivnext_world.backbones.load_backbone`.
        model_kwargs: extra ``timm.create_model`` arguments (timm models only).
    """

    def __init__(self, model_name: str, checkpoint: str | Path | None, img_size: int | None, spec: str,
                 record: dict | None = None, model_kwargs: dict | None = None):
        super().__init__()
        from ..models.teacher import ImageTeacher

        hf = None
        if checkpoint is None:
            model = ImageTeacher._create_timm(model_name, img_size, {"num_classes": 0, **(model_kwargs or {})})
            banner = "!" * 78
            log.warning(RANDOM_WARNING, banner, spec, banner)
            pretrained = False
        else:
            teacher = ImageTeacher(model_name, checkpoint, layers=[-1], img_size=img_size, model_kwargs=model_kwargs)
            model, hf, pretrained = teacher.model, teacher.hf, True
        # fp32 weights whatever dtype the file was saved in: precision is the callers' autocast
        # (the world model's precision=auto|bf16), and fp32 inputs must meet fp32 weights.
        model.float()
        self.kind = "hf" if hf is not None else "timm"
        if hf is not None:
            self.hf = hf  # the transformers model lives in hf.model (one registration, no duplicate weights)
            self.model = None
            size, patch, dim, depth = hf.img_size, hf.patch_size, hf.embed_dim, hf.depth
            heads, mean, std = int(hf.model.config.num_attention_heads), hf.mean, hf.std
            self._p = hf.num_prefix_tokens
            self.fixed_size = hf.family.name == "siglip2"  # NaFlex patches are cut on the configured grid
        else:
            self.hf = None
            self.model = model
            size, patch = int(model.patch_embed.img_size[0]), int(model.patch_embed.patch_size[0])
            dim, depth, heads = model.embed_dim, len(model.blocks), model.blocks[0].attn.num_heads
            cfg = model.pretrained_cfg or {}
            mean, std = cfg.get("mean", IMAGENET_DEFAULT_MEAN), cfg.get("std", IMAGENET_DEFAULT_STD)
            self._p = model.num_prefix_tokens
            self.fixed_size = not getattr(model.patch_embed, "dynamic_img_size", False)
        pool_dim = self._pool_dim(dim)
        self._setup(spec=spec, record=record or {"spec": spec, "img_size": size}, img_size=size, patch_size=patch,
                    tubelet_size=1, embed_dim=dim, pool_dim=pool_dim, depth=depth, num_heads=heads,
                    num_prefix_tokens=0, mean=mean, std=std, is_pretrained=pretrained)

    def _hf_final_norm(self) -> nn.Module:
        """The norm transformers applies to ``last_hidden_state`` (identity for CLIP)."""
        m = self.hf.model
        if self.hf.family.name == "dinov2":
            return m.layernorm
        if self.hf.family.name in ("siglip", "siglip2"):
            return getattr(m, "vision_model", m).post_layernorm  # transformers 5: on the vision model itself
        return nn.Identity()  # CLIP: post_layernorm only on the pooled cls token

    def _pool_dim(self, dim: int) -> int:
        if self.hf is not None:
            return dim
        # timm: the width of forward_head(pre_logits=True) (after any pre-logits layer)
        return int(getattr(self.model, "head_hidden_size", None) or self.model.num_features)

    def _hf_inputs(self, x: torch.Tensor) -> dict:
        if self.hf.family.name == "siglip2":
            return self.hf.naflex_inputs(x)
        kw = {"pixel_values": x}
        if self.hf.family.name != "dinov2" and x.shape[-1] != self.hf._native_size:
            kw["interpolate_pos_encoding"] = True  # DINOv2 always interpolates
        return kw

    def forward_frames(self, x: torch.Tensor, layers: Sequence[int] | None = None,
                       pooled: bool = True) -> BackboneOutput:
        take = self.resolve_layers(layers) if layers else []
        p = self._p
        if self.hf is not None:
            out = self.hf.model(**self._hf_inputs(x), output_hidden_states=bool(take))
            final = out.last_hidden_state  # (R, p + N, D)
            norm = self._hf_final_norm()
            hidden = [norm(out.hidden_states[i + 1])[:, p:] for i in take]  # [0]: the embeddings
            pool = out.pooler_output if pooled else None
        else:
            m = self.model
            if take:
                final, hidden = m.forward_intermediates(x, indices=take, norm=True, output_fmt="NLC")
            else:
                final, hidden = m.forward_features(x), []
            pool = m.forward_head(final, pre_logits=True) if pooled else None
        patches = final[:, p:]
        return BackboneOutput(patches, patches[:, :0], pool, self.grid, list(hidden))
