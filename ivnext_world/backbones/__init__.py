"""Any frozen backbone, downstream: one :class:`Backbone` interface for the world model, the planners
and the probes, named in config by one string.

Specs (``encoder=...`` in the world-model and depth configs, ``--encoder NAME=SPEC`` in ``ivnext-depth
compare``, :func:`load_backbone`)::

    outputs/pretrain/stage1                            our encoder: a pretraining run or checkpoint folder
    random                                             our architecture, random init (``random_model``, seeded)
    official:/p/internvideo_next_base_p14_res224_f16.pth   released InternVideo-Next (Base/Large by shape)
    official:ivnext_vit_tiny_patch14_224:/p/file.pth   official key layout at another preset's size
    vjepa2:/p/vjepa2-vitl-fpc64-256                    V-JEPA 2: transformers folder (config.json + safetensors)
    timm:vit_small_patch14_dinov2:/p/model.safetensors a timm image model from a local file or folder
    timm:vit_small_patch14_dinov2                      the same architecture, RANDOM init (loud warning)
    timm:ivnext_vit_base_patch14_224.official_s2:/p/f  our video encoder through timm
    hf:/p/dinov2-small                                 a transformers (or timm) image-model folder; a
                                                       V-JEPA 2 folder is recognised too

Nothing is downloaded; a Hugging Face cache repo folder (``models--org--name``) resolves to its snapshot.
Bad input fails before any compute with the loaders' errors, which name the file and the problem.

The interface (every implementation):

- **Input**: frames ``(B, T, 3, H, W)`` uint8 or float in [0, 1] (:meth:`Backbone.encode`), resized to
  the backbone's own square ``img_size`` and normalised with its own ``mean``/``std``
  (:meth:`Backbone.transform`: short side + centre crop, the world model's; ``normalise(crop=False)``:
  whole frame squeezed, the depth probes'). ``img_size`` defaults to the backbone's (our run's training
  size; 224 official; V-JEPA 2's ``crop_size``; the image model's config) and can be set at load.
- **Per frame** (:meth:`Backbone.forward_frames`, :meth:`Backbone.encode`): every frame is encoded on
  its own, so ``T' = T``; a video backbone with ``tubelet_size`` k sees the frame repeated k times (one
  token-frame per frame: V-JEPA 2-AC's way of running V-JEPA 2, tubelet 2, on robot frames). Out
  (:class:`BackboneOutput`): ``patches (B, T, N, D)`` (last layer, grid ``(h, w)`` row-major),
  ``prefix (B, T, p, D)`` (the cls tokens it keeps: our encoder's 4; none for V-JEPA 2 and, as
  DINO-WM, for image models), ``pooled (B, T, P)`` (our attention pool; the image model's own pooled
  output; V-JEPA 2: mean of the patch tokens), and ``hidden``: patch tokens after chosen blocks.
- **Multi-layer features** (the depth probes): ``layers`` = block indices, default L/4, L/2, 3L/4, L
  (:func:`probe_layers`); each is passed through the backbone's final token norm when it has one
  (DINOv2's ``get_intermediate_layers(norm=True)``), so the last one equals ``patches``, the tokens
  the world model predicts. Our encoder has no final norm: raw block outputs.
- **Whole clip** (:meth:`Backbone.forward_clip`, ``forward``): normalised ``(B, 3, T, S, S)`` ->
  ``(B, T', N, D)`` (``forward``: ``(B, T' * N, D)``), video models attending across time (``T' = T /
  tubelet_size``), image models per frame (their tokens carry no time: a probe that needs frame
  order adds its own time embedding). This is what a clip-level probe (classification) reads: it
  has the attributes such a probe asks for (``embed_dim``, ``num_heads``, ``patch_size``,
  ``tubelet_size``, ``img_size``, ``fixed_size``, ``mean``, ``std``, ``record``, ``name``,
  ``num_tokens(frames, size)``) and :meth:`Backbone.check_input` refuses clip sizes it cannot take.
- **World-model latents** (:meth:`Backbone.latents`): ``(B, T, n, D)`` = prefix + patch tokens per frame
  (optionally pooled), ``n = tokens_per_frame(pool)``.
- **Declared**: ``img_size``, ``patch_size``, ``tubelet_size``, ``grid``, ``mean``, ``std``, ``embed_dim``,
  ``pool_dim``, ``depth``, ``num_heads``, ``num_prefix_tokens``, ``is_pretrained``, ``spec`` and
  ``record`` (JSON; :func:`backbone_from_record` rebuilds it: checkpoints store it), ``fingerprint()``.

Only our encoder comes with a pixel decoder (a Stage-1 run): ``WorldModel.decode`` refuses the others.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict
from pathlib import Path

import torch

from .base import Backbone, BackboneInputError, BackboneOutput, probe_layers

__all__ = [
    "Backbone", "BackboneInputError", "BackboneOutput", "PREFIXES", "backbone_from_record", "is_backbone_spec",
    "load_backbone", "probe_layers",
]

log = logging.getLogger(__name__)

PREFIXES = ("official", "vjepa2", "timm", "hf")


def is_backbone_spec(spec) -> bool:
    """True for ``official:``, ``vjepa2:``, ``timm:`` and ``hf:`` specs (not run folders or ``random``)."""
    return isinstance(spec, str) and ":" in spec and spec.split(":", 1)[0] in PREFIXES


@contextlib.contextmanager
def _seeded(seed: int):
    """Random inits are a function of the seed, and leave the caller's RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def load_backbone(spec: str, img_size: int | None = None, *, seed: int = 0,
                  random_model: dict | None = None, timm_kwargs: dict | None = None) -> Backbone:
    """Build the frozen backbone a spec names (see the module docstring), in eval mode on the CPU.

    Args:
        img_size: frame side; None = the backbone's own.
        seed: seed of random inits (``random``, ``timm:<name>`` without a file), so a record rebuilds them.
        random_model: ``EPDConfig`` fields of the ``random`` architecture (default: ``EPDConfig()``).
        timm_kwargs: extra ``timm.create_model`` arguments of ``timm:`` specs (e.g. ``{"embed_dim": 64,
            "depth": 4, "num_heads": 4}``: a random-init image model as small as the encoder it is
            compared with); kept in the record.
    """
    kwargs = dict(timm_kwargs or {})
    if kwargs and not spec.startswith("timm:"):
        raise ValueError(f"timm_kwargs {kwargs} apply to timm:<model> specs only, not {spec!r}")
    spec = str(spec)
    if spec in ("", "random"):
        return _random_ours(random_model, seed, img_size)
    if not is_backbone_spec(spec):
        return _ours(spec, img_size)
    kind, rest = spec.split(":", 1)
    with _seeded(seed):
        if kind == "official":
            bb = _official(spec, rest, img_size)
        elif kind == "vjepa2":
            bb = _vjepa2(spec, rest, img_size)
        elif kind == "hf":
            bb = _hf(spec, rest, img_size)
        else:
            bb = _timm(spec, rest, img_size, kwargs)
    bb.record = {"spec": spec, "img_size": bb.img_size, "seed": seed, **({"timm_kwargs": kwargs} if kwargs else {})}
    log.info("%s", bb.describe())
    return bb


