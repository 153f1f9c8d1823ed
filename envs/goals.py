"""Goal images: render the scene in a goal configuration without disturbing the episode.

Goal-conditioned planning needs a picture of the solved task (DINO-WM, V-JEPA 2-AC plan towards
the goal image's latents). ``rendered_state`` saves the full MuJoCo integration state, lets the
caller put the robot/objects where the task is solved, renders the observation dictionary, and
restores the state bit for bit, so rendering a goal never changes the episode's trajectory.
"""

from __future__ import annotations

from typing import Callable

import mujoco
import numpy as np

__all__ = ["rendered_state", "two_link_ik"]


def rendered_state(model: mujoco.MjModel, data: mujoco.MjData, pose: Callable[[mujoco.MjData], None],
                   observe: Callable[[], dict]) -> dict:
    """Apply ``pose(data)`` (edit ``qpos``/``mocap_pos``; velocities are zeroed), run ``observe()`` and
    restore the exact previous state. Returns what ``observe`` returned."""
    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    saved = np.empty(mujoco.mj_stateSize(model, spec))
    mujoco.mj_getState(model, data, saved, spec)
    try:
        data.qvel[:] = 0.0
        pose(data)
        mujoco.mj_forward(model, data)
        return observe()
    finally:
        mujoco.mj_setState(model, data, saved, spec)
        mujoco.mj_forward(model, data)


def two_link_ik(target_xy: np.ndarray, l1: float, l2: float, near: np.ndarray | None = None) -> np.ndarray:
    """Joint angles ``(2,)`` (rad) of a planar two-link arm based at the origin whose tip reaches
    ``target_xy`` (clipped to the reachable annulus); of the two solutions, the one closer to ``near``."""
    x, y = float(target_xy[0]), float(target_xy[1])
    r = np.clip(np.hypot(x, y), abs(l1 - l2) + 1e-6, l1 + l2 - 1e-6)
    cos2 = (r**2 - l1**2 - l2**2) / (2 * l1 * l2)
    sols = []
    for sign in (1.0, -1.0):
        q2 = sign * np.arccos(np.clip(cos2, -1.0, 1.0))
        q1 = np.arctan2(y, x) - np.arctan2(l2 * np.sin(q2), l1 + l2 * np.cos(q2))
        sols.append(np.array([q1, q2]))
    if near is None:
        return sols[0]
    wrap = lambda a: (a + np.pi) % (2 * np.pi) - np.pi  # noqa: E731
    return min(sols, key=lambda q: float(np.abs(wrap(q - near)).sum()))
