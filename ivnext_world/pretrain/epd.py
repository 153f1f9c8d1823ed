"""The Encoder-Predictor-Decoder model trained by both pretraining stages.

``EPDConfig`` holds every constructor argument, is stored in each checkpoint, and is all that is
needed to rebuild the model (``build_epd``). One container serves both stages: Stage 1 uses the
decoder and the alignment heads, Stage 2 replaces them with the latent-prediction head; parts a
stage does not use are simply not built, so checkpoints only carry trained tensors.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Optional

import timm
import torch
from torch import nn

from ..models import AlignmentHead, DiffusionDecoder, LatentPredictionHead, LinearPixelDecoder, Predictor, VideoViT
from ..models.patch_embed import PIXEL_ORDERS
from ..models.pos_embed import VideoPosEmbed


@dataclass
class EPDConfig:
    encoder: str = "ivnext_vit_tiny_patch14_224"  # a timm-registered preset (see ivnext_world.models.vit.PRESETS)
    img_size: int = 112
    num_frames: int = 8
    patch_size: int = 14
    tubelet_size: int = 1
    drop_path: float = 0.0  # paper: 0.1 (Base), 0.2 (Large)
    encoder_kwargs: dict = field(default_factory=dict)  # any other VideoViT argument, e.g. embed_dim
    predictor_dim: int = 192  # paper: 1024 (ModernBERT-large width)
    predictor_depth: int = 2  # paper: 5
    predictor_heads: int = 3
    # LayerScale init of the predictor's blocks (0: none). The paper's predictor is a plain
    # transformer (ModernBERT layers, no LayerScale). With the encoder's 1e-5 the mask tokens see the
    # visible tokens only through attention scaled by 1e-5, so the reconstruction loss barely reaches
    # the encoder in a short run.
    predictor_layer_scale: float = 0.0
    # "vit": our blocks (predictor_dim/heads/layer_scale above) | "modernbert": the paper's predictor, the
    # last predictor_depth layers of ModernBERT (models/modernbert_predictor.py); width and heads then
    # come from the ModernBERT config and are written back into predictor_dim/predictor_heads.
    predictor_kind: str = "vit"
    predictor_text_model: Optional[str] = None  # local ModernBERT folder (config.json + weights); None: random init
    predictor_text_config: dict = field(default_factory=dict)  # ModernBertConfig fields; the full config once built
    predictor_init: Optional[str] = None  # set when first built: "text:<folder>" or "random" (loudly warned)
    decoder: str = "diffusion"  # "diffusion" | "linear" (ablation) | "none" (alignment only / Stage 2)
    decoder_width: int = 256  # paper's best: 1536
    decoder_depth: int = 3  # paper's best: 6
    # Fidelity switches (README "Where we follow the official code"); the defaults are the official
    # recipe, and checkpoints saved before a switch existed rebuild with the old behaviour (_LEGACY).
    decoder_learn_sigma: bool = True  # official: eps + learned variance, MSE + VLB | False: eps MSE only
    decoder_pixel_order: str = "cthw"  # diffusion/linear targets: "cthw" official channel-first | "thwc"
    # "epsilon": official | "v_prediction": the decoder predicts v = sqrt(abar) eps - sqrt(1 - abar) x0. Decoding
    # (world-model imagination) needs it: with the cosine schedule's zero terminal SNR, an epsilon model's first
    # sampler step divides by sqrt(abar_T) ~ 5e-5 and few-step samples blow up (README "Main job").
    decoder_prediction: str = "epsilon"
    align_layers: int = 6  # student blocks aligned to teacher hidden states (clamped to encoder depth)
    align_pos_embed: bool = True  # official: a learnable position table added before the middle-alignment heads
    teacher_dim: Optional[int] = None  # width of the image teacher; None: no alignment heads (Stage 2)
    latent_head: bool = False  # Stage 2: predictor -> teacher-encoder latents
    latent_head_kind: str = "mlp"  # official "mlp": Linear-GELU-Linear-LN-L2 | "linear": Linear-LN-L2
    grad_checkpointing: bool = False

    def __post_init__(self):
        if self.decoder not in ("diffusion", "linear", "none"):
            raise ValueError(f"EPDConfig.decoder must be 'diffusion', 'linear' or 'none', got {self.decoder!r}")
        if self.predictor_kind not in ("vit", "modernbert"):
            raise ValueError(f"EPDConfig.predictor_kind must be 'vit' or 'modernbert', got {self.predictor_kind!r}")
        if self.decoder_prediction not in ("epsilon", "v_prediction"):
            raise ValueError(f"EPDConfig.decoder_prediction must be 'epsilon' or 'v_prediction', got {self.decoder_prediction!r}")
        if self.decoder_pixel_order not in PIXEL_ORDERS:
            raise ValueError(f"EPDConfig.decoder_pixel_order must be one of {PIXEL_ORDERS}, got {self.decoder_pixel_order!r}")
        if self.latent_head_kind not in ("mlp", "linear"):
            raise ValueError(f"EPDConfig.latent_head_kind must be 'mlp' or 'linear', got {self.latent_head_kind!r}")


# What a checkpoint config without these keys was trained with: the value before the key existed.
_LEGACY = {
    "predictor_layer_scale": 1e-5,
    "decoder_learn_sigma": False,
    "decoder_pixel_order": "thwc",
    "align_pos_embed": False,
    "latent_head_kind": "linear",
}


class EPDModel(nn.Module):
    def __init__(self, cfg: EPDConfig):
        super().__init__()
        # _modernbert_predictor fills in predictor_* fields; the caller's config stays as it was.
        cfg = replace(cfg, predictor_text_config=dict(cfg.predictor_text_config))
        self.cfg = cfg
        self.encoder: VideoViT = timm.create_model(
            cfg.encoder, pretrained=False, img_size=cfg.img_size, num_frames=cfg.num_frames,
            patch_size=cfg.patch_size, tubelet_size=cfg.tubelet_size, drop_path_rate=cfg.drop_path,
            grad_checkpointing=cfg.grad_checkpointing, **cfg.encoder_kwargs,
        )
        enc = self.encoder
        grid = enc.token_grid((cfg.num_frames, cfg.img_size, cfg.img_size))
        if cfg.predictor_kind == "modernbert":
            self.predictor = self._modernbert_predictor(cfg, enc.embed_dim, grid, enc.num_prefix_tokens)
        else:
            self.predictor = Predictor(
                enc_dim=enc.embed_dim, embed_dim=cfg.predictor_dim, depth=cfg.predictor_depth,
                num_heads=cfg.predictor_heads, grid_size=grid, num_cls_tokens=enc.num_prefix_tokens,
                init_values=cfg.predictor_layer_scale or None, grad_checkpointing=cfg.grad_checkpointing,
            )
        patch_dim = 3 * cfg.tubelet_size * cfg.patch_size**2
        self.decoder: nn.Module | None = None
        if cfg.decoder == "diffusion":
            self.decoder = DiffusionDecoder(cfg.predictor_dim, patch_dim, width=cfg.decoder_width, depth=cfg.decoder_depth,
                                            grad_checkpointing=cfg.grad_checkpointing,
                                            learn_sigma=cfg.decoder_learn_sigma, pixel_order=cfg.decoder_pixel_order,
                                            prediction_type=cfg.decoder_prediction)
        elif cfg.decoder == "linear":
            self.decoder = LinearPixelDecoder(cfg.predictor_dim, patch_dim, pixel_order=cfg.decoder_pixel_order)
        self.align_heads: nn.ModuleList | None = None
        self.final_align_head: nn.Module | None = None
        if cfg.teacher_dim:
            self.align_heads = nn.ModuleList(
                AlignmentHead(enc.embed_dim, cfg.teacher_dim, grad_checkpointing=cfg.grad_checkpointing)
                for _ in range(self.num_align_layers)
            )
            self.final_align_head = AlignmentHead(enc.pool_dim, cfg.teacher_dim)
        # Official clip_pos_embed: one learnable table (3-D sin-cos init) added to every aligned block's
        # visible tokens before its head. Patch rows only: the heads never see the cls tokens.
        self.align_pos_embed: VideoPosEmbed | None = None
        if cfg.teacher_dim and cfg.align_pos_embed:
            self.align_pos_embed = VideoPosEmbed(enc.embed_dim, grid, num_prefix=0)
        self.latent_head: nn.Module | None = None
        if cfg.latent_head:  # official Stage-2 head: the alignment heads' MLP (hidden = predictor width)
            head = AlignmentHead if cfg.latent_head_kind == "mlp" else LatentPredictionHead
            self.latent_head = head(cfg.predictor_dim, enc.embed_dim)

    def _modernbert_predictor(self, cfg: EPDConfig, enc_dim: int, grid, num_cls: int) -> nn.Module:
        """Build the ModernBERT predictor and record in ``cfg`` what a rebuild needs (full config, width,
        where the weights came from). A config that already records ``predictor_init`` (a checkpoint's)
        is rebuilt without reading the text folder: its weights come from the checkpoint."""
        from ..models.modernbert_predictor import ModernBertPredictor

        fresh = cfg.predictor_init is None
        pred = ModernBertPredictor(
            enc_dim, grid, num_cls, depth=cfg.predictor_depth, text_model=cfg.predictor_text_model,
            config=cfg.predictor_text_config, load_text_weights=fresh, grad_checkpointing=cfg.grad_checkpointing,
        )
        if fresh:
            cfg.predictor_init = pred.init
        cfg.predictor_text_config = pred.config_dict()
        cfg.predictor_dim, cfg.predictor_heads = pred.embed_dim, pred.num_heads
        return pred

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute in backward, instead of storing, the activations of every stack a training step
        runs: encoder and predictor blocks, the diffusion decoder's residual blocks, the middle
        alignment heads (one per aligned block, over every visible token)."""
        self.cfg.grad_checkpointing = enable
        for part in (self.encoder, self.predictor, self.decoder, *(self.align_heads or ())):
            if part is not None and hasattr(part, "set_grad_checkpointing"):
                part.set_grad_checkpointing(enable)

    @property
    def num_align_layers(self) -> int:
        return min(self.cfg.align_layers, self.encoder.depth)

    def config_dict(self) -> dict:
        return asdict(self.cfg)


def build_epd(cfg: EPDConfig | dict) -> EPDModel:
    """Rebuild a model from an ``EPDConfig`` or the dict stored in a checkpoint."""
    if isinstance(cfg, dict):
        unknown = set(cfg) - set(EPDConfig.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown EPDConfig keys {sorted(unknown)}: checkpoint from another model or version?")
        # A key missing from a stored config means the checkpoint predates it: rebuild what it trained
        # (e.g. LayerScale 1e-5 in the predictor, an epsilon-only decoder on channel-last pixels).
        cfg = EPDConfig(**{**_LEGACY, **cfg})
    return EPDModel(cfg)


class FrozenEncoder(nn.Module):
    """A frozen deep copy of an encoder: eval mode forever, no gradients (Stage 2's teacher).

    The official code never put its Stage-2 teacher in eval mode; overriding ``train`` here makes
    that impossible, even when a parent module calls ``.train()``.
    """

    def __init__(self, encoder: VideoViT):
        super().__init__()
        import copy

        self.encoder = copy.deepcopy(encoder).requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "FrozenEncoder":
        return super().train(False)

    @torch.no_grad()
    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """Final-block patch tokens of the full clip, cls removed, L2-normalised: ``(B, N, D)``."""
        tokens = self.encoder.forward_features(video)
        return nn.functional.normalize(tokens[:, self.encoder.num_prefix_tokens:].float(), dim=-1)


def cosine_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``2 - 2 cos`` averaged over all vectors; both inputs ``(..., D)``, ``pred`` already unit-norm."""
    target = nn.functional.normalize(target.float(), dim=-1)
    pred = nn.functional.normalize(pred.float(), dim=-1)
    return (2 - 2 * (pred * target).sum(-1)).mean()
