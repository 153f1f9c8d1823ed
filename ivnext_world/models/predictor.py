"""Predictor of InternVideo-Next's Encoder-Predictor-Decoder (arXiv 2512.01342, Sec. 3.1).

The predictor sees the encoder's outputs at the visible positions and a learnable mask token at
every masked position, adds its own position embedding, keeps the cls tokens, and runs
transformer blocks (the same :class:`~ivnext_world.models.block.Block` as the encoder) over the
full sequence. Stage 1 feeds its masked-position outputs to the diffusion decoder; Stage 2 maps
them to the frozen teacher's latents; the latent world model reuses it with action/proprio tokens
(``extra_tokens``) and a block-causal ``attn_mask``.

The paper initialises it from the last 5 layers of ModernBERT-large (1024 wide) and reports a plain
5-layer transformer close behind; the plain transformer is our default.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ..masking import visible_indices
from .block import Block, init_transformer_weights, rescale_block_outputs, run_blocks
from .pos_embed import VideoPosEmbed

__all__ = ["Predictor", "PredictorOutput"]


class PredictorOutput(NamedTuple):
    """Predictor outputs, split by role.

    Attributes:
        patches: ``(B, N, D_pred)`` one token per grid position, in grid order (select the masked
            ones with ``masking.gather_tokens(patches, masking.masked_indices(mask))``).
        cls: ``(B, num_cls, D_pred)``.
        extra: ``(B, K, D_pred)`` outputs at the ``extra_tokens`` positions, or None.
    """

    patches: torch.Tensor
    cls: torch.Tensor
    extra: torch.Tensor | None


class Predictor(nn.Module):
    """Transformer over ``[cls | full patch grid | extra tokens]``.

    Sequence layout (length ``L = num_cls + N + K``) that ``attn_mask`` must index: positions
    ``0..num_cls-1`` are the cls tokens, then the ``N = T'*H'*W'`` grid positions time-major, then
    the ``K`` extra tokens in the given order.

    Args:
        enc_dim: encoder width (input).
        embed_dim: predictor width (1024 in the paper, like ModernBERT-large).
        depth, num_heads, mlp_ratio: transformer shape (paper: 5 layers).
        grid_size: default token grid ``(T', H', W')`` for the position table (interpolated for others).
        num_cls_tokens: must match the encoder's.
        final_norm: RMSNorm on the output; the pre-norm residual stream is otherwise un-normalised
            and the decoder/heads behind it train better on normalised inputs (as in V-JEPA).
    """

    def __init__(
        self,
        enc_dim: int = 768,
        embed_dim: int = 1024,
        depth: int = 5,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        grid_size: tuple[int, int, int] = (16, 16, 16),
        num_cls_tokens: int = 4,
        qkv_bias: bool = False,
        qk_norm: bool = True,
        init_values: float | None = 1e-5,
        drop_path_rate: float = 0.0,
        final_norm: bool = True,
        grad_checkpointing: bool = False,
    ):
        super().__init__()
        self.enc_dim = enc_dim
        self.embed_dim = embed_dim
        self.num_prefix_tokens = num_cls_tokens
        self.grid_size = tuple(grid_size)
        self.grad_checkpointing = grad_checkpointing
        self.input_proj = nn.Linear(enc_dim, embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = VideoPosEmbed(embed_dim, self.grid_size, num_prefix=num_cls_tokens)
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList([
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias=qkv_bias, qk_norm=qk_norm,
                  init_values=init_values, drop_path=dpr[i])
            for i in range(depth)
        ])
        self.norm = nn.RMSNorm(embed_dim, eps=1e-6) if final_norm else nn.Identity()

        self.apply(init_transformer_weights)
        rescale_block_outputs(self.blocks)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"mask_token", "pos_embed.pos_embed"}

    def forward(
        self,
        tokens: torch.Tensor,
        mask: torch.Tensor | None = None,
        grid: tuple[int, int, int] | None = None,
        extra_tokens: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> PredictorOutput:
        """Predict every grid position from the visible encoder tokens.

        Args:
            tokens: encoder output ``(B, num_cls + N_vis, D_enc)`` (cls first, visible tokens in
                grid order, as :meth:`VideoViT.forward_features` returns them).
            mask: bool ``(B, N)``, True = masked (gets the mask token). None = nothing masked.
            grid: token grid ``(T', H', W')`` of the clip; default ``self.grid_size``.
            extra_tokens: optional ``(B, K, D_pred)`` tokens appended after the grid (e.g. actions);
                they get no position embedding here, the caller embeds them.
            attn_mask: optional SDPA mask broadcastable to ``(B, heads, L, L)`` (bool: True = may
                attend), e.g. block-causal across time.

        Returns:
            :class:`PredictorOutput` with ``patches (B, N, D_pred)``.
        """
        grid = self.grid_size if grid is None else tuple(grid)
        n = grid[0] * grid[1] * grid[2]
        b, p = tokens.shape[0], self.num_prefix_tokens
        x = self.input_proj(tokens)  # (B, num_cls + N_vis, D_pred)
        cls, vis = x[:, :p], x[:, p:]

        if mask is None:
            if vis.shape[1] != n:
                raise ValueError(f"without a mask the encoder must give all {n} tokens, got {vis.shape[1]}")
            full = vis
        else:
            if tuple(mask.shape) != (b, n):
                raise ValueError(f"mask must be (B, N)=({b}, {n}) for grid {grid}, got {tuple(mask.shape)}")
            # The visible count is the encoder's token count: nothing is read back from the device
            # (a mask with another count fails the device-side assert in visible_indices).
            idx = visible_indices(mask, vis.shape[1])  # (B, N_vis)
            full = self.mask_token.to(vis.dtype).expand(b, n, -1).clone()  # (B, N, D_pred)
            full.scatter_(1, idx.unsqueeze(-1).expand(-1, -1, vis.shape[-1]), vis)

        pos = self.pos_embed(grid)  # (1, num_cls + N, D_pred)
        parts = [cls + pos[:, :p], full + pos[:, p:]]
        if extra_tokens is not None:
            if extra_tokens.shape[0] != b or extra_tokens.shape[-1] != self.embed_dim:
                raise ValueError(f"extra_tokens must be (B, K, {self.embed_dim}), got {tuple(extra_tokens.shape)}")
            parts.append(extra_tokens.to(full.dtype))
        x = torch.cat(parts, dim=1)  # (B, L, D_pred)

        x, _ = run_blocks(self.blocks, x, attn_mask=attn_mask,
                          grad_checkpointing=self.grad_checkpointing and self.training)
        x = self.norm(x)
        extra = x[:, p + n:] if extra_tokens is not None else None
        return PredictorOutput(patches=x[:, p:p + n], cls=x[:, :p], extra=extra)
