"""``WorldModel``: the public latent world model (encode, predict, rollout, decode).

Built from a frozen backbone (:mod:`ivnext_world.backbones`) and the action-conditioned predictor
trained on top of it by :func:`~ivnext_world.world_model.train.train_world_model`, whose checkpoint
stores the predictor's arguments, the action/proprio normalisation statistics and the backbone: our
pretrained Encoder-Predictor-Decoder (a Stage-1 run by default: its diffusion decoder was trained on
this very encoder's outputs, so imagined latents can be turned back into pixels; the run keeps a copy)
or the record of any other backbone (official InternVideo-Next, V-JEPA 2, DINOv2, SigLIP2: encode,
predict and plan; no decoder).

Example::

    wm = WorldModel.load("outputs/world_model")              # the world-model run folder
    enc_only = WorldModel.load("vjepa2:/p/vjepa2-vitl")       # a backbone spec: encode only
    z = wm.encode(frames)                                    # (B, T, 3, H, W) uint8 -> (B, T, n, D)
    z_next = wm.predict(z, actions[:, 0])                    # raw actions (B, A) -> (B, n, D)
    imagined = wm.rollout(z[:1], candidate_actions)          # (1, Tc, n, D), (K, H, A) -> (K, H, n, D)
    pixels = wm.decode(imagined[:4])                         # -> (4, H, 3, img, img) in [0, 1]

Devices: ``WorldModel.load(path, device)`` or ``wm.to(device)``; every method accepts inputs on any
device (the CPU included) and moves them to the model's, and returns tensors on the model's device.
Precision: ``precision="auto"`` (default) runs encode/rollout/decode under bf16 autocast on a
bf16-capable GPU and in fp32 elsewhere (see :mod:`~ivnext_world.world_model.precision`); outputs are
always fp32.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from ..backbones import Backbone, backbone_from_record, is_backbone_spec, load_backbone
from ..backbones.video_vit import VideoViTBackbone
from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ..models import unpatchify
from ..pretrain.epd import EPDModel
from ..pretrain.run import load_epd, resolve_checkpoint
from ..train.checkpoint import load_weights
from .latents import NormStats, encode_video
from .precision import check_precision, inference_autocast
from .predictor import ACPredictorConfig, ActionConditionedPredictor

__all__ = ["WorldModel"]


class WorldModel(nn.Module):
    """Frozen backbone (+ Stage-1 predictor and decoder for pixels) + action-conditioned predictor.

    Latents are per frame: ``(B, T, n, D)`` with ``n = prefix tokens + patch tokens`` (see
    :mod:`~ivnext_world.world_model.latents`). Actions and proprio are passed raw (environment
    units) and normalised here with the statistics of the training data.

    Args:
        epd: the backbone that produced the training targets: our pretrained ``EPDModel`` (its
            encoder; its Stage-1 predictor and decoder, if any, decode) or any
            :class:`~ivnext_world.backbones.Backbone` (no decoder).
        predictor: the trained :class:`ActionConditionedPredictor`, or None (encode/decode only).
        stats: action/proprio statistics (None for an action-free predictor).
        pool: spatial pooling of the patch tokens used when training (1 = none; needed to decode).
        frame_skip: env steps per world-model step. Each action the world model takes is then a
            chunk of ``frame_skip`` env actions concatenated (``action_dim = frame_skip * env action
            dim``, see :meth:`env_actions`), and consecutive latents are ``frame_skip`` frames apart.
        precision: inference precision, ``"auto"`` | ``"fp32"`` | ``"bf16"`` (settable later: ``wm.precision``).
    """

    def __init__(
        self,
        epd: EPDModel | Backbone,
        predictor: ActionConditionedPredictor | None = None,
        stats: NormStats | None = None,
        pool: int = 1,
        frame_skip: int = 1,
        precision: str = "auto",
    ):
        super().__init__()
        self.precision = precision
        if frame_skip < 1:
            raise ValueError(f"frame_skip must be >= 1, got {frame_skip}")
        if stats is not None and stats.action_dim % frame_skip:
            raise ValueError(f"{stats.action_dim} action features cannot be split into frame_skip={frame_skip} chunks")
        if isinstance(epd, EPDModel):
            self.backbone = VideoViTBackbone.from_epd(epd, spec=f"EPDModel({epd.cfg.encoder})")
            self.stage1_predictor = epd.predictor.requires_grad_(False)
            self.decoder = epd.decoder.requires_grad_(False) if epd.decoder is not None else None
            self.epd_cfg = epd.cfg
        elif isinstance(epd, Backbone):
            self.backbone = epd
            self.stage1_predictor = self.decoder = self.epd_cfg = None
        else:
            raise TypeError(f"WorldModel needs an EPDModel or a Backbone, got {type(epd).__name__}")
        self.predictor = predictor.requires_grad_(False) if predictor is not None else None
        if predictor is not None and (predictor.cfg.enc_dim, predictor.tokens_per_frame) != (
                self.backbone.embed_dim, self.backbone.tokens_per_frame(pool)):
            raise ValueError(
                f"the predictor takes latents of {predictor.tokens_per_frame} tokens x {predictor.cfg.enc_dim}; "
                f"{self.backbone.spec} gives {self.backbone.tokens_per_frame(pool)} x {self.backbone.embed_dim} "
                f"(pool={pool}): a world model trained on another backbone or size")
        self.stats = stats
        self.pool, self.frame_skip = pool, frame_skip
        self.img_size = self.backbone.img_size
        self.tokens_per_frame = self.backbone.tokens_per_frame(pool)
        self._transform = self.backbone.transform()  # its size and normalisation, as the training windows
        self.eval()

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu", precision: str = "auto",
             encoder: str | None = None) -> "WorldModel":
        """One call: a world-model run/checkpoint folder, a pretraining one (encode/decode only) or a
        backbone spec (``official:...``, ``vjepa2:...``, ``timm:...``, ``hf:...``: encode only), on
        ``device`` with inference ``precision`` (auto | fp32 | bf16).

        ``encoder``: where the backbone of a world model trained on a non-ours backbone is now (its
        files moved, e.g. to another machine): a spec of the same kind; the weights are checked
        against the stored fingerprint either way."""
        if is_backbone_spec(str(path)):
            return cls(load_backbone(str(path)), precision=precision).to(device).eval()
        ckpt = resolve_checkpoint(path)
        extra = json.loads((ckpt / "state.json").read_text())["extra"]
        if "world_model" in extra:
            wm = extra["world_model"]
            if wm.get("backbone") is not None:
                encoder_model = _stored_backbone(wm["backbone"], encoder, ckpt)
            else:
                enc = Path(wm["encoder_checkpoint"])
                if not enc.is_absolute():  # the run's own copy: <run>/checkpoints/step_*/ -> <run>/encoder
                    enc = ckpt.parents[1] / enc
                encoder_model, _ = load_epd(enc)
            predictor = ActionConditionedPredictor(ACPredictorConfig(**wm["predictor"]))
            load_weights(predictor, ckpt / "model.safetensors")
            stats = NormStats(**wm["norm_stats"]) if wm.get("norm_stats") else None
            model = cls(encoder_model, predictor, stats, pool=wm["pool"], frame_skip=wm.get("frame_skip", 1),
                        precision=precision)
        elif "model" in extra:
            epd, _ = load_epd(ckpt)
            model = cls(epd, precision=precision)
        else:
            raise ValueError(f"{ckpt} is neither a world-model nor a pretraining checkpoint")
        return model.to(device).eval()

    @property
    def env_action_dim(self) -> int:
        """Features of one env action (``stats.action_dim / frame_skip``)."""
        return self.stats.action_dim // self.frame_skip

    def env_actions(self, chunk: torch.Tensor) -> torch.Tensor:
        """``(..., frame_skip * A)`` world-model actions -> ``(..., frame_skip, A)`` env actions in time order."""
        return chunk.unflatten(-1, (self.frame_skip, self.env_action_dim))

    def train(self, mode: bool = True) -> "WorldModel":
        return super().train(False)  # inference API: frozen, eval mode forever

    @property
    def encoder(self):
        """Our encoder's ``VideoViT`` (backwards compatible), else the backbone itself."""
        return getattr(self.backbone, "encoder", self.backbone)

    @property
    def embed_dim(self) -> int:
        """``D`` of the latents."""
        return self.backbone.embed_dim

    @property
    def device(self) -> torch.device:
        return self.backbone.device

    @property
    def precision(self) -> str:
        """Inference precision of encode/rollout/decode: ``"auto"`` | ``"fp32"`` | ``"bf16"``."""
        return self._precision

    @precision.setter
    def precision(self, value: str) -> None:
        self._precision = check_precision(value)

    def autocast(self):
        """The context that runs world-model calls in ``self.precision`` on ``self.device``."""
        return inference_autocast(self.precision, self.device)

    @property
    def num_prefix_tokens(self) -> int:
        """Leading cls tokens of each frame's ``n`` latent tokens (the rest are patch tokens); 0 for
        backbones that keep none (V-JEPA 2, image models)."""
        return self.backbone.num_prefix_tokens

    @property
    def action_conditioned(self) -> bool:
        return self.predictor is not None and self.predictor.action_conditioned

    @property
    def predicts_proprio(self) -> bool:
        """Whether rollouts predict the proprio of imagined frames (``rollout(..., return_proprio=True)``)."""
        return self.predictor is not None and self.predictor.predicts_proprio

    # ------------------------------------------------------------------ API
    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames ``(B, T, 3, H, W)`` uint8 or float in [0, 1] -> latents ``(B, T, n, D)``.

        Frames are resized (short side) and centre-cropped to the backbone's size and normalised its
        way, exactly as the training windows were; each frame is encoded on its own.
        """
        if frames.dim() != 5 or frames.shape[2] != 3:
            raise ValueError(f"frames must be (B, T, 3, H, W), got {tuple(frames.shape)}")
        b, t = frames.shape[:2]
        x = self._transform(frames.to(self.device).flatten(0, 1))  # (B*T, 3, S, S) normalised
        x = x.unflatten(0, (b, t))
        with self.autocast():
            z = encode_video(self.backbone, x, self.pool)
        return z.float()

    def encode_image(self, rgb) -> torch.Tensor:
        """One ``(H, W, 3)`` uint8 image (an env observation's ``"rgb"``) -> its latents ``(n, D)``."""
        frame = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None, None]  # (1, 1, 3, H, W)
        return self.encode(frame)[0, 0]

    @torch.no_grad()
    def predict(self, context_latents: torch.Tensor, actions: torch.Tensor | None = None,
                proprio: torch.Tensor | None = None, context_actions: torch.Tensor | None = None) -> torch.Tensor:
        """One step: latents ``(B, Tc, n, D)`` and the raw action ``(B, A)`` taken at the last context
        frame -> the next frame's latents ``(B, n, D)``. ``proprio``: raw ``(B, Tc, S)`` or None."""
        if actions is not None and actions.dim() == 2:
            actions = actions.unsqueeze(1)  # (B, 1, A)
        return self.rollout(context_latents, actions, horizon=1, proprio=proprio,
                            context_actions=context_actions)[:, 0]

    def rollout(
        self,
        context: torch.Tensor,
        actions: torch.Tensor | None = None,
        horizon: int | None = None,
        proprio: torch.Tensor | None = None,
        context_actions: torch.Tensor | None = None,
        use_cache: bool = True,
        grad: bool = False,
        return_proprio: bool = False,
    ):
        """Imagine ``horizon`` frames: context latents ``(Bc, Tc, n, D)`` (``Bc`` = B or 1, shared),
        raw actions ``(B, H, A)`` (``actions[:, 0]`` taken at the last context frame) ->
        ``(B, horizon, n, D)``. Many candidate action sequences = one batch. Keys/values of past
        frames are cached; ``use_cache=False`` recomputes the history each step (reference).

        ``proprio`` (raw, ``(Bc or B, Tc, S)``): imagined frames carry the predicted proprio when the
        model predicts it (``predicts_proprio``), else they hold the last one; None = the training mean.
        ``return_proprio=True`` returns ``(latents, proprio)`` with the imagined frames' raw proprio
        ``(B, horizon, S)`` (None for a model without proprio tokens). ``context_actions`` (raw, ``(Bc or B, Tc-1, A)``): actions taken at the earlier
        context frames; None = the training mean. An action-free model takes ``actions=None`` and
        a ``horizon``. See :meth:`ActionConditionedPredictor.rollout`.

        ``grad=True`` keeps the autograd graph so a loss on the imagined latents can be
        back-propagated to ``actions`` (gradient-based planning); the weights stay frozen.
        """
        with torch.set_grad_enabled(grad):
            z, p = self._rollout(context, actions, horizon, proprio, context_actions, use_cache)
            # fp32 out whatever the precision: costs and losses on the imagined latents are computed in fp32.
            z, p = z.float(), None if p is None else p.float()
        if not return_proprio:
            return z
        return z, None if p is None else self.stats.denormalize_proprio(p)

    def _rollout(self, context, actions, horizon, proprio, context_actions, use_cache):
        pred = self._require_predictor()
        if context.dim() != 4 or context.shape[2] != self.tokens_per_frame:
            raise ValueError(
                f"context must be latents (B, Tc, {self.tokens_per_frame}, D) from encode(), got {tuple(context.shape)}"
            )
        dev = self.device
        if actions is not None:
            if not pred.action_conditioned:
                raise ValueError(
                    "this world model has no action head (action-free predictor): it cannot run an "
                    "action-conditioned rollout; pass actions=None with a horizon, or load an action-conditioned checkpoint"
                )
            if actions.dim() != 3:
                raise ValueError(f"actions must be (B, H, A), got {tuple(actions.shape)}")
            actions = self.stats.normalize_actions(actions.to(dev))
            if context_actions is not None:
                context_actions = self.stats.normalize_actions(context_actions.to(dev))
        elif pred.action_conditioned:
            raise ValueError("this world model is action-conditioned: rollout needs actions (B, H, A)")
        if proprio is not None and pred.proprio_embed is not None:
            proprio = self.stats.normalize_proprio(proprio.to(dev))
        elif pred.proprio_embed is None:
            proprio = None
        with self.autocast():
            return pred.rollout(context.to(dev).float(), actions, proprio, context_actions,
                                horizon=horizon, use_cache=use_cache, return_proprio=True)

    @torch.no_grad()
    def decode(
        self,
        latents: torch.Tensor,
        num_steps: int = 10,
        scheduler: Literal["ddim", "dpmsolver"] = "ddim",
        generator: torch.Generator | None = None,
        decode_groups: int = 4,
    ) -> torch.Tensor:
        """Latents ``(B, T', n, D)`` -> frames ``(B, T' * tubelet, 3, S, S)`` float in [0, 1].

        The Stage-1 decoder only ever learned to decode the predictor's outputs at *masked* positions,
        so each token-frame is decoded the way it was trained: the tokens are split into
        ``decode_groups`` interleaved groups (a regular pattern, a particular random-tube mask); in pass
        ``g`` group ``g`` is visible and the rest masked (``decode_groups=4``: Stage 1's 75% ratio), and
        each token's condition is the mean of the predictor's outputs over the passes where it was
        masked. ``decode_groups=1`` feeds every token unmasked (the predictor's visible outputs, on which
        the decoder was never trained). The conditions then drive the diffusion decoder,
        sampled with a few-step diffusers sampler; patch pixels are reassembled and un-normalised.
        """
        if self.decoder is None:
            if self.epd_cfg is None:
                raise RuntimeError(
                    f"no pixel decoder: this world model runs on the {self.backbone.kind} backbone "
                    f"{self.backbone.spec!r}, which has none. Only our Stage-1 encoder comes with a decoder "
                    "(a run trained with w_recon > 0); latents of other backbones can be compared, planned "
                    "with and probed, not decoded (planning videos show the nearest training frame instead).")
            raise RuntimeError(
                "no pixel decoder: this world model's encoder checkpoint has none (Stage-2 or alignment-only "
                "runs drop it). Build the world model on a Stage-1 checkpoint trained with w_recon > 0 to decode."
            )
        if self.pool != 1:
            raise RuntimeError(f"latents pooled {self.pool}x{self.pool} cannot be decoded (the decoder needs every patch token)")
        if latents.dim() != 4 or latents.shape[2] != self.tokens_per_frame:
            raise ValueError(f"latents must be (B, T', {self.tokens_per_frame}, D), got {tuple(latents.shape)}")
        b, tt = latents.shape[:2]
        enc = self.encoder
        tub, patch = enc.tubelet_size, enc.patch_size
        if tub != 1:
            raise RuntimeError(f"latents of a tubelet-{tub} encoder cannot be decoded frame by frame")
        grid = enc.token_grid((tub, self.img_size, self.img_size))  # (1, H', W')
        tokens = latents.to(self.device).flatten(0, 1)  # (B*T', n, D)
        with self.autocast():
            cond = self._masked_conditions(tokens, grid, decode_groups)  # (B*T', H'W', D_pred)
            if hasattr(self.decoder, "make_sampler"):
                pix = self.decoder.sample(cond, num_steps=num_steps, scheduler=scheduler, generator=generator)
            else:  # linear decoder ablation
                pix = self.decoder.sample(cond)
        video = unpatchify(pix.float(), grid, patch, tub, order=self.decoder.pixel_order)  # (B*T', 3, tub, S, S)
        mean = video.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1, 1)
        std = video.new_tensor(IMAGENET_STD).view(1, 3, 1, 1, 1)
        video = (video * std + mean).clamp(0, 1)
        return video.transpose(1, 2).reshape(b, tt * tub, 3, self.img_size, self.img_size)

    def _masked_conditions(self, tokens: torch.Tensor, grid, groups: int) -> torch.Tensor:
        if groups == 1:
            return self.stage1_predictor(tokens, None, grid).patches
        _, h, w = grid
        side = int(round(groups ** 0.5))
        if side * side != groups or h % side or w % side:
            raise ValueError(f"decode_groups must be a square whose side divides the token grid {h}x{w}, got {groups}")
        rows = torch.arange(h, device=tokens.device)[:, None] % side
        cols = torch.arange(w, device=tokens.device)[None, :] % side
        group = (rows * side + cols).flatten()  # (H'W',) interleaved: every masked token has visible neighbours
        p = self.stage1_predictor.num_prefix_tokens
        total = 0.0
        for g in range(groups):
            vis = (group == g).nonzero().squeeze(1)
            mask = (group != g).expand(tokens.shape[0], -1)
            inp = torch.cat([tokens[:, :p], tokens[:, p:][:, vis]], 1)
            out = self.stage1_predictor(inp, mask, grid).patches.float()
            total = total + out * mask.unsqueeze(-1)
        return (total / (groups - 1)).to(tokens.dtype)

    def _require_predictor(self) -> ActionConditionedPredictor:
        if self.predictor is None:
            raise RuntimeError(
                "this WorldModel was loaded from a pretraining checkpoint and has no world-model predictor: "
                "train one with train_world_model (ivnext-world-model) and load that run"
            )
        return self.predictor


def _stored_backbone(record: dict, spec: str | None, ckpt: Path) -> Backbone:
    """The backbone a world-model checkpoint names, checked against the fingerprint it was trained with."""
    if spec is not None and spec.split(":", 1)[0] != record["spec"].split(":", 1)[0]:
        raise ValueError(f"encoder={spec!r} is not the kind of backbone {ckpt} was trained on ({record['spec']!r})")
    try:
        backbone = backbone_from_record(record, spec)
    except (FileNotFoundError, ValueError) as e:
        raise type(e)(f"{e}\n  (the backbone of the world model {ckpt}; if its files moved, pass "
                      f"WorldModel.load(..., encoder='<spec at the new place>'))") from e
    want = record.get("fingerprint")
    if want is not None and backbone.fingerprint() != want:
        raise ValueError(f"{backbone.spec!r} holds other weights than the ones the world model {ckpt} was trained on "
                         f"(fingerprint {backbone.fingerprint()} != {want})")
    return backbone
