"""Official InternVideo-Next checkpoints (OpenGVLab/InternVideo, folder InternVideo-Next) in our encoder.

The released files ``internvideo_next_{base,large}_p14_res224_f16`` are encoder-only state dicts after
Stage 2, with the key names of the official ``InternVideo2`` inference model. Everything but the
pooling head and the position table already has our names (see SPEC section 2):

================================================  ==========================
official                                          ours
================================================  ==========================
``pos_embed``                                     ``pos_embed.pos_embed``
``clip_projector.norm1_{q,k,v}.*``                ``head.norm_{q,k,v}.*``
``clip_projector.cross_attn.{q,k,v}.weight``      ``head.{q,k,v}.weight``
``clip_projector.cross_attn.{q,k,v}_bias``        ``head.{q,k,v}.bias``
``clip_projector.cross_attn.proj.*``              ``head.proj.*``
================================================  ==========================

The official pool query is the mean of all tokens (``pool_query="mean"``) and the weights were
trained through flash-attn's fused MLP (tanh-approximated GELU): the ``.official_s2`` pretrained tag
of the presets sets both. Training checkpoints of the official Stage-1 / Stage-2 models (a DeepSpeed
``{"module": ...}`` file) also hold tensors that only training uses; :data:`TRAINING_ONLY` names them
and the filter drops them.

Entry points:

- :func:`checkpoint_filter_fn`: timm's ``pretrained_filter_fn`` (unwrap, strip prefixes, rename, drop
  training-only tensors, resize the position table, then check family, size and keys, naming the file);
- :func:`inspect_checkpoint_file` / :func:`read_state_dict`: read ``.safetensors`` or a torch file
  (``.pth``/``.bin``/``.pt``, ``torch.load(weights_only=True)``), with clear errors before any compute;
- :func:`load_state_dict_pre_hook`: registered on every :class:`~ivnext_world.models.vit.VideoViT`, so
  ``timm.create_model(..., checkpoint_path=official_file)`` and ``model.load_state_dict(official_sd)``
  accept the official layout too;
- :func:`load_official_encoder`, :func:`convert_official`: one call from a file to an encoder / to our
  own safetensors format (``ivnext-convert official``).
"""

from __future__ import annotations

import math
import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .pos_embed import resize_pos_grid

__all__ = [
    "CheckpointError",
    "OFFICIAL_PRESETS",
    "TRAINING_ONLY",
    "checkpoint_filter_fn",
    "convert_official",
    "convert_official_keys",
    "encoder_args_from_state_dict",
    "grid_from_metadata",
    "inspect_checkpoint_file",
    "is_official_layout",
    "load_official_encoder",
    "load_state_dict_pre_hook",
    "read_state_dict",
    "unwrap_state_dict",
]

# Containers a state dict is commonly saved in (timm / DeepSpeed / Lightning / plain torch.save).
CONTAINER_KEYS = ("model", "module", "state_dict")
# Wrapper prefixes: DDP / DeepSpeed (``module.``), a ``self.model`` attribute (``model.``), torch.compile.
WRAPPER_PREFIXES = ("module.", "model.", "_orig_mod.")

# Tensors of the official Stage-1 / Stage-2 training models (models/InternVideo_next_s1.py, _s2.py)
# that the encoder never uses: the ModernBERT predictor (bert_decoder, to_bert_proj, bert_mask_token),
# Stage-1 alignment heads (clip_decoder, final_clip_decoder) and their position table
# (clip_pos_embed*), the diffusion / MSE decoders (diffloss, mse_projector) and the predictor's
# position table (diff_pos_embed), and Stage-2's latent-prediction heads (selfdist_*).
TRAINING_ONLY = (
    "bert_decoder.", "to_bert_proj.", "bert_mask_token",
    "clip_decoder.", "final_clip_decoder.", "clip_pos_embed",
    "diffloss.", "mse_projector.", "diff_pos_embed",
    "selfdist_decoder.", "selfdist_normproj_decoder.", "selfdist_proj_clip.",
)

