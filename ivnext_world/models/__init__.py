"""Neural networks of InternVideo-Next's Encoder-Predictor-Decoder (arXiv 2512.01342).

- :mod:`.vit`: the video ViT encoder (timm-registered presets ``ivnext_vit_{tiny,small,base,large,1b}_patch14_224``)
- :mod:`.predictor`: the predictor over visible tokens + mask tokens (+ optional extra tokens)
- :mod:`.diffusion_decoder`: Stage 1's per-token diffusion decoder and the linear ablation
- :mod:`.heads`: attention pooling, alignment and latent-prediction heads
- :mod:`.modernbert_predictor`: the paper's predictor, the last ModernBERT layers (transformers)
- :mod:`.teacher`: the frozen per-frame image teacher (timm files and folders, transformers folders via :mod:`.hf_vision`)
- :mod:`.block`, :mod:`.patch_embed`, :mod:`.pos_embed`: shared building blocks

Importing this package registers the encoder presets with timm.
"""

from .block import Attention, Block
from .diffusion_decoder import AdaLNMLPDenoiser, DiffusionDecoder, LinearPixelDecoder
from .heads import AlignmentHead, AttentionPoolHead, LatentPredictionHead
from .patch_embed import PatchEmbed3D, patchify, token_grid, unpatchify
from .pos_embed import VideoPosEmbed, sincos_3d_table
from .predictor import Predictor, PredictorOutput
from .teacher import ImageTeacher, TeacherOutput, load_timm_checkpoint, read_state_dict, resize_token_grid
from .vit import PRESETS, VideoViT, resolve_block_indices

__all__ = [
    "AdaLNMLPDenoiser",
    "AlignmentHead",
    "Attention",
    "AttentionPoolHead",
    "Block",
    "DiffusionDecoder",
    "ImageTeacher",
    "LatentPredictionHead",
    "LinearPixelDecoder",
    "PRESETS",
    "PatchEmbed3D",
    "Predictor",
    "PredictorOutput",
    "TeacherOutput",
    "VideoPosEmbed",
    "VideoViT",
    "load_timm_checkpoint",
    "patchify",
    "read_state_dict",
    "resize_token_grid",
    "resolve_block_indices",
    "sincos_3d_table",
    "token_grid",
    "unpatchify",
]
