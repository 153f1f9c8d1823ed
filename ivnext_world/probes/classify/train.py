"""Training a head grid with the shared loop: the objective and a Trainer with one AdamW group per head.

:class:`GridTrainer` is the project's :class:`~ivnext_world.train.Trainer` (checkpoints, exact resume,
progress bar, TensorBoard, preemption) with the optimizer swapped for per-head groups: each head has
its own learning rate and weight decay (V-JEPA 2 gives each head its own optimizer; one AdamW with a
group per head is the same update), all following the loop's cosine schedule.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...train import LoopConfig, Trainer, warmup_cosine
from .grid import HeadGrid


class ClassifyObjective:
    """``objective(grid, batch, generator) -> (loss, metrics)``.

    ``batch`` holds ``"tokens" (B, N, D)`` (cached features) or ``"video" (B, C, T, H, W)`` (then the
    frozen ``backbone`` runs here, without gradients), and ``"label" (B,)``. The loss is the sum of the
    heads' cross-entropies, so each head's gradient is that of its own loss; metrics are, per head
    kind, the lowest head loss and the best head's training accuracy on the batch.
    """

    def __init__(self, backbone=None):
        self.backbone = backbone

    def __call__(self, grid: HeadGrid, batch: dict, generator: torch.Generator):
        grid = getattr(grid, "module", grid)
        if "tokens" in batch:
            tokens = batch["tokens"].float()
        else:
            if self.backbone is None:
                raise ValueError("batch holds videos but the objective has no backbone (features=online needs one)")
            with torch.no_grad():
                tokens = self.backbone(batch["video"]).float()  # (B, N, D)
        labels = batch["label"]
        logits = grid(tokens)  # (H, B, C)
        h, b, c = logits.shape
        losses = F.cross_entropy(logits.reshape(h * b, c).float(), labels.repeat(h), reduction="none").view(h, b).mean(1)
        with torch.no_grad():
            acc = (logits.argmax(-1) == labels).float().mean(1)  # (H,)
            metrics = {}
            for kind in dict.fromkeys(s.kind for s in grid.specs):
                idx = [i for i, s in enumerate(grid.specs) if s.kind == kind]
                metrics[f"loss_{kind}"] = float(losses[idx].min())
                metrics[f"acc_{kind}"] = float(acc[idx].max())
        return losses.sum(), metrics


class GridTrainer(Trainer):
    """:class:`Trainer` whose optimizer has one group per head (``grid.param_groups()``)."""

    def __init__(self, grid: HeadGrid, objective, dataset, cfg: LoopConfig, out_dir, **kwargs):
        if cfg.clip_grad:
            raise ValueError(f"loop.clip_grad={cfg.clip_grad}: must be 0 for a head grid (one joint clip would couple "
                             "the heads: a diverging head would shrink every other head's update)")
        super().__init__(grid, objective, dataset, cfg, out_dir, **kwargs)
        self.optimizer = torch.optim.AdamW(grid.param_groups(), betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: warmup_cosine(s, cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio))
