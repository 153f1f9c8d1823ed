"""Video ViT encoder of InternVideo-Next (arXiv 2512.01342, Sec. 3.1 and the official code).

ViT on ``(B, C, T, H, W)`` clips (ImageNet-normalised): patch 14, tubelet 1, 224 px, four learnable
cls tokens, a learnable joint 3D sin-cos position embedding (interpolated for other clip lengths
and sizes), pre-norm RMSNorm blocks with full-width q/k RMSNorm, no qkv bias, LayerScale 1e-5,
GELU MLP, linearly increasing drop path, and no final norm. The encoder runs on the visible
tokens only (``mask``), which is what makes masked pretraining cheap.

Presets are registered with timm (``import ivnext_world`` is enough), e.g.
``timm.create_model("ivnext_vit_base_patch14_224")``. Nothing is ever downloaded: ``pretrained=True``
needs a local file, ``pretrained_cfg_overlay=dict(file=...)`` (or use ``checkpoint_path=...``). The
``.official_s2`` tag of Base and Large is the released InternVideo-Next Stage-2 encoder: it sets the
options those weights need (mean-query pooling, tanh GELU) and loads the official key layout
(:mod:`.official`)::

    timm.create_model("ivnext_vit_base_patch14_224.official_s2", pretrained=True,
                      pretrained_cfg_overlay=dict(file="internvideo_next_base_p14_res224_f16.pth"))
"""

from __future__ import annotations

from functools import partial
from typing import Any, Literal, Sequence

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model, resolve_pretrained_cfg
from torch import nn

from ..masking import visible_indices
from . import official
from .block import Block, init_transformer_weights, rescale_block_outputs, run_blocks
from .heads import AttentionPoolHead
from .patch_embed import PatchEmbed3D
from .pos_embed import VideoPosEmbed

__all__ = ["VideoViT", "PRESETS", "TAG_MODEL_ARGS", "resolve_block_indices"]


def resolve_block_indices(depth: int, indices: int | Sequence[int] | None) -> list[int]:
    """timm's convention: None = all blocks, int n = last n, list = those (negative from the end)."""
    if indices is None:
        return list(range(depth))
    if isinstance(indices, int):
        if not 0 < indices <= depth:
            raise ValueError(f"last-n indices must be in 1..{depth}, got {indices}")
        return list(range(depth - indices, depth))
    out = [i + depth if i < 0 else i for i in indices]
    if any(not 0 <= i < depth for i in out):
        raise ValueError(f"block indices {list(indices)} out of range for depth {depth}")
    return out


# "gelu_tanh" is what flash-attn's fused MLP computes, the path the released weights were trained on.
_MLP_ACTS = {"gelu": nn.GELU, "gelu_tanh": partial(nn.GELU, approximate="tanh")}


