"""Score a trained depth probe on held-out episodes and draw what it sees.

Metrics (:mod:`.metrics`) over every ``eval_stride``-th frame of the test episodes, rendered metric
depth as ground truth; the Chamfer distance (:mod:`.geometry` convention) between the point clouds
back-projected from predicted and true depth with the frame's intrinsics, on a few frames per
episode. Pictures: a depth-map sheet (RGB | true | predicted | |error|) and a point-cloud view.

With a fixed camera most of a robot scene never moves, and the per-pixel mean depth of the
training frames (:func:`static_depth_map`) is already a strong "prediction" that needs no image at
all. Given that map, the metrics are also reported on the *dynamic* pixels only (``dyn_*``: where
the true depth differs from the static map by more than ``dynamic_tol``, i.e. the arm and the
objects), and for the static map itself (``static_map``), so a probe is judged on what moves.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from .geometry import chamfer_distance, point_cloud, render_point_clouds, write_ply
from .metrics import MetricAccumulator

log = logging.getLogger(__name__)


@torch.no_grad()
def predict_depth(probe, features, frames: torch.Tensor, out_size: tuple[int, int], batch: int = 32) -> torch.Tensor:
    """``frames (N, 3, H, W)`` uint8 or [0, 1] float -> depth ``(N, *out_size)`` metres."""
    probe.eval()
    outs = []
    for i in range(0, len(frames), batch):
        feats = features(frames[i:i + batch])[-probe.cfg.num_inputs:]
        outs.append(probe(feats, out_size))
    return torch.cat(outs)


def _test_frames(source: str, episodes: list[int], camera_key: str | None, eval_stride: int):
    """Per episode: (frames (T, 3, H, W) float [0, 1], depth (T, H, W), intrinsics (T, 3, 3)) every ``eval_stride`` rows."""
    from ...data import LeRobotDataset, TrajectoryDataset

    meta = LeRobotDataset(source)
    for ep in episodes:
        n = meta.episode_length(ep)
        k = (n - 1) // eval_stride + 1
        item = TrajectoryDataset(source, window=k, frame_skip=eval_stride, camera_key=camera_key, episodes=[ep], on_error="raise")[0]
        if "depth" not in item:
            raise ValueError(f"{source} stores no depth: cannot score a depth probe")
        yield ep, item


def depth_sheet(rows: list[dict], path: str | Path, title: str = "", max_depth: float | None = None) -> Path:
    """Rows of ``{"rgb": (H, W, 3) uint8, "gt": (H, W), "pred": (H, W), "label": str}``; ``gt`` may be None."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    has_gt = any(r.get("gt") is not None for r in rows)
    cols = ["RGB", "true depth", "predicted", "|error| (m)"] if has_gt else ["RGB", "predicted depth"]
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(2.3 * len(cols), 2.2 * len(rows)), squeeze=False)
    for i, r in enumerate(rows):
        ref = r["gt"] if r.get("gt") is not None else r["pred"]
        ref = ref[np.isfinite(ref) & (ref < (max_depth or np.inf))]
        lo, hi = float(ref.min()), float(ref.max())  # the frame's own range: small depth differences stay visible
        panels = [(r["rgb"], None, None)]
        if has_gt:
            panels += [(r["gt"], "viridis", (lo, hi)), (r["pred"], "viridis", (lo, hi)),
                       (np.abs(r["pred"] - r["gt"]), "magma", (0, max(0.05, (hi - lo) / 4)))]
        else:
            panels += [(r["pred"], "viridis", (lo, hi))]
        for j, (img, cmap, rng) in enumerate(panels):
            ax = axes[i, j]
            im = ax.imshow(img, cmap=cmap, vmin=rng[0] if rng else None, vmax=rng[1] if rng else None)
            if cmap:
                fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(cols[j], fontsize=8)
        axes[i, 0].set_ylabel(r.get("label", ""), fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def static_depth_map(source: str, episodes: list[int], camera_key: str | None = None) -> np.ndarray:
    """Per-pixel geometric mean of the stored depth over all frames of ``episodes``: ``(H, W)`` metres."""
    from ...data import LeRobotDataset

    meta = LeRobotDataset(source)
    cam = camera_key or meta.camera_keys[0]
    log_sum, n = None, 0
    for ep in episodes:
        d = meta.depth(ep, cam)
        if d is None:
            raise ValueError(f"{source} stores no depth for {cam}")
        ld = np.log(np.clip(d, 1e-6, None)).sum(0)
        log_sum, n = (ld if log_sum is None else log_sum + ld), n + len(d)
    return np.exp(log_sum / n).astype(np.float32)


def dynamic_mask(gt: torch.Tensor, static: torch.Tensor, tol: float) -> torch.Tensor:
    """Pixels whose true depth differs from the static map by more than ``tol`` (relative)."""
    return (gt / static - 1).abs() > tol


def evaluate_depth_probe(
    probe, features, source: str, episodes: list[int], out_dir: str | Path | None = None,
    camera_key: str | None = None, eval_stride: int = 2, chamfer_frames: int = 3, sheet_rows: int = 4, title: str = "",
    static_map: np.ndarray | None = None, dynamic_tol: float = 0.05,
) -> dict:
    """Metrics on ``episodes`` (held out) and, with ``out_dir``, pictures and a ``.ply`` pair.

    ``static_map`` (``(H, W)``, e.g. :func:`static_depth_map` of the training episodes) adds the
    ``dyn_*`` metrics and ``static_map`` (the same metrics of the map itself)."""
    cfg = probe.cfg
    acc = MetricAccumulator(cfg.min_depth, cfg.max_depth)
    dyn, dyn_static, static_acc = (MetricAccumulator(cfg.min_depth, cfg.max_depth) for _ in range(3))
    chamfers, rows, first = [], [], None
    for ep, item in _test_frames(source, episodes, camera_key, eval_stride):
        gt = item["depth"]
        pred = predict_depth(probe, features, item["frames"], tuple(gt.shape[-2:]))
        acc.update(pred, gt)
        if static_map is not None:
            ref = torch.as_tensor(static_map).expand_as(gt)
            static_acc.update(ref.clone(), gt)
            moving = gt.where(dynamic_mask(gt, ref, dynamic_tol), torch.full_like(gt, float("nan")))
            if torch.isfinite(moving).any():
                dyn.update(pred, moving)
                dyn_static.update(ref.clone(), moving)
        if "intrinsics" in item:
            for t in np.linspace(0, len(gt) - 1, chamfer_frames).round().astype(int):
                K = item["intrinsics"][t].numpy()
                chamfers.append(chamfer_distance(point_cloud(pred[t].numpy(), K, max_depth=cfg.max_depth),
                                                 point_cloud(gt[t].numpy(), K, max_depth=cfg.max_depth)))
        t = len(gt) // 2
        if len(rows) < sheet_rows:
            rows.append({"rgb": (item["frames"][t].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8),
                         "gt": gt[t].numpy(), "pred": pred[t].numpy(), "label": f"ep {ep} t={int(item['frame_index'][t])}"})
        if first is None and "intrinsics" in item:
            first = (ep, rows[-1]["rgb"], gt[t].numpy(), pred[t].numpy(), item["intrinsics"][t].numpy())
    result = acc.compute()
    result["chamfer"] = float(np.mean(chamfers)) if chamfers else None
    if static_map is not None:
        result.update({f"dyn_{k}": v for k, v in dyn.compute().items()} if dyn.count else {})
        result["static_map"] = static_acc.compute()
        if dyn_static.count:
            result["static_map"].update({f"dyn_{k}": v for k, v in dyn_static.compute().items()})
    if out_dir is not None:
        out = Path(out_dir)
        result["depth_sheet"] = str(depth_sheet(rows, out / "depth_maps.png", title))
        if first is not None:
            ep, rgb, gt_t, pred_t, K = first
            clouds = {"true depth": point_cloud(gt_t, K, rgb, cfg.max_depth), "predicted depth": point_cloud(pred_t, K, rgb, cfg.max_depth)}
            write_ply(clouds["true depth"], out / "cloud_true.ply")
            write_ply(clouds["predicted depth"], out / "cloud_pred.ply")
            png, how = render_point_clouds(clouds, out / "point_clouds.png",
                                           title=f"{title} episode {ep}: Chamfer {chamfer_distance(*clouds.values()):.3f} m")
            result.update(point_cloud_png=str(png), point_cloud_renderer=how, ply=str(out / "cloud_pred.ply"))
    return result
