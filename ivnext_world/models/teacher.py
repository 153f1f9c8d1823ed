"""Frozen image teacher for Stage 1's semantic prior (InternVideo-Next, arXiv 2512.01342, Sec. 3.2).

Any timm ``VisionTransformer`` architecture (SigLIP in the paper; DINOv2 and CLIP in its ablation)
is applied frame by frame to a clip. It provides what Stage 1 needs:

- hidden states at chosen blocks (middle alignment, default: the inputs of the last 6 blocks,
  as the official teacher returns them),
- the pooled output (final alignment): the MAP head for SigLIP-style models, else timm's pooling
  (cls token / average), before any classifier,
- the pooling attention over patches (attention-guided masking): the MAP query's attention for
  SigLIP-style models, the last block's cls->patch attention (mean over heads) for cls models.
  Both are recomputed from the modules' own weights; nothing is monkey-patched.

Weights come only from a local file (``checkpoint_path``: safetensors or a torch state dict read
with ``weights_only=True``). Without one the teacher is random, logs a loud warning and sets
``is_pretrained = False``, which callers must record with every result.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import timm
import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import AttentionPoolLatent
from timm.models import VisionTransformer, load_state_dict
from torch import nn

from .vit import resolve_block_indices

__all__ = ["ImageTeacher", "TeacherOutput", "load_timm_checkpoint", "resize_token_grid"]

log = logging.getLogger(__name__)


@dataclass
class TeacherOutput:
    """Per-frame teacher outputs; rows are frames ``b * T + t``.

    Attributes:
        hidden: list of ``(B*T, N_img, D)`` patch tokens (no prefix tokens), one per requested block.
        pooled: ``(B*T, D)`` pooled image embedding.
        attn: ``(B*T, N_img)`` pooling attention over patches, rows sum to 1.
        grid: ``(H_img, W_img)`` token grid of ``hidden`` and ``attn``.
    """

    hidden: list[torch.Tensor]
    pooled: torch.Tensor
    attn: torch.Tensor
    grid: tuple[int, int]


def load_timm_checkpoint(model: nn.Module, path: str | Path) -> None:
    """Load a local state dict into a timm model, or fail naming every bad key.

    The model module's ``checkpoint_filter_fn`` (if any) is applied first, so original-format
    checkpoints and other image sizes (position-embedding resampling) are accepted as timm would.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"teacher checkpoint not found: {path}")
    state = load_state_dict(str(path), weights_only=True)
    filter_fn = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    if filter_fn is not None:
        try:
            state = filter_fn(state, model)
        except Exception as e:  # the filter assumes a matching architecture; say which file broke it
            raise ValueError(f"checkpoint {path} could not be adapted to {type(model).__name__}: {e}") from e
    expected = model.state_dict()
    missing = sorted(k for k in expected if k not in state)
    unexpected = sorted(k for k in state if k not in expected)
    mismatched = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in state if k in expected and state[k].shape != expected[k].shape
    )
    if missing or unexpected or mismatched:
        raise ValueError(
            f"checkpoint {path} does not match the teacher architecture:\n"
            f"  missing keys ({len(missing)}): {missing[:20]}\n"
            f"  unexpected keys ({len(unexpected)}): {unexpected[:20]}\n"
            f"  shape mismatches ({len(mismatched)}): {mismatched[:20]}"
        )
    model.load_state_dict(state, strict=True)


def resize_token_grid(x: torch.Tensor, src: tuple[int, int], dst: tuple[int, int]) -> torch.Tensor:
    """Resample tokens on an ``src`` grid to a ``dst`` grid: ``(R, Hs*Ws, D)`` -> ``(R, Hd*Wd, D)``.

    Bilinear with antialiasing, so shrinking averages neighbourhoods instead of skipping tokens.
    """
    if tuple(src) == tuple(dst):
        return x
    r, n, d = x.shape
    g = x.transpose(1, 2).reshape(r, d, *src)
    g = F.interpolate(g.float(), size=tuple(dst), mode="bilinear", align_corners=False, antialias=True)
    return g.reshape(r, d, -1).transpose(1, 2).to(x.dtype)


