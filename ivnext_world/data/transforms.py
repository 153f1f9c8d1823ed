"""Clip transforms built from torchvision.transforms.v2.

Input: a uint8 tensor (T, C, H, W); output: float32 (T, C, size, size), ImageNet-normalised. v2 draws
a transform's random parameters once per call and applies them to every leading dimension, so all T
frames get the same crop and flip (what video models need; per-frame crops would add jitter).
"""
from __future__ import annotations

import torch
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# TSN / VideoMAE multi-scale crop uses crop sides of (1, .875, .75, .66) of the short side; as an area
# fraction for RandomResizedCrop that is about (0.66^2, 1) = (0.44, 1).
TSN_AREA_SCALE = (0.44, 1.0)


def build_video_transform(
    train: bool,
    size: int = 224,
    *,
    scale: tuple[float, float] = TSN_AREA_SCALE,
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip: bool = True,
    crop_pct: float = 0.875,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> v2.Compose:
    """(T, C, H, W) uint8 -> (T, C, size, size) float32 normalised.

    Train: one random resized crop (area ``scale``, aspect ``ratio``) for the whole clip, then an
    optional horizontal flip (``flip=False`` for robot videos where left/right matters).
    Eval: resize the short side to ``size / crop_pct`` and take the centre ``size`` crop.
    """
    if train:
        spatial = [v2.RandomResizedCrop(size, scale=scale, ratio=ratio, antialias=True)]
        if flip:
            spatial.append(v2.RandomHorizontalFlip(p=0.5))
    else:
        spatial = [v2.Resize(int(round(size / crop_pct)), antialias=True), v2.CenterCrop(size)]
    return v2.Compose([*spatial, v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))])
