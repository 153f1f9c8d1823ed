"""Depth -> 3D with open3d: back-projection, Chamfer distance, ``.ply`` export, offscreen pictures.

Camera convention (OpenCV): ``K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``, pixel ``(u, v)`` =
(column, row) with pixel centres at integer coordinates, depth ``Z`` in metres along the optical
axis, ``X = (u - cx) Z / fx``, ``Y = (v - cy) Z / fy`` (x right, y down, z forward).

Chamfer distance convention (kept everywhere in this package): the **mean of the two directions of
the mean unsquared nearest-neighbour Euclidean distance**, in metres,
``CD(A, B) = 0.5 * (mean_a min_b |a - b| + mean_b min_a |a - b|)``, computed with open3d's
``PointCloud.compute_point_cloud_distance``. Identical clouds give 0; a cloud shifted by a vector
shorter than half its point spacing gives the shift's length.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np


def intrinsics_from_fov(width: int, height: int, hfov_deg: float = 60.0) -> np.ndarray:
    """Pinhole ``K`` with square pixels, the given horizontal field of view and the image centre as
    principal point (``cx = (W - 1) / 2``). The documented default when a video has no calibration."""
    fx = (width / 2) / math.tan(math.radians(hfov_deg) / 2)
    return np.array([[fx, 0, (width - 1) / 2], [0, fx, (height - 1) / 2], [0, 0, 1]], dtype=np.float64)


def intrinsics_from_values(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)


def check_depth_intrinsics(depth: np.ndarray, K: np.ndarray) -> None:
    """Raise ``ValueError`` unless ``depth`` is ``(H, W)`` and ``K`` a 3x3 camera matrix for it.

    Catches the usual mix-ups: a batch of depth maps with one matrix, a 4x4 extrinsic passed as
    intrinsics, and intrinsics of another resolution (principal point outside the image).
    """
    depth, K = np.asarray(depth), np.asarray(K)
    if depth.ndim != 2:
        raise ValueError(f"depth must be one (H, W) map, got shape {depth.shape}")
    if K.shape != (3, 3):
        raise ValueError(f"intrinsics must be a 3x3 matrix [[fx,0,cx],[0,fy,cy],[0,0,1]], got shape {K.shape}")
    h, w = depth.shape
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    if not (fx > 0 and fy > 0):
        raise ValueError(f"intrinsics need fx, fy > 0, got fx={fx}, fy={fy}")
    if not (-0.5 <= cx <= w - 0.5 and -0.5 <= cy <= h - 0.5):
        raise ValueError(
            f"intrinsics do not match the {h}x{w} depth map: principal point (cx, cy) = ({cx:g}, {cy:g}) lies "
            f"outside it (intrinsics of another resolution? scale fx, cx by W'/W and fy, cy by H'/H)"
        )


def backproject(depth: np.ndarray, K: np.ndarray, min_depth: float = 1e-6, max_depth: float = np.inf) -> tuple[np.ndarray, np.ndarray]:
    """``depth (H, W)`` metres, ``K (3, 3)`` -> ``points (N, 3)`` camera frame, ``mask (H, W)`` of used pixels."""
    check_depth_intrinsics(depth, K)
    depth = np.asarray(depth, dtype=np.float64)
    h, w = depth.shape
    v, u = np.mgrid[0:h, 0:w]
    mask = np.isfinite(depth) & (depth > min_depth) & (depth < max_depth)
    z = depth[mask]
    x = (u[mask] - K[0, 2]) * z / K[0, 0]
    y = (v[mask] - K[1, 2]) * z / K[1, 1]
    return np.stack([x, y, z], 1), mask


def point_cloud(depth: np.ndarray, K: np.ndarray, rgb: np.ndarray | None = None, max_depth: float = np.inf):
    """An ``open3d.geometry.PointCloud`` of the valid pixels, coloured by ``rgb (H, W, 3)`` uint8 if given."""
    import open3d as o3d

    pts, mask = backproject(depth, K, max_depth=max_depth)
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
    if rgb is not None:
        rgb = np.asarray(rgb)
        if rgb.shape[:2] != np.asarray(depth).shape:
            raise ValueError(f"rgb {rgb.shape} and depth {np.asarray(depth).shape} differ in size")
        pcd.colors = o3d.utility.Vector3dVector(rgb[mask].astype(np.float64) / 255.0)
    return pcd


def as_cloud(x):
    import open3d as o3d

    if isinstance(x, o3d.geometry.PointCloud):
        return x
    pts = np.asarray(x, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must be (N, 3), got {pts.shape}")
    return o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))


def chamfer_distance(a, b) -> float:
    """Symmetric Chamfer distance (metres): ``0.5 * (mean NN dist a->b + mean NN dist b->a)``, unsquared.

    ``a, b``: open3d point clouds or ``(N, 3)`` arrays (see the module docstring for the convention).
    """
    a, b = as_cloud(a), as_cloud(b)
    if not len(a.points) or not len(b.points):
        raise ValueError("Chamfer distance of an empty point cloud is undefined")
    ab = np.asarray(a.compute_point_cloud_distance(b))
    ba = np.asarray(b.compute_point_cloud_distance(a))
    return float(0.5 * (ab.mean() + ba.mean()))


def write_ply(pcd, path: str | os.PathLike) -> Path:
    import open3d as o3d

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not o3d.io.write_point_cloud(str(path), as_cloud(pcd)):
        raise OSError(f"open3d could not write {path}")
    return path


# ------------------------------------------------------------------------------------------ pictures
_PROBE = r"""
import numpy as np, open3d as o3d
r = o3d.visualization.rendering.OffscreenRenderer(32, 24)
m = o3d.visualization.rendering.MaterialRecord(); m.shader = "defaultUnlit"
r.scene.add_geometry("p", o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.random.rand(50, 3))), m)
r.setup_camera(60.0, [0.5, 0.5, 0.5], [0.5, 0.5, -2.0], [0.0, 1.0, 0.0])
assert np.asarray(r.render_to_image()).shape == (24, 32, 3)
print("ok")
"""


@lru_cache(maxsize=1)
def offscreen_renderer_works() -> tuple[bool, str]:
    """Try open3d's OffscreenRenderer in a child process (a missing Vulkan/EGL driver aborts the
    process that tries, so never try it here first). ``IVNEXT_NO_O3D_RENDER=1`` forces the fallback."""
    if os.environ.get("IVNEXT_NO_O3D_RENDER"):
        return False, "disabled by IVNEXT_NO_O3D_RENDER"
    try:
        p = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return False, "open3d OffscreenRenderer timed out"
    if p.returncode == 0 and p.stdout.strip().endswith("ok"):
        return True, "open3d OffscreenRenderer"
    tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or [f"exit status {p.returncode}"]
    return False, f"open3d OffscreenRenderer unavailable ({tail[0][:200]})"


def render_point_clouds(clouds: dict[str, object], path: str | os.PathLike, size: tuple[int, int] = (320, 240),
                        title: str = "") -> tuple[Path, str]:
    """One picture with a view of each named cloud side by side (the same camera for all).

    Rendered offscreen by open3d when its renderer works here, else a matplotlib projection (a
    front and a top view); the returned string says which, and the fallback says so in the picture.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clouds = {k: as_cloud(v) for k, v in clouds.items()}
    ok, why = offscreen_renderer_works()
    if ok:
        try:
            return _render_open3d(clouds, path, size, title), why
        except Exception as err:  # noqa: BLE001 - any renderer failure means: draw the fallback
            why = f"open3d rendering failed ({type(err).__name__}: {err})"
    return _render_matplotlib(clouds, path, title, why), f"matplotlib projection (fallback: {why})"


