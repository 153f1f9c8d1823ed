"""The :class:`Backbone` contract: frames in, per-frame patch tokens (+ prefix tokens, pooled vector,
hidden states of chosen layers) out; each backbone states its own input size and normalisation.

See the package docstring (:mod:`ivnext_world.backbones`) for the conventions every implementation
keeps; this module holds the shared machinery (input handling, reshaping, latents, fingerprints).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_video_transform
from ..models.vit import resolve_block_indices

__all__ = ["Backbone", "BackboneInputError", "BackboneOutput", "probe_layers"]


class BackboneInputError(ValueError):
    """Frames of a size (or a clip of a length) the backbone cannot take."""


def probe_layers(depth: int, n: int = 4) -> list[int]:
    """Block indices at L/4, L/2, 3L/4, L (0-based) for ``depth`` blocks: 12 -> [2, 5, 8, 11] (Probe3D)."""
    return [max(1, round(depth * k / n)) - 1 for k in range(1, n + 1)]


@dataclass
class BackboneOutput:
    """Per-frame outputs. Leading dims ``L`` are ``(R,)`` from :meth:`Backbone.forward_frames` and
    ``(B, T)`` from :meth:`Backbone.encode`.

    Attributes:
        patches: ``(*L, N, D)`` last-layer patch tokens in row-major grid order, ``N = h * w``.
        prefix: ``(*L, p, D)`` the prefix (cls) tokens the backbone keeps, ``p = num_prefix_tokens`` (may be 0).
        pooled: ``(*L, P)`` one vector per frame (None when not asked for).
        hidden: patch tokens ``(*L, N, D)`` after each requested block (see :meth:`Backbone.forward_frames`).
        grid: ``(h, w)``.
    """

    patches: torch.Tensor
    prefix: torch.Tensor
    pooled: torch.Tensor | None
    grid: tuple[int, int]
    hidden: list[torch.Tensor] = field(default_factory=list)

    def map(self, fn) -> "BackboneOutput":
        return BackboneOutput(fn(self.patches), fn(self.prefix), None if self.pooled is None else fn(self.pooled),
                              self.grid, [fn(h) for h in self.hidden])


class Backbone(nn.Module):
    """A frozen feature extractor (eval mode forever, no gradients); see :mod:`ivnext_world.backbones`.

    Subclasses set the attributes below in ``__init__`` (through :meth:`_setup`) and implement
    :meth:`forward_frames` (and :meth:`forward_clip` for video models).

    Attributes:
        kind: ``"ours"`` | ``"official"`` | ``"vjepa2"`` | ``"timm"`` | ``"hf"``.
        spec: the string that named it (``load_backbone(spec)``); ``record``: JSON-able dict that
            rebuilds it (:func:`~ivnext_world.backbones.backbone_from_record`).
        img_size: side of the square frames it takes (frames are resized to it).
        patch_size, tubelet_size: pixels per patch side; frames per token-frame (1: image models).
        mean, std: per-channel normalisation of its input (frames in [0, 1]).
        embed_dim, pool_dim, depth, num_heads: token width, pooled width, blocks, attention heads.
        num_prefix_tokens: prefix (cls) tokens kept in its outputs (0 for image models and V-JEPA 2).
        is_pretrained: False for random weights (loudly warned at build time).
        fixed_size: True if it takes ``img_size`` frames only (V-JEPA 2's RoPE grid, a timm model
            without dynamic image size); the others resample their position tables.
    """

    kind: str = ""
    fixed_size: bool = False

    def _setup(self, *, spec: str, record: dict, img_size: int, patch_size: int, tubelet_size: int, embed_dim: int,
               pool_dim: int, depth: int, num_heads: int, num_prefix_tokens: int,
               mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
               is_pretrained: bool = True) -> None:
        if img_size % patch_size:
            raise BackboneInputError(f"backbone {spec!r}: image size {img_size} is not a multiple of its "
                                     f"{patch_size}-px patches")
        self.spec, self.record = spec, dict(record)
        self.img_size, self.patch_size, self.tubelet_size = int(img_size), int(patch_size), int(tubelet_size)
        self.embed_dim, self.pool_dim = int(embed_dim), int(pool_dim)
        self.depth, self.num_heads = int(depth), int(num_heads)
        self.num_prefix_tokens = int(num_prefix_tokens)
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.is_pretrained = is_pretrained
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "Backbone":
        return super().train(False)  # frozen: no dropout / drop path, whatever a parent module does

    # ------------------------------------------------------------------ geometry
    @property
    def grid(self) -> tuple[int, int]:
        """``(h, w)`` patch grid of one frame at ``img_size``."""
        side = self.img_size // self.patch_size
        return side, side

    @property
    def num_patches(self) -> int:
        h, w = self.grid
        return h * w

    def tokens_per_frame(self, pool: int = 1) -> int:
        """``n`` of the world-model latents: prefix tokens + patch tokens pooled ``pool x pool``."""
        h, w = self.grid
        if h % pool or w % pool:
            raise ValueError(f"pool={pool} does not divide the {h}x{w} patch grid of backbone {self.spec!r}")
        return self.num_prefix_tokens + (h // pool) * (w // pool)

    @property
    def name(self) -> str:
        return self.spec

    def num_tokens(self, num_frames: int, size: int) -> int:
        """Patch tokens :meth:`forward` returns for a clip of ``num_frames`` frames at ``size`` px."""
        return num_frames // self.tubelet_size * (size // self.patch_size) ** 2

    def check_input(self, num_frames: int, size: int) -> None:
        """Raise :class:`BackboneInputError` for clips it cannot take in :meth:`forward_clip`."""
        problems = []
        if size % self.patch_size:
            problems.append(f"{size} px is not a multiple of its {self.patch_size}-px patches")
        if self.fixed_size and size != self.img_size:
            problems.append(f"it takes {self.img_size} px only, not {size} px (load it with img_size={size})")
        if num_frames % self.tubelet_size:
            problems.append(f"{num_frames} frames are not a multiple of its {self.tubelet_size}-frame tubelets")
        if problems:
            raise BackboneInputError(f"backbone {self.spec!r} cannot take clips of {num_frames} frames at "
                                     f"{size}x{size} px: " + "; ".join(problems))

    def resolve_layers(self, layers: Sequence[int] | None) -> list[int]:
        """Block indices (negative from the end; None: :func:`probe_layers`) -> 0-based indices."""
        return resolve_block_indices(self.depth, list(layers) if layers is not None else probe_layers(self.depth))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ------------------------------------------------------------------ input
    def transform(self):
        """``(T, 3, H, W)`` uint8 -> ``(T, 3, S, S)`` float: short side to ``img_size``, centre crop,
        this backbone's normalisation (the world model's frames, cached or on the fly)."""
        return build_video_transform(False, self.img_size, crop_pct=1.0, flip=False, mean=self.mean, std=self.std)

    def normalise(self, frames: torch.Tensor, crop: bool = True) -> torch.Tensor:
        """Frames ``(..., 3, H, W)`` uint8 or float in [0, 1] -> ``(..., 3, S, S)`` normalised.

        ``crop=True``: :meth:`transform` (aspect kept, centre crop). ``crop=False``: the whole frame
        squeezed to ``S x S`` (bilinear, antialiased): what dense probes use, whose outputs are resized
        back onto the original frame.
        """
        if frames.dim() < 3 or frames.shape[-3] != 3:
            raise ValueError(f"frames must be (..., 3, H, W), got {tuple(frames.shape)}")
        lead = frames.shape[:-3]
        x = frames.reshape(-1, *frames.shape[-3:])
        if crop:
            x = self.transform()(x)
        else:
            x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
            if x.shape[-2:] != (self.img_size, self.img_size):
                x = F.interpolate(x, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False,
                                  antialias=True)
            x = (x - x.new_tensor(self.mean).view(1, 3, 1, 1)) / x.new_tensor(self.std).view(1, 3, 1, 1)
        return x.reshape(*lead, *x.shape[-3:])

    # ------------------------------------------------------------------ forward
    def forward_frames(self, x: torch.Tensor, layers: Sequence[int] | None = None,
                       pooled: bool = True) -> BackboneOutput:
        """Each frame on its own: normalised ``(R, 3, S, S)`` -> outputs with leading dim ``R``.

        A video backbone sees the frame repeated ``tubelet_size`` times (one token-frame per frame).
        ``layers`` (block indices, negative from the end): ``hidden`` holds the patch tokens after
        each of them, passed through the backbone's final token norm when it has one (DINOv2's
        ``get_intermediate_layers(norm=True)`` convention), so the last block's entry equals
        ``patches``. None or empty: no hidden states.
        """
        raise NotImplementedError

    def forward_clip(self, video: torch.Tensor) -> torch.Tensor:
        """A whole clip in one pass: normalised ``(B, 3, T, S, S)`` -> patch tokens ``(B, T', N, D)``,
        ``T' = T / tubelet_size`` (video models attend across time; image models encode each frame)."""
        b, c, t = video.shape[:3]
        self.check_input(t, video.shape[-1])
        out = self.forward_frames(video.transpose(1, 2).flatten(0, 1), pooled=False)
        return out.patches.unflatten(0, (b, t))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """``(B, 3, T, S, S)`` normalised -> ``(B, T' * N, D)`` patch tokens (the classification probe's input)."""
        return self.forward_clip(video).flatten(1, 2)

    @torch.no_grad()
    def encode(self, frames: torch.Tensor, layers: Sequence[int] | None = None, crop: bool = True,
               pooled: bool = True) -> BackboneOutput:
        """Raw frames ``(B, T, 3, H, W)`` uint8 or float in [0, 1] -> per-frame outputs ``(B, T, ...)``."""
        if frames.dim() != 5 or frames.shape[2] != 3:
            raise ValueError(f"frames must be (B, T, 3, H, W), got {tuple(frames.shape)}")
        b, t = frames.shape[:2]
        x = self.normalise(frames.to(self.device), crop=crop).flatten(0, 1)  # (B*T, 3, S, S)
        return self.forward_frames(x, layers, pooled).map(lambda y: y.unflatten(0, (b, t)))

    def latents(self, video: torch.Tensor, pool: int = 1) -> torch.Tensor:
        """The world model's latents: normalised ``(B, T, 3, S, S)`` -> ``(B, T, n, D)``, each frame
        its prefix tokens then its patch tokens (average-pooled ``pool x pool``)."""
        b, t = video.shape[:2]
        out = self.forward_frames(video.flatten(0, 1), pooled=False)
        patches = out.patches
        if pool > 1:
            h, w = self.grid
            if h % pool or w % pool:
                raise ValueError(f"pool={pool} does not divide the {h}x{w} patch grid of backbone {self.spec!r}")
            g = patches.transpose(1, 2).unflatten(2, (h, w))  # (R, D, h, w)
            patches = F.avg_pool2d(g, pool).flatten(2).transpose(1, 2)  # (R, hw/pool^2, D)
        tokens = torch.cat([out.prefix, patches], dim=1)  # (R, n, D)
        return tokens.unflatten(0, (b, t))

    # ------------------------------------------------------------------ identity
    def fingerprint(self) -> str:
        """SHA-256 (16 hex) of every tensor's name, dtype, shape and bytes: the same weights give the
        same fingerprint wherever they were loaded from. Computed once (the weights are frozen)."""
        if getattr(self, "_fingerprint", None) is None:
            self._fingerprint = self._hash_weights()
        return self._fingerprint

    def _hash_weights(self) -> str:
        h = hashlib.sha256(self.kind.encode())
        for name, t in sorted(self.state_dict().items()):
            t = t.detach().cpu().contiguous()
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()[:16]

    def describe(self) -> str:
        h, w = self.grid
        return (f"{self.kind} backbone {self.spec!r}: {self.img_size} px, {h}x{w} patches of {self.patch_size}, "
                f"tubelet {self.tubelet_size}, width {self.embed_dim}, {self.num_prefix_tokens} prefix tokens"
                f"{'' if self.is_pretrained else ', RANDOM weights'}")
