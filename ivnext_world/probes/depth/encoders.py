"""Which frozen backbone a depth probe reads: a spec string -> :class:`~.features.BackboneFeatures`.

Specs are those of :func:`ivnext_world.backbones.load_backbone` (also what a probe checkpoint
stores, so ``load_depth_probe`` rebuilds the backbone):

- ``"random"``: a randomly initialised encoder of the architecture ``EPDConfig`` (seeded), the
  baseline every pretrained encoder must beat;
- a pretraining run or checkpoint folder (Stage 1 or Stage 2, see ``ivnext_world.pretrain``);
- ``official:<file>`` (released InternVideo-Next), ``vjepa2:<folder>`` (V-JEPA 2),
  ``timm:<model>[:<weights file or folder>]`` (e.g. the image teacher Stage 1 aligned to, or DINOv2;
  without a file: random init, loudly warned), ``hf:<folder>`` (transformers image models).

Nothing is downloaded.
"""
from __future__ import annotations

from dataclasses import asdict

from ...backbones import backbone_from_record, load_backbone
from ...pretrain.epd import EPDConfig
from .features import BackboneFeatures


def build_features(spec: str, random_model: EPDConfig | dict | None = None, seed: int = 0, img_size: int | None = None):
    """``(features, record)``: the extractor and a JSON-able record that rebuilds it (stored in checkpoints).

    ``img_size``: frame side for the backbone (None: its own; ``random`` takes ``random_model``'s)."""
    spec = spec or "random"
    model = None
    if spec == "random":
        model = random_model if isinstance(random_model, dict) else asdict(random_model or EPDConfig())
    backbone = load_backbone(spec, img_size=img_size, seed=seed, random_model=model)
    return BackboneFeatures(backbone), dict(backbone.record)


def features_from_record(record: dict) -> BackboneFeatures:
    """Rebuild the extractor of a probe checkpoint (records of older versions included)."""
    return BackboneFeatures(backbone_from_record(record))
