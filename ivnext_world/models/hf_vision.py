"""Image ViTs kept as transformers folders (SigLIP, SigLIP2, DINOv2, CLIP), read the way Stage 1 needs.

A transformers folder is what ``save_pretrained`` writes and what the Hugging Face cache holds
(``config.json`` + ``model.safetensors``, optionally ``preprocessor_config.json``). Full image-text
checkpoints (``SiglipModel``, ``Siglip2Model``, ``CLIPModel``) load into their vision tower; the text
tower's tensors are ignored. :class:`HFVisionTeacher` runs the library's own forward and returns,
per image:

- the outputs of chosen encoder layers (``hidden_states[i + 1]`` is layer ``i``'s output, before
  any final norm, as timm's ``forward_intermediates`` gives them),
- the pooled output: the library's ``pooler_output`` (SigLIP/SigLIP2: the attention-pool head;
  DINOv2: the final-norm cls token; CLIP: the post-layernorm cls token, before ``visual_projection``),
- the pooling attention over patches:

  - SigLIP/SigLIP2: the pooling head's probe attention (``nn.MultiheadAttention``'s own weights,
    mean over heads);
  - DINOv2/CLIP (no attention pool): the cls token's attention over the patches in the LAST layer,
    mean over heads, renormalised over patches (cls/register keys dropped). It is computed from
    that layer's own ``q_proj``/``k_proj`` outputs (captured by forward hooks, not recomputed), so
    it is exactly the softmax the layer used.

Nothing here downloads: the folder must be local. Image size and normalisation come from the folder
(``preprocessor_config.json`` when present, else ``config.json`` and the family's published values).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from torch import nn

__all__ = ["HF_FAMILIES", "HFVisionTeacher", "check_loading_info", "hf_family", "read_json_config"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Family:
    name: str  # siglip | siglip2 | dinov2 | clip
    model_class: str  # transformers class holding the vision tower
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


_SIGLIP = _Family("siglip", "SiglipVisionModel", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
_SIGLIP2 = _Family("siglip2", "Siglip2VisionModel", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
_DINOV2 = _Family("dinov2", "Dinov2Model", IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)
_DINOV2_REG = _Family("dinov2", "Dinov2WithRegistersModel", IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)
_CLIP = _Family("clip", "CLIPVisionModel", OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)

# config.json "model_type" -> family. Fixed-resolution SigLIP2 checkpoints are published as "siglip"
# (SiglipModel); "siglip2" is the NaFlex variant, fed patch sequences instead of images.
HF_FAMILIES: dict[str, _Family] = {
    "siglip": _SIGLIP, "siglip_vision_model": _SIGLIP,
    "siglip2": _SIGLIP2, "siglip2_vision_model": _SIGLIP2,
    "dinov2": _DINOV2, "dinov2_with_registers": _DINOV2_REG,
    "clip": _CLIP, "clip_vision_model": _CLIP,
}


def read_json_config(path: Path) -> dict:
    """A JSON object from ``path``, or a ``ValueError`` naming the file."""
    try:
        cfg = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not a readable JSON config: {e}") from e
    if not isinstance(cfg, dict):
        raise ValueError(f"{path} is not a JSON object")
    return cfg


def hf_family(folder: Path, config: dict) -> _Family:
    """The family of a transformers folder from its ``config.json``, or a clear error."""
    model_type = config.get("model_type")
    if model_type not in HF_FAMILIES:
        raise ValueError(
            f"{folder / 'config.json'}: model_type {model_type!r} is not an image teacher we support "
            f"(transformers model types: {sorted(HF_FAMILIES)})"
        )
    return HF_FAMILIES[model_type]


def check_loading_info(folder: Path, model_class: str, info: dict, prefix: str = "") -> None:
    """Fail naming the tensors when ``from_pretrained`` found missing or differently shaped weights
    (keys starting with ``prefix`` only); transformers itself would re-initialise them with a warning."""
    missing = sorted(k for k in info.get("missing_keys", []) if k.startswith(prefix))
    mismatched = [f"{k}: checkpoint {tuple(a)} vs model {tuple(b)}" for k, a, b in info.get("mismatched_keys") or []]
    if missing or mismatched:
        raise ValueError(
            f"{folder}: the weights do not match its config.json ({model_class}; a checkpoint of another size?):\n"
            f"  missing keys ({len(missing)}): {missing[:20]}\n"
            f"  shape mismatches ({len(mismatched)}): {sorted(mismatched)[:20]}"
        )


def _preprocessing(folder: Path, family: _Family, vcfg) -> tuple[tuple, tuple, int]:
    """(mean, std, image size) from ``preprocessor_config.json`` if present, else the config's."""
    mean, std = family.mean, family.std
    if family.name == "siglip2":  # NaFlex: a square image of sqrt(num_patches) patches a side
        size = int(round(vcfg.num_patches**0.5)) * vcfg.patch_size
    else:
        size = int(vcfg.image_size)
    pre = folder / "preprocessor_config.json"
    if pre.is_file():
        p = read_json_config(pre)
        mean, std = tuple(p.get("image_mean", mean)), tuple(p.get("image_std", std))
        crop = p.get("crop_size") if p.get("do_center_crop") else None
        resize = p.get("size") if isinstance(p.get("size"), dict) else {}
        for spec in (crop, resize):
            if isinstance(spec, dict) and "height" in spec:
                size = int(spec["height"])
                break
            if isinstance(spec, dict) and "shortest_edge" in spec:
                size = int(spec["shortest_edge"])
                break
    return mean, std, size