class ImageTeacher(nn.Module):
    """Frozen timm image ViT applied per frame to ``(B, C, T, H, W)`` clips.

    Args:
        model_name: timm architecture, e.g. ``vit_base_patch16_siglip_224``,
            ``vit_small_patch14_dinov2``, ``vit_base_patch16_clip_224``.
        checkpoint_path: local weights file; None = random weights (warned, ``is_pretrained=False``).
        layers: block indices whose outputs are returned as ``hidden`` (ascending; negative from
            the end). Default: the inputs of the last ``num_layers`` blocks, i.e. the outputs of
            blocks ``depth-1-num_layers .. depth-2``, as in the official teacher.
        num_layers: how many hidden states by default (6 in the paper).
        img_size: teacher input size; frames are resized to it (bicubic). Default: the model's.
        input_mean, input_std: normalisation of the incoming video (ImageNet); frames are
            re-normalised to the teacher's own ``pretrained_cfg`` mean/std.
        model_kwargs: extra ``timm.create_model`` arguments.
    """

    def __init__(
        self,
        model_name: str,
        checkpoint_path: str | Path | None = None,
        layers: Sequence[int] | None = None,
        num_layers: int = 6,
        img_size: int | None = None,
        input_mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
        input_std: Sequence[float] = IMAGENET_DEFAULT_STD,
        model_kwargs: dict | None = None,
    ):
        super().__init__()
        kwargs = dict(model_kwargs or {})
        if img_size is not None:
            kwargs["img_size"] = img_size
        self.model_name = model_name
        self.model = timm.create_model(model_name, pretrained=False, **kwargs)
        if not isinstance(self.model, VisionTransformer):
            raise TypeError(f"ImageTeacher supports timm VisionTransformer models, {model_name} is "
                            f"{type(self.model).__name__}")
        depth = len(self.model.blocks)
        if layers is None:
            if not 0 < num_layers < depth:
                raise ValueError(f"num_layers must be in 1..{depth - 1} for a {depth}-block teacher")
            layers = list(range(depth - 1 - num_layers, depth - 1))
        self.layers = sorted(set(resolve_block_indices(depth, list(layers))))

        self.checkpoint_path = str(checkpoint_path) if checkpoint_path is not None else None
        self.is_pretrained = checkpoint_path is not None
        if checkpoint_path is not None:
            load_timm_checkpoint(self.model, checkpoint_path)
        else:
            banner = "!" * 78
            log.warning(
                "\n%s\n!! ImageTeacher(%s) has RANDOM weights: no checkpoint_path was given.\n"
                "!! Its features, pooled outputs and attention are meaningless; every result\n"
                "!! produced with it must be labelled teacher.is_pretrained=False.\n%s",
                banner, model_name, banner,
            )

        cfg = self.model.pretrained_cfg
        t_mean, t_std = cfg.get("mean", IMAGENET_DEFAULT_MEAN), cfg.get("std", IMAGENET_DEFAULT_STD)
        # frames_teacher = frames * scale + shift maps the input normalisation to the teacher's.
        scale = torch.tensor(input_std) / torch.tensor(t_std)
        shift = (torch.tensor(input_mean) - torch.tensor(t_mean)) / torch.tensor(t_std)
        self.register_buffer("in_scale", scale.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("in_shift", shift.view(1, -1, 1, 1), persistent=False)

        self.model.requires_grad_(False)
        self.train(False)

    # A frozen teacher never leaves eval mode (dropout / drop path off), whatever the parent does.
    def train(self, mode: bool = True) -> "ImageTeacher":
        return super().train(False)

    @property
    def embed_dim(self) -> int:
        return self.model.embed_dim

    @property
    def img_size(self) -> tuple[int, int]:
        return tuple(self.model.patch_embed.img_size)

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(self.model.patch_embed.grid_size)

    @torch.no_grad()
    def forward(self, video: torch.Tensor, out_grid: tuple[int, int] | None = None) -> TeacherOutput:
        """Run the teacher on every frame.

        Args:
            video: ``(B, C, T, H, W)``, normalised with ``input_mean``/``input_std``.
            out_grid: ``(H', W')`` to resample ``hidden`` and ``attn`` to (the student's grid);
                None keeps the teacher's grid.
        """
        b, c, t, h, w = video.shape
        frames = video.transpose(1, 2).reshape(b * t, c, h, w)
        frames = frames * self.in_scale.to(frames.dtype) + self.in_shift.to(frames.dtype)
        if (h, w) != self.img_size:
            frames = F.interpolate(frames, size=self.img_size, mode="bicubic", align_corners=False)

        m = self.model
        depth, p = len(m.blocks), m.num_prefix_tokens
        need_attn_input = m.attn_pool is None  # cls / avg pooling reads the last block's attention
        take = sorted(set(self.layers) | ({depth - 2} if need_attn_input and depth > 1 else set()))
        final, inter = m.forward_intermediates(frames, indices=take, return_prefix_tokens=p > 0, output_fmt="NLC")
        if p > 0:
            inter = [torch.cat([pre, tok], dim=1) for tok, pre in inter]  # (BT, p + N, D)
        by_block = dict(zip(take, inter))

        pooled = m.forward_head(final, pre_logits=True)  # (BT, D)
        if m.attn_pool is not None:
            attn = self._map_attention(final)
        else:
            last_in = by_block[depth - 2] if depth > 1 else None
            if last_in is None:
                raise ValueError("cls-attention needs a teacher with at least 2 blocks")
            attn = self._last_block_attention(last_in)
        attn = attn / attn.sum(-1, keepdim=True).clamp_min(1e-12)

        hidden = [by_block[i][:, p:] for i in self.layers]
        grid = self.grid
        if out_grid is not None and tuple(out_grid) != grid:
            hidden = [resize_token_grid(x, grid, out_grid) for x in hidden]
            attn = resize_token_grid(attn.unsqueeze(-1), grid, out_grid).squeeze(-1).clamp_min(0)
            attn = attn / attn.sum(-1, keepdim=True).clamp_min(1e-12)
            grid = tuple(out_grid)
        return TeacherOutput(hidden=hidden, pooled=pooled, attn=attn, grid=grid)

    def _map_attention(self, final: torch.Tensor) -> torch.Tensor:
        """Attention of the MAP head's latent query over patches ``(BT, N_img)``, mean over heads."""
        pool: AttentionPoolLatent = self.model.attn_pool
        p = self.model.num_prefix_tokens
        x = final if self.model.pool_include_prefix else final[:, p:]
        if pool.pos_embed is not None:
            x = x + pool.pos_embed.unsqueeze(0).to(x.dtype)
        r, n, _ = x.shape
        h, hd = pool.num_heads, pool.head_dim
        q = pool.q(pool.latent.expand(r, -1, -1)).reshape(r, -1, h, hd).transpose(1, 2)  # (BT, H, Lq, hd)
        k = pool.kv(x).reshape(r, n, 2, h, hd)[:, :, 0].transpose(1, 2)  # (BT, H, N, hd)
        q, k = pool.q_norm(q), pool.k_norm(k)
        attn = (q.float() @ k.float().transpose(-2, -1) * pool.scale).softmax(-1)  # (BT, H, Lq, N)
        attn = attn.mean(dim=(1, 2))
        return attn[:, p:] if self.model.pool_include_prefix else attn

    def _last_block_attention(self, x: torch.Tensor) -> torch.Tensor:
        """Last block's attention to patches ``(BT, N_img)``: from the cls token, or (no cls) the mean
        over all query tokens. ``x`` is the last block's input ``(BT, p + N, D)``."""
        blk = self.model.blocks[-1]
        attn_mod = blk.attn
        if not hasattr(attn_mod, "qkv"):
            raise TypeError(f"{self.model_name}: last block attention has no fused qkv; cannot recompute it")
        r, n, _ = x.shape
        h, hd = attn_mod.num_heads, attn_mod.head_dim
        qkv = attn_mod.qkv(blk.norm1(x)).reshape(r, n, 3, h, hd).permute(2, 0, 3, 1, 4)
        q, k = attn_mod.q_norm(qkv[0]), attn_mod.k_norm(qkv[1])  # (BT, H, L, hd), timm norms per head
        attn = (q.float() @ k.float().transpose(-2, -1) * attn_mod.scale).softmax(-1)  # (BT, H, L, L)
        p = self.model.num_prefix_tokens
        if self.model.has_class_token:
            return attn[:, :, 0, p:].mean(1)
        return attn[:, :, p:, p:].mean(dim=(1, 2))
