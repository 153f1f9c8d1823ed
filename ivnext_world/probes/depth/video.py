"""Any robot video -> per-frame depth maps (PNG + one ``depth.npz``) and point clouds (``.ply``).

The trained probe runs on each decoded frame (upright: rotation metadata applied); depth is
predicted at the video's own resolution, so the intrinsics are those of the video's pixels. Without
calibration the documented default is a pinhole camera with a 60 degree horizontal field of view,
square pixels and the principal point at the image centre (:func:`~.geometry.intrinsics_from_fov`); metric scale then
comes only from what the probe learned in simulation, so treat it as relative depth.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from ...data.failures import BadInput
from ...data.video_io import open_video, read_frames
from .evaluate import predict_depth
from .geometry import check_depth_intrinsics, intrinsics_from_fov, intrinsics_from_values, point_cloud, render_point_clouds, write_ply

log = logging.getLogger(__name__)

DEFAULT_HFOV = 60.0


class VideoDecodeError(ValueError):
    """The video file cannot be opened or decoded."""


def resolve_intrinsics(n_frames: int, height: int, width: int, intrinsics=None, hfov_deg: float = DEFAULT_HFOV) -> np.ndarray:
    """``(n_frames, 3, 3)`` camera matrices for a ``height x width`` video.

    ``intrinsics``: None (default FOV), ``(fx, fy, cx, cy)``, one ``(3, 3)`` matrix, or ``(n_frames, 3, 3)``.
    Raises ``ValueError`` naming the shapes when they do not fit the video.
    """
    if intrinsics is None:
        K = intrinsics_from_fov(width, height, hfov_deg)
    else:
        K = np.asarray(intrinsics, dtype=np.float64)
        if K.shape == (4,):
            K = intrinsics_from_values(*K)
    if K.shape == (3, 3):
        K = np.broadcast_to(K, (n_frames, 3, 3))
    if K.ndim != 3 or K.shape[1:] != (3, 3):
        raise ValueError(f"intrinsics must be fx,fy,cx,cy, a (3, 3) matrix or (T, 3, 3) matrices, got shape {K.shape}")
    if len(K) != n_frames:
        raise ValueError(f"{len(K)} intrinsics matrices for {n_frames} frames: give one per frame or a single one")
    check_depth_intrinsics(np.zeros((height, width), np.float32), K[0])
    return K


def _colour(depth: np.ndarray, lo: float, hi: float) -> np.ndarray:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import colormaps

    x = (np.clip(depth, lo, hi) - lo) / max(hi - lo, 1e-9)
    return (colormaps["viridis_r"](x)[..., :3] * 255).round().astype(np.uint8)  # near = yellow


def predict_video(
    probe_path: str | os.PathLike, video: str | os.PathLike, out_dir: str | os.PathLike, intrinsics=None,
    hfov_deg: float = DEFAULT_HFOV, every: int = 1, max_frames: int | None = None, chunk: int = 16,
    write_clouds: bool = True, device: str = "cpu", decoder: str = "auto",
) -> dict:
    """Write ``depth_%05d.png`` (colour-mapped, shared range), ``cloud_%05d.ply`` per used frame,
    ``depth.npz`` (``depth (N, H, W)`` metres, ``frame_index``, ``intrinsics``) and ``cloud_view.png``."""
    from PIL import Image

    from .train import load_depth_probe

    try:
        reader = open_video(video, decoder)
    except BadInput as err:
        raise VideoDecodeError(f"cannot decode video {video}: {err.kind}: {err.detail}") from err
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    idx = np.arange(0, len(reader), every)[:max_frames]
    h, w = reader.info.shape if len(idx) else (0, 0)  # upright size, without decoding a frame
    K = resolve_intrinsics(len(idx), h, w, intrinsics, hfov_deg)
    probe, features, info = load_depth_probe(probe_path, device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    depths, rgbs = [], []
    for s in range(0, len(idx), chunk):
        try:
            frames = read_frames(reader, video, idx[s:s + chunk])  # (n, H, W, 3) uint8
        except BadInput as err:
            raise VideoDecodeError(f"cannot decode video {video}: {err.kind}: {err.detail}") from err
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).to(device)
        depths.append(predict_depth(probe, features, x, (h, w)).cpu().numpy())
        rgbs.append(frames)
    depth, rgb = np.concatenate(depths), np.concatenate(rgbs)
    lo, hi = np.percentile(depth, 1), np.percentile(depth, 99)
    for i, fi in enumerate(idx):
        Image.fromarray(_colour(depth[i], lo, hi)).save(out / f"depth_{fi:05d}.png")
        if write_clouds:
            write_ply(point_cloud(depth[i], K[i], rgb[i]), out / f"cloud_{fi:05d}.ply")
    np.savez_compressed(out / "depth.npz", depth=depth.astype(np.float32), frame_index=idx, intrinsics=K)
    png, how = render_point_clouds({f"frame {idx[0]}": point_cloud(depth[0], K[0], rgb[0])}, out / "cloud_view.png",
                                   title=f"{Path(video).name}: predicted point cloud")
    return {"frames": len(idx), "size": [h, w], "out": str(out), "probe": info["checkpoint"],
            "intrinsics": "given" if intrinsics is not None else f"default: {hfov_deg:g} deg horizontal FOV",
            "depth_range_m": [float(depth.min()), float(depth.max())], "cloud_view": str(png), "renderer": how}
