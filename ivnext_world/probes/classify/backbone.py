"""Which frozen backbone a classification probe reads: ``load_backbone(spec) -> FrozenBackbone``.

Every backbone is a frozen module whose ``forward(video)`` maps an ImageNet-style normalised clip
``(B, C, T, H, W)`` to patch tokens ``(B, N, D)`` (no cls tokens: the heads pool for themselves), and
which states what input it takes (``patch_size``, ``tubelet_size``, ``fixed_size``) and how to
normalise it (``mean``, ``std``). :meth:`FrozenBackbone.check_input` rejects a clip size the backbone
cannot take, naming both, before any data is read.

Specs (also stored in results and checkpoints, so a run can be rebuilt):

- ``"random"``: a randomly initialised encoder of the architecture ``random_model`` (an
  :class:`~ivnext_world.pretrain.EPDConfig`; seeded), the baseline pretraining must beat;
- ``"random:<preset>"``: a randomly initialised timm-registered video encoder by preset name, e.g.
  ``random:ivnext_vit_tiny_patch14_224``, built for the probe's clip size;
- a pretraining run or checkpoint folder (Stage 1 or Stage 2): its encoder;
- ``"timm:<model>[:<weights file>]"``: any timm model from a local file (nothing is downloaded;
  without a file: random init). A video encoder (``ivnext_vit_*``, e.g. the official
  ``ivnext_vit_base_patch14_224.official_s2``) encodes the clip; an image model encodes each frame
  on its own (the DINO-WM-style per-frame baseline) and its tokens are stacked in time order;
- ``"frame:<spec>"``: the single-frame baseline: only the clip's centre frame reaches ``<spec>``.

Per-frame image tokens carry no time information, so (as V-JEPA's frame-aggregation wrapper for
image models does) a fixed 1-D sin-cos embedding of the frame index is added to each frame's tokens
(``temporal_embed``); without it every head would be blind to frame order by construction.

A general ``Backbone`` interface is being built for the whole toolkit; this module is the small
function the probe needs until then, and keeps to that contract: tokens out, input size and
normalisation stated.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from ...data.transforms import IMAGENET_MEAN, IMAGENET_STD


class BackboneInputError(ValueError):
    """The probe's clip size (frames, pixels) is one the backbone cannot take."""


