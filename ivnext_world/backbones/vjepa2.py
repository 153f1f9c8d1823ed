"""V-JEPA 2 (arXiv 2506.09985) as a :class:`~.base.Backbone`: transformers' ``VJEPA2Model`` from a
local folder (``config.json`` + safetensors, as ``save_pretrained`` or the Hugging Face cache of
``facebook/vjepa2-vit{l,h,g}-fpc64-256`` writes it).

The encoder's own forward runs (``skip_predictor=True``): tokens are ``last_hidden_state`` (after its
final LayerNorm), no cls token; hidden state of block ``i`` = ``layernorm(hidden_states[i + 1])``.
Tubelet 2, patch 16: one frame is encoded as a 2-frame clip of that frame repeated, which gives one
token-frame per frame, so one action per latent frame holds, exactly as V-JEPA 2-AC encodes each
frame of a robot trajectory. Its 3D RoPE takes positions from ``config.crop_size``: the model is built
with ``crop_size = img_size`` (any multiple of the patch size; no learned table to resize). V-JEPA 2
has no pooled output of its own (its attentive pooler is trained per task): the pooled vector is the
mean of the patch tokens. Normalisation: ImageNet mean/std (its video processor).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
from .base import Backbone, BackboneInputError, BackboneOutput

__all__ = ["VJEPA2Backbone"]


def read_vjepa2_config(folder: Path) -> dict:
    """``config.json`` of a V-JEPA 2 folder, or a ``ValueError``/``FileNotFoundError`` naming the folder."""
    from ..models.hf_vision import read_json_config

    if not folder.exists():
        raise FileNotFoundError(f"V-JEPA 2 folder not found: {folder}")
    if not folder.is_dir():
        raise ValueError(f"{folder} is a file: vjepa2:<folder> takes a transformers folder (config.json + "
                         f"model.safetensors, e.g. a save_pretrained or Hugging Face cache snapshot folder)")
    cfg_file = folder / "config.json"
    if not cfg_file.is_file():
        raise ValueError(f"{folder} has no config.json: vjepa2:<folder> takes a transformers folder "
                         f"(config.json + model.safetensors)")
    config = read_json_config(cfg_file)
    if config.get("model_type") != "vjepa2":
        raise ValueError(f"{cfg_file}: model_type {config.get('model_type')!r} is not a V-JEPA 2 model "
                         f"('vjepa2'); image models load with hf:<folder>")
    return config


class VJEPA2Backbone(Backbone):
    """Args:
        folder: transformers V-JEPA 2 folder (resolved; a cache ``models--...`` folder is resolved by the caller).
        img_size: frame side; None = the folder's ``crop_size``.
        spec, record: see :func:`~ivnext_world.backbones.load_backbone`.
    """

    kind = "vjepa2"
    fixed_size = True  # RoPE positions come from config.crop_size

    def __init__(self, folder: str | Path, img_size: int | None, spec: str, record: dict | None = None):
        super().__init__()
        from transformers import VJEPA2Model

        from ..models.hf_vision import check_loading_info

        folder = Path(folder)
        config = read_vjepa2_config(folder)
        size = int(img_size or config.get("crop_size", 256))
        try:  # mismatched shapes are reported by check_loading_info, naming the tensors
            model, info = VJEPA2Model.from_pretrained(
                str(folder), output_loading_info=True, ignore_mismatched_sizes=True, crop_size=size,
                dtype=torch.float32)
        except (OSError, RuntimeError, ValueError) as e:
            raise ValueError(f"{folder}: transformers could not load a VJEPA2Model from it: {e}") from e
        check_loading_info(folder, "VJEPA2Model", info, prefix="encoder.")  # the predictor is not used
        self.model = model.eval()
        c = model.config
        self._setup(spec=spec, record=record or {"spec": spec, "img_size": size}, img_size=size,
                    patch_size=c.patch_size, tubelet_size=c.tubelet_size, embed_dim=c.hidden_size,
                    pool_dim=c.hidden_size, depth=c.num_hidden_layers, num_heads=c.num_attention_heads,
                    num_prefix_tokens=0, mean=IMAGENET_MEAN, std=IMAGENET_STD)

    def _run(self, videos: torch.Tensor, hidden: bool):
        """``(R, T, 3, S, S)`` -> transformers' encoder output (``skip_predictor``)."""
        return self.model(pixel_values_videos=videos, skip_predictor=True, output_hidden_states=hidden)

    def forward_frames(self, x: torch.Tensor, layers: Sequence[int] | None = None,
                       pooled: bool = True) -> BackboneOutput:
        if x.shape[-1] != self.img_size or x.shape[-2] != self.img_size:
            raise BackboneInputError(f"backbone {self.spec!r} takes {self.img_size}-px frames (its RoPE grid), "
                                     f"got {tuple(x.shape[-2:])}")
        videos = x.unsqueeze(1).expand(-1, self.tubelet_size, -1, -1, -1)  # (R, tub, 3, S, S): one token-frame
        take = self.resolve_layers(layers) if layers else []
        out = self._run(videos, bool(take))
        tokens = out.last_hidden_state  # (R, N, D), final LayerNorm applied
        norm = self.model.encoder.layernorm
        hidden = [norm(out.hidden_states[i + 1]) for i in take]  # hidden_states[0]: the patch embeddings
        pool = tokens.mean(1) if pooled else None
        return BackboneOutput(tokens, tokens[:, :0], pool, self.grid, hidden)

    def forward_clip(self, video: torch.Tensor) -> torch.Tensor:
        b, _, t, _, w = video.shape
        self.check_input(t, w)
        tokens = self._run(video.transpose(1, 2), False).last_hidden_state  # (B, T'*N, D)
        return tokens.unflatten(1, (t // self.tubelet_size, self.num_patches))
