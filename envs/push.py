"""Push: push a puck into a goal region with the fingertip."""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.tabletop import TabletopEnv, _limit


class PushEnv(TabletopEnv):
    """Push a blue puck (radius 3 cm, 0.1 kg, free joint, friction 0.4) into a green goal disc.

    Success: puck centre within 5 cm (xy) of the goal centre, which is the drawn disc's radius.
    Everything else is documented on ``TabletopEnv``: observation dict with
    ``proprio = [ee_x, ee_y, ee_vx, ee_vy]`` (m, m/s), actions in [-1, 1]^2 = fingertip displacement
    in units of 0.02 m per step, reward = -distance(puck, goal) in metres, no termination.
    ``info["object_pos"]`` (3,) is the puck centre (world, m).

    Reset (from ``self.np_random``): puck uniform in ``[-0.15, 0.15]^2`` m, goal uniform in
    ``[-0.18, 0.18]^2`` m and at least 12 cm from the puck, fingertip uniform in
    ``[-0.22, 0.22]^2`` m and at least 9 cm from the puck (never touching it).
    Registered as ``ivnext/Push-v0`` with a 120-step limit (4.8 s).

    Scenes (``scene=``, e.g. ``gymnasium.make("ivnext/Push-v0", scene="topdown")`` or
    ``env.kwargs={scene: topdown}`` in the configs):

    * ``"front"`` (default, every number before stop 22): the oblique ``scene`` camera, the whole
      gantry arm in view, puck radius 3 cm. The arm fills much of the image.
    * ``"topdown"`` (``assets/push_topdown.xml``): PushT's lesson, the object carries the image. A
      camera straight above the table, the gantry hidden from it (only the fingertip shows), and a
      puck of radius 6 cm. Same physics otherwise, and the same layout for the same seed (the reset
      draws are identical), so the two scenes can be compared episode by episode.
    """

    xml_file = "push.xml"
    SUCCESS_THRESHOLD = 0.05  # m, puck centre to goal centre in xy
    GANTRY = ("rail", "post_l", "post_r", "carriage", "boom", "rod")  # the arm but its fingertip
    SCENES = {
        "front": dict(xml_file="push.xml", obs_camera="scene", hidden_geoms=()),
        "topdown": dict(xml_file="push_topdown.xml", obs_camera="top", hidden_geoms=GANTRY),
    }

    def __init__(self, *args, scene: str = "front", **kwargs):
        if scene not in self.SCENES:
            raise ValueError(f"unknown push scene {scene!r}; choose one of {sorted(self.SCENES)}")
        self.scene = scene
        for attr, value in self.SCENES[scene].items():  # before the model is loaded
            setattr(self, attr, value)
        super().__init__(*args, **kwargs)
        self._puck_qpos = self.model.joint("puck").qposadr[0]
        self._puck_body = self.model.body("puck").id
        self._puck_radius = float(self.model.geom("puck").size[0])

    @property
    def puck_xy(self) -> np.ndarray:
        return self.data.qpos[self._puck_qpos:self._puck_qpos + 2].copy()

    def _place_objects(self, qpos: np.ndarray) -> np.ndarray:
        puck = self._sample_xy(0.15)
        goal = self._sample_xy(0.18, away_from=((puck, 0.12),))
        self.data.mocap_pos[self._goal_mocap, :2] = goal
        # Resting on the table (half height 2 cm), upright, unrotated.
        qpos[self._puck_qpos:self._puck_qpos + 7] = [*puck, 0.02, 1.0, 0.0, 0.0, 0.0]
        return self._sample_xy(0.22, away_from=((puck, 0.09),))

    def _task_distance(self) -> float:
        return float(np.linalg.norm(self.puck_xy - self.goal_xy))

    def _task_info(self) -> dict[str, Any]:
        return {"object_pos": self.data.xpos[self._puck_body].copy()}

    def _pose_goal(self, data) -> None:
        """Puck on the goal, fingertip resting behind it on the line it was pushed along."""
        puck, goal = self.puck_xy, self.goal_xy
        u = (goal - puck) / max(float(np.linalg.norm(goal - puck)), 1e-9)
        data.qpos[self._puck_qpos:self._puck_qpos + 7] = [*goal, 0.02, 1.0, 0.0, 0.0, 0.0]
        gap = self._puck_radius + self._ee_radius + 0.015
        data.qpos[self._ee_qpos] = np.clip(goal - gap * u, -self.WORKSPACE, self.WORKSPACE)

    def expert_action(self) -> np.ndarray:
        """Scripted pusher, a function of the current state only (no memory).

        Works in a frame attached to the puck: ``u`` points from the puck to the goal, ``n`` is
        ``u`` turned by +90 deg, and ``(along, across)`` are the fingertip's coordinates in it.

        * Behind the puck and roughly on the line (|across| small): push. Advance along ``u`` (at
          a speed that tapers off as the puck nears the goal, so it does not overshoot) and steer
          across to bring the contact back onto the line through the puck centre; since ``u`` is
          recomputed every step from where the puck actually is, drift is corrected in closed loop.
        * Otherwise go around the puck to the pre-push point ``(-standoff, 0)``: first sideways to
          a clear lane ``|across| = lane`` (so the fingertip never sweeps the puck sideways), then
          back along that lane, then in behind the puck.
        """
        ee, puck, goal = self.ee_xy, self.puck_xy, self.goal_xy
        to_goal = goal - puck
        remaining = float(np.linalg.norm(to_goal))
        if remaining < 0.4 * self.SUCCESS_THRESHOLD:
            return np.zeros(2, np.float32)  # well inside the goal: stop rather than dither
        u = to_goal / remaining
        n = np.array([-u[1], u[0]])
        along, across = float((ee - puck) @ u), float((ee - puck) @ n)

        contact = self._puck_radius + self._ee_radius  # centre distance when touching, m
        standoff = contact + 0.015  # pre-push point: 1.5 cm gap behind the puck
        lane = contact + 0.025  # sideways clearance while going around, m

        if along < -0.5 * contact and abs(across) < 0.35 * contact:
            # Push. Displacements below are in metres per step.
            forward = min(0.7 * self.MAX_STEP, 0.5 * remaining)
            steer = -0.6 * across
            return _limit((forward * u + steer * n) / self.MAX_STEP)

        side = 1.0 if across >= 0 else -1.0
        if along > -standoff + 0.005:
            if abs(across) < lane - 0.005:
                waypoint = (along, side * lane)  # step out sideways
            else:
                waypoint = (-standoff, side * lane)  # go back along the lane
        else:
            waypoint = (-standoff, 0.0)  # swing in behind the puck
        return self._action_toward(puck + waypoint[0] * u + waypoint[1] * n)
