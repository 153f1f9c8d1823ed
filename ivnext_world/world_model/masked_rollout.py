"""The action-free world model "as is": the pretrained EPD predictor imagines the future by masking it.

InternVideo-Next's predictor was trained to fill in masked token positions of a clip of
``cfg.num_frames`` frames from the visible ones. Masking *every* position of the frames after the
context turns it into an action-free video predictor without any fine-tuning:

1. the context frames are placed at the start of a ``num_frames`` clip (the rest is filler the
   encoder never sees: masked tokens are dropped before its first block);
2. the encoder runs on the visible (context) tokens only, exactly as in pretraining;
3. the predictor gets those tokens and a mask token at every future-frame position;
4. its outputs at the future positions become latents (below).

What "latent" means, so that the comparison with the world model is fair
-----------------------------------------------------------------------
The world model predicts the frozen encoder's per-frame tokens (cls + patch, raw scale). The
Stage-2 latent head predicts *L2-normalised* encoder patch tokens (no cls). The common space is
therefore :func:`normalized_patch_latents`: patch tokens only, each L2-normalised, ``(..., H'W', D)``.
World-model predictions, copy-last and ground truth are mapped there before any comparison.

- **Stage 2** checkpoints (``latent_head``): latents = ``latent_head(predictor outputs)``, already
  unit norm. Caveat: Stage 2's targets were the *Stage-1 teacher's* tokens of the *whole clip*, while
  the ground truth here is the (Stage-2) encoder's tokens of each frame alone; that mismatch is part
  of using the predictor "as is".
- **Stage 1** checkpoints (pixel decoder, no latent head): the predictor outputs condition the
  diffusion decoder, they are not encoder latents. They are decoded to pixels (few DDIM steps) and
  the imagined frames re-encoded frame by frame with the same encoder: a pixel round trip into the
  same space as the ground truth.

The horizon is bounded by the clip: ``context + horizon <= num_frames`` token-frames (the
position table and the pretraining masks never saw longer clips; predictions cannot be fed back
because they are not encoder tokens of a visible frame).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_video_transform
from ..models import unpatchify
from ..pretrain.epd import EPDModel
from .latents import encode_video

__all__ = ["masked_future_prediction", "normalized_patch_latents"]


def normalized_patch_latents(latents: torch.Tensor, num_prefix_tokens: int) -> torch.Tensor:
    """World-model latents ``(..., n, D)`` -> the comparison space ``(..., n - num_cls, D)``, unit norm."""
    return F.normalize(latents[..., num_prefix_tokens:, :].float(), dim=-1)


def _prepare(epd: EPDModel, frames: torch.Tensor) -> torch.Tensor:
    """``(B, T, 3, H, W)`` uint8 or [0, 1] floats -> resized, cropped, ImageNet-normalised, as WorldModel.encode."""
    if frames.dim() != 5 or frames.shape[2] != 3:
        raise ValueError(f"context_frames must be (B, T, 3, H, W), got {tuple(frames.shape)}")
    b, t = frames.shape[:2]
    transform = build_video_transform(False, epd.cfg.img_size, crop_pct=1.0, flip=False)
    dev = next(epd.encoder.parameters()).device
    return transform(frames.to(dev).flatten(0, 1)).unflatten(0, (b, t))  # (B, T, 3, S, S)


@torch.no_grad()
def masked_future_prediction(
    epd_model: EPDModel,
    context_frames: torch.Tensor,
    horizon: int,
    *,
    num_steps: int = 4,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Predict the latents of the ``horizon`` token-frames after the context, by masking them.

    Args:
        epd_model: a pretrained :class:`EPDModel` (Stage 2 with ``latent_head``, or Stage 1 with a
            pixel decoder).
        context_frames: ``(B, Tc, 3, H, W)`` uint8 or float in [0, 1]; ``Tc`` a multiple of the tubelet.
        horizon: future token-frames to predict; ``Tc / tubelet + horizon <= num_frames / tubelet``.
        num_steps, generator: DDIM steps and noise of the Stage-1 pixel round trip (ignored for Stage 2).

    Returns:
        ``(B, horizon, H'W', D_enc)`` L2-normalised patch latents (see the module docstring), float32.
    """
    epd = epd_model
    enc, cfg = epd.encoder, epd.cfg
    if epd.latent_head is None and epd.decoder is None:
        raise ValueError("this EPD checkpoint has neither a latent head (Stage 2) nor a pixel decoder (Stage 1): "
                         "its predictor outputs cannot be turned into encoder latents")
    tub = enc.tubelet_size
    b, tc = context_frames.shape[:2]
    if tc % tub:
        raise ValueError(f"{tc} context frames do not split into tubelets of {tub}")
    clip_t = cfg.num_frames // tub  # token-frames of the pretraining clip
    ctx_t = tc // tub
    if horizon < 1 or ctx_t + horizon > clip_t:
        raise ValueError(f"context ({ctx_t} token-frames) + horizon ({horizon}) must fit the predictor's clip of "
                         f"{clip_t} token-frames (num_frames={cfg.num_frames}); horizon <= {clip_t - ctx_t}")
    ctx = _prepare(epd, context_frames)  # (B, Tc, 3, S, S)
    s = cfg.img_size
    filler = ctx.new_zeros(b, cfg.num_frames - tc, 3, s, s)  # never seen: its tokens are all masked
    clip = torch.cat([ctx, filler], dim=1).transpose(1, 2)  # (B, 3, num_frames, S, S)
    grid = enc.token_grid((cfg.num_frames, s, s))  # (T', H', W')
    hw = grid[1] * grid[2]
    mask = torch.zeros(b, grid[0] * hw, dtype=torch.bool, device=clip.device)  # time-major grid order
    mask[:, ctx_t * hw:] = True  # every position of every future token-frame
    tokens = enc.forward_features(clip, mask)  # (B, num_cls + ctx_t*H'W', D_enc): context only
    out = epd.predictor(tokens, mask, grid).patches  # (B, N, D_pred)
    future = out[:, ctx_t * hw:(ctx_t + horizon) * hw].unflatten(1, (horizon, hw))  # (B, h, H'W', D_pred)
    if epd.latent_head is not None:
        return F.normalize(epd.latent_head(future).float(), dim=-1)  # head ends in L2-norm; re-norm is a no-op guard
    # Stage 1: pixel round trip through the diffusion decoder, then the encoder, frame by frame.
    cond = future.flatten(0, 1)  # (B*h, H'W', D_pred)
    if hasattr(epd.decoder, "make_sampler"):
        pix = epd.decoder.sample(cond, num_steps=num_steps, generator=generator)
    else:  # linear decoder ablation
        pix = epd.decoder.sample(cond)
    video = unpatchify(pix.float(), (1, grid[1], grid[2]), enc.patch_size, tub, order=epd.decoder.pixel_order)  # (B*h, 3, tub, S, S)
    mean = video.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1, 1)
    std = video.new_tensor(IMAGENET_STD).view(1, 3, 1, 1, 1)
    # Clamp in pixel space as decode() does, then back to the encoder's normalised input.
    video = ((video * std + mean).clamp(0, 1) - mean) / std
    frames = video.transpose(1, 2).reshape(b, horizon * tub, 3, s, s)  # (B, h*tub, 3, S, S)
    z = encode_video(enc, frames).float()  # (B, h, n, D_enc)
    return normalized_patch_latents(z, enc.num_prefix_tokens)