# Official (prefix) -> ours, applied in order to keys of the official layout.
_RENAMES = (
    ("clip_projector.norm1_q.", "head.norm_q."),
    ("clip_projector.norm1_k.", "head.norm_k."),
    ("clip_projector.norm1_v.", "head.norm_v."),
    ("clip_projector.cross_attn.q.", "head.q."),
    ("clip_projector.cross_attn.k.", "head.k."),
    ("clip_projector.cross_attn.v.", "head.v."),
    ("clip_projector.cross_attn.q_bias", "head.q.bias"),
    ("clip_projector.cross_attn.k_bias", "head.k.bias"),
    ("clip_projector.cross_attn.v_bias", "head.v.bias"),
    ("clip_projector.cross_attn.proj.", "head.proj."),
)

# The released checkpoints: our preset, by (width, depth).
OFFICIAL_PRESETS = {
    (768, 12): "ivnext_vit_base_patch14_224",
    (1024, 24): "ivnext_vit_large_patch14_224",
    (1408, 40): "ivnext_vit_1b_patch14_224",
}
# Keys every encoder checkpoint of this family has (after conversion to our names).
_SIGNATURE = ("cls_token", "pos_embed.pos_embed", "patch_embed.proj.weight", "patch_embed.norm_before.weight",
              "blocks.0.attn.qkv.weight", "blocks.0.attn.q_norm.weight", "head.q.weight")
_SAFETENSORS_SUFFIXES = (".safetensors",)


class CheckpointError(ValueError):
    """A checkpoint file that cannot be loaded into the encoder; the message names the file and why."""


# ---------------------------------------------------------------------------- reading files
def inspect_checkpoint_file(path: str | Path) -> dict[str, str]:
    """Check that ``path`` is a readable checkpoint without loading its tensors; return its metadata.

    Cheap (headers only): a safetensors header, or the pickle of a ``torch.save`` archive checked
    against what ``torch.load(weights_only=True)`` accepts. Raises :class:`CheckpointError` naming the
    file for a missing path, a folder, a file that is not a checkpoint, a corrupt safetensors file and
    a pickle that ``weights_only`` refuses. Returns the safetensors metadata (``{}`` for torch files).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder; name the checkpoint file inside it (.safetensors, .pth, .bin)")
    if path.suffix in _SAFETENSORS_SUFFIXES:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                return dict(f.metadata() or {})
        except Exception as e:  # safetensors raises its own error types for a bad header
            raise CheckpointError(f"{path}: not a valid safetensors file ({e})") from e
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            if not any(name.endswith("data.pkl") for name in z.namelist()):
                raise CheckpointError(f"{path}: a zip archive but not a torch.save checkpoint (no data.pkl inside)")
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        if unsafe:
            raise CheckpointError(
                f"{path}: torch.load(weights_only=True) refuses this file: besides tensors it pickles Python "
                f"objects ({', '.join(unsafe[:6])}{', ...' if len(unsafe) > 6 else ''}). Only load plain state "
                "dicts here; on a machine where you trust the file, re-save its state dict "
                "(torch.save(checkpoint['module'], 'clean.pth')) or convert it to safetensors."
            )
        return {}
    with path.open("rb") as f:
        head = f.read(8)
    if head[:1] != b"\x80":  # every pickle (legacy torch.save format) starts with the PROTO opcode
        raise CheckpointError(
            f"{path}: not a checkpoint (neither a safetensors file nor a torch.save file; it starts with {head!r})"
        )
    return {}


def read_state_dict(path: str | Path, mmap: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a checkpoint file into a flat state dict and its metadata (safetensors only).

    ``.safetensors`` through safetensors; anything else through ``torch.load(weights_only=True)``
    (``mmap`` avoids reading the tensors until they are used). Containers (``model``/``module``/
    ``state_dict``) are unwrapped and wrapper prefixes (``module.``/``model.``) stripped.
    """
    path = Path(path)
    metadata = inspect_checkpoint_file(path)
    if path.suffix in _SAFETENSORS_SUFFIXES:
        from safetensors.torch import load_file

        obj: Any = load_file(str(path), device="cpu")
    else:
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap and zipfile.is_zipfile(path))
        except pickle.UnpicklingError as e:  # legacy-format pickles are only checked here
            reason = str(e).splitlines()[0]
            raise CheckpointError(f"{path}: torch.load(weights_only=True) refuses this file: {reason}") from e
        except Exception as e:
            raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: {e})") from e
    return unwrap_state_dict(obj, source=str(path)), metadata