class FrozenBackbone(nn.Module):
    """Base class: frozen, eval mode forever, ``forward(video (B, C, T, H, W)) -> (B, N, D)``.

    Attributes: ``embed_dim``, ``num_heads`` (a sensible head count for attentive probes),
    ``patch_size``, ``tubelet_size`` (frames per token), ``img_size`` (native side in pixels),
    ``fixed_size`` (True: only ``img_size`` is accepted), ``mean``/``std`` (per channel),
    ``record`` (JSON-able description; ``record["spec"]`` rebuilds it).
    """

    embed_dim: int
    num_heads: int
    patch_size: int
    tubelet_size: int = 1
    img_size: int
    fixed_size: bool = False
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    record: dict

    def _freeze(self) -> None:
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "FrozenBackbone":
        return super().train(False)  # a frozen backbone never runs dropout / drop path

    @property
    def name(self) -> str:
        return self.record["spec"]

    def frames_used(self, num_frames: int) -> int:
        """How many of the clip's frames reach the encoder (1 for the single-frame baseline)."""
        return num_frames

    def check_input(self, num_frames: int, size: int) -> None:
        """Raise :class:`BackboneInputError` if clips of ``num_frames`` frames at ``size`` px do not fit."""
        problems = []
        if size % self.patch_size:
            problems.append(f"{size} px is not a multiple of its {self.patch_size}-px patches")
        if self.fixed_size and size != self.img_size:
            problems.append(f"it takes {self.img_size} px only (fixed position table), not {size} px")
        t = self.frames_used(num_frames)
        if t % self.tubelet_size:
            problems.append(f"{t} frames are not a multiple of its {self.tubelet_size}-frame tubelets")
        if problems:
            raise BackboneInputError(f"backbone {self.name!r} cannot take the probe's clips ({num_frames} frames "
                                     f"at {size}x{size} px): " + "; ".join(problems))

    def num_tokens(self, num_frames: int, size: int) -> int:
        t = self.frames_used(num_frames) // self.tubelet_size
        return t * (size // self.patch_size) ** 2


class VideoBackbone(FrozenBackbone):
    """A :class:`~ivnext_world.models.VideoViT`: last-block patch tokens of the whole clip."""

    def __init__(self, encoder, img_size: int, record: dict):
        super().__init__()
        self.encoder = encoder
        self.embed_dim, self.num_heads = encoder.embed_dim, encoder.num_heads
        self.patch_size, self.tubelet_size = encoder.patch_size, encoder.tubelet_size
        self.img_size, self.record = img_size, record
        self._freeze()

    @torch.no_grad()
    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.encoder.forward_features(video)[:, self.encoder.num_prefix_tokens:]  # (B, T'*H'*W', D)


def sincos_1d(n: int, dim: int) -> torch.Tensor:
    """``(n, dim)`` fixed sin-cos embedding of positions 0..n-1 (the Transformer's, 10000 base)."""
    half = dim // 2
    freq = 1.0 / 10000 ** (torch.arange(half, dtype=torch.float64) / max(half, 1))
    ang = torch.arange(n, dtype=torch.float64)[:, None] * freq[None]
    emb = torch.cat([ang.sin(), ang.cos()], 1)
    return torch.nn.functional.pad(emb, (0, dim - 2 * half)).float()


class FrameBackbone(FrozenBackbone):
    """A timm image model applied to every frame: ``(B, C, T, H, W) -> (B, T * h * w, D)``, frame-major."""

    def __init__(self, model: nn.Module, record: dict, temporal_embed: bool = True):
        super().__init__()
        self.model = model
        self.embed_dim = model.embed_dim
        blocks = getattr(model, "blocks", None)
        self.num_heads = getattr(getattr(blocks[0], "attn", None), "num_heads", 1) if blocks is not None else 1
        pe = model.patch_embed
        self.patch_size = int(pe.patch_size[0] if isinstance(pe.patch_size, (tuple, list)) else pe.patch_size)
        self.img_size = int(pe.img_size[0]) if getattr(pe, "img_size", None) is not None else 224
        self.fixed_size = not getattr(pe, "dynamic_img_size", False)
        cfg = getattr(model, "pretrained_cfg", {}) or {}
        self.mean, self.std = tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))
        self.temporal_embed = temporal_embed
        self.record = {**record, "temporal_embed": temporal_embed}
        self._freeze()

    @torch.no_grad()
    def forward(self, video: torch.Tensor) -> torch.Tensor:
        b, c, t = video.shape[:3]
        frames = video.transpose(1, 2).flatten(0, 1)  # (B*T, C, H, W)
        tokens = self.model.forward_features(frames)[:, getattr(self.model, "num_prefix_tokens", 0):]  # (B*T, n, D)
        tokens = tokens.unflatten(0, (b, t))  # (B, T, n, D)
        if self.temporal_embed:
            tokens = tokens + sincos_1d(t, self.embed_dim).to(tokens)[None, :, None]
        return tokens.flatten(1, 2)  # (B, T*n, D)


class SingleFrame(FrozenBackbone):
    """The single-frame baseline: the clip's centre frame only (repeated to fill one tubelet)."""

    def __init__(self, inner: FrozenBackbone):
        super().__init__()
        self.inner = inner
        for k in ("embed_dim", "num_heads", "patch_size", "img_size", "fixed_size", "mean", "std"):
            setattr(self, k, getattr(inner, k))
        self.record = {"spec": f"frame:{inner.record['spec']}", "inner": inner.record}
        self._freeze()

    def frames_used(self, num_frames: int) -> int:
        return self.inner.tubelet_size

    def check_input(self, num_frames: int, size: int) -> None:
        self.inner.check_input(self.inner.tubelet_size, size)

    def num_tokens(self, num_frames: int, size: int) -> int:
        return self.inner.num_tokens(self.inner.tubelet_size, size)

    @torch.no_grad()
    def forward(self, video: torch.Tensor) -> torch.Tensor:
        mid = video.shape[2] // 2
        frame = video[:, :, mid:mid + 1]  # (B, C, 1, H, W)
        return self.inner(frame.expand(-1, -1, self.inner.tubelet_size, -1, -1))


