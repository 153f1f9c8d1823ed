"""Which frozen backbone a classification probe reads: ``load_backbone(spec) -> Backbone``.

Loading is the toolkit's one loader, :func:`ivnext_world.backbones.load_backbone`: any backbone the
toolkit can load (our runs and random init, the official InternVideo-Next weights, V-JEPA 2, timm and
transformers image models) is a probe backbone, with that loader's specs, checks and error messages.
The probe reads :meth:`~ivnext_world.backbones.Backbone.forward`: a normalised clip ``(B, C, T, H, W)``
-> patch tokens ``(B, N, D)`` (no cls tokens: the heads pool for themselves), and the backbone's
``check_input`` rejects a clip size it cannot take, naming both, before any data is read.

What this module adds on top, for the probe only:

- ``"random:<preset>"``: another name of ``timm:<preset>`` without a weights file (a random-init timm
  video encoder such as ``ivnext_vit_tiny_patch14_224``);
- ``"frame:<spec>"``: the single-frame baseline (:class:`SingleFrame`): only the clip's centre frame
  reaches ``<spec>``;
- per-frame image models (tubelet 1, ``timm``/``hf`` kinds) carry no time information in their tokens,
  so (as V-JEPA's frame-aggregation wrapper for image models does) a fixed 1-D sin-cos embedding of
  the frame index is added to each frame's tokens (:class:`FrameIndexEmbed`, ``temporal_embed``);
  without it every head would be blind to frame order by construction.
"""
from __future__ import annotations

import torch

from ...backbones import Backbone, BackboneInputError
from ...backbones import load_backbone as load_toolkit_backbone

IMAGE_KINDS = ("timm", "hf")  # per-frame image models: their tokens do not know the frame index


class _Wrapper(Backbone):
    """A backbone seen through the probe: the attributes of ``inner``, its per-frame outputs."""

    def __init__(self, inner: Backbone, spec: str, record: dict):
        super().__init__()
        self.inner, self.kind, self.fixed_size = inner, inner.kind, inner.fixed_size
        self._setup(spec=spec, record=record, img_size=inner.img_size, patch_size=inner.patch_size,
                    tubelet_size=inner.tubelet_size, embed_dim=inner.embed_dim, pool_dim=inner.pool_dim,
                    depth=inner.depth, num_heads=inner.num_heads, num_prefix_tokens=inner.num_prefix_tokens,
                    mean=inner.mean, std=inner.std, is_pretrained=inner.is_pretrained)

    def forward_frames(self, x, layers=None, pooled=True):
        return self.inner.forward_frames(x, layers, pooled)


def sincos_1d(n: int, dim: int) -> torch.Tensor:
    """``(n, dim)`` fixed sin-cos embedding of positions 0..n-1 (the Transformer's, 10000 base)."""
    half = dim // 2
    freq = 1.0 / 10000 ** (torch.arange(half, dtype=torch.float64) / max(half, 1))
    ang = torch.arange(n, dtype=torch.float64)[:, None] * freq[None]
    emb = torch.cat([ang.sin(), ang.cos()], 1)
    return torch.nn.functional.pad(emb, (0, dim - 2 * half)).float()


class FrameIndexEmbed(_Wrapper):
    """A per-frame image model whose tokens get a sin-cos embedding of their frame index."""

    def __init__(self, inner: Backbone):
        super().__init__(inner, inner.spec, {**inner.record, "temporal_embed": True})

    @torch.no_grad()
    def forward_clip(self, video: torch.Tensor) -> torch.Tensor:
        tokens = self.inner.forward_clip(video)  # (B, T, N, D)
        return tokens + sincos_1d(tokens.shape[1], self.embed_dim).to(tokens)[None, :, None]


class SingleFrame(_Wrapper):
    """The single-frame baseline: the clip's centre frame only (repeated to fill one tubelet)."""

    def __init__(self, inner: Backbone):
        super().__init__(inner, f"frame:{inner.spec}", {"spec": f"frame:{inner.spec}", "inner": inner.record})

    def check_input(self, num_frames: int, size: int) -> None:
        self.inner.check_input(self.inner.tubelet_size, size)

    def num_tokens(self, num_frames: int, size: int) -> int:
        return self.inner.num_tokens(self.inner.tubelet_size, size)

    @torch.no_grad()
    def forward_clip(self, video: torch.Tensor) -> torch.Tensor:
        mid = video.shape[2] // 2
        frame = video[:, :, mid:mid + 1]  # (B, C, 1, H, W)
        return self.inner.forward_clip(frame.expand(-1, -1, self.inner.tubelet_size, -1, -1))


def load_backbone(
    spec: str, *, num_frames: int, img_size: int, random_model: dict | None = None, seed: int = 0,
    temporal_embed: bool = True, timm_kwargs: dict | None = None,
) -> Backbone:
    """Build the frozen backbone named by ``spec`` (see the module docstring) for clips of
    ``num_frames`` frames at ``img_size`` px; input-size problems raise :class:`BackboneInputError`
    naming the backbone and the clip size.

    ``timm_kwargs`` go to ``timm.create_model`` for ``timm:`` and ``random:`` specs (e.g. a smaller
    width and depth for a random-init baseline of the same size as the encoder it is compared with).
    """
    if spec.startswith("frame:"):
        bb = SingleFrame(load_backbone(spec[len("frame:"):], num_frames=num_frames, img_size=img_size,
                                       random_model=random_model, seed=seed, temporal_embed=temporal_embed,
                                       timm_kwargs=timm_kwargs))
    else:
        name = "timm:" + spec[len("random:"):] if spec.startswith("random:") else spec
        try:
            bb = load_toolkit_backbone(name, img_size, seed=seed, random_model=random_model, timm_kwargs=timm_kwargs)
        except BackboneInputError as e:
            raise BackboneInputError(f"backbone {spec!r} cannot take the probe's clips ({num_frames} frames at "
                                     f"{img_size}x{img_size} px): {e}") from e
        if temporal_embed and bb.tubelet_size == 1 and bb.kind in IMAGE_KINDS:
            bb = FrameIndexEmbed(bb)
    bb.check_input(num_frames, img_size)
    return bb


def head_count(dim: int, preferred: int) -> int:
    """The largest head count <= ``preferred`` that divides ``dim`` (attention needs dim % heads == 0)."""
    for h in range(max(1, preferred), 0, -1):
        if dim % h == 0:
            return h
    return 1


__all__ = ["Backbone", "BackboneInputError", "FrameIndexEmbed", "SingleFrame", "head_count", "load_backbone", "sincos_1d"]