class VideoViT(nn.Module):
    """InternVideo-Next video encoder.

    Shapes: ``video (B, C, T, H, W)``; ``mask`` bool ``(B, N)`` over the ``N = T'*H'*W'`` patch
    tokens (True = masked/dropped, equal visible count per row). :meth:`forward_features` returns
    ``(B, num_cls + N_vis, D)``: the cls tokens first, then the visible patch tokens in grid order.
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 14,
        tubelet_size: int = 1,
        num_frames: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        qk_norm: bool = True,
        init_values: float | None = 1e-5,
        drop_path_rate: float = 0.0,
        num_cls_tokens: int = 4,
        pool_num_heads: int | None = None,
        pool_dim: int | None = None,
        pool_query: Literal["learned", "mean"] = "learned",
        mlp_act: Literal["gelu", "gelu_tanh"] = "gelu",
        grad_checkpointing: bool = False,
    ):
        super().__init__()
        self.embed_dim = self.num_features = embed_dim
        self.depth = depth
        self.num_heads = num_heads
        self.patch_size = patch_size
        self.tubelet_size = tubelet_size
        self.in_chans = in_chans
        self.num_prefix_tokens = num_cls_tokens
        self.grad_checkpointing = grad_checkpointing

        self.patch_embed = PatchEmbed3D(patch_size, tubelet_size, in_chans, embed_dim)
        self.grid_size = self.patch_embed.grid((num_frames, img_size, img_size))  # (T', H', W')
        self.cls_token = nn.Parameter(torch.zeros(1, num_cls_tokens, embed_dim))
        self.pos_embed = VideoPosEmbed(embed_dim, self.grid_size, num_prefix=num_cls_tokens)
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # stochastic depth grows with depth
        if mlp_act not in _MLP_ACTS:
            raise ValueError(f"mlp_act must be one of {sorted(_MLP_ACTS)}, got {mlp_act!r}")
        self.blocks = nn.ModuleList([
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias=qkv_bias, qk_norm=qk_norm,
                  init_values=init_values, drop_path=dpr[i], act_layer=_MLP_ACTS[mlp_act])
            for i in range(depth)
        ])
        self.head = AttentionPoolHead(embed_dim, pool_num_heads or num_heads, out_dim=pool_dim, query=pool_query)
        self.pool_dim = self.head.out_dim

        self.apply(init_transformer_weights)
        rescale_block_outputs(self.blocks)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        # load_state_dict (and timm's checkpoint_path) also accepts the official key layout and
        # position tables of other clip sizes.
        self.register_load_state_dict_pre_hook(official.load_state_dict_pre_hook)

    # ------------------------------------------------------------------ utilities
    def token_grid(self, video_thw: Sequence[int]) -> tuple[int, int, int]:
        """``(T', H', W')`` for a clip of ``(T, H, W)`` frames/pixels."""
        return self.patch_embed.grid(tuple(video_thw))

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"cls_token", "pos_embed.pos_embed"}

    # ------------------------------------------------------------------ forward
    def embed(
        self, video: torch.Tensor, mask: torch.Tensor | None = None, num_visible: int | None = None
    ) -> torch.Tensor:
        """Patch-embed, add positions, drop masked tokens, prepend cls: ``(B, num_cls + N_vis, D)``.

        With a ``mask`` only the visible patches are embedded and only their rows of the position
        table are added; the result equals embedding all tokens and then dropping the masked ones.
        ``num_visible``: the mask's visible count per row, if known (e.g.
        :func:`~ivnext_world.masking.visible_count`); without it the count is read from the mask,
        a device-to-host sync on a GPU and a graph break under ``torch.compile``.
        """
        b = video.shape[0]
        grid = self.token_grid(video.shape[2:])
        pos = self.pos_embed(grid)  # (1, num_cls + N, D)
        pos_patch = pos[0, self.num_prefix_tokens:]  # (N, D)
        if mask is None:
            x = self.patch_embed(video) + pos_patch  # (B, N, D)
        else:
            n = grid[0] * grid[1] * grid[2]
            if tuple(mask.shape) != (b, n):
                raise ValueError(f"mask must be (B, N)={(b, n)}, got {tuple(mask.shape)}")
            idx = visible_indices(mask, num_visible)  # (B, N_vis)
            x = self.patch_embed(video, idx) + F.embedding(idx, pos_patch)  # (B, N_vis, D)
        cls = self.cls_token.expand(b, -1, -1) + pos[:, : self.num_prefix_tokens]
        return torch.cat([cls, x], dim=1)

    def forward_features(
        self, video: torch.Tensor, mask: torch.Tensor | None = None, num_visible: int | None = None
    ) -> torch.Tensor:
        """Tokens after the last block: ``(B, num_cls + N_vis, D)`` (no final norm, as in the paper).

        ``num_visible``: see :meth:`embed`."""
        x, _ = run_blocks(self.blocks, self.embed(video, mask, num_visible), grad_checkpointing=self._ckpt())
        return x

    def forward_intermediates(
        self,
        video: torch.Tensor,
        mask: torch.Tensor | None = None,
        indices: int | Sequence[int] | None = None,
        return_prefix_tokens: bool = False,
        intermediates_only: bool = False,
        stop_early: bool = False,
        num_visible: int | None = None,
    ):
        """Outputs of chosen blocks (timm's interface, tokens only: ``NLC``).

        Args:
            indices: ``int`` n = last n blocks (Stage 1 uses 6), a list of block indices (negative
                counts from the end), or None = all blocks.
            return_prefix_tokens: keep the cls tokens in each intermediate.
            intermediates_only: return only the list.
            stop_early: with ``intermediates_only``, skip the blocks after the last requested one.
            num_visible: the mask's visible count per row, if known (see :meth:`embed`).

        Returns:
            ``(final, intermediates)`` with ``final (B, num_cls + N_vis, D)`` and each intermediate
            ``(B, N_vis, D)`` (or ``(B, num_cls + N_vis, D)`` with prefix tokens); or the list alone.
        """
        take = resolve_block_indices(len(self.blocks), indices)
        max_index = max(take)
        blocks = self.blocks[: max_index + 1] if (stop_early and intermediates_only) else self.blocks
        x, kept = run_blocks(blocks, self.embed(video, mask, num_visible), grad_checkpointing=self._ckpt(),
                             take=set(take))
        # run_blocks keeps block outputs in block order; return them in the order asked for.
        by_index = dict(zip(sorted(set(take)), kept))
        inter = [by_index[i] for i in take]
        if not return_prefix_tokens:
            inter = [y[:, self.num_prefix_tokens:] for y in inter]
        return inter if intermediates_only else (x, inter)

    def forward_head(self, x: torch.Tensor, return_attn: bool = False):
        """Attention-pool the tokens ``(B, L, D)`` (cls + patches) into ``(B, pool_dim)``.

        With ``return_attn`` also returns the pool query's attention over the ``L`` tokens ``(B, L)``.
        """
        return self.head(x, return_attn=return_attn)

    def forward(self, video: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Clip embedding ``(B, pool_dim)``."""
        return self.forward_head(self.forward_features(video, mask))

    def _ckpt(self) -> bool:
        return self.grad_checkpointing and self.training


# ---------------------------------------------------------------------- timm registry
PRESETS: dict[str, dict] = {
    # Tiny is for CPU tests and smoke runs; the others follow the paper / official scripts.
    "ivnext_vit_tiny_patch14_224": dict(embed_dim=192, depth=4, num_heads=3, pool_num_heads=3),
    "ivnext_vit_small_patch14_224": dict(embed_dim=384, depth=12, num_heads=6, pool_num_heads=16),
    "ivnext_vit_base_patch14_224": dict(embed_dim=768, depth=12, num_heads=12, pool_num_heads=16, pool_dim=768),
    "ivnext_vit_large_patch14_224": dict(embed_dim=1024, depth=24, num_heads=16, pool_num_heads=16, pool_dim=768),
    "ivnext_vit_1b_patch14_224": dict(
        embed_dim=1408, depth=40, num_heads=16, mlp_ratio=48 / 11, pool_num_heads=16, pool_dim=768
    ),
}


# Model options a pretrained tag implies (timm's pretrained cfgs describe weights, not arguments).
TAG_MODEL_ARGS: dict[str, dict[str, Any]] = {
    # The released encoders: the official head pools with the mean of all tokens as query, and the
    # weights were trained through flash-attn's fused MLP (tanh GELU).
    "official_s2": dict(pool_query="mean", mlp_act="gelu_tanh"),
}


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return dict(
        input_size=(3, 224, 224), mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD, num_classes=0,
        first_conv="patch_embed.proj", paper_ids="arXiv:2512.01342", **kwargs,
    )


def _official_cfg(size: str) -> dict[str, Any]:
    return _cfg(
        origin_url=f"https://huggingface.co/revliter/internvideo_next_{size}_p14_res224_f16",
        notes=(f"internvideo_next_{size}_p14_res224_f16: encoder after Stage 2, 16 frames at 224 px; load "
               "the local file with pretrained_cfg_overlay=dict(file=...)",),
    )


# No cfg has a url or hub id: weights come only from files the user names. The untagged cfg is the
# default (random init, our options); the tag only selects options and the official layout.
default_cfgs = generate_default_cfgs({
    "ivnext_vit_tiny_patch14_224": _cfg(),
    "ivnext_vit_small_patch14_224": _cfg(),
    "ivnext_vit_base_patch14_224": _cfg(),
    "ivnext_vit_base_patch14_224.official_s2": _official_cfg("base"),
    "ivnext_vit_large_patch14_224": _cfg(),
    "ivnext_vit_large_patch14_224.official_s2": _official_cfg("large"),
    "ivnext_vit_1b_patch14_224": _cfg(),
})


def _create(variant: str, pretrained: bool, **kwargs) -> VideoViT:
    kwargs.pop("cache_dir", None)  # nothing is cached: there is nothing to download
    cfg = resolve_pretrained_cfg(
        variant, pretrained_cfg=kwargs.pop("pretrained_cfg", None),
        pretrained_cfg_overlay=kwargs.pop("pretrained_cfg_overlay", None),
    )
    name = f"{variant}.{cfg.tag}" if cfg.tag else variant
    model_args = {**PRESETS[variant], **TAG_MODEL_ARGS.get(cfg.tag or "", {}), **kwargs}
    filter_fn = official.checkpoint_filter_fn
    if pretrained:
        if cfg.state_dict is None and not cfg.file:
            raise ValueError(
                f"{name}: pretrained=True needs a local checkpoint file (nothing is downloaded): pass "
                f"pretrained_cfg_overlay=dict(file='/path/to/weights.pth') or checkpoint_path='/path/to/weights.pth'"
            )
        if cfg.file:  # fail on a bad file (with its name) before the model is even built
            metadata = official.inspect_checkpoint_file(cfg.file)
            filter_fn = partial(official.checkpoint_filter_fn, source=str(cfg.file),
                                source_grid=official.grid_from_metadata(metadata))
    return build_model_with_cfg(
        VideoViT, variant, pretrained, pretrained_cfg=cfg, pretrained_filter_fn=filter_fn,
        kwargs_filter=("num_classes", "global_pool"), **model_args,
    )


@register_model
def ivnext_vit_tiny_patch14_224(pretrained: bool = False, **kwargs) -> VideoViT:
    return _create("ivnext_vit_tiny_patch14_224", pretrained, **kwargs)


@register_model
def ivnext_vit_small_patch14_224(pretrained: bool = False, **kwargs) -> VideoViT:
    return _create("ivnext_vit_small_patch14_224", pretrained, **kwargs)


@register_model
def ivnext_vit_base_patch14_224(pretrained: bool = False, **kwargs) -> VideoViT:
    return _create("ivnext_vit_base_patch14_224", pretrained, **kwargs)


@register_model
def ivnext_vit_large_patch14_224(pretrained: bool = False, **kwargs) -> VideoViT:
    return _create("ivnext_vit_large_patch14_224", pretrained, **kwargs)


@register_model
def ivnext_vit_1b_patch14_224(pretrained: bool = False, **kwargs) -> VideoViT:
    return _create("ivnext_vit_1b_patch14_224", pretrained, **kwargs)
