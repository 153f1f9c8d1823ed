"""Which frozen encoder a depth probe reads: a spec string -> :class:`FrozenFeatures`-like extractor.

Specs (also what a probe checkpoint stores, so ``load_depth_probe`` can rebuild the encoder):

- ``"random"``: a randomly initialised encoder of the architecture ``EPDConfig`` (seeded), the
  baseline every pretrained encoder must beat;
- a pretraining run or checkpoint folder (Stage 1 or Stage 2, see ``ivnext_world.pretrain``);
- ``"timm:<model_name>:<local weights file>"``: an image teacher (any timm ViT with
  ``forward_intermediates``), e.g. the one Stage 1 aligned to. Nothing is downloaded.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from ...pretrain.epd import EPDConfig, build_epd
from .features import FrozenFeatures, normalise_frames
from .heads import probe_layers


class TimmImageFeatures:
    """4 hidden-state maps of a timm image ViT (the image teacher), same interface as FrozenFeatures."""

    def __init__(self, name: str, checkpoint: str | None, img_size: int):
        import timm

        kwargs = {"checkpoint_path": checkpoint} if checkpoint else {}
        self.encoder = timm.create_model(name, pretrained=False, img_size=img_size, num_classes=0, **kwargs)
        self.encoder.eval().requires_grad_(False)
        self.img_size = img_size
        self.layers = probe_layers(len(self.encoder.blocks))
        self.grid = tuple(self.encoder.patch_embed.grid_size)

    @property
    def embed_dim(self) -> int:
        return self.encoder.embed_dim

    @torch.no_grad()
    def __call__(self, frames: torch.Tensor, normalised: bool = False) -> list[torch.Tensor]:
        x = frames if normalised else normalise_frames(frames, self.img_size)
        self.encoder.to(x.device)
        return [f.float() for f in self.encoder.forward_intermediates(
            x, indices=self.layers, output_fmt="NCHW", intermediates_only=True)]


def build_features(spec: str, random_model: EPDConfig | dict | None = None, seed: int = 0):
    """``(features, record)``: the extractor and a JSON-able record that rebuilds it (stored in checkpoints)."""
    if spec in (None, "", "random"):
        model = random_model if isinstance(random_model, dict) else asdict(random_model or EPDConfig())
        model = {**model, "decoder": "none", "teacher_dim": None}  # only the encoder is used
        torch.manual_seed(seed)
        epd = build_epd(EPDConfig(**model))
        return FrozenFeatures(epd.encoder, epd.cfg.img_size), {"spec": "random", "model": model, "seed": seed}
    if spec.startswith("timm:"):
        _, name, *ckpt = spec.split(":", 2)
        ckpt = ckpt[0] if ckpt and ckpt[0] else None
        if ckpt is not None and not Path(ckpt).is_file():
            raise FileNotFoundError(f"image-teacher weights {ckpt} do not exist")
        img = (random_model or {}).get("img_size", 224) if isinstance(random_model, dict) else 224
        return TimmImageFeatures(name, ckpt, img), {"spec": spec, "img_size": img}
    from ...pretrain.run import load_epd, resolve_checkpoint

    ckpt = resolve_checkpoint(spec).resolve()
    epd, _ = load_epd(ckpt)
    return FrozenFeatures(epd.encoder, epd.cfg.img_size), {"spec": str(ckpt)}


def features_from_record(record: dict):
    if record["spec"] == "random":
        return build_features("random", record["model"], record["seed"])[0]
    if record["spec"].startswith("timm:"):
        return build_features(record["spec"], {"img_size": record["img_size"]})[0]
    return build_features(record["spec"])[0]
