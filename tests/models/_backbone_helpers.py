"""Tiny random-weight backbones written in the formats users keep (CPU, seconds).

Each builder makes the model with its own library (timm, transformers, our timm presets), switches
its residual branches fully on where an init would hide them (LayerScale 1e-5), saves it the way the
released weights are laid out, and returns the spec that names it plus the reference model.
"""
from __future__ import annotations

from pathlib import Path

import timm
import torch

import ivnext_world.models  # noqa: F401  (registers the encoder presets with timm)
from ivnext_world.models.official import _RENAMES, convert_official_keys, is_official_layout

TINY_DINO_HF = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64, image_size=56,
                    patch_size=14)
TINY_VJEPA2 = dict(crop_size=32, frames_per_clip=4, hidden_size=48, num_attention_heads=2, num_hidden_layers=3,
                   pred_hidden_size=24, pred_num_attention_heads=2, pred_num_hidden_layers=1, num_pooler_layers=1)
TINY_TIMM_DINO = dict(depth=3, embed_dim=32, num_heads=2, img_size=56)
OFFICIAL_NAME = "ivnext_vit_tiny_patch14_224"  # 192 wide, 4 blocks, 3 heads, 4 cls tokens


def to_official_layout(state: dict) -> dict:
    """Our key names -> the official code's (the inverse of ``official._RENAMES``), checked by round trip."""
    exact = {new: old for old, new in _RENAMES if not new.endswith(".")}
    prefix = [(old, new) for old, new in _RENAMES if new.endswith(".")]
    out = {}
    for key, value in state.items():
        if key == "pos_embed.pos_embed":
            key = "pos_embed"
        elif key in exact:
            key = exact[key]
        else:
            for old, new in prefix:
                if key.startswith(new):
                    key = old + key[len(new):]
                    break
        out[key] = value
    assert is_official_layout(out) and convert_official_keys(out).keys() == state.keys()
    return out


def _switch_on_layer_scale(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".gamma") or ".ls" in name:
                p.fill_(1.0)


def official_checkpoint(root: Path) -> tuple[str, torch.nn.Module]:
    """An encoder in the released checkpoints' layout (official key names, a ``{"module": ...}`` container,
    ``.pth``, mean-query pooling, tanh GELU) at the tiny preset's size -> (spec, reference encoder)."""
    torch.manual_seed(0)
    ref = timm.create_model(OFFICIAL_NAME, pool_query="mean", mlp_act="gelu_tanh").eval()  # 224 px, 16 frames
    _switch_on_layer_scale(ref)
    path = Path(root) / "internvideo_next_tiny_official.pth"
    torch.save({"module": to_official_layout(ref.state_dict())}, path)
    return f"official:{OFFICIAL_NAME}:{path}", ref


def vjepa2_folder(root: Path, **overrides) -> tuple[str, torch.nn.Module]:
    from transformers import VJEPA2Config, VJEPA2Model

    torch.manual_seed(0)
    ref = VJEPA2Model(VJEPA2Config(**{**TINY_VJEPA2, **overrides})).eval()
    folder = Path(root) / "vjepa2-tiny"
    ref.save_pretrained(folder)
    return f"vjepa2:{folder}", ref


def dinov2_hf_folder(root: Path, registers: int = 0) -> tuple[str, torch.nn.Module]:
    from transformers import Dinov2Config, Dinov2Model, Dinov2WithRegistersConfig, Dinov2WithRegistersModel

    torch.manual_seed(0)
    if registers:
        ref = Dinov2WithRegistersModel(Dinov2WithRegistersConfig(**TINY_DINO_HF, num_register_tokens=registers))
    else:
        ref = Dinov2Model(Dinov2Config(**TINY_DINO_HF))
    _switch_on_layer_scale(ref)
    folder = Path(root) / f"dinov2-tiny-r{registers}"
    ref.eval().save_pretrained(folder)
    return f"hf:{folder}", ref


def siglip_hf_folder(root: Path) -> tuple[str, torch.nn.Module]:
    """SigLIP2 at fixed resolution, as its checkpoints are published (transformers ``siglip`` type)."""
    from transformers import SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(0)
    ref = SiglipVisionModel(SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                               num_attention_heads=2, image_size=32, patch_size=8)).eval()
    folder = Path(root) / "siglip2-tiny"
    ref.save_pretrained(folder)
    return f"hf:{folder}", ref


def timm_dinov2_folder(root: Path) -> tuple[str, torch.nn.Module]:
    """timm's DINOv2 architecture at tiny size, saved as a timm Hub folder (config.json + weights)."""
    from timm.models import save_for_hf

    torch.manual_seed(0)
    ref = timm.create_model("vit_small_patch14_dinov2", pretrained=False, **TINY_TIMM_DINO).eval()
    _switch_on_layer_scale(ref)
    folder = Path(root) / "timm-dinov2-tiny"
    save_for_hf(ref, folder, model_args=TINY_TIMM_DINO)
    return f"timm:vit_small_patch14_dinov2:{folder}", ref
