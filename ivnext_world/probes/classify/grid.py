"""A grid of classification heads trained together on one pass of the frozen backbone.

V-JEPA 2's frozen evaluation (``evals/video_classification_frozen``) trains 20 attentive heads at once,
one per (learning rate, weight decay), each with its own optimizer, on the same batches, and reports
the best. :class:`HeadGrid` holds ``kinds x lrs x weight_decays`` heads as one module, so the shared
training loop checkpoints and resumes them together; :meth:`HeadGrid.param_groups` gives each head its
own AdamW group (its lr, its weight decay; none on biases and norms), and the summed loss keeps the
heads independent (a head's gradient depends only on its own loss). Gradient clipping must stay off
for the grid (``loop.clip_grad=0``): a joint clip would couple the heads.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .heads import HEAD_KINDS, build_head


@dataclass(frozen=True)
class HeadSpec:
    kind: str
    lr: float
    weight_decay: float

    @property
    def name(self) -> str:
        return f"{self.kind}/lr{self.lr:g}_wd{self.weight_decay:g}"


class HeadGrid(nn.Module):
    """``tokens (B, N, D) -> logits (H, B, C)``, one row per head in :attr:`specs` order."""

    def __init__(self, dim: int, num_classes: int, kinds, lrs, weight_decays, num_heads: int, depth: int = 4,
                 mlp_ratio: float = 4.0):
        super().__init__()
        unknown = [k for k in kinds if k not in HEAD_KINDS]
        if unknown or not kinds:
            raise ValueError(f"head kinds must be a non-empty subset of {HEAD_KINDS}, got {list(kinds)}")
        if not lrs or not weight_decays:
            raise ValueError("the head grid needs at least one learning rate and one weight decay")
        if num_classes < 2:
            raise ValueError(f"classification needs at least 2 classes, got {num_classes}")
        self.specs = [HeadSpec(k, float(lr), float(wd)) for k in kinds for lr in lrs for wd in weight_decays]
        self.heads = nn.ModuleList(build_head(s.kind, dim, num_classes, num_heads, depth, mlp_ratio) for s in self.specs)
        self.num_classes = num_classes
        self.config = {"dim": dim, "num_classes": num_classes, "kinds": list(kinds), "lrs": [float(x) for x in lrs],
                       "weight_decays": [float(x) for x in weight_decays], "num_heads": num_heads, "depth": depth,
                       "mlp_ratio": mlp_ratio}

    @classmethod
    def from_config(cls, config: dict) -> "HeadGrid":
        return cls(**config)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.stack([h(tokens) for h in self.heads])  # (H, B, C)

    def param_groups(self) -> list[dict]:
        """Two AdamW groups per head: its weights at its weight decay, its biases/norms/query at none."""
        groups = []
        for spec, head in zip(self.specs, self.heads):
            decay, no_decay = [], []
            for name, p in head.named_parameters():
                (no_decay if p.ndim <= 1 or name.endswith("query") else decay).append(p)
            groups.append({"params": decay, "lr": spec.lr, "weight_decay": spec.weight_decay, "head": spec.name})
            groups.append({"params": no_decay, "lr": spec.lr, "weight_decay": 0.0, "head": spec.name})
        return [g for g in groups if g["params"]]
