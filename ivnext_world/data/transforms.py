"""Clip transforms built from torchvision.transforms.v2, and the ImageNet normalisation that follows them.

Input: a uint8 tensor (T, C, H, W). v2 draws a transform's random parameters once per call and applies
them to every leading dimension, so all T frames get the same crop and flip (what video models need;
per-frame crops would add jitter).

Two outputs. ``output="uint8"`` (training) stops after the spatial part: clips stay uint8 through the
DataLoader's workers, shared memory, pinning and the host-to-device copy (a 16x224 clip is 2.3 MiB
instead of 9.2 MiB as float32), and :func:`normalize_pixels` turns them into ImageNet-normalised floats
on the device; the :class:`~ivnext_world.train.Trainer` does that for the batch keys in
:data:`PIXEL_CHANNEL_DIMS`. ``output="float"`` (the default, for callers that feed a model directly:
inference, probes, latent caches) appends the same conversion on the CPU. Both use the same
arithmetic, so a clip normalised on the device equals the float transform's output bit for bit.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# TSN / VideoMAE multi-scale crop uses crop sides of (1, .875, .75, .66) of the short side; as an area
# fraction for RandomResizedCrop that is about (0.66^2, 1) = (0.44, 1).
TSN_AREA_SCALE = (0.44, 1.0)
OUTPUTS = ("float", "uint8")

# Where the colour channels sit in the pixel tensors of this project's datasets, counted from the end
# so that one number fits an item and a batch of items:
#   "video":  VideoClipDataset, (C, T, H, W) per item, (B, C, T, H, W) batched
#   "frames": TrajectoryDataset, (T, C, H, W) per item, (B, T, C, H, W) batched
PIXEL_CHANNEL_DIMS: dict[str, int] = {"video": -4, "frames": -3}


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
    output: str = "float",
) -> v2.Compose:
    """(T, C, H, W) uint8 -> (T, C, size, size): float32 normalised, or uint8 with ``output="uint8"``.

    Train: one random resized crop (area ``scale``, aspect ``ratio``) for the whole clip, then an
    optional horizontal flip (``flip=False`` for robot videos where left/right matters).
    Eval: resize the short side to ``size / crop_pct`` and take the centre ``size`` crop.
    ``output="uint8"`` leaves out the float conversion and normalisation (``mean``/``std`` unused):
    apply :func:`normalize_pixels` on the device.
    """
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    if train:
        spatial = [v2.RandomResizedCrop(size, scale=scale, ratio=ratio, antialias=True)]
        if flip:
            spatial.append(v2.RandomHorizontalFlip(p=0.5))
    else:
        spatial = [v2.Resize(int(round(size / crop_pct)), antialias=True), v2.CenterCrop(size)]
    if output == "uint8":
        return v2.Compose(spatial)
    return v2.Compose([*spatial, v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))])


def normalize_pixels(
    x: torch.Tensor, channel_dim: int = -3, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> torch.Tensor:
    """uint8 pixels, colour channels at ``channel_dim`` -> float32 ``(x / 255 - mean) / std``, on ``x``'s device.

    The same operations, in the same order and precision, as ``v2.ToDtype(float32, scale=True)`` then
    ``v2.Normalize``, so the result equals the float transform's bit for bit (on the same device).
    """
    if x.dtype != torch.uint8:
        raise TypeError(f"normalize_pixels expects uint8 pixels, got {x.dtype}")
    c = x.shape[channel_dim]
    if c != len(mean):
        raise ValueError(f"expected {len(mean)} colour channels at dim {channel_dim} of {tuple(x.shape)}, found {c}")
    shape = [1] * x.dim()
    shape[channel_dim] = c
    m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(shape)
    s = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(shape)
    return x.to(torch.float32).mul_(1.0 / 255).sub_(m).div_(s)


def normalize_batch(batch: Any, channel_dims: Mapping[str, int] = PIXEL_CHANNEL_DIMS) -> Any:
    """A dict batch with its uint8 pixel tensors (keys of ``channel_dims``) ImageNet-normalised.

    Float tensors under those keys are taken as already normalised (a float transform ran in the
    workers) and pass through, so no clip is normalised twice; other keys and non-dict batches are
    returned as they are.
    """
    if not isinstance(batch, Mapping) or not any(_is_pixels(batch.get(k)) for k in channel_dims):
        return batch
    out = dict(batch)
    for key, dim in channel_dims.items():
        if _is_pixels(out.get(key)):
            out[key] = normalize_pixels(out[key], dim)
    return out


def _is_pixels(x: Any) -> bool:
    return torch.is_tensor(x) and x.dtype == torch.uint8