class HFVisionTeacher(nn.Module):
    """A transformers vision tower loaded from a local folder, in eval mode.

    Args:
        folder: transformers folder (``config.json`` + weights), already resolved.
        img_size: input size; None = from the folder (see module docstring).
    """

    def __init__(self, folder: str | Path, img_size: int | None = None):
        super().__init__()
        import transformers

        folder = Path(folder)
        self.folder = folder
        config = read_json_config(folder / "config.json")
        self.family = hf_family(folder, config)
        model_cls = getattr(transformers, self.family.model_class)
        try:  # mismatched shapes are reported below, naming the tensors, instead of transformers' error
            model, info = model_cls.from_pretrained(str(folder), output_loading_info=True, ignore_mismatched_sizes=True)
        except (OSError, RuntimeError, ValueError) as e:
            raise ValueError(f"{folder}: transformers could not load a {self.family.model_class} from it: {e}") from e
        check_loading_info(folder, self.family.model_class, info)
        if info.get("unexpected_keys"):  # the text tower of a full image-text checkpoint
            log.info("%s: ignored %d tensors outside the vision tower", folder, len(info["unexpected_keys"]))
        self.model = model.eval().requires_grad_(False)
        vcfg = model.config
        self.embed_dim = int(vcfg.hidden_size)
        self.depth = int(vcfg.num_hidden_layers)
        self.patch_size = int(vcfg.patch_size)
        has_cls = self.family.name in ("dinov2", "clip")
        self.num_prefix_tokens = int(has_cls) + int(getattr(vcfg, "num_register_tokens", 0) or 0)
        self.mean, self.std, default_size = _preprocessing(folder, self.family, vcfg)
        self.img_size = int(img_size or default_size)
        if self.img_size % self.patch_size:
            raise ValueError(f"teacher image size {self.img_size} is not a multiple of the patch size "
                             f"{self.patch_size} of {folder}")
        self.grid = (self.img_size // self.patch_size,) * 2
        self._native_size = getattr(vcfg, "image_size", None)

    def _last_attention_module(self) -> nn.Module:
        layers = getattr(self.model.encoder, "layers", None) or self.model.encoder.layer
        for m in layers[-1].modules():
            if hasattr(m, "q_proj") and hasattr(m, "k_proj"):
                return m
        raise TypeError(f"{self.folder}: no q_proj/k_proj in the last layer; cannot read its attention")

    @torch.no_grad()
    def forward(self, frames: torch.Tensor, layers: list[int]):
        """``frames (R, 3, S, S)`` in this teacher's normalisation, ``S = img_size``.

        Returns ``(hidden, pooled, attn)``: ``hidden`` the outputs of ``layers`` ``(R, N, D)``
        (prefix tokens removed), ``pooled (R, D)``, ``attn (R, N)`` (rows sum to 1).
        """
        r = frames.shape[0]
        captured: dict[str, torch.Tensor] = {}
        hooks = []
        head = getattr(self.model, "head", None)
        if head is not None:  # SigLIP(2): nn.MultiheadAttention returns head-averaged weights
            hooks.append(head.attention.register_forward_hook(lambda m, i, o: captured.__setitem__("map", o[1])))
        else:
            attn_mod = self._last_attention_module()
            hooks.append(attn_mod.q_proj.register_forward_hook(lambda m, i, o: captured.__setitem__("q", o)))
            hooks.append(attn_mod.k_proj.register_forward_hook(lambda m, i, o: captured.__setitem__("k", o)))
        try:
            if self.family.name == "siglip2":
                out = self.model(**self.naflex_inputs(frames), output_hidden_states=True)
            else:
                kw = {}
                if self.family.name != "dinov2" and self.img_size != self._native_size:
                    kw["interpolate_pos_encoding"] = True  # DINOv2 always interpolates
                out = self.model(pixel_values=frames, output_hidden_states=True, **kw)
        finally:
            for h in hooks:
                h.remove()

        p = self.num_prefix_tokens
        hidden = [out.hidden_states[i + 1][:, p:] for i in layers]  # hidden_states[0] = embeddings
        pooled = out.pooler_output
        if head is not None:
            attn = captured["map"].float().reshape(r, -1, captured["map"].shape[-1]).mean(1)  # (R, N)
        else:
            hd = attn_mod.head_dim
            scale = getattr(attn_mod, "scaling", None) or getattr(attn_mod, "scale", None) or hd**-0.5
            q = captured["q"][:, :1].reshape(r, 1, -1, hd).transpose(1, 2).float()  # (R, H, 1, hd): cls query
            k = captured["k"].reshape(r, captured["k"].shape[1], -1, hd).transpose(1, 2).float()  # (R, H, L, hd)
            attn = (q @ k.transpose(-2, -1) * scale).softmax(-1)[:, :, 0, p:].mean(1)  # (R, N)
        attn = attn / attn.sum(-1, keepdim=True).clamp_min(1e-12)
        return hidden, pooled, attn

    def naflex_inputs(self, frames: torch.Tensor) -> dict:
        """SigLIP2 NaFlex inputs for square frames: patches ``(R, N, p*p*C)`` in the processor's order
        (rows of patches, each patch row-major with channels last), an all-ones mask, the grid."""
        r, c, h, w = frames.shape
        ps, (gh, gw) = self.patch_size, self.grid
        patches = frames.reshape(r, c, gh, ps, gw, ps).permute(0, 2, 4, 3, 5, 1).reshape(r, gh * gw, ps * ps * c)
        return {
            "pixel_values": patches,
            "pixel_attention_mask": torch.ones(r, gh * gw, dtype=torch.long, device=frames.device),
            "spatial_shapes": torch.tensor([[gh, gw]] * r, dtype=torch.long, device=frames.device),
        }