def _view(clouds) -> tuple[np.ndarray, np.ndarray]:
    pts = np.concatenate([np.asarray(c.points) for c in clouds.values() if len(c.points)] or [np.zeros((1, 3))])
    lo, hi = np.percentile(pts, 2, 0), np.percentile(pts, 98, 0)
    return (lo + hi) / 2, hi - lo


def _render_open3d(clouds, path: Path, size, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import open3d as o3d

    w, h = size
    renderer = o3d.visualization.rendering.OffscreenRenderer(w, h)
    renderer.scene.set_background([1.0, 1.0, 1.0, 1.0])
    renderer.scene.view.set_post_processing(False)  # no tone mapping: colours as stored
    mat = o3d.visualization.rendering.MaterialRecord()
    mat.shader, mat.point_size = "defaultUnlit", 3.0
    centre, extent = _view(clouds)
    # A three-quarter view from above and to the side of the camera that took the depth (OpenCV:
    # y down, z forward), so relief shows; the distance scales with the clouds' extent.
    eye = centre + np.array([0.7, -0.6, -0.9]) * max(float(np.linalg.norm(extent)), 1e-3)
    images = []
    for name, cloud in clouds.items():
        renderer.scene.clear_geometry()
        if not cloud.has_colors():
            z = np.asarray(cloud.points)[:, 2]
            zn = (z - z.min()) / max(np.ptp(z), 1e-9) if len(z) else z
            cloud = o3d.geometry.PointCloud(cloud)
            cloud.colors = o3d.utility.Vector3dVector(plt.get_cmap("viridis")(zn)[:, :3])
        renderer.scene.add_geometry(name, cloud, mat)
        renderer.setup_camera(45.0, centre, eye, [0.0, -1.0, 0.0])
        images.append(np.asarray(renderer.render_to_image()))
    fig, axes = plt.subplots(1, len(images), figsize=(3.2 * len(images), 2.8), squeeze=False)
    for ax, (name, img) in zip(axes[0], zip(clouds, images)):
        ax.imshow(img)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.suptitle(title + " [open3d offscreen render]", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _render_matplotlib(clouds, path: Path, title: str, why: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(clouds), figsize=(3.2 * len(clouds), 5.6), squeeze=False)
    for j, (name, cloud) in enumerate(clouds.items()):
        p = np.asarray(cloud.points)
        c = np.asarray(cloud.colors) if cloud.has_colors() else p[:, 2]
        if len(p) > 20000:
            keep = np.random.default_rng(0).choice(len(p), 20000, replace=False)
            p, c = p[keep], c[keep]
        axes[0, j].scatter(p[:, 0], -p[:, 1], c=c, s=1)
        axes[0, j].set_title(f"{name}: front (x, -y)", fontsize=8)
        axes[1, j].scatter(p[:, 0], p[:, 2], c=c, s=1)
        axes[1, j].set_title("top (x, z)", fontsize=8)
        for ax in axes[:, j]:
            ax.set_aspect("equal", adjustable="datalim")
            ax.tick_params(labelsize=6)
    fig.suptitle(f"{title}\nmatplotlib projection: {why}", fontsize=8, color="#b00")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

