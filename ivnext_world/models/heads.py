"""Small heads on top of token sequences (InternVideo-Next, arXiv 2512.01342).

- :class:`AttentionPoolHead`: one query cross-attends over the tokens -> pooled vector (the
  encoder's clip-level output; Stage 1's final alignment compares it to the teacher's pooled output).
- :class:`AlignmentHead`: Linear, GELU, Linear, LayerNorm, L2-normalise (the official
  ``MLP_Decoder``): Stage 1 middle and final alignment (one per aligned student block), and the
  official Stage-2 latent-prediction head (``selfdist_decoder``, ``EPDConfig.latent_head_kind="mlp"``).
- :class:`LatentPredictionHead`: Linear, LayerNorm, L2-normalise (our earlier Stage-2 head, the
  ``latent_head_kind="linear"`` ablation).

Both alignment-style heads end in an L2 normalisation so the stage losses are ``2 - 2 cos``
computed as ``2 - 2 * (pred * target).sum(-1)`` against an L2-normalised target.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from timm.layers import Mlp
from torch import nn


class AttentionPoolHead(nn.Module):
    """Multi-head attention pooling with a single query.

    The query is either a learnable vector (``query="learned"``, default) or the mean of the input
    tokens (``query="mean"``, the official ``clip_projector``). Query, keys and values each get
    their own LayerNorm, as in the official head.

    Shapes: ``x (B, N, D)`` -> ``(B, out_dim)``; with ``return_attn`` also the attention of the query
    over the ``N`` tokens, averaged over heads, ``(B, N)`` (rows sum to 1).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 16,
        out_dim: int | None = None,
        query: Literal["learned", "mean"] = "learned",
        qkv_bias: bool = True,
    ):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        if query not in ("learned", "mean"):
            raise ValueError(f"query must be 'learned' or 'mean', got {query!r}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.out_dim = out_dim or dim
        self.query_type = query
        self.query = nn.Parameter(torch.zeros(1, 1, dim)) if query == "learned" else None
        self.norm_q = nn.LayerNorm(dim)
        self.norm_k = nn.LayerNorm(dim)
        self.norm_v = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.k = nn.Linear(dim, dim, bias=qkv_bias)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, self.out_dim)
        if self.query is not None:
            nn.init.trunc_normal_(self.query, std=0.02)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, n, hd)

    def forward(self, x: torch.Tensor, return_attn: bool = False):
        b, n, d = x.shape
        query = x.mean(1, keepdim=True) if self.query is None else self.query.expand(b, -1, -1)
        q = self._heads(self.q(self.norm_q(query)))  # (B, H, 1, hd)
        k = self._heads(self.k(self.norm_k(x)))  # (B, H, N, hd)
        v = self._heads(self.v(self.norm_v(x)))
        # One query row: materialising the (B, H, 1, N) weights is cheap and lets us return them.
        attn = (q @ k.transpose(-2, -1)).mul(self.head_dim ** -0.5).softmax(dim=-1)
        pooled = (attn @ v).transpose(1, 2).reshape(b, d)  # (B, D)
        pooled = self.proj(pooled)  # (B, out_dim)
        if return_attn:
            return pooled, attn.mean(1).squeeze(1)  # (B, N)
        return pooled


class AlignmentHead(nn.Module):
    """Linear, GELU, Linear, LayerNorm, L2-normalise: ``(..., in_dim)`` -> unit vectors ``(..., out_dim)``.

    Stage 1 uses one per aligned student block (middle alignment, visible tokens only) and one on
    the attention-pooled output (final alignment); Stage 2 one on the predictor outputs (official
    head). The hidden width defaults to ``in_dim``, as in the official code.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int | None = None, grad_checkpointing: bool = False):
        super().__init__()
        self.mlp = Mlp(in_dim, hidden_features=hidden_dim or in_dim, out_features=out_dim, act_layer=nn.GELU)
        self.norm = nn.LayerNorm(out_dim)
        self.grad_checkpointing = grad_checkpointing

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute the head in backward: Stage 1 runs six of them over every visible token."""
        self.grad_checkpointing = enable

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.norm(self.mlp(x)), dim=-1)


class LatentPredictionHead(nn.Module):
    """Linear, LayerNorm, L2-normalise: predictor tokens -> unit-norm teacher latents (Stage 2 ablation;
    the official head is :class:`AlignmentHead`)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.fc = nn.Linear(in_dim, out_dim)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.norm(self.fc(x)), dim=-1)
