"""Frozen image teacher for Stage 1's semantic prior (InternVideo-Next, arXiv 2512.01342, Sec. 3.2).

An image ViT (SigLIP/SigLIP2 in the paper; DINOv2 and CLIP in its ablation) is applied frame by
frame to a clip. It provides what Stage 1 needs:

- hidden states at chosen blocks (middle alignment, default: the inputs of the last 6 blocks,
  as the official teacher returns them),
- the pooled output (final alignment),
- the pooling attention over patches (attention-guided masking).

Weights come only from local files, in the formats users keep (``checkpoint_path``):

- a timm weights file (``.safetensors``, or ``.pth``/``.bin`` read with ``torch.load(weights_only=True)``)
  for the timm architecture ``model_name``;
- a timm folder with ``config.json`` (``"architecture"``) + weights, e.g. a Hugging Face cache
  snapshot ``models--timm--vit_base_patch16_siglip_224.v2_webli/snapshots/<hash>/`` (the
  ``models--...`` folder itself is resolved to its ``refs/main`` snapshot);
- a transformers folder with ``config.json`` (``"model_type"``: siglip, siglip2, dinov2, clip) +
  ``model.safetensors``, as ``save_pretrained`` or the cache writes it (see :mod:`.hf_vision`).

The format is detected from the path. ``model_name="auto"`` takes the architecture from the folder;
a timm name is checked against the folder (same architecture, or same family and width).

Pooled output and pooling attention per family (both libraries agree):

- attention-pool models (timm ``global_pool="map"``, transformers SigLIP/SigLIP2): the pool head's
  output and its query's attention over the patches, mean over heads;
- cls models (DINOv2, CLIP; no attention pool): the final-norm cls token (timm's
  ``forward_head(pre_logits=True)``, transformers' ``pooler_output``; CLIP before its projection)
  and the cls token's attention over the patches in the last block, mean over heads,
  renormalised over the patches.

Without a checkpoint the teacher is random, logs a loud warning and sets ``is_pretrained = False``,
which callers must record with every result. A bad file fails in the constructor, before any
compute, with an error naming the file and the problem.
"""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import timm
import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import AttentionPoolLatent
from timm.models import VisionTransformer, load_state_dict

from torch import nn

from .vit import resolve_block_indices

__all__ = [
    "ImageTeacher", "TeacherOutput", "load_timm_checkpoint", "read_state_dict", "resize_token_grid",
    "resolve_model_path",
]

log = logging.getLogger(__name__)

AUTO = ("auto", "hf")  # model_name values that take the architecture from the checkpoint folder
_TIMM_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "pytorch_model.pth", "model.pth",
                      "open_clip_model.safetensors", "open_clip_pytorch_model.bin")


@dataclass
class TeacherOutput:
    """Per-frame teacher outputs; rows are frames ``b * T + t``.

    Attributes:
        hidden: list of ``(B*T, N_img, D)`` patch tokens (no prefix tokens), one per requested block.
        pooled: ``(B*T, D)`` pooled image embedding.
        attn: ``(B*T, N_img)`` pooling attention over patches, rows sum to 1.
        grid: ``(H_img, W_img)`` token grid of ``hidden`` and ``attn``.
    """

    hidden: list[torch.Tensor]
    pooled: torch.Tensor
    attn: torch.Tensor
    grid: tuple[int, int]


# ----------------------------------------------------------------------------- reading files
def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a local weights file, or a ``ValueError`` naming the file and the problem.

    ``.safetensors`` is read as such; anything else with ``torch.load(weights_only=True)`` (timm's
    reader, which also unwraps ``{"state_dict"|"model": ...}`` and ``module.`` prefixes and allows
    ``argparse.Namespace``). A pickle that needs other Python objects is refused, never executed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = load_state_dict(str(path), weights_only=True)
    except Exception as e:  # safetensors header errors, pickle/zip/EOF errors of torch.load, non-dict content
        chain, cause = [], e
        while cause is not None:  # timm re-raises torch's UnpicklingError as a RuntimeError
            chain.append(str(cause))
            cause = cause.__cause__
        text = "\n".join(chain)
        found = re.search(r"Unsupported globals?:\s*(.+?)(?:\.\s|\.?$)", text, flags=re.MULTILINE)
        if found:  # a real pickle that needs objects outside torch's allowlist
            raise ValueError(
                f"{path} is a pickle that torch.load(weights_only=True) refuses: it stores Python objects, "
                f"not only tensors (unsupported: {found.group(1)}). Loading it would run code "
                f"from the file; on a machine you trust, re-save its tensors with "
                f"safetensors.torch.save_file(state_dict, 'weights.safetensors')."
            ) from e
        detail = next((ln.strip() for ln in text.splitlines() if "Unsupported" in ln), text.split("\n")[0])
        raise ValueError(f"{path} is not a checkpoint (neither safetensors nor a torch state dict): "
                         f"{type(e).__name__}: {detail}") from e
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not state or bad:
        raise ValueError(f"{path} is not a state dict of tensors (non-tensor entries: {bad[:5]})")
    return state


