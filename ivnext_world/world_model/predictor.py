"""Action-conditioned latent predictor (V-JEPA 2-AC, arXiv 2506.09985, Sec. 3) with cached rollouts.

Each token-frame ``t`` of a clip contributes ``m = k + n`` tokens to one sequence: ``k`` conditioning
tokens (the action taken at frame ``t`` and the proprioceptive state at frame ``t``, each from its
own ``nn.Linear``; ``k = 0`` for an action-free model) followed by the frame's ``n`` latent tokens
from the frozen encoder. Every token gets a learned time embedding (its frame) and the latent tokens
a learned spatial embedding (their slot). The transformer (the project's
:class:`~ivnext_world.models.block.Block`) is block-causal in time: a token of frame ``t`` attends
to every token of frames ``<= t``. The output at frame ``t``'s latent slots is the prediction of
frame ``t + 1``.

Because of the block-causal mask the keys and values of past frames never change when a frame is
appended, so :meth:`ActionConditionedPredictor.rollout` caches them and each imagined step costs one
frame's ``m`` tokens instead of the whole history.

Conventions (shared with :class:`~ivnext_world.data.trajectory.TrajectoryDataset`): the action of
frame ``t`` is the one taken after observing frame ``t``; all inputs are already normalised (the
:class:`~ivnext_world.world_model.model.WorldModel` API normalises raw actions and proprio).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import torch
from torch import nn

from ..models.block import Block, init_transformer_weights, rescale_block_outputs

__all__ = ["ACPredictorConfig", "ActionConditionedPredictor", "block_causal_mask"]

KVCache = list  # one (k, v) pair per block, each (B, heads, L_past, head_dim)


@dataclass
class ACPredictorConfig:
    """Everything needed to rebuild an :class:`ActionConditionedPredictor` (stored in checkpoints)."""

    enc_dim: int = 192  # width of the frozen encoder's tokens (set from the encoder when training)
    tokens_per_frame: int = 20  # n: latent tokens per token-frame (set from the encoder and pooling)
    action_dim: Optional[int] = None  # None: action-free (no action tokens)
    proprio_dim: Optional[int] = None  # None: no proprio tokens
    embed_dim: int = 192
    depth: int = 4  # V-JEPA 2-AC: 24 layers of width 1024; tiny default for the built-in tasks
    num_heads: int = 3
    mlp_ratio: float = 4.0
    max_frames: int = 32  # length of the time-embedding table: context + horizon must fit
    drop_path: float = 0.0
    # Predict the change z[t+1] - z[t] and add it to z[t]. Consecutive robot frames differ little,
    # so copying the last latent is a strong baseline; with a zero-initialised output projection the
    # untrained model *is* that baseline and training only has to learn the motion.
    residual: bool = True
    layer_scale: float = 0.1  # LayerScale init of every block (0: none)
    # Also add the frame's action/proprio embeddings to each of its latent tokens (besides the
    # separate tokens), a direct path instead of one attention slot among all the frames' tokens.
    # Measured on the demo's push data (300 steps): action sensitivity 0.000 without, 0.001 with;
    # both models stay at copy-last (see the README): kept because it cannot hurt, not as the fix.
    cond_add: bool = True
    # Also predict the next proprio from the output at the frame's proprio token (DINO-WM keeps the
    # proprio in its latent state), as a change added to the current proprio (zero-initialised head:
    # untrained, it holds the last proprio). Imagined frames then carry predicted proprio instead of
    # holding the last observed one, and planners can score it against a goal state. Needs proprio_dim.
    predict_proprio: bool = False


def block_causal_mask(num_frames: int, tokens_per_frame: int, device=None) -> torch.Tensor:
    """Bool ``(L, L)`` with ``L = num_frames * tokens_per_frame``: True where query frame >= key frame."""
    frame = torch.arange(num_frames, device=device).repeat_interleave(tokens_per_frame)  # (L,)
    return frame[:, None] >= frame[None, :]


class ActionConditionedPredictor(nn.Module):
    """Block-causal transformer over per-frame ``[action | proprio | latents]`` tokens.

    Shapes: ``latents (B, F, n, D_enc)``, ``actions (B, F, A)``, ``proprio (B, F, S)`` ->
    predictions ``(B, F, n, D_enc)`` where output ``[:, t]`` predicts the latents of frame ``t + 1``.
    """

    def __init__(self, cfg: ACPredictorConfig):
        super().__init__()
        self.cfg = cfg
        e = cfg.embed_dim
        self.action_dim = cfg.action_dim or None
        self.proprio_dim = cfg.proprio_dim or None
        self.action_embed = nn.Linear(cfg.action_dim, e) if self.action_dim else None
        self.proprio_embed = nn.Linear(cfg.proprio_dim, e) if self.proprio_dim else None
        self.num_cond = int(self.action_embed is not None) + int(self.proprio_embed is not None)
        self.tokens_per_frame = cfg.tokens_per_frame
        self.input_proj = nn.Linear(cfg.enc_dim, e)
        self.time_embed = nn.Parameter(torch.zeros(1, cfg.max_frames, 1, e))
        self.spatial_embed = nn.Parameter(torch.zeros(1, 1, cfg.tokens_per_frame, e))
        dpr = [cfg.drop_path * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.blocks = nn.ModuleList(
            Block(e, cfg.num_heads, cfg.mlp_ratio, init_values=cfg.layer_scale or None, drop_path=dpr[i])
            for i in range(cfg.depth)
        )
        self.norm = nn.RMSNorm(e, eps=1e-6)  # fused, same formula and weight name as timm's RmsNorm
        self.output_proj = nn.Linear(e, cfg.enc_dim)
        if cfg.predict_proprio and not self.proprio_dim:
            raise ValueError("predict_proprio needs proprio tokens (proprio_dim)")
        self.proprio_head = nn.Linear(e, cfg.proprio_dim) if cfg.predict_proprio else None
        self.apply(init_transformer_weights)
        rescale_block_outputs(self.blocks)
        if cfg.residual:
            nn.init.zeros_(self.output_proj.weight)
            nn.init.zeros_(self.output_proj.bias)
        if self.proprio_head is not None:
            nn.init.zeros_(self.proprio_head.weight)
            nn.init.zeros_(self.proprio_head.bias)
        nn.init.trunc_normal_(self.time_embed, std=0.02)
        nn.init.trunc_normal_(self.spatial_embed, std=0.02)

    @property
    def action_conditioned(self) -> bool:
        return self.action_embed is not None

    @property
    def predicts_proprio(self) -> bool:
        return self.proprio_head is not None

    @property
    def frame_len(self) -> int:
        """m: tokens per frame in the sequence (conditioning tokens + latents)."""
        return self.num_cond + self.tokens_per_frame

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"time_embed", "spatial_embed"}

    def config_dict(self) -> dict:
        return asdict(self.cfg)

    def init_blocks_from(self, blocks: nn.ModuleList) -> int:
        """Copy the weights of pretrained blocks (e.g. ``Predictor.blocks``) of the same width/heads.

        Copies ``min(depth, len(blocks))`` blocks, first to first; returns how many were copied.
        """
        if not all(isinstance(b, Block) for b in blocks):
            kinds = sorted({type(b).__name__ for b in blocks})
            raise TypeError(
                f"cannot copy {kinds} layers into the action-conditioned predictor, whose KV-cached block-causal "
                "rollouts run this project's Block (a predictor_kind=modernbert checkpoint has ModernBERT layers): "
                "train it from scratch (init_from_pretrained=false)"
            )
        copied = 0
        for mine, theirs in zip(self.blocks, blocks):
            mine.load_state_dict(theirs.state_dict())
            copied += 1
        return copied

    # ------------------------------------------------------------------ tokens
    def _check(self, latents: torch.Tensor, actions, proprio) -> None:
        if latents.dim() != 4 or latents.shape[2:] != (self.tokens_per_frame, self.cfg.enc_dim):
            raise ValueError(
                f"latents must be (B, F, {self.tokens_per_frame}, {self.cfg.enc_dim}), got {tuple(latents.shape)}"
            )
        if self.action_conditioned and actions is None:
            raise ValueError("this predictor is action-conditioned: actions are required")
        if not self.action_conditioned and actions is not None:
            raise ValueError("this predictor is action-free (no action head): pass actions=None")
        for name, x, dim in (("actions", actions, self.action_dim), ("proprio", proprio, self.proprio_dim)):
            if x is not None and dim is not None and x.shape[-1] != dim:
                raise ValueError(f"{name} must have {dim} features (last dim), got {x.shape[-1]}")

    def embed_frames(self, latents, actions=None, proprio=None, t0: int = 0) -> torch.Tensor:
        """Tokens of frames ``t0 .. t0+F-1``: ``(B, F, n, D_enc)`` (+ ``(B, F, A)``, ``(B, F, S)``) -> ``(B, F*m, E)``.

        A missing ``proprio`` of a proprio-conditioned model is zeros (the training mean once normalised).
        """
        b, f = latents.shape[:2]
        if t0 + f > self.cfg.max_frames:
            raise ValueError(
                f"frames {t0}..{t0 + f - 1} exceed the time embedding of {self.cfg.max_frames} frames "
                "(context + horizon - 1 must be <= max_frames)"
            )
        x = self.input_proj(latents) + self.spatial_embed  # (B, F, n, E)
        parts = []
        if self.action_embed is not None:
            parts.append(self.action_embed(actions.to(x.dtype)).unsqueeze(2))  # (B, F, 1, E)
        if self.proprio_embed is not None:
            if proprio is None:
                proprio = x.new_zeros(b, f, self.proprio_dim)
            parts.append(self.proprio_embed(proprio.to(x.dtype)).unsqueeze(2))
        if self.cfg.cond_add and parts:
            x = x + sum(parts)  # (B, F, n, E): every latent token carries its frame's action/proprio
        x = torch.cat(parts + [x], dim=2) + self.time_embed[:, t0:t0 + f]  # (B, F, m, E)
        return x.flatten(1, 2)

    def head(self, x: torch.Tensor, latents: torch.Tensor, proprio: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Sequence outputs ``(B, F*m, E)`` of frames with latents ``(B, F, n, D_enc)`` and proprio
        ``(B, F, S)`` (None: zeros) -> (predicted next latents ``(B, F, n, D_enc)``: the latents plus a
        predicted change when ``cfg.residual``; predicted next proprio ``(B, F, S)`` or None when the
        model does not predict proprio)."""
        f = latents.shape[1]
        x = self.norm(x).unflatten(1, (f, self.frame_len))  # (B, F, m, E)
        out = self.output_proj(x[:, :, self.num_cond:])
        z = out + latents if self.cfg.residual else out
        if self.proprio_head is None:
            return z, None
        dp = self.proprio_head(x[:, :, self.num_cond - 1])  # the proprio token is the last conditioning token
        return z, dp if proprio is None else proprio + dp

    # ------------------------------------------------------------------ forward
    def forward(self, latents, actions=None, proprio=None, return_proprio: bool = False):
        """Teacher-forced prediction: ``(B, F, n, D)`` -> ``(B, F, n, D)``, output ``t`` predicts frame ``t+1``.

        ``return_proprio=True`` returns ``(latents, proprio)`` with the predicted next proprio
        ``(B, F, S)`` (None when the model does not predict it)."""
        self._check(latents, actions, proprio)
        f = latents.shape[1]
        x = self.embed_frames(latents, actions, proprio)  # (B, F*m, E)
        mask = block_causal_mask(f, self.frame_len, x.device)
        for blk in self.blocks:
            x = blk(x, attn_mask=mask)
        z, p = self.head(x, latents, proprio)
        return (z, p) if return_proprio else z

    def _step(self, x: torch.Tensor, cache: KVCache | None) -> tuple[torch.Tensor, KVCache]:
        """Run new tokens ``(B, L, E)`` of whole frames against the cache; return outputs and the grown cache.

        The new tokens belong to frames after every cached one, so they may attend to all cached
        tokens; among themselves the mask is block-causal (several new frames at once = a prefix).
        """
        f = x.shape[1] // self.frame_len
        mask = None
        if f > 1:
            past = 0 if cache is None else cache[0][0].shape[2]
            mask = block_causal_mask(f, self.frame_len, x.device)
            mask = torch.cat([mask.new_ones(mask.shape[0], past), mask], dim=1)  # (L, past + L)
        new_cache = []
        for i, blk in enumerate(self.blocks):
            x, kv = blk(x, attn_mask=mask, kv_cache=None if cache is None else cache[i], return_kv=True)
            new_cache.append(kv)
        return x, new_cache

    def rollout(
        self,
        context: torch.Tensor,
        actions: torch.Tensor | None = None,
        proprio: torch.Tensor | None = None,
        context_actions: torch.Tensor | None = None,
        horizon: int | None = None,
        use_cache: bool = True,
        return_proprio: bool = False,
    ):
        """Imagine ``H`` future frames autoregressively (normalised inputs).

        Args:
            context: ``(Bc, Tc, n, D)`` latents of the observed frames; ``Bc`` is ``B`` or 1 (then
                shared by all ``B`` candidate action sequences).
            actions: ``(B, H, A)``; ``actions[:, h]`` is taken at frame ``Tc - 1 + h`` (the first one
                at the last context frame). None for an action-free model (then ``horizon`` is needed).
            proprio: ``(Bc or B, Tc, S)`` proprio of the context frames, or None (zeros). Imagined
                frames carry the model's predicted proprio when it predicts proprio
                (``cfg.predict_proprio``), else they hold the last known one (the training rollout
                loss does the same, so training and use agree).
            context_actions: ``(Bc or B, Tc - 1, A)`` actions taken at the earlier context frames;
                None = zeros (the mean action once normalised).
            horizon: number of frames to imagine; default ``H``; at most ``H`` when actions are given.
            use_cache: False recomputes the whole history at every step (the reference the cache is
                tested against).
            return_proprio: also return the imagined frames' proprio ``(B, H, S)`` (predicted, or the
                held one; None for a model without proprio tokens).

        Differentiable: gradients flow to ``actions`` (and the weights) unless the caller disables
        them (``WorldModel.rollout`` runs under ``torch.no_grad`` unless ``grad=True``).

        Returns:
            ``(B, H, n, D)`` predicted latents of frames ``Tc .. Tc + H - 1`` (and the proprio).
        """
        bc, tc = context.shape[:2]
        if actions is not None:
            b, h = actions.shape[:2]
            if horizon is not None:
                if horizon > h:
                    raise ValueError(f"horizon {horizon} needs {horizon} actions, got {h}")
                h = horizon
                actions = actions[:, :h]
        else:
            if horizon is None:
                raise ValueError("an action-free rollout needs a horizon")
            b, h = bc, horizon
        if bc not in (1, b):
            raise ValueError(f"context batch {bc} must be 1 or the actions' batch {b}")
        if bc == 1 and any(x is not None and x.shape[0] != 1 for x in (proprio, context_actions)):
            context, bc = context.expand(b, -1, -1, -1), b  # per-candidate context inputs: no sharing
        self._check(context, actions if actions is None else actions[:, :1], proprio)
        if self.action_conditioned:
            if context_actions is None:
                context_actions = actions.new_zeros(bc, tc - 1, self.action_dim)
            if context_actions.shape[1] != tc - 1:
                raise ValueError(f"context_actions must cover Tc-1={tc - 1} frames, got {context_actions.shape[1]}")
            all_actions = torch.cat([context_actions.expand(b, -1, -1), actions], dim=1)  # (B, Tc-1+H, A)
        else:
            all_actions = None
        if self.proprio_embed is not None and proprio is None:
            proprio = context.new_zeros(bc, tc, self.proprio_dim)
        if self.proprio_embed is None:
            proprio = None

        def cond(x, lo, hi):
            return None if x is None else x[:, lo:hi]

        def next_proprio(current, predicted):  # proprio of the imagined frame
            if current is None:
                return None
            return predicted if predicted is not None else current[:, -1:]

        preds, props = [], []
        if not use_cache:
            frames = context.expand(b, -1, -1, -1)
            prop = None if proprio is None else proprio.expand(b, -1, -1)
            for step in range(h):
                f = tc + step
                z, p = self.forward(frames, cond(all_actions, 0, f), prop, return_proprio=True)
                preds.append(z[:, -1])  # (B, n, D)
                frames = torch.cat([frames, z[:, -1:]], dim=1)
                if prop is not None:
                    prop = torch.cat([prop, next_proprio(prop, None if p is None else p[:, -1:])], dim=1)
                    props.append(prop[:, -1])
        else:
            # Frames 0..Tc-2 do not depend on the candidate actions: run them once at the context's batch.
            cache = None
            if tc > 1:
                prefix_a = None if all_actions is None else context_actions
                x = self.embed_frames(context[:, : tc - 1], prefix_a, cond(proprio, 0, tc - 1), t0=0)
                _, cache = self._step(x, None)
                if bc != b:
                    cache = [(k.expand(b, -1, -1, -1), v.expand(b, -1, -1, -1)) for k, v in cache]
            frame = context[:, -1:].expand(b, -1, -1, -1)  # (B, 1, n, D)
            prop = None if proprio is None else proprio[:, -1:].expand(b, -1, -1)  # (B, 1, S)
            for step in range(h):
                t = tc - 1 + step
                frame, p, cache = self.step(frame, cond(all_actions, t, t + 1), prop, t, cache)
                preds.append(frame[:, 0])
                prop = next_proprio(prop, p)
                if prop is not None:
                    props.append(prop[:, 0])
        z = torch.stack(preds, dim=1)
        if not return_proprio:
            return z
        return z, (torch.stack(props, dim=1) if props else None)

    def step(self, frame: torch.Tensor, action: torch.Tensor | None, proprio: torch.Tensor | None,
             t: int, cache: KVCache | None) -> tuple[torch.Tensor, torch.Tensor | None, KVCache]:
        """One cached step: frame ``t``'s latents ``(B, 1, n, D)``, its action ``(B, 1, A)`` and proprio
        ``(B, 1, S)`` (normalised; None where the model has no such token) and the cache of frames
        ``< t`` (None at ``t = 0``) -> (predicted latents of frame ``t + 1`` ``(B, 1, n, D)``, its
        predicted proprio ``(B, 1, S)`` or None when the model does not predict proprio, the cache of
        frames ``<= t``). The building block of :meth:`rollout` and of interactive stepping."""
        x = self.embed_frames(frame, action, proprio, t0=t)  # (B, m, E)
        x, cache = self._step(x, cache)
        z, p = self.head(x, frame, proprio)
        return z, p, cache