def unwrap_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The flat ``{name: tensor}`` dict inside ``obj``: containers unwrapped, wrapper prefixes stripped."""
    while isinstance(obj, Mapping):
        inner = [k for k in CONTAINER_KEYS if isinstance(obj.get(k), Mapping)]
        if not inner:
            break
        obj = obj[inner[0]]
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: not a state dict (it holds a {type(obj).__name__})")
    if not obj:
        raise CheckpointError(f"{source}: an empty state dict")
    non_tensor = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if non_tensor:
        raise CheckpointError(
            f"{source}: not a state dict: entries {non_tensor[:5]} are not tensors (a training checkpoint? "
            f"expected the weights, or a container under one of {list(CONTAINER_KEYS)})"
        )
    return _strip_wrapper_prefixes(dict(obj))


def _strip_wrapper_prefixes(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Strip only a prefix that every key carries: a real sub-module named `model` stays intact.
    changed = True
    while changed and state_dict:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in state_dict):
                state_dict = {k[len(prefix):]: v for k, v in state_dict.items()}
                changed = True
    return state_dict


# ---------------------------------------------------------------------------- official -> ours
def is_official_layout(state_dict: Mapping[str, Any], prefix: str = "") -> bool:
    """True if the keys (under ``prefix``) use the official names (``pos_embed``, ``clip_projector.*``)."""
    return f"{prefix}pos_embed" in state_dict or any(k.startswith(f"{prefix}clip_projector.") for k in state_dict)


def convert_official_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename official keys to ours and drop the training-only tensors; other keys pass unchanged."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith(TRAINING_ONLY):
            continue
        if key == "pos_embed":
            key = "pos_embed.pos_embed"
        for old, new in _RENAMES:
            if key.startswith(old):
                key = new + key[len(old):]
                break
        out[key] = value
    return out


def encoder_args_from_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The encoder arguments the tensor shapes determine (our key names): width, depth, MLP ratio,
    cls tokens, pooled width, patch and tubelet size, input channels. Head counts leave no trace in
    the shapes and are not returned."""
    proj = state_dict["patch_embed.proj.weight"]  # (D, C, t, p, p)
    depth = 1 + max(int(k.split(".")[1]) for k in state_dict if k.startswith("blocks."))
    dim = proj.shape[0]
    return dict(
        embed_dim=dim, depth=depth, in_chans=proj.shape[1], tubelet_size=proj.shape[2], patch_size=proj.shape[3],
        mlp_ratio=state_dict["blocks.0.mlp.fc1.weight"].shape[0] / dim,
        num_cls_tokens=state_dict["cls_token"].shape[1], pool_dim=state_dict["head.proj.weight"].shape[0],
    )


