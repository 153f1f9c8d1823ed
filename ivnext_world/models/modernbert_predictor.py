"""The paper's predictor: the last N layers of ModernBERT behind :class:`~.predictor.Predictor`'s interface.

InternVideo-Next (arXiv 2512.01342, Sec. 3.1; official ``InternVideo_next_s1.py``) initialises its
predictor from the last 5 layers of the text encoder ModernBERT-large (1024 wide) and reports it
ahead of a plain transformer (K400/SSv2 75.8/36.9 vs 74.1/34.9). The layers here are transformers'
own ``ModernBertEncoderLayer`` modules (pre-LayerNorm attention with rotary embeddings, GeGLU MLP);
nothing of them is re-implemented. Around them, as the official code does:

1. the mask token fills the masked grid positions and a learned position embedding (3-D sin-cos
   init, :class:`~.pos_embed.VideoPosEmbed`) is added, both at the ENCODER width;
2. an MLP (Linear, GELU, Linear, LayerNorm: the official ``to_bert_proj``) maps every token up to
   the ModernBERT width;
3. the ModernBERT layers run over ``[cls | full grid, time-major | extra tokens]``; no final norm
   (the official code feeds the last layer's output to the decoder as is).

How the video sequence maps onto ModernBERT's 1-D layers (the official behaviour, kept): rotary
positions are the sequence indices ``0 .. L-1`` (cls first, then the grid time-major, then any extra
tokens), and each layer keeps the attention type it was trained with. ModernBERT-large alternates
global attention (every 3rd layer, rope theta 160k) with local sliding-window attention (window
``local_attention = 128``, i.e. +-64 tokens, rope theta 10k); of the last 5 layers (23..27) layers 24
and 27 are global and 23, 25, 26 local. The official code calls the layers through flash-attn's
varlen kernel with that window, so a local layer there sees +-64 neighbours in raster order (a
quarter of a 16x16 frame). An ablation with global attention in every layer, same rotary
frequencies: ``predictor_text_config={"local_attention": <at least 2 L>}``.

With a local ModernBERT folder (``config.json`` + weights, e.g. ``answerdotai/ModernBERT-large``) the
layers start from the text checkpoint (``ModernBertModel.from_pretrained``, then the last N layers).
Without one they start at the library's own random init, with a loud warning, and ``init`` (stored
in the EPD config) says ``"random"``.

Not covered: the world model's :class:`~ivnext_world.world_model.predictor.ActionConditionedPredictor`
(KV-cached, block-causal rollouts) runs the project's :class:`~.block.Block` and cannot take these
layers; this predictor does accept ``extra_tokens`` and a block-causal ``attn_mask`` (the EPD
predictor's interface, used by the masked-rollout world model).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.utils.checkpoint
from torch import nn

from ..masking import visible_indices
from .pos_embed import VideoPosEmbed
from .predictor import PredictorOutput

__all__ = ["MODERNBERT_LARGE", "ModernBertPredictor"]

log = logging.getLogger(__name__)

# ModernBERT-large's shape (the official code's random-init config); the other fields are
# ModernBertConfig's defaults, which are ModernBERT's (rope thetas 160k/10k, window 128, global
# every 3rd layer, bias-free LayerNorm, GeGLU MLP, init std 0.02 cut at 2 std).
MODERNBERT_LARGE = dict(hidden_size=1024, intermediate_size=2624, num_hidden_layers=28, num_attention_heads=16)


class ModernBertPredictor(nn.Module):
    """The last ``depth`` ModernBERT layers over ``[cls | full patch grid | extra tokens]``.

    Same call and outputs as :class:`~.predictor.Predictor` (see there for the sequence layout,
    ``mask``, ``extra_tokens`` and ``attn_mask``); ``attn_mask`` must be boolean here.

    Args:
        enc_dim: encoder width (input).
        grid_size: default token grid ``(T', H', W')`` for the position table.
        num_cls_tokens: must match the encoder's.
        depth: how many of the last ModernBERT layers (paper: 5).
        text_model: local ModernBERT folder to start from; None = random init (loudly warned).
        config: ``ModernBertConfig`` fields; over :data:`MODERNBERT_LARGE` without ``text_model``,
            over the folder's ``config.json`` with it. A full config (``config.to_dict()``, as
            :attr:`config_dict` returns and checkpoints store) rebuilds the same layers.
        load_text_weights: False builds the architecture only (rebuilding from a checkpoint, whose
            weights replace these anyway): no folder is read and nothing is warned.
    """

    def __init__(
        self,
        enc_dim: int,
        grid_size: tuple[int, int, int],
        num_cls_tokens: int = 4,
        depth: int = 5,
        text_model: str | Path | None = None,
        config: dict | None = None,
        load_text_weights: bool = True,
        grad_checkpointing: bool = False,
    ):
        super().__init__()
        from transformers import ModernBertConfig, ModernBertModel
        from transformers.models.modernbert.modeling_modernbert import ModernBertRotaryEmbedding

        self.enc_dim = enc_dim
        self.num_prefix_tokens = num_cls_tokens
        self.grid_size = tuple(grid_size)
        self.grad_checkpointing = grad_checkpointing
        overrides = dict(config or {})
        if text_model is not None and load_text_weights:
            bert = self._load_text_model(Path(text_model), overrides)
            self.init = f"text:{text_model}"
        else:
            if "model_type" in overrides:  # a stored full config
                cfg = ModernBertConfig.from_dict(overrides)
            else:
                cfg = ModernBertConfig(**{**MODERNBERT_LARGE, **overrides})
            # Build on the meta device, materialise only the kept layers, and let the library
            # initialise them (std 0.02; output projections 0.02 / sqrt(2 * num_hidden_layers)).
            with torch.device("meta"):
                bert = ModernBertModel(cfg)
            self._check_depth(bert.config, depth)
            nn.ModuleList(list(bert.layers)[-depth:]).to_empty(device="cpu")
            bert.initialize_weights()
            self.init = "random" if text_model is None else f"text:{text_model}"
            if load_text_weights:
                banner = "!" * 78
                log.warning(
                    "\n%s\n!! ModernBertPredictor has RANDOM weights: no ModernBERT folder was given\n"
                    "!! (model.predictor_text_model). The paper starts from the text checkpoint\n"
                    "!! (answerdotai/ModernBERT-large); random init is its ablation (74.2 vs 75.8 K400).\n%s",
                    banner, banner,
                )
        self._check_depth(bert.config, depth)
        self.config = bert.config
        self.embed_dim = int(self.config.hidden_size)
        self.num_heads = int(self.config.num_attention_heads)
        self.layers = nn.ModuleList(list(bert.layers)[-depth:])  # ModernBertEncoderLayer, original indices
        self.rotary_emb = ModernBertRotaryEmbedding(self.config)
        del bert  # the embeddings and the other layers are not kept

        self.mask_token = nn.Parameter(torch.zeros(1, 1, enc_dim))
        self.pos_embed = VideoPosEmbed(enc_dim, self.grid_size, num_prefix=num_cls_tokens)
        self.input_proj = nn.Sequential(  # official to_bert_proj (MLP_Decoder, norm_type='none')
            nn.Linear(enc_dim, enc_dim), nn.GELU(), nn.Linear(enc_dim, self.embed_dim), nn.LayerNorm(self.embed_dim),
        )
        for m in self.input_proj:
            if isinstance(m, nn.Linear):  # official MLP_Decoder init
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    @staticmethod
    def _check_depth(config, depth: int) -> None:
        if not 0 < depth <= config.num_hidden_layers:
            raise ValueError(f"predictor depth {depth} must be in 1..{config.num_hidden_layers} "
                             f"(the ModernBERT config has {config.num_hidden_layers} layers)")

    @staticmethod
    def _load_text_model(folder: Path, overrides: dict):
        from transformers import ModernBertModel

        from .hf_vision import check_loading_info, read_json_config

        if not folder.is_dir():
            raise FileNotFoundError(f"ModernBERT folder not found: {folder}")
        if not (folder / "config.json").is_file():
            raise ValueError(f"{folder} has no config.json: a ModernBERT folder (e.g. answerdotai/ModernBERT-large "
                             f"as downloaded) holds config.json next to model.safetensors")
        model_type = read_json_config(folder / "config.json").get("model_type")
        if model_type != "modernbert":
            raise ValueError(f"{folder / 'config.json'} is a {model_type!r} model, not ModernBERT")
        try:
            bert, info = ModernBertModel.from_pretrained(str(folder), dtype=torch.float32, output_loading_info=True,
                                                         ignore_mismatched_sizes=True, **overrides)
        except (OSError, RuntimeError, ValueError) as e:
            raise ValueError(f"{folder}: transformers could not load ModernBERT from it: {e}") from e
        check_loading_info(folder, "ModernBertModel", info, prefix="layers.")
        return bert

    def config_dict(self) -> dict:
        """The full ``ModernBertConfig`` (JSON-serialisable), enough to rebuild these layers."""
        return self.config.to_dict()

    @property
    def blocks(self) -> nn.ModuleList:
        return self.layers

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"mask_token", "pos_embed.pos_embed"}

    def run_layers(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The ModernBERT layers on a sequence ``(B, L, D_pred)`` -> ``(B, L, D_pred)``.

        Rotary positions ``0 .. L-1``; local layers add their sliding window to ``attn_mask``
        (bool, True = may attend, ``(L, L)`` or ``(B, 1, L, L)``; no per-head masks). The masks come from
        transformers' own builders, in the format the configured attention implementation takes.
        """
        from transformers.masking_utils import create_bidirectional_mask, create_bidirectional_sliding_window_mask

        b, length, _ = x.shape
        and_fn = _and_mask_function(attn_mask, b, length) if attn_mask is not None else None
        kw = dict(config=self.config, inputs_embeds=x, attention_mask=None, and_mask_function=and_fn)
        masks = {"full_attention": create_bidirectional_mask(**kw),
                 "sliding_attention": create_bidirectional_sliding_window_mask(**kw)}
        position_ids = torch.arange(length, device=x.device).unsqueeze(0)
        rope = {t: self.rotary_emb(x, position_ids, t) for t in {layer.attention_type for layer in self.layers}}
        ckpt = self.grad_checkpointing and self.training and torch.is_grad_enabled()
        for layer in self.layers:
            t = layer.attention_type
            if ckpt:
                x = torch.utils.checkpoint.checkpoint(layer, x, masks[t], rope[t], use_reentrant=False)
            else:
                x = layer(x, attention_mask=masks[t], position_embeddings=rope[t])
        return x

    def forward(
        self,
        tokens: torch.Tensor,
        mask: torch.Tensor | None = None,
        grid: tuple[int, int, int] | None = None,
        extra_tokens: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> PredictorOutput:
        """Predict every grid position from the visible encoder tokens (see :meth:`Predictor.forward`).

        Shapes: ``tokens (B, num_cls + N_vis, D_enc)``, ``mask (B, N)`` (True = masked),
        ``extra_tokens (B, K, D_pred)`` -> ``patches (B, N, D_pred)``, ``cls (B, num_cls, D_pred)``.
        """
        grid = self.grid_size if grid is None else tuple(grid)
        n = grid[0] * grid[1] * grid[2]
        b, p = tokens.shape[0], self.num_prefix_tokens
        cls, vis = tokens[:, :p], tokens[:, p:]  # encoder width
        if mask is None:
            if vis.shape[1] != n:
                raise ValueError(f"without a mask the encoder must give all {n} tokens, got {vis.shape[1]}")
            full = vis
        else:
            if tuple(mask.shape) != (b, n):
                raise ValueError(f"mask must be (B, N)=({b}, {n}) for grid {grid}, got {tuple(mask.shape)}")
            idx = visible_indices(mask)  # (B, N_vis)
            if idx.shape[1] != vis.shape[1]:
                raise ValueError(f"mask has {idx.shape[1]} visible tokens but the encoder gave {vis.shape[1]}")
            full = self.mask_token.to(vis.dtype).expand(b, n, -1).clone()  # (B, N, D_enc)
            full.scatter_(1, idx.unsqueeze(-1).expand(-1, -1, vis.shape[-1]), vis)
        pos = self.pos_embed(grid)  # (1, num_cls + N, D_enc)
        x = self.input_proj(torch.cat([cls + pos[:, :p], full + pos[:, p:]], dim=1))  # (B, num_cls + N, D_pred)
        if extra_tokens is not None:
            if extra_tokens.shape[0] != b or extra_tokens.shape[-1] != self.embed_dim:
                raise ValueError(f"extra_tokens must be (B, K, {self.embed_dim}), got {tuple(extra_tokens.shape)}")
            x = torch.cat([x, extra_tokens.to(x.dtype)], dim=1)
        x = self.run_layers(x, attn_mask)
        extra = x[:, p + n:] if extra_tokens is not None else None
        return PredictorOutput(patches=x[:, p:p + n], cls=x[:, :p], extra=extra)


def _and_mask_function(attn_mask: torch.Tensor, batch: int, length: int):
    """transformers mask function ``(b, h, q, kv) -> bool`` reading an SDPA-style boolean mask."""
    if attn_mask.dtype != torch.bool:
        raise TypeError("ModernBertPredictor takes a boolean attn_mask (True = may attend)")
    m = attn_mask
    while m.dim() < 4:
        m = m.unsqueeze(0)
    if m.shape[1] != 1 or m.shape[0] not in (1, batch) or tuple(m.shape[-2:]) != (length, length):
        raise ValueError(f"attn_mask must broadcast to ({batch}, 1, {length}, {length}) without a per-head "
                         f"dimension, got {tuple(attn_mask.shape)}")
    m = m[:, 0]  # (B or 1, L, L)
    if m.shape[0] == 1:
        m = m[0]
        return lambda b, h, q, kv: m[q, kv]
    return lambda b, h, q, kv: m[b, q, kv]
