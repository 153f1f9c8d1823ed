"""Stage 1 of InternVideo-Next: diffusion decoder + semantic prior (arXiv 2512.01342, Sec. 3.2).

Loss = w_middle * middle alignment + w_final * final alignment + w_recon * pixel reconstruction:

- middle alignment: the student's last ``align_layers`` blocks (visible tokens, plus the learnable
  alignment position table when the model has one) through one MLP head each vs. the frozen image
  teacher's hidden states at as many layers, ``2 - 2 cos``;
- final alignment (``Stage1Loss.final_align``): ``"clip"`` (official) one attention-pooled output
  of the whole clip (cls + visible tokens) vs. the mean over frames of the teacher's L2-normalised
  pooled outputs; ``"frame"`` (ablation) each frame's visible tokens pooled on their own vs. that
  frame's teacher output. ``2 - 2 cos`` either way;
- reconstruction: the conditional diffusion decoder's loss (epsilon MSE, + the variational bound
  with a learned variance) on the masked tokens' raw (ImageNet-normalised) patch pixels, in the
  decoder's pixel order, or the linear decoder's pixel MSE (ablation).

The mask is guided by the teacher's pooling attention (salient tokens stay visible); without a
teacher (reconstruction-only ablation) it is a random tube mask.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..masking import (
    attention_guided_mask, gather_tokens, masked_indices, motion_guided_mask, random_tube_mask, visible_count,
    visible_indices,
)
from ..models import ImageTeacher, patchify
from .epd import EPDModel, cosine_loss


FINAL_ALIGN = ("clip", "frame")
MASKS = ("auto", "attention", "tube", "motion")


@dataclass
class Stage1Loss:
    mask_ratio: float = 0.75  # official code (the paper text says 0.8)
    w_middle: float = 1.0
    w_final: float = 1.0
    w_recon: float = 1.0
    # "clip": official (engine_for_stage1.py:104), one pooled output per clip vs. the teacher's
    # frame-mean | "frame": each frame pooled and aligned on its own (our earlier recipe)
    final_align: str = "clip"
    # "auto": the teacher's attention-guided mask with a teacher, random tubes without | "attention" |
    # "tube": VideoMAE random tubes | "motion": per frame, moving tokens are masked more often (visible
    # with weight 1 / (1 + motion / mean motion of the frame)), so the decoder must predict what moves
    mask: str = "auto"

    def __post_init__(self):
        if self.final_align not in FINAL_ALIGN:
            raise ValueError(f"Stage1Loss.final_align must be one of {FINAL_ALIGN}, got {self.final_align!r}")
        if self.mask not in MASKS:
            raise ValueError(f"Stage1Loss.mask must be one of {MASKS}, got {self.mask!r}")

    def resolved_mask(self, has_teacher: bool) -> str:
        if self.mask == "auto":
            return "attention" if has_teacher else "tube"
        if self.mask == "attention" and not has_teacher:
            raise ValueError("mask='attention' needs an image teacher (its pooling attention guides the mask)")
        return self.mask


class Stage1Objective:
    """``objective(model, batch, generator) -> (loss, metrics)`` for :class:`~ivnext_world.train.Trainer`.

    ``batch["video"]``: ``(B, C, T, H, W)`` ImageNet-normalised clips.
    """

    def __init__(self, cfg: Stage1Loss, teacher: ImageTeacher | None):
        self.cfg = cfg
        self.teacher = teacher
        if teacher is None and (cfg.w_middle or cfg.w_final):
            raise ValueError("alignment losses need an image teacher; set w_middle=w_final=0 for reconstruction only")
        self.mask_kind = cfg.resolved_mask(teacher is not None)

    def __call__(self, model: EPDModel, batch, generator: torch.Generator):
        model = getattr(model, "module", model)  # DDP
        cfg, enc = self.cfg, model.encoder
        video = batch["video"]
        b = video.shape[0]
        grid = enc.token_grid(video.shape[2:])  # (T', H', W')
        t_, h_, w_ = grid
        tub = enc.tubelet_size

        tout = None
        if self.teacher is not None:
            self.teacher.to(video.device)
            tout = self.teacher(video, out_grid=(h_, w_))  # per frame: rows b * T + t
        if self.mask_kind == "attention":
            attn = _per_token_time(tout.attn, b, t_, tub)  # (B, T', H'W')
            mask = attention_guided_mask(attn, cfg.mask_ratio, generator=generator)
        elif self.mask_kind == "motion":
            mask = motion_guided_mask(token_motion(video, grid, tub), cfg.mask_ratio, generator=generator)
        else:
            mask = random_tube_mask(b, grid, cfg.mask_ratio, generator=generator, device=video.device)
        # Every mask keeps a count fixed by the ratio: passing it on means no step reads the mask back
        # to the host (a GPU sync each) and torch.compile sees static shapes.
        n_vis = visible_count(grid, cfg.mask_ratio)

        metrics: dict[str, torch.Tensor] = {}
        loss = video.new_zeros(())
        n_align = model.num_align_layers if (tout is not None and cfg.w_middle) else 0
        final, inter = enc.forward_intermediates(video, mask, indices=max(n_align, 1), num_visible=n_vis)
        vis = visible_indices(mask, n_vis)  # (B, N_vis)

        if n_align:
            if len(tout.hidden) < n_align:
                raise ValueError(
                    f"middle alignment aligns {n_align} student blocks but the teacher gives {len(tout.hidden)} "
                    "hidden states: set teacher.num_layers or model.align_layers so they match"
                )
            middle = video.new_zeros(())
            pos = 0
            if model.align_pos_embed is not None:  # the same table for every aligned block
                pos = gather_tokens(model.align_pos_embed(grid).expand(b, -1, -1), vis)  # (B, N_vis, D)
            for head, student, target in zip(model.align_heads, inter[-n_align:], tout.hidden[-n_align:]):
                target = _per_token_time(target, b, t_, tub).reshape(b, t_ * h_ * w_, -1)  # (B, N, Dt)
                middle = middle + cosine_loss(head(student + pos), gather_tokens(target, vis))
            metrics["loss_middle"] = middle / n_align
            loss = loss + cfg.w_middle * metrics["loss_middle"]

        if tout is not None and cfg.w_final:
            if cfg.final_align == "clip":
                # Official: pool the whole sequence once; the target is the mean of the teacher's
                # per-frame unit vectors (cosine_loss renormalises it; the official loss leaves it
                # at norm <= 1, which scales the loss and its gradient by that norm).
                pooled = model.final_align_head(enc.forward_head(final))  # (B, Dt)
                per_frame = torch.nn.functional.normalize(tout.pooled.float(), dim=-1)  # (B*T, Dt)
                target = per_frame.reshape(b, -1, per_frame.shape[-1]).mean(1)  # (B, Dt)
            else:
                # Attention-guided masks keep the same number of visible tokens in every frame, so the
                # visible tokens reshape into frames and each frame is pooled on its own.
                patches = final[:, enc.num_prefix_tokens:]  # (B, N_vis, D)
                per_frame = patches.reshape(b * t_, -1, patches.shape[-1])  # (B*T', n_f, D)
                pooled = model.final_align_head(enc.forward_head(per_frame))  # (B*T', Dt)
                target = _per_token_time(tout.pooled, b, t_, tub).reshape(b * t_, -1)
            metrics["loss_final"] = cosine_loss(pooled, target)
            loss = loss + cfg.w_final * metrics["loss_final"]

        if model.decoder is not None and cfg.w_recon:
            pred = model.predictor(final, mask, grid).patches  # (B, N, D_pred)
            # (B, N, P) in the decoder's pixel order, no per-patch normalisation
            pixels = patchify(video, enc.patch_size, tub, order=model.decoder.pixel_order)
            # The decoder gets the masked rows gathered here rather than the mask: boolean indexing
            # would read the row count back to the host. Same rows in the same order, same loss.
            idx = masked_indices(mask, t_ * h_ * w_ - n_vis)  # (B, N_masked)
            cond = gather_tokens(pred, idx).flatten(0, 1)  # (B * N_masked, D_pred)
            target = gather_tokens(pixels, idx).flatten(0, 1)  # (B * N_masked, P)
            metrics["loss_recon"] = model.decoder.loss(cond, target, generator=generator)
            loss = loss + cfg.w_recon * metrics["loss_recon"]

        if not metrics:
            raise ValueError("Stage 1 has nothing to optimise: every loss weight is 0 or its module is missing")
        return loss, {k: v.detach() for k, v in metrics.items()}

    def freeze_unused(self, model: EPDModel) -> None:
        """Freeze the parts the chosen losses never reach (the Trainer calls this before building the
        optimiser): DDP runs without ``find_unused_parameters``. Only ablations leave any."""
        aligned = self.teacher is not None
        if not (aligned and self.cfg.w_middle) and model.align_heads is not None:
            model.align_heads.requires_grad_(False)
            if model.align_pos_embed is not None:
                model.align_pos_embed.requires_grad_(False)
        if not (aligned and self.cfg.w_final):  # the attention-pooling head serves the final alignment only
            model.encoder.head.requires_grad_(False)
            if model.final_align_head is not None:
                model.final_align_head.requires_grad_(False)
        if model.decoder is None or not self.cfg.w_recon:
            model.predictor.requires_grad_(False)
            if model.decoder is not None:
                model.decoder.requires_grad_(False)


def token_motion(video: torch.Tensor, grid, tubelet: int) -> torch.Tensor:
    """Mean absolute frame difference per token, ``(B, T', H'W')``: ``video`` ``(B, C, T, H, W)``; the
    first frame takes the difference to the second (one-frame clips: zeros)."""
    b, _, t, h, w = video.shape
    t_, h_, w_ = grid
    x = video.float()
    if t > 1:
        d = (x[:, :, 1:] - x[:, :, :-1]).abs().mean(1)  # (B, T-1, H, W)
        d = torch.cat([d[:, :1], d], 1)
    else:
        d = x.new_zeros(b, 1, h, w)
    d = torch.nn.functional.adaptive_avg_pool2d(d.reshape(b * t, 1, h, w), (h_, w_)).reshape(b, t_, tubelet, h_ * w_)
    return d.mean(2)


def _per_token_time(x: torch.Tensor, b: int, t_tokens: int, tubelet: int) -> torch.Tensor:
    """Per-frame teacher outputs ``(B*T, ...)`` -> per token-time ``(B, T', ...)`` (tubelet mean)."""
    x = x.reshape(b, t_tokens, tubelet, *x.shape[1:])
    return x.mean(2) if tubelet > 1 else x.squeeze(2)