def _check_family(state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    if any(k.startswith("pos_embed_spatial") for k in state_dict):
        raise CheckpointError(
            f"{source}: uses the official separable position embedding (sep_pos_embed=True, pos_embed_spatial/"
            "temporal); this encoder has the joint table of the released checkpoints"
        )
    missing = [k for k in _SIGNATURE if k not in state_dict]
    proj = state_dict.get("patch_embed.proj.weight")
    if missing or proj is None or proj.dim() != 5:
        looks = ""
        if "patch_embed.proj.weight" in state_dict and state_dict["patch_embed.proj.weight"].dim() == 4:
            looks = " It looks like an image model (2D patch embedding), e.g. a timm ViT."
        elif any(".layers." in k or k.startswith("encoder.") for k in state_dict):
            looks = " It looks like a transformers model."
        raise CheckpointError(
            f"{source}: not an InternVideo-Next video encoder checkpoint: it lacks "
            f"{missing or ['a 3D patch embedding']} (first keys: {list(state_dict)[:5]}).{looks}"
        )


def _model_grid(model: nn.Module) -> tuple[int, int, int]:
    return tuple(int(g) for g in model.pos_embed.grid)


def _source_grid(
    n_rows: int, model: nn.Module, source: str, source_img_size: int | None, source_grid: tuple[int, int, int] | None
) -> tuple[int, int, int]:
    """The token grid ``(T, H, W)`` a checkpoint's position table of ``n_rows`` patch rows was built for.

    ``source_grid`` if given; else square frames of ``source_img_size`` px if given; else the first of
    the model's timm ``pretrained_cfg`` ``input_size`` (what its checkpoints were trained at: 224 px
    for the released ones) and the model's own frame size that holds a whole number of frames.
    """
    if source_grid is not None:
        grid = tuple(int(g) for g in source_grid)
        if math.prod(grid) != n_rows:
            raise CheckpointError(
                f"{source}: position table has {n_rows} patch rows, grid {grid} needs {math.prod(grid)}"
            )
        return grid
    patch = model.patch_embed.patch_size
    if source_img_size is not None:
        sizes = [int(source_img_size)]
    else:
        cfg = getattr(model, "pretrained_cfg", None) or {}
        sizes = [int(cfg["input_size"][-1])] if cfg.get("input_size") else []
        sizes.append(_model_grid(model)[1] * patch)
    for size in sizes:
        side = size // patch
        if size % patch == 0 and n_rows % (side * side) == 0:
            return n_rows // (side * side), side, side
    raise CheckpointError(
        f"{source}: position table has {n_rows} patch rows, not whole square frames of {sizes} px; give the "
        "frame size the checkpoint was trained at (timm: pretrained_cfg_overlay=dict(input_size=(3, S, S)))"
    )


def _resize_pos_table(
    table: torch.Tensor, model: nn.Module, source: str, source_img_size: int | None = None,
    source_grid: tuple[int, int, int] | None = None,
) -> torch.Tensor:
    """Resize a ``(1, num_cls + N, D)`` table to the model's grid (only when the row counts differ)."""
    target = model.pos_embed.pos_embed
    if table.shape == target.shape:
        return table
    num_prefix = model.pos_embed.num_prefix
    if table.dim() != 3 or table.shape[0] != 1 or table.shape[-1] != target.shape[-1]:
        raise CheckpointError(f"{source}: position table {tuple(table.shape)} does not fit width {target.shape[-1]}")
    grid = _source_grid(table.shape[1] - num_prefix, model, source, source_img_size, source_grid)
    patches = resize_pos_grid(table[:, num_prefix:].float(), grid, _model_grid(model)).to(table.dtype)
    return torch.cat([table[:, :num_prefix], patches], dim=1)


def checkpoint_filter_fn(
    state_dict: Mapping[str, Any],
    model: nn.Module,
    source: str = "checkpoint",
    source_img_size: int | None = None,
    source_grid: tuple[int, int, int] | None = None,
    strict: bool = True,
) -> dict[str, torch.Tensor]:
    """Make a state dict (official or ours) loadable into ``model`` (a ``VideoViT``); timm's filter.

    Unwraps containers, strips ``module.``/``model.`` prefixes, renames official keys, drops the
    training-only tensors, resizes the position table to the model's clip length and size (the
    checkpoint's grid: see :func:`_source_grid`), then checks, before anything is loaded, that the
    checkpoint is of this family, of this model's size, and (``strict``) has exactly the model's
    keys; errors name ``source``.
    """
    sd = unwrap_state_dict(state_dict, source)
    if is_official_layout(sd):
        sd = convert_official_keys(sd)
    else:  # our layout can still carry training-only official tensors if someone merged files
        sd = {k: v for k, v in sd.items() if not k.startswith(TRAINING_ONLY)}
    _check_family(sd, source)
    expected = model.state_dict()
    got_args = encoder_args_from_state_dict(sd)
    want_args = encoder_args_from_state_dict(expected)
    differ = {k: (got_args[k], want_args[k]) for k in got_args if got_args[k] != want_args[k]}
    if differ:
        preset = OFFICIAL_PRESETS.get((got_args["embed_dim"], got_args["depth"]))
        hint = f"; create {preset!r} (with the .official_s2 tag) for it" if preset else ""
        detail = ", ".join(f"{k} {a} (model: {b})" for k, (a, b) in differ.items())
        raise CheckpointError(f"{source}: a checkpoint of another size: {detail}{hint}")
    sd["pos_embed.pos_embed"] = _resize_pos_table(
        sd["pos_embed.pos_embed"], model, source, source_img_size, source_grid
    )
    if strict:
        missing = [k for k in expected if k not in sd]
        unexpected = [k for k in sd if k not in expected]
        if missing or unexpected:
            hint = ""
            if missing == ["head.query"]:
                hint = (" The official head pools with the mean of the tokens: use the '.official_s2' tag or "
                        "pool_query='mean'.")
            elif "head.query" in unexpected:
                hint = " The checkpoint has a learned pool query: create the model with pool_query='learned'."
            raise CheckpointError(
                f"{source}: keys do not match the model: missing {missing[:10]}{' ...' if len(missing) > 10 else ''}, "
                f"unexpected {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}.{hint}"
            )
    bad = [f"{k} {tuple(v.shape)} (model {tuple(expected[k].shape)})"
           for k, v in sd.items() if k in expected and v.shape != expected[k].shape]
    if bad:
        raise CheckpointError(f"{source}: tensor shapes differ from the model: {bad[:5]}")
    return sd


def load_state_dict_pre_hook(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    """``VideoViT`` load pre-hook: accept the official layout and other clip sizes in ``load_state_dict``.

    Converts keys under ``prefix`` in place (renames, drops training-only tensors) when they use the
    official names, and resizes a position table whose row count differs from the model's (its grid
    as :func:`_source_grid` finds it).
    Strict loading still reports anything else that does not match.
    """
    if not prefix:
        inner: Any = state_dict
        while isinstance(inner, Mapping) and any(isinstance(inner.get(k), Mapping) for k in CONTAINER_KEYS):
            inner = next(inner[k] for k in CONTAINER_KEYS if isinstance(inner.get(k), Mapping))
        stripped = _strip_wrapper_prefixes(dict(inner))
        if stripped.keys() != state_dict.keys():
            state_dict.clear()
            state_dict.update(stripped)
    if is_official_layout(state_dict, prefix):
        ours = {k: v for k, v in state_dict.items() if k.startswith(prefix)}
        converted = convert_official_keys({k[len(prefix):]: v for k, v in ours.items()})
        for k in ours:
            del state_dict[k]
        state_dict.update({prefix + k: v for k, v in converted.items()})
    key = prefix + "pos_embed.pos_embed"
    table = state_dict.get(key)
    if isinstance(table, torch.Tensor) and table.shape != module.pos_embed.pos_embed.shape:
        state_dict[key] = _resize_pos_table(table, module, "state dict")


# ---------------------------------------------------------------------------- one-call helpers
def grid_from_metadata(metadata: Mapping[str, str]) -> tuple[int, int, int] | None:
    grid = metadata.get("grid")
    return tuple(int(g) for g in grid.split(",")) if grid else None


def load_official_encoder(
    path: str | Path, model_name: str | None = None, **kwargs: Any
) -> nn.Module:
    """An encoder with the weights of an official (or converted) checkpoint, in eval mode.

    ``model_name`` defaults to the preset of the checkpoint's width and depth (Base, Large, 1B) with
    the ``.official_s2`` tag; ``kwargs`` go to the model (e.g. ``num_frames=8, img_size=168``: the
    position table is resized to match).
    """
    import timm

    from . import vit  # noqa: F401  (registers the presets)

    if model_name is None:
        sd, _ = read_state_dict(path, mmap=True)
        sd = convert_official_keys(sd) if is_official_layout(sd) else sd
        _check_family(sd, str(path))
        args = encoder_args_from_state_dict(sd)
        preset = OFFICIAL_PRESETS.get((args["embed_dim"], args["depth"]))
        if preset is None:
            raise CheckpointError(
                f"{path}: width {args['embed_dim']}, depth {args['depth']} matches no released model "
                f"({sorted(OFFICIAL_PRESETS)}); pass model_name"
            )
        model_name = f"{preset}.official_s2"
        del sd
    model = timm.create_model(model_name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **kwargs)
    return model.eval()


def convert_official(src: str | Path, dst: str | Path, img_size: int = 224) -> dict[str, str]:
    """Convert an official checkpoint (any container / prefix) to our safetensors format at ``dst``.

    Renames the keys, drops the training-only tensors, checks every tensor against an encoder of the
    checkpoint's size (built on the meta device, so nothing is allocated), and writes the tensors as
    stored with metadata: ``grid`` (the position table's token grid; its frames are ``img_size`` px,
    224 for the released files, unless the input already records a grid), ``pool_query``,
    ``mlp_act``, ``preset`` (if it is a released size) and ``source``. Returns that metadata.
    """
    from safetensors.torch import save_file

    from .vit import VideoViT

    src, dst = Path(src), Path(dst)
    if dst.suffix != ".safetensors":
        raise CheckpointError(f"{dst}: the output must be a .safetensors file")
    sd, metadata = read_state_dict(src)
    sd = convert_official_keys(sd) if is_official_layout(sd) else sd
    _check_family(sd, str(src))
    args = encoder_args_from_state_dict(sd)
    pool_query = "learned" if "head.query" in sd else "mean"
    grid = grid_from_metadata(metadata)
    if grid is None:
        side = img_size // args["patch_size"]
        n_rows = sd["pos_embed.pos_embed"].shape[1] - args["num_cls_tokens"]
        if img_size % args["patch_size"] or n_rows % (side * side):
            raise CheckpointError(
                f"{src}: its position table ({n_rows} patch rows) is not whole frames of {img_size} px "
                f"(patch {args['patch_size']}); give the frame size it was trained at (--img-size)"
            )
        grid = (n_rows // (side * side), side, side)
    with torch.device("meta"):  # shapes only: the size check costs nothing even for the 1B model
        model = VideoViT(num_frames=grid[0] * args["tubelet_size"], img_size=grid[1] * args["patch_size"],
                         num_heads=1, pool_num_heads=1, pool_query=pool_query, **args)
    sd = checkpoint_filter_fn(sd, model, source=str(src), source_grid=grid)
    preset = OFFICIAL_PRESETS.get((args["embed_dim"], args["depth"]))
    out_meta = {"format": "pt", "grid": ",".join(map(str, grid)), "pool_query": pool_query,
                "mlp_act": metadata.get("mlp_act", "gelu_tanh"), "source": src.name}
    if preset:
        out_meta["preset"] = preset
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp), metadata=out_meta)
    tmp.replace(dst)  # atomic: a crash never leaves a half-written file under the final name
    return out_meta