def load_backbone(
    spec: str, *, num_frames: int, img_size: int, random_model: dict | None = None, seed: int = 0,
    temporal_embed: bool = True, timm_kwargs: dict | None = None,
) -> FrozenBackbone:
    """Build the frozen backbone named by ``spec`` (see the module docstring) for clips of
    ``num_frames`` frames at ``img_size`` px; input-size problems raise :class:`BackboneInputError`.

    ``timm_kwargs`` go to ``timm.create_model`` for ``timm:`` and ``random:`` specs (e.g. a smaller
    width and depth for a random-init baseline of the same size as the encoder it is compared with).
    """
    if spec.startswith("frame:"):
        bb = SingleFrame(load_backbone(spec[len("frame:"):], num_frames=num_frames, img_size=img_size,
                                       random_model=random_model, seed=seed, temporal_embed=temporal_embed,
                                       timm_kwargs=timm_kwargs))
    elif spec in ("", "random"):
        from ...pretrain.epd import EPDConfig, build_epd

        model = dict(random_model) if random_model is not None else asdict(EPDConfig())
        model = {**model, "decoder": "none", "teacher_dim": None, "latent_head": False}  # only the encoder is used
        torch.manual_seed(seed)
        epd = build_epd(EPDConfig(**model))
        bb = VideoBackbone(epd.encoder, epd.cfg.img_size, {"spec": "random", "model": model, "seed": seed})
    elif spec.startswith("random:"):
        import timm

        name = spec[len("random:"):]
        torch.manual_seed(seed)
        enc = timm.create_model(name, pretrained=False, img_size=img_size, num_frames=num_frames, **(timm_kwargs or {}))
        bb = VideoBackbone(enc, img_size, {"spec": spec, "seed": seed, "kwargs": dict(timm_kwargs or {})})
    elif spec.startswith("timm:"):
        bb = _timm_backbone(spec, num_frames, img_size, seed, temporal_embed, dict(timm_kwargs or {}))
    else:
        from ...pretrain.run import load_epd, resolve_checkpoint

        ckpt = resolve_checkpoint(spec).resolve()
        epd, extra = load_epd(ckpt)
        bb = VideoBackbone(epd.encoder, epd.cfg.img_size, {"spec": str(ckpt), "stage": extra.get("stage")})
    bb.check_input(num_frames, img_size)
    return bb


def _timm_backbone(spec: str, num_frames: int, img_size: int, seed: int, temporal_embed: bool, extra: dict) -> FrozenBackbone:
    import timm

    from ...models import VideoViT

    _, name, *rest = spec.split(":", 2)
    weights = rest[0] if rest and rest[0] else None
    if weights is not None and not Path(weights).is_file():
        raise FileNotFoundError(f"backbone weights {weights} do not exist (spec {spec!r})")
    base = name.split(".")[0]
    if base not in timm.list_models():
        raise ValueError(f"backbone {spec!r}: timm has no model {base!r}")
    # Refuse an image size the architecture cannot tile before timm builds (or fails on) the model.
    patch = extra.get("patch_size") or _patch_size_from_name(base)
    if patch is not None and img_size % patch:
        raise BackboneInputError(f"backbone {spec!r} cannot take the probe's clips ({num_frames} frames at "
                                 f"{img_size}x{img_size} px): {img_size} px is not a multiple of its {patch}-px patches")
    torch.manual_seed(seed)
    kwargs = {"pretrained": weights is not None, "img_size": img_size, **extra}
    if weights is not None:
        kwargs["pretrained_cfg_overlay"] = {"file": weights}
    record = {"spec": spec, "seed": seed, "kwargs": extra}
    if base.startswith("ivnext_vit_"):
        enc = timm.create_model(name, num_frames=num_frames, **kwargs)
        if isinstance(enc, VideoViT):
            return VideoBackbone(enc, img_size, record)
    model = timm.create_model(name, num_classes=0, **kwargs)
    if not hasattr(model, "forward_features") or not hasattr(model, "patch_embed"):
        raise ValueError(f"backbone {spec!r}: {type(model).__name__} is not a ViT-style token model (no patch_embed)")
    return FrameBackbone(model, record, temporal_embed)


def _patch_size_from_name(name: str) -> int | None:
    import re

    m = re.search(r"patch(\d+)", name)
    return int(m.group(1)) if m else None


def head_count(dim: int, preferred: int) -> int:
    """The largest head count <= ``preferred`` that divides ``dim`` (attention needs dim % heads == 0)."""
    for h in range(max(1, preferred), 0, -1):
        if dim % h == 0:
            return h
    return 1


__all__ = ["BackboneInputError", "FrameBackbone", "FrozenBackbone", "SingleFrame", "VideoBackbone", "head_count",
           "load_backbone", "sincos_1d"]
