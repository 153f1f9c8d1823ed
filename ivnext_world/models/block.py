"""The transformer block shared by the encoder and the predictor (InternVideo-Next, arXiv 2512.01342).

Pre-norm block: ``x + ls1 * attn(norm1(x))``, ``x + ls2 * mlp(norm2(x))`` with RMSNorm, LayerScale
(init 1e-5), drop path and a GELU MLP, built from timm's layers. The attention is ours rather than
``timm.layers.Attention`` for one reason: the paper's q/k RMSNorm normalises the full-width query
and key (``RMSNorm(dim)``, as in the official weights, whose ``q_norm.weight`` has ``dim`` entries),
whereas timm normalises each head separately. Attention runs through
``F.scaled_dot_product_attention`` and accepts an attention mask (block-causal world model).

RMSNorm is PyTorch's ``nn.RMSNorm`` (``F.rms_norm``): one fused kernel on CUDA that inductor also
fuses, where timm's ``RmsNorm`` runs five unfused ops with fp32 intermediates. Same formula
(``x * rsqrt(mean(x^2) + eps) * weight``), same parameter name (``weight``), so checkpoints written
with timm's norm load unchanged; under CUDA bf16 autocast both compute and return fp32.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from timm.layers import DropPath, LayerScale, Mlp
from torch import nn


class Attention(nn.Module):
    """Multi-head self-attention with full-width RMS-normalised q and k.

    Shapes: ``x (B, L, D)`` -> ``(B, L, D)``. ``attn_mask`` follows SDPA: bool (True = may attend)
    or additive float, broadcastable to ``(B, heads, L, L)``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = False,
        qk_norm: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.q_norm = nn.RMSNorm(dim, eps=1e-6) if qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(dim, eps=1e-6) if qk_norm else nn.Identity()
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, L, hd)

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        kv_cache: tuple[torch.Tensor, torch.Tensor] | None = None,
        return_kv: bool = False,
    ):
        """Attend from ``x (B, L, D)``; returns ``(B, L, D)``, or ``(out, (k, v))`` with ``return_kv``.

        ``kv_cache``: keys and values ``(B, heads, L_past, hd)`` of earlier tokens (as returned
        before); the queries of ``x`` attend to them and to ``x`` itself (``attn_mask`` then indexes
        ``(L, L_past + L)``). The returned ``(k, v)`` cover past and new tokens. Keys are cached
        after the q/k norm, which is per token, so a cached step equals recomputing the sequence.
        """
        b, n, d = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # each (B, L, D)
        q, k = self.q_norm(q), self.k_norm(k)
        k, v = self._heads(k), self._heads(v)  # (B, H, L, hd)
        if kv_cache is not None:
            k = torch.cat([kv_cache[0], k], dim=2)  # (B, H, L_past + L, hd)
            v = torch.cat([kv_cache[1], v], dim=2)
        out = F.scaled_dot_product_attention(
            self._heads(q), k, v,
            attn_mask=attn_mask,
            dropout_p=self.attn_drop if self.training else 0.0,
        )  # (B, H, L, hd)
        out = self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, d)))
        return (out, (k, v)) if return_kv else out


class Block(nn.Module):
    """Pre-norm transformer block (RMSNorm, q/k-norm attention, LayerScale, drop path, GELU MLP).

    ``act_layer`` builds the MLP activation: exact ``nn.GELU`` by default; the released
    InternVideo-Next weights were trained with the tanh approximation (flash-attn's fused MLP).

    Shapes: ``x (B, L, D)`` -> ``(B, L, D)``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        qk_norm: bool = True,
        init_values: float | None = 1e-5,
        drop_path: float = 0.0,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        act_layer: Callable[[], nn.Module] = nn.GELU,
    ):
        super().__init__()
        self.norm1 = nn.RMSNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, qk_norm=qk_norm,
                              attn_drop=attn_drop, proj_drop=proj_drop)
        self.ls1 = LayerScale(dim, init_values=init_values) if init_values else nn.Identity()
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.RMSNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, hidden_features=int(dim * mlp_ratio), act_layer=act_layer, drop=proj_drop)
        self.ls2 = LayerScale(dim, init_values=init_values) if init_values else nn.Identity()
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        kv_cache: tuple[torch.Tensor, torch.Tensor] | None = None,
        return_kv: bool = False,
    ):
        """``(B, L, D)`` -> ``(B, L, D)``; with ``return_kv`` also this block's keys/values
        (past + new, see :meth:`Attention.forward`) for the next cached step."""
        a = self.attn(self.norm1(x), attn_mask=attn_mask, kv_cache=kv_cache, return_kv=return_kv)
        a, kv = a if return_kv else (a, None)
        x = x + self.drop_path1(self.ls1(a))
        x = x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
        return (x, kv) if return_kv else x


def init_transformer_weights(module: nn.Module) -> None:
    """ViT init: truncated normal (std 0.02) for linear weights, zero biases; use with ``module.apply``."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def rescale_block_outputs(blocks: nn.ModuleList) -> None:
    """Divide each block's output projections by ``sqrt(2 * layer_id)`` (BEiT / official init),
    so the residual stream does not grow with depth at initialisation."""
    with torch.no_grad():
        for layer_id, blk in enumerate(blocks, start=1):
            blk.attn.proj.weight.div_((2.0 * layer_id) ** 0.5)
            blk.mlp.fc2.weight.div_((2.0 * layer_id) ** 0.5)


def run_blocks(
    blocks: nn.ModuleList,
    x: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    grad_checkpointing: bool = False,
    take: set[int] | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run ``blocks`` in order; return the output and the outputs of the block indices in ``take``.

    With ``grad_checkpointing`` (training only), each block's activations are recomputed in the
    backward pass instead of stored (``torch.utils.checkpoint``, non-reentrant).
    """
    kept: list[torch.Tensor] = []
    for i, blk in enumerate(blocks):
        if grad_checkpointing and torch.is_grad_enabled():
            x = torch.utils.checkpoint.checkpoint(blk, x, attn_mask, use_reentrant=False)
        else:
            x = blk(x, attn_mask=attn_mask)
        if take is not None and i in take:
            kept.append(x)
    return x, kept
