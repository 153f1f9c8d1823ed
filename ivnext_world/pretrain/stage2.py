"""Stage 2 of InternVideo-Next: predict a frozen Stage-1 teacher's latents (arXiv 2512.01342, Sec. 3.3).

Student = the Stage-1 encoder + predictor (decoder and alignment heads dropped) + a new latent head:
Linear, GELU, Linear, LayerNorm, L2-normalise (official ``selfdist_decoder``; ``latent_head_kind="linear"``:
Linear, LayerNorm, L2-normalise, our earlier head). Teacher = a frozen copy of the Stage-1 encoder in eval mode,
no EMA. Targets: the teacher's final-block tokens on the full clip, cls removed, L2-normalised,
at the masked positions. Two V-JEPA multi-block views per clip, losses summed.
"""
from __future__ import annotations

from dataclasses import replace

import torch

from ..masking import gather_tokens, masked_indices, stage2_mask_views
from ..train.checkpoint import load_weights
from .epd import EPDModel, FrozenEncoder, build_epd, cosine_loss


class Stage2Objective:
    """``objective(model, batch, generator) -> (loss, metrics)``; ``batch["video"]`` is ``(B, C, T, H, W)``.

    The two mask views are sampled on the CPU (with ``generator`` itself when it is a CPU generator,
    else with a CPU generator seeded from ``generator.initial_seed()``), their visible counts read
    there, and both moved to the video's device in one copy. Their visible counts are random (the
    batch minimum of the blocks' leftovers), so sampling on the GPU would mean reading each count
    back: this way a step makes no device-to-host sync for its masks.
    """

    def __init__(self, teacher: FrozenEncoder):
        self.teacher = teacher

    def __call__(self, model: EPDModel, batch, generator: torch.Generator):
        model = getattr(model, "module", model)
        video = batch["video"]
        b = video.shape[0]
        grid = model.encoder.token_grid(video.shape[2:])
        n = grid[0] * grid[1] * grid[2]
        self.teacher.to(video.device)
        target = self.teacher(video)  # (B, N, D), unit norm
        views = torch.stack(stage2_mask_views(b, grid, generator=_host_generator(generator)))  # (2, B, N) on the CPU
        counts = (~views[:, 0]).sum(-1).tolist()  # visible tokens per row of each view, read on the CPU
        views = views.to(video.device, non_blocking=True)
        metrics, loss = {}, video.new_zeros(())
        for i, (mask, n_vis) in enumerate(zip(views, counts), 1):
            tokens = model.encoder.forward_features(video, mask, num_visible=n_vis)
            pred = model.predictor(tokens, mask, grid).patches  # (B, N, D_pred)
            idx = masked_indices(mask, n - n_vis)  # (B, N_masked)
            view = cosine_loss(model.latent_head(gather_tokens(pred, idx)), gather_tokens(target, idx))
            metrics[f"loss_view{i}"] = view.detach()
            loss = loss + view
        return loss, metrics

    def freeze_unused(self, model: EPDModel) -> None:
        """Stage 2 never pools: the encoder's attention-pooling head keeps its Stage-1 weights, frozen
        (the Trainer calls this before building the optimiser; DDP runs without ``find_unused_parameters``)."""
        model.encoder.head.requires_grad_(False)


def _host_generator(generator: torch.Generator | None) -> torch.Generator | None:
    """A CPU generator for this step's masks: ``generator`` itself if it is on the CPU, else one
    seeded from its seed (the Trainer makes a fresh generator per step from (seed, step, rank))."""
    if generator is None or generator.device.type == "cpu":
        return generator
    return torch.Generator().manual_seed(generator.initial_seed())


def stage2_from_stage1(stage1_weights: str, stage1_cfg: dict, latent_head_kind: str = "mlp") -> tuple[EPDModel, FrozenEncoder]:
    """Build the Stage-2 student from a Stage-1 checkpoint, and its frozen teacher.

    The student keeps the Stage-1 encoder and predictor weights; the decoder and alignment heads
    are dropped and a fresh latent head of ``latent_head_kind`` (``"mlp"`` official, ``"linear"``)
    is added: Stage 1 never trains one, so the kind is Stage 2's choice, not the checkpoint's.
    """
    stage1 = build_epd(stage1_cfg)
    load_weights(stage1, stage1_weights)
    cfg2 = replace(stage1.cfg, decoder="none", teacher_dim=None, latent_head=True, latent_head_kind=latent_head_kind)
    student = build_epd(cfg2)
    student.encoder.load_state_dict(stage1.encoder.state_dict())
    student.predictor.load_state_dict(stage1.predictor.state_dict())
    return student, FrozenEncoder(stage1.encoder)
