"""Back-projection, Chamfer distance, .ply export and point-cloud pictures (open3d)."""
import numpy as np
import open3d as o3d
import pytest

from ivnext_world.probes.depth import geometry as G
from ivnext_world.probes.depth.video import resolve_intrinsics

K = np.array([[100.0, 0, 31.5], [0, 80.0, 23.5], [0, 0, 1]])


def test_fronto_parallel_plane_is_recovered():
    depth = np.full((48, 64), 2.0)
    pts, mask = G.backproject(depth, K)
    assert mask.all() and pts.shape == (48 * 64, 3)
    assert np.allclose(pts[:, 2], 2.0)
    # pixel (u=63, v=47) -> X = (63 - 31.5) * 2 / 100, Y = (47 - 23.5) * 2 / 80
    assert np.allclose(pts[-1], [0.63, 0.5875, 2.0])
    # a plane at depth 2 seen through this camera spans exactly these extents
    assert np.allclose(pts[:, 0].min(), -31.5 * 2 / 100) and np.allclose(pts[:, 1].max(), 23.5 * 2 / 80)


def test_tilted_plane_is_recovered_and_matches_open3d():
    # plane n.X = d with n = (0, -0.6, 0.8), d = 1.6: along pixel ray r = (x', y', 1), Z = d / (n . r)
    h, w = 48, 64
    v, u = np.mgrid[0:h, 0:w]
    n, d = np.array([0.0, -0.6, 0.8]), 1.6
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones((h, w))], -1)
    depth = d / (rays @ n)
    pts, _ = G.backproject(depth, K)
    assert np.allclose(pts @ n, d)
    # open3d's own back-projection of the same depth image agrees (it reads depth in millimetres here)
    img = o3d.geometry.Image((depth * 1000).astype(np.float32))
    cam = o3d.camera.PinholeCameraIntrinsic(w, h, K[0, 0], K[1, 1], K[0, 2], K[1, 2])
    ref = np.asarray(o3d.geometry.PointCloud.create_from_depth_image(img, cam, depth_scale=1000.0, depth_trunc=100.0).points)
    assert np.allclose(np.sort(ref, 0), np.sort(pts, 0), atol=1e-4)


def test_invalid_depth_pixels_are_dropped_and_colours_follow():
    depth = np.array([[1.0, 0.0], [np.nan, 2.0]])
    rgb = np.array([[[255, 0, 0], [0, 0, 0]], [[0, 0, 0], [0, 0, 255]]], np.uint8)
    pcd = G.point_cloud(depth, np.array([[1.0, 0, 0.5], [0, 1.0, 0.5], [0, 0, 1]]), rgb)
    assert len(pcd.points) == 2
    assert np.allclose(np.asarray(pcd.colors), [[1, 0, 0], [0, 0, 1]])


@pytest.mark.parametrize("depth, K, match", [
    (np.ones((3, 48, 64)), K, "one \\(H, W\\) map"),
    (np.ones((48, 64)), np.eye(4), "3x3"),
    (np.ones((24, 32)), K * [[2], [2], [1]], "outside it"),  # intrinsics of a 128x96 image on a 32x24 map
    (np.ones((48, 64)), np.diag([-1.0, 1.0, 1.0]), "fx, fy > 0"),
])
def test_depth_intrinsics_mismatch_is_a_clear_error(depth, K, match):
    with pytest.raises(ValueError, match=match):
        G.backproject(depth, K)


def test_video_intrinsics_shapes_are_checked():
    assert resolve_intrinsics(5, 48, 64).shape == (5, 3, 3)
    K0 = resolve_intrinsics(1, 48, 64)[0]
    assert K0[0, 0] == pytest.approx(32 / np.tan(np.radians(30)))  # 60 degree horizontal FOV
    assert np.allclose(resolve_intrinsics(2, 48, 64, [100, 80, 31.5, 23.5])[1], K)
    with pytest.raises(ValueError, match="3 intrinsics matrices for 5 frames"):
        resolve_intrinsics(5, 48, 64, np.repeat(K[None], 3, 0))
    with pytest.raises(ValueError, match="fx,fy,cx,cy"):
        resolve_intrinsics(5, 48, 64, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="outside it"):
        resolve_intrinsics(5, 480, 640, [500, 500, 700.0, 240.0])


def test_chamfer_identical_is_zero_and_shift_is_recovered():
    g = np.stack(np.meshgrid(*[np.arange(6) * 0.1] * 3), -1).reshape(-1, 3)
    assert G.chamfer_distance(g, g) == 0.0
    shift = np.array([0.01, -0.02, 0.0])  # shorter than half the 0.1 m spacing: every nearest neighbour is its copy
    assert G.chamfer_distance(g, g + shift) == pytest.approx(np.linalg.norm(shift))
    # a one-sided outlier counts in one direction only: mean of both directions
    far = np.vstack([g, [[10.0, 0.0, 0.0]]])
    expected = 0.5 * (0.0 + (10.0 - 0.5) / len(far))
    assert G.chamfer_distance(g, far) == pytest.approx(expected)
    with pytest.raises(ValueError, match="empty"):
        G.chamfer_distance(g, np.zeros((0, 3)))


def test_ply_round_trip(tmp_path):
    pts = np.random.default_rng(0).normal(size=(100, 3))
    path = G.write_ply(pts, tmp_path / "c.ply")
    back = np.asarray(o3d.io.read_point_cloud(str(path)).points)
    assert np.allclose(back, pts, atol=1e-6)


def test_projection_fallback_says_so(tmp_path, no_o3d_render):
    png, how = G.render_point_clouds({"a": np.random.rand(200, 3)}, tmp_path / "v.png")
    assert png.stat().st_size > 1000 and how.startswith("matplotlib projection (fallback: disabled")


@pytest.mark.slow
def test_open3d_offscreen_render_or_reasoned_fallback(tmp_path):
    ok, why = G.offscreen_renderer_works()
    png, how = G.render_point_clouds({"a": np.random.rand(500, 3), "b": np.random.rand(500, 3)}, tmp_path / "v.png")
    assert png.stat().st_size > 1000
    assert how == "open3d OffscreenRenderer" if ok else why in how