def backbone_from_record(record: dict, spec: str | None = None) -> Backbone:
    """Rebuild a backbone from its ``record`` (``spec``: another location of the same weights)."""
    return load_backbone(spec or record["spec"], img_size=record.get("img_size"), seed=record.get("seed", 0),
                         random_model=record.get("model"), timm_kwargs=record.get("timm_kwargs"))


# ---------------------------------------------------------------------- one builder per kind
def _ours(spec: str, img_size: int | None) -> Backbone:
    from ..pretrain.run import load_epd, resolve_checkpoint
    from .video_vit import VideoViTBackbone

    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"encoder {spec!r}: no such pretraining run or checkpoint folder (other backbones: "
                                f"{', '.join(p + ':...' for p in PREFIXES)})")
    if path.is_file():
        raise ValueError(f"encoder {spec!r} is a file, not a pretraining run folder: an official InternVideo-Next "
                         f"checkpoint is official:{spec}; timm weights are timm:<architecture>:{spec}")
    ckpt = resolve_checkpoint(path).resolve()
    epd, _ = load_epd(ckpt)
    size = int(img_size or epd.cfg.img_size)
    return VideoViTBackbone(epd.encoder, size, str(ckpt), {"spec": str(ckpt), "img_size": size})


def _random_ours(random_model: dict | None, seed: int, img_size: int | None) -> Backbone:
    from ..pretrain.epd import EPDConfig, build_epd
    from .video_vit import VideoViTBackbone

    model = dict(random_model) if random_model is not None else asdict(EPDConfig())
    model = {**model, "decoder": "none", "teacher_dim": None}  # only the encoder is used
    with _seeded(seed):
        epd = build_epd(EPDConfig(**model))
    size = int(img_size or epd.cfg.img_size)
    record = {"spec": "random", "model": model, "seed": seed, "img_size": size}
    return VideoViTBackbone(epd.encoder, size, "random", record, is_pretrained=False)


