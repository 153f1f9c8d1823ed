"""Helpers for the environment tests; the pinhole maths is written independently of envs.camera
so that it checks the camera conventions rather than repeating them."""

import numpy as np

SIZE = 64  # pixels; small keeps every test at a few seconds on 2 CPU cores


def project(points_world: np.ndarray, intrinsics: np.ndarray, extrinsics: np.ndarray) -> np.ndarray:
    """(N, 3) world points -> (N, 2) pixel coordinates (u = column, v = row)."""
    homog = np.c_[points_world, np.ones(len(points_world))]
    cam = (extrinsics.astype(np.float64) @ homog.T)[:3]
    uvw = intrinsics.astype(np.float64) @ cam
    return (uvw[:2] / uvw[2]).T


def backproject(depth: np.ndarray, intrinsics: np.ndarray, extrinsics: np.ndarray) -> np.ndarray:
    """(H, W) metric z-depth -> (H, W, 3) world points, pixel centres at integer coordinates."""
    h, w = depth.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(intrinsics.astype(np.float64)).T
    cam = rays * depth[..., None].astype(np.float64)  # (H, W, 3), z = depth
    cam_to_world = np.linalg.inv(extrinsics.astype(np.float64))
    return cam @ cam_to_world[:3, :3].T + cam_to_world[:3, 3]


# Adapter functions for tests/envs/test_byo_adapter.py (InvertedPendulum-v5: a 0.6 m pole on a cart,
# qpos = [cart x, pole angle]), loaded by name as "_env_helpers:upright_info" etc.
def upright_info(adapter, info: dict) -> dict:
    return {"upright": bool(abs(adapter.env.unwrapped.data.qpos[1]) < 0.2)}


def tip_height(adapter, obs, info: dict) -> float:
    return float(0.6 * np.cos(adapter.env.unwrapped.data.qpos[1]))
