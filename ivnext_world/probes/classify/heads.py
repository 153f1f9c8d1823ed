"""Classification heads on frozen tokens ``(B, N, D) -> logits (B, num_classes)``.

- ``attentive``: V-JEPA 2's attentive probe (``src/models/attentive_pooler.py``, used with
  ``num_probe_blocks: 4`` in its ``configs/eval``): ``depth - 1`` pre-norm self-attention blocks over
  the tokens, then one cross-attention block in which a learnable query attends over them, then a
  linear classifier. The cross-attention block is V-JEPA 2's: LayerNorm on the tokens, multi-head
  attention with q from the query and k, v from the tokens (no output projection), a residual onto
  the query, then a pre-norm MLP with its own residual.
- ``pooler``: the same with ``depth=1``: the single cross-attention pooler (V-JEPA's default probe).
- ``linear``: the mean of the tokens, batch-normalised without affine parameters (MAE's linear-probe
  recipe: it makes one learning rate fit backbones whose feature scales differ by orders of
  magnitude), then a linear classifier.

Initialisation as V-JEPA 2: truncated normal (std 0.02) for linear layers and the query, zero biases,
and the output layers of block ``i`` (attention projection, second MLP layer) divided by ``sqrt(2 i)``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from timm.models.vision_transformer import Block
from torch import nn

HEAD_KINDS = ("linear", "pooler", "attentive")


class CrossAttentionBlock(nn.Module):
    """``(query (B, Q, D), tokens (B, N, D)) -> (B, Q, D)``: the query attends over the tokens."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"probe width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)

    def forward(self, query: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        h = self.num_heads
        q = self.q(query).unflatten(-1, (h, d // h)).transpose(1, 2)  # (B, h, Q, d/h)
        k, v = self.kv(self.norm1(x)).unflatten(-1, (2, h, d // h)).permute(2, 0, 3, 1, 4)  # each (B, h, N, d/h)
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)  # (B, Q, D)
        query = query + y
        return query + self.mlp(self.norm2(query))


class AttentiveClassifier(nn.Module):
    """``depth - 1`` self-attention blocks, a cross-attention block with one learnable query, a linear layer.

    ``depth=4`` is V-JEPA 2's attentive probe; ``depth=1`` is the single cross-attention pooler.
    """

    def __init__(self, dim: int, num_classes: int, depth: int = 4, num_heads: int = 16, mlp_ratio: float = 4.0):
        super().__init__()
        if depth < 1:
            raise ValueError(f"an attentive probe needs depth >= 1 (the cross-attention block), got {depth}")
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio, qkv_bias=True) for _ in range(depth - 1))
        self.query = nn.Parameter(torch.zeros(1, 1, dim))
        self.cross = CrossAttentionBlock(dim, num_heads, mlp_ratio)
        self.linear = nn.Linear(dim, num_classes)
        self.apply(_init)
        nn.init.trunc_normal_(self.query, std=0.02)
        for i, blk in enumerate(self.blocks, start=1):  # deeper residual branches start smaller
            blk.attn.proj.weight.data.div_(math.sqrt(2.0 * i))
            blk.mlp.fc2.weight.data.div_(math.sqrt(2.0 * i))
        self.cross.mlp.fc2.weight.data.div_(math.sqrt(2.0 * max(1, len(self.blocks))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)  # (B, N, D)
        pooled = self.cross(self.query.expand(len(x), -1, -1), x)[:, 0]  # (B, D)
        return self.linear(pooled)  # (B, C)


class LinearClassifier(nn.Module):
    """Mean over tokens -> BatchNorm (no affine) -> linear: ``(B, N, D) -> (B, C)``."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.norm = nn.BatchNorm1d(dim, affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, num_classes)
        self.apply(_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(x.mean(1)))


def build_head(kind: str, dim: int, num_classes: int, num_heads: int, depth: int = 4, mlp_ratio: float = 4.0) -> nn.Module:
    if kind == "linear":
        return LinearClassifier(dim, num_classes)
    if kind == "pooler":
        return AttentiveClassifier(dim, num_classes, depth=1, num_heads=num_heads, mlp_ratio=mlp_ratio)
    if kind == "attentive":
        return AttentiveClassifier(dim, num_classes, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio)
    raise ValueError(f"unknown head kind {kind!r}; choose from {HEAD_KINDS}")


def _init(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