def resolve_model_path(path: str | Path) -> Path:
    """A weights file, or the model folder to read: a Hugging Face cache repo folder
    (``models--org--name`` with ``snapshots/``) resolves to the snapshot ``refs/main`` names
    (or its only snapshot)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"teacher checkpoint not found: {path}")
    snaps = path / "snapshots"
    if path.is_dir() and snaps.is_dir():
        ref = path / "refs" / "main"
        if ref.is_file() and (snaps / ref.read_text().strip()).is_dir():
            return snaps / ref.read_text().strip()
        found = sorted(d for d in snaps.iterdir() if d.is_dir())
        if len(found) != 1:
            raise ValueError(f"{path} is a Hugging Face cache folder with {len(found)} snapshots "
                             f"({[d.name for d in found]}) and no refs/main: name the snapshot folder")
        return found[0]
    return path


def _transformers_hint(state: dict) -> str:
    if any(k.startswith(("vision_model.", "encoder.layer.", "encoder.layers.", "embeddings.")) for k in state):
        return ("\n  (its keys look like a transformers checkpoint: name its folder, with config.json, "
                "and teacher.model=auto)")
    return ""


def load_timm_checkpoint(model: nn.Module, path: str | Path) -> None:
    """Load a local weights file into a timm model, or fail naming the file and every bad key.

    The model module's ``checkpoint_filter_fn`` (if any) is applied first, so original-format
    checkpoints and other image sizes (position-embedding resampling) are accepted as timm would.
    """
    path = Path(path)
    state = read_state_dict(path)
    filter_fn = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    if filter_fn is not None:
        try:
            state = filter_fn(state, model)
        except Exception as e:  # the filter assumes a matching architecture; say which file broke it
            raise ValueError(f"checkpoint {path} could not be adapted to {type(model).__name__}: {e}"
                             f"{_transformers_hint(state)}") from e
    expected = model.state_dict()
    missing = sorted(k for k in expected if k not in state)
    unexpected = sorted(k for k in state if k not in expected)
    mismatched = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in state if k in expected and state[k].shape != expected[k].shape
    )
    if missing or unexpected or mismatched:
        arch = getattr(model, "pretrained_cfg", {}).get("architecture", type(model).__name__)
        raise ValueError(
            f"checkpoint {path} does not match the teacher architecture {arch} "
            f"(a checkpoint of another size or family?):\n"
            f"  missing keys ({len(missing)}): {missing[:20]}\n"
            f"  unexpected keys ({len(unexpected)}): {unexpected[:20]}\n"
            f"  shape mismatches ({len(mismatched)}): {mismatched[:20]}{_transformers_hint(state)}"
        )
    model.load_state_dict(state, strict=True)


def _name_family(name: str) -> str | None:
    """Family of a timm architecture name (SigLIP2 weights use timm's SigLIP architectures)."""
    name = name.lower()
    for fam in ("siglip", "dinov2", "clip"):
        if fam in name:
            return fam
    return None


def _check_named_vs_transformers(model_name: str, folder: Path, family: str, width: int, model_type: str) -> None:
    named = _name_family(model_name)
    fam = "siglip" if family == "siglip2" else family
    if named is None:
        raise ValueError(f"{folder} holds a transformers {model_type} model but teacher.model names the timm "
                         f"architecture {model_name!r}; set teacher.model=auto to use the folder's model")
    if named != fam:
        raise ValueError(f"{folder} holds a {family} model (transformers {model_type}) but teacher.model names "
                         f"{model_name!r}, a {named} architecture: a checkpoint of another family")
    with torch.device("meta"):  # no allocation: only the width is read
        named_width = timm.create_model(timm.models.split_model_name_tag(model_name)[0], pretrained=False).embed_dim
    if named_width != width:
        raise ValueError(f"{folder} holds a {family} model of width {width} but teacher.model names {model_name!r} "
                         f"of width {named_width}: a checkpoint of another size")


# ----------------------------------------------------------------------------- the teacher
def resize_token_grid(x: torch.Tensor, src: tuple[int, int], dst: tuple[int, int]) -> torch.Tensor:
    """Resample tokens on an ``src`` grid to a ``dst`` grid: ``(R, Hs*Ws, D)`` -> ``(R, Hd*Wd, D)``.

    Bilinear with antialiasing, so shrinking averages neighbourhoods instead of skipping tokens.
    """
    if tuple(src) == tuple(dst):
        return x
    r, n, d = x.shape
    g = x.transpose(1, 2).reshape(r, d, *src)
    g = F.interpolate(g.float(), size=tuple(dst), mode="bilinear", align_corners=False, antialias=True)
    return g.reshape(r, d, -1).transpose(1, 2).to(x.dtype)


class ImageTeacher(nn.Module):
    """Frozen image ViT (timm or transformers) applied per frame to ``(B, C, T, H, W)`` clips.

    Args:
        model_name: timm architecture, e.g. ``vit_base_patch16_siglip_224``,
            ``vit_small_patch14_dinov2``, ``vit_base_patch16_clip_224``; or ``"auto"`` to take the
            model from the checkpoint folder (timm or transformers).
        checkpoint_path: local weights file or model folder (see module docstring); None = random
            weights (warned, ``is_pretrained=False``).
        layers: block indices whose outputs are returned as ``hidden`` (ascending; negative from
            the end). Default: the inputs of the last ``num_layers`` blocks, i.e. the outputs of
            blocks ``depth-1-num_layers .. depth-2``, as in the official teacher.
        num_layers: how many hidden states by default (6 in the paper).
        img_size: teacher input size; frames are resized to it (bicubic). Default: the model's
            (timm: its ``pretrained_cfg``/config; transformers: ``preprocessor_config.json`` or
            ``config.json``).
        input_mean, input_std: normalisation of the incoming video (ImageNet); frames are
            re-normalised to the teacher's own mean/std (from its config).
        model_kwargs: extra ``timm.create_model`` arguments (timm teachers only).
    """

    def __init__(
        self,
        model_name: str,
        checkpoint_path: str | Path | None = None,
        layers: Sequence[int] | None = None,
        num_layers: int = 6,
        img_size: int | None = None,
        input_mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
        input_std: Sequence[float] = IMAGENET_DEFAULT_STD,
        model_kwargs: dict | None = None,
    ):
        super().__init__()
        self.model_name = model_name
        self.checkpoint_path = str(checkpoint_path) if checkpoint_path is not None else None
        self.is_pretrained = checkpoint_path is not None
        self.hf = None  # the transformers backend, when the checkpoint is a transformers folder
        if checkpoint_path is None:
            if model_name in AUTO:
                raise ValueError(f"teacher model {model_name!r} takes its architecture from a checkpoint folder; "
                                 "give teacher.checkpoint or name a timm architecture")
            self.model = self._create_timm(model_name, img_size, model_kwargs)
            banner = "!" * 78
            log.warning(
                "\n%s\n!! ImageTeacher(%s) has RANDOM weights: no checkpoint_path was given.\n"
                "!! Its features, pooled outputs and attention are meaningless; every result\n"
                "!! produced with it must be labelled teacher.is_pretrained=False.\n%s",
                banner, model_name, banner,
            )
        else:
            self.model = self._load(model_name, resolve_model_path(checkpoint_path), img_size, model_kwargs)
        self.backend = "transformers" if self.hf is not None else "timm"

        depth = self.hf.depth if self.hf is not None else len(self.model.blocks)
        if layers is None:
            if not 0 < num_layers < depth:
                raise ValueError(f"num_layers must be in 1..{depth - 1} for a {depth}-block teacher")
            layers = list(range(depth - 1 - num_layers, depth - 1))
        self.layers = sorted(set(resolve_block_indices(depth, list(layers))))

        if self.hf is not None:
            t_mean, t_std = self.hf.mean, self.hf.std
        else:
            cfg = self.model.pretrained_cfg
            t_mean, t_std = cfg.get("mean", IMAGENET_DEFAULT_MEAN), cfg.get("std", IMAGENET_DEFAULT_STD)
        # frames_teacher = frames * scale + shift maps the input normalisation to the teacher's.
        scale = torch.tensor(input_std) / torch.tensor(t_std)
        shift = (torch.tensor(input_mean) - torch.tensor(t_mean)) / torch.tensor(t_std)
        self.register_buffer("in_scale", scale.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("in_shift", shift.view(1, -1, 1, 1), persistent=False)

        self.model.requires_grad_(False)
        self.train(False)

    @staticmethod
    def _create_timm(name: str, img_size: int | None, model_kwargs: dict | None, extra: dict | None = None
                     ) -> VisionTransformer:
        kwargs = {**(extra or {}), **(model_kwargs or {})}
        if img_size is not None:
            kwargs["img_size"] = img_size
        model = timm.create_model(name, pretrained=False, **kwargs)
        if not isinstance(model, VisionTransformer):
            raise TypeError(f"ImageTeacher supports timm VisionTransformer models, {name} is {type(model).__name__}")
        return model

    def _load(self, model_name: str, path: Path, img_size: int | None, model_kwargs: dict | None) -> nn.Module:
        """Build the model a resolved file/folder holds, check it against ``model_name``, load it."""
        if path.is_file():
            if model_name in AUTO:
                raise ValueError(f"{path} is a bare weights file: name its timm architecture in teacher.model "
                                 f"(teacher.model={model_name} needs a folder with config.json)")
            model = self._create_timm(model_name, img_size, model_kwargs)
            load_timm_checkpoint(model, path)
            return model

        from .hf_vision import HFVisionTeacher, hf_family, read_json_config

        cfg_file = path / "config.json"
        if not cfg_file.is_file():
            raise ValueError(
                f"{path} has no config.json: a transformers folder (save_pretrained) or a timm/Hugging Face "
                f"snapshot folder must hold config.json next to its weights; to load a bare timm weights file, "
                f"name the file itself"
            )
        config = read_json_config(cfg_file)
        if "architecture" in config:  # timm's config.json (save_for_hf / the timm hub repos)
            from timm.models._hub import load_model_config_from_path

            pretrained_cfg, arch, model_args = load_model_config_from_path(path)
            if model_name not in AUTO and timm.models.split_model_name_tag(model_name)[0] != arch:
                raise ValueError(f"{path} holds a timm {arch} checkpoint but teacher.model names {model_name!r}: "
                                 f"a checkpoint of another architecture (set teacher.model=auto or {arch})")
            weights = next((path / f for f in _TIMM_WEIGHT_FILES if (path / f).is_file()), None)
            if weights is None:
                raise ValueError(f"{path} has a timm config.json but no weights file (one of {_TIMM_WEIGHT_FILES})")
            model = self._create_timm(arch, img_size, model_kwargs, {**model_args, "pretrained_cfg": pretrained_cfg})
            load_timm_checkpoint(model, weights)
            return model
        if "model_type" not in config:
            raise ValueError(f"{cfg_file} is neither a timm config (no 'architecture') nor a transformers "
                             f"config (no 'model_type')")
        if model_kwargs:
            raise ValueError(f"model_kwargs {sorted(model_kwargs)} apply to timm teachers; {path} is a "
                             f"transformers folder whose config.json fixes the architecture")
        family = hf_family(path, config)
        if model_name not in AUTO:
            vision = config.get("vision_config", config)
            _check_named_vs_transformers(model_name, path, family.name, int(vision.get("hidden_size", 0)),
                                         config["model_type"])
        self.hf = HFVisionTeacher(path, img_size)
        return self.hf.model

    # A frozen teacher never leaves eval mode (dropout / drop path off), whatever the parent does.
    def train(self, mode: bool = True) -> "ImageTeacher":
        return super().train(False)

    @property
    def embed_dim(self) -> int:
        return self.hf.embed_dim if self.hf is not None else self.model.embed_dim

    @property
    def img_size(self) -> tuple[int, int]:
        if self.hf is not None:
            return (self.hf.img_size, self.hf.img_size)
        return tuple(self.model.patch_embed.img_size)

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(self.hf.grid) if self.hf is not None else tuple(self.model.patch_embed.grid_size)

    @torch.no_grad()
    def forward(self, video: torch.Tensor, out_grid: tuple[int, int] | None = None) -> TeacherOutput:
        """Run the teacher on every frame.

        Args:
            video: ``(B, C, T, H, W)``, normalised with ``input_mean``/``input_std``.
            out_grid: ``(H', W')`` to resample ``hidden`` and ``attn`` to (the student's grid);
                None keeps the teacher's grid.
        """
        b, c, t, h, w = video.shape
        frames = video.transpose(1, 2).reshape(b * t, c, h, w)
        frames = frames * self.in_scale.to(frames.dtype) + self.in_shift.to(frames.dtype)
        if (h, w) != self.img_size:
            frames = F.interpolate(frames, size=self.img_size, mode="bicubic", align_corners=False)

        if self.hf is not None:
            hidden, pooled, attn = self.hf(frames, self.layers)
        else:
            hidden, pooled, attn = self._forward_timm(frames)

        grid = self.grid
        if out_grid is not None and tuple(out_grid) != grid:
            hidden = [resize_token_grid(x, grid, out_grid) for x in hidden]
            attn = resize_token_grid(attn.unsqueeze(-1), grid, out_grid).squeeze(-1).clamp_min(0)
            attn = attn / attn.sum(-1, keepdim=True).clamp_min(1e-12)
            grid = tuple(out_grid)
        return TeacherOutput(hidden=hidden, pooled=pooled, attn=attn, grid=grid)

    def _forward_timm(self, frames: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        m = self.model
        depth, p = len(m.blocks), m.num_prefix_tokens
        need_attn_input = m.attn_pool is None  # cls / avg pooling reads the last block's attention
        take = sorted(set(self.layers) | ({depth - 2} if need_attn_input and depth > 1 else set()))
        final, inter = m.forward_intermediates(frames, indices=take, return_prefix_tokens=p > 0, output_fmt="NLC")
        if p > 0:
            inter = [torch.cat([pre, tok], dim=1) for tok, pre in inter]  # (BT, p + N, D)
        by_block = dict(zip(take, inter))

        pooled = m.forward_head(final, pre_logits=True)  # (BT, D)
        if m.attn_pool is not None:
            attn = self._map_attention(final)
        else:
            last_in = by_block[depth - 2] if depth > 1 else None
            if last_in is None:
                raise ValueError("cls-attention needs a teacher with at least 2 blocks")
            attn = self._last_block_attention(last_in)
        attn = attn / attn.sum(-1, keepdim=True).clamp_min(1e-12)
        return [by_block[i][:, p:] for i in self.layers], pooled, attn

    def _map_attention(self, final: torch.Tensor) -> torch.Tensor:
        """Attention of the MAP head's latent query over patches ``(BT, N_img)``, mean over heads."""
        pool: AttentionPoolLatent = self.model.attn_pool
        p = self.model.num_prefix_tokens
        x = final if self.model.pool_include_prefix else final[:, p:]
        if pool.pos_embed is not None:
            x = x + pool.pos_embed.unsqueeze(0).to(x.dtype)
        r, n, _ = x.shape
        h, hd = pool.num_heads, pool.head_dim
        q = pool.q(pool.latent.expand(r, -1, -1)).reshape(r, -1, h, hd).transpose(1, 2)  # (BT, H, Lq, hd)
        k = pool.kv(x).reshape(r, n, 2, h, hd)[:, :, 0].transpose(1, 2)  # (BT, H, N, hd)
        q, k = pool.q_norm(q), pool.k_norm(k)
        attn = (q.float() @ k.float().transpose(-2, -1) * pool.scale).softmax(-1)  # (BT, H, Lq, N)
        attn = attn.mean(dim=(1, 2))
        return attn[:, p:] if self.model.pool_include_prefix else attn

    def _last_block_attention(self, x: torch.Tensor) -> torch.Tensor:
        """Last block's attention to patches ``(BT, N_img)``: from the cls token, or (no cls) the mean
        over all query tokens. ``x`` is the last block's input ``(BT, p + N, D)``."""
        blk = self.model.blocks[-1]
        attn_mod = blk.attn
        if not hasattr(attn_mod, "qkv"):
            raise TypeError(f"{self.model_name}: last block attention has no fused qkv; cannot recompute it")
        r, n, _ = x.shape
        h, hd = attn_mod.num_heads, attn_mod.head_dim
        qkv = attn_mod.qkv(blk.norm1(x)).reshape(r, n, 3, h, hd).permute(2, 0, 3, 1, 4)
        q, k = attn_mod.q_norm(qkv[0]), attn_mod.k_norm(qkv[1])  # (BT, H, L, hd), timm norms per head
        attn = (q.float() @ k.float().transpose(-2, -1) * attn_mod.scale).softmax(-1)  # (BT, H, L, L)
        p = self.model.num_prefix_tokens
        if self.model.has_class_token:
            return attn[:, :, 0, p:].mean(1)
        return attn[:, :, p:, p:].mean(dim=(1, 2))
