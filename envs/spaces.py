"""The observation and action contract shared by every environment in ``envs``.

Every env (our tabletop tasks and the adapters around gymnasium's Reacher/Pusher) returns the same
observation dictionary, built here so the key set, dtypes and shapes cannot drift apart:

=============== ============ ============ =====================================================
key             shape        dtype        meaning
=============== ============ ============ =====================================================
``rgb``         (H, W, 3)    uint8        image from the env's fixed camera, row 0 at the top
``depth``       (H, W)       float32      metric z-depth along the optical axis, metres
``intrinsics``  (3, 3)       float32      OpenCV camera matrix, pixel centres at integers
``extrinsics``  (4, 4)       float32      world-to-camera, OpenCV frame (x right, y down, z fwd)
``proprio``     (P,)         float32      robot state; layout documented by each env
=============== ============ ============ =====================================================

See ``envs.camera`` for the camera conventions.
"""

from __future__ import annotations

import mujoco
import numpy as np
from gymnasium import spaces

from envs.camera import CameraRig

__all__ = ["OBS_KEYS", "make_observation_space", "observe", "validate_action"]

OBS_KEYS = ("rgb", "depth", "intrinsics", "extrinsics", "proprio")


def make_observation_space(height: int, width: int, proprio_dim: int) -> spaces.Dict:
    """The ``spaces.Dict`` of the observation dictionary for ``H x W`` images and ``P`` proprio."""
    unbounded = dict(low=-np.inf, high=np.inf, dtype=np.float32)
    return spaces.Dict(
        {
            "rgb": spaces.Box(0, 255, (height, width, 3), np.uint8),
            "depth": spaces.Box(0.0, np.inf, (height, width), np.float32),
            "intrinsics": spaces.Box(shape=(3, 3), **unbounded),
            "extrinsics": spaces.Box(shape=(4, 4), **unbounded),
            "proprio": spaces.Box(shape=(proprio_dim,), **unbounded),
        }
    )


def observe(camera: CameraRig, data: mujoco.MjData, proprio: np.ndarray) -> dict[str, np.ndarray]:
    """Renders ``camera`` on ``data`` and assembles the observation dictionary."""
    rgb, depth = camera.render(data)
    return {
        "rgb": rgb,
        "depth": depth,
        "intrinsics": camera.intrinsics,
        "extrinsics": camera.extrinsics(data),
        "proprio": np.asarray(proprio, dtype=np.float32),
    }


def validate_action(action, space: spaces.Box) -> np.ndarray:
    """Checks an action against a Box space and clips it to the bounds.

    Raises:
        ValueError: if the shape differs from ``space.shape`` or a value is NaN/inf (MuJoCo would
            otherwise silently reset the simulation).
    """
    a = np.asarray(action, dtype=np.float64)
    if a.shape != space.shape:
        raise ValueError(f"action must have shape {space.shape}, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"action must be finite, got {a}")
    return np.clip(a, space.low, space.high)
