"""Reach: bring the fingertip onto a goal marker on the table."""

from __future__ import annotations

import numpy as np

from envs.tabletop import TabletopEnv


class ReachEnv(TabletopEnv):
    """Move the fingertip to within 2 cm (xy) of a green goal marker.

    Everything but the task is documented on ``TabletopEnv``: observation dict with
    ``proprio = [ee_x, ee_y, ee_vx, ee_vy]`` (m, m/s), actions in [-1, 1]^2 = fingertip displacement
    in units of 0.02 m per step, reward = -distance(fingertip, goal) in metres, no termination.

    Reset: goal uniform in ``[-0.2, 0.2]^2`` m, fingertip uniform in ``[-0.22, 0.22]^2`` m and at
    least 8 cm from the goal (4x the success radius), both from ``self.np_random``.
    Registered as ``ivnext/Reach-v0`` with a 50-step limit (2 s).
    """

    xml_file = "reach.xml"
    SUCCESS_THRESHOLD = 0.02  # m, fingertip centre to goal centre in xy

    def _place_objects(self, qpos: np.ndarray) -> np.ndarray:
        goal = self._sample_xy(0.2)
        self.data.mocap_pos[self._goal_mocap, :2] = goal
        return self._sample_xy(0.22, away_from=((goal, 4 * self.SUCCESS_THRESHOLD),))

    def _task_distance(self) -> float:
        return float(np.linalg.norm(self.ee_xy - self.goal_xy))

    def _pose_goal(self, data) -> None:
        data.qpos[self._ee_qpos] = self.goal_xy  # fingertip on the marker

    def expert_action(self) -> np.ndarray:
        """Proportional controller straight to the goal, at most full speed."""
        return self._action_toward(self.goal_xy)