def _split_name(rest: str) -> tuple[str | None, str]:
    """``"<timm name>:<path>"`` or ``"<path>"`` -> (name or None, path); a name has no ``/``."""
    head, sep, tail = rest.partition(":")
    if sep and "/" not in head and "\\" not in head and head:
        return head, tail
    return None, rest


def _official(spec: str, rest: str, img_size: int | None) -> Backbone:
    from ..models.official import load_official_encoder
    from ..models.vit import TAG_MODEL_ARGS
    from .video_vit import VideoViTBackbone

    name, file = _split_name(rest)
    path = Path(file)
    if not path.is_file():
        raise FileNotFoundError(f"official checkpoint not found: {path} (spec {spec!r})")
    kwargs = {}
    if name is not None and not name.endswith(".official_s2"):
        kwargs = dict(TAG_MODEL_ARGS["official_s2"])  # the released weights' options at another size
    enc = load_official_encoder(path, name, **kwargs)
    size = int(img_size or enc.pretrained_cfg.get("input_size", (3, 224, 224))[-1])
    return VideoViTBackbone(enc, size, spec, kind="official")


def _vjepa2(spec: str, rest: str, img_size: int | None) -> Backbone:
    from ..models.teacher import resolve_model_path
    from .vjepa2 import VJEPA2Backbone

    return VJEPA2Backbone(resolve_model_path(rest), img_size, spec)


def _hf(spec: str, rest: str, img_size: int | None) -> Backbone:
    from ..models.hf_vision import read_json_config
    from ..models.teacher import resolve_model_path
    from .image import ImageBackbone
    from .vjepa2 import VJEPA2Backbone

    folder = resolve_model_path(rest)
    cfg = folder / "config.json"
    if folder.is_dir() and cfg.is_file() and read_json_config(cfg).get("model_type") == "vjepa2":
        return VJEPA2Backbone(folder, img_size, spec)
    if folder.is_file():
        raise ValueError(f"{folder} is a file: hf:<folder> takes a transformers or timm model folder "
                         f"(config.json + weights); a bare timm weights file is timm:<architecture>:{folder}")
    return ImageBackbone("auto", folder, img_size, spec)


def _timm(spec: str, rest: str, img_size: int | None, extra: dict) -> Backbone:
    import timm

    from .image import ImageBackbone
    from .video_vit import VideoViTBackbone

    name, _, file = rest.partition(":")
    base = timm.models.split_model_name_tag(name)[0]
    if not name or not timm.is_model(base):
        raise ValueError(f"backbone {spec!r}: timm has no model {base!r}")
    path = Path(file) if file else None
    if path is not None and not path.exists():
        raise FileNotFoundError(f"backbone weights not found: {path} (spec {spec!r})")
    if not base.startswith("ivnext_vit_"):
        return ImageBackbone(name, path, img_size, spec, model_kwargs=extra)
    kwargs = {**extra, **({"img_size": img_size} if img_size else {})}
    if path is None:
        enc = timm.create_model(name, pretrained=False, **kwargs)
        banner = "!" * 78
        log.warning("\n%s\n!! Backbone %s has RANDOM weights: no weights file was named.\n%s", banner, spec, banner)
    else:
        enc = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **kwargs)
    size = int(img_size or enc.pretrained_cfg.get("input_size", (3, 224, 224))[-1])
    kind = "official" if name.endswith(".official_s2") else "ours"
    return VideoViTBackbone(enc, size, spec, kind=kind, is_pretrained=path is not None)
