"""A scripted PushT pusher from privileged state (gym-pusht's ``PushTEnv``), for data and baselines.

DINO-WM's PushT data are noisy replays of human teleoperation (Diffusion Policy's demonstrations); none
can be downloaded here, so this expert stands in for the human: it reads the block's pose and pushes
it towards a target pose (the env's goal T by default) with a greedy keypoint rule:

1. Four body points of the T (the two ends of the bar, the middle of its top edge, the stem's end) are
   compared with where they are on the target pose; the one furthest off (with hysteresis, so the
   choice does not flicker) is pushed along its error ``u``. Pushing a point far from the centre of
   mass along its own error both moves and turns the T the right way.
2. The contact is where a ray from that point, walking against ``u``, leaves the T; the agent goes
   first to the pre-push spot one agent radius behind it (around the block, on a circle about its
   centre, when the straight path would hit it), then pushes ``push_px`` beyond the contact.

Its actions are absolute targets, turned into the env's action mode (``envs.pusht``'s relative
actions included). Without noise it is deterministic. How well it does is measured, not assumed
(README, PushT): it moves the T towards the goal but rarely reaches PushT's 95 % coverage.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PushTExpert", "pusht_expert", "push_target"]

AGENT_RADIUS = 15.0
DETOUR_RADIUS = 110.0
# Body-frame points of the T (gym-pusht's add_tee, scale 30: bar 120 x 30 from y = 0 to 30, stem
# 30 x 90 from y = 30 to 120), a little inside its outline so a ray from them exits through one face.
KEYPOINTS = np.array([[-55.0, 15.0], [55.0, 15.0], [0.0, 5.0], [0.0, 115.0]])


def _rot(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def _world(pose, points: np.ndarray) -> np.ndarray:
    """Body-frame points (k, 2) of a T at ``pose`` = (x, y, angle) in board pixels (pymunk's frame)."""
    return np.asarray(pose[:2], float) + points @ _rot(float(pose[2])).T


class PushTExpert:
    """``expert(sim) -> absolute target (2,)`` for a gym-pusht ``PushTEnv`` (``env.unwrapped``).

    Args:
        target_pose: (x, y, angle) the T should reach; None = the env's goal pose.
        push_px: how far beyond the contact point the pushing target lies (pixels).
        reach_px: the agent counts as at the pre-push spot within this distance.
        done_px: every keypoint within this of its target: the expert holds still.
        switch_ratio: another keypoint takes over only when its error exceeds the current one's by
            this factor (hysteresis).
    """

    def __init__(self, target_pose=None, push_px: float = 30.0, reach_px: float = 12.0, done_px: float = 1.0,
                 switch_ratio: float = 1.3):
        self.target_pose = None if target_pose is None else np.asarray(target_pose, float)
        self.push_px, self.reach_px, self.done_px, self.switch_ratio = push_px, reach_px, done_px, switch_ratio
        self._current: int | None = None

    def reset(self) -> None:
        self._current = None

    def __call__(self, sim) -> np.ndarray:
        pose = np.array([*sim.block.position, sim.block.angle], float)
        goal = self.target_pose if self.target_pose is not None else np.asarray(sim.goal_pose, float)
        agent = np.asarray(sim.agent.position, float)
        err = _world(goal, KEYPOINTS) - _world(pose, KEYPOINTS)  # (4, 2)
        norms = np.linalg.norm(err, axis=1)
        if norms.max() < self.done_px:
            return agent
        best = int(np.argmax(norms))
        if self._current is None or norms[best] > self.switch_ratio * norms[self._current] \
                or norms[self._current] < self.done_px:
            self._current = best
        i = self._current
        u = err[i] / norms[i]
        point = _world(pose, KEYPOINTS[i:i + 1])[0]
        contact = self._exit_point(sim, point, -u)
        prepush = contact - (AGENT_RADIUS + 2.0) * u
        if np.linalg.norm(agent - prepush) < self.reach_px:
            return contact + min(self.push_px, norms[i] + 2.0) * u  # shorter pushes near the goal
        return self._approach(sim, agent, prepush)

    @staticmethod
    def _inside(sim, p) -> bool:
        return any(s.point_query(tuple(p)).distance < 0 for s in sim.block.shapes)

    def _exit_point(self, sim, start: np.ndarray, direction: np.ndarray) -> np.ndarray:
        """First point outside the T walking from ``start`` along ``direction`` (1 px steps)."""
        p = start.copy()
        for _ in range(200):
            if not self._inside(sim, p):
                return p
            p = p + direction
        return p

    @staticmethod
    def _approach(sim, agent: np.ndarray, prepush: np.ndarray) -> np.ndarray:
        """Straight to ``prepush`` when the agent's disk would not hit the T on the way, else one step
        (45 degrees at most) along a circle of ``DETOUR_RADIUS`` about the T's centre of mass towards it."""
        # A slightly thinner disk: prepush itself lies 2 px off the T, so a full-size one would graze it.
        if not any(s.segment_query(tuple(agent), tuple(prepush), AGENT_RADIUS - 3.0).shape is not None
                   for s in sim.block.shapes):
            return prepush
        com = np.asarray(sim.block.local_to_world(sim.block.center_of_gravity), float)
        a, b = agent - com, prepush - com
        turn = np.arctan2(a[0] * b[1] - a[1] * b[0], a @ b)  # signed angle from a to b
        if abs(turn) < np.pi / 12:  # already on the pre-push side: go in
            return prepush
        step = np.clip(turn, -np.pi / 4, np.pi / 4)
        # The T reaches ~80 px from its centre of mass; the agent's disk adds 15.
        return com + DETOUR_RADIUS * (_rot(step) @ (a / max(np.linalg.norm(a), 1e-6)))


def push_target(adapter) -> PushTExpert:
    """The expert kept on the adapter (one per env, its hysteresis reset with every episode)."""
    expert = getattr(adapter, "_pusht_expert", None)
    if expert is None or getattr(adapter, "_pusht_expert_reset", None) is not adapter.last_reset:
        expert = PushTExpert()
        adapter._pusht_expert, adapter._pusht_expert_reset = expert, adapter.last_reset
    return expert


def pusht_expert(adapter) -> np.ndarray:
    """``AdapterSpec.expert`` of the PushT preset: the scripted pusher's next action, in the env's
    action mode (absolute target, or the offset from the agent with ``action_mode=relative``)."""
    from envs.pusht import to_env_action

    sim = adapter.env.unwrapped
    return to_env_action(adapter, push_target(adapter)(sim))
