"""gymnasium's own ``Reacher-v5`` and ``Pusher-v5`` with our observation dictionary.

``CameraObservationAdapter`` wraps the env returned by ``gymnasium.make(...)`` and replaces its
flat state observation with the dictionary every env in ``envs`` returns (``envs.spaces``):
``rgb``, metric ``depth``, ``intrinsics``, ``extrinsics`` rendered by a ``CameraRig`` on the wrapped
env's ``unwrapped.model`` / ``unwrapped.data``, and ``proprio`` = ``[qpos, qvel]`` of the actuated
joints in actuator order (Reacher: 2 + 2 = 4 values, rad and rad/s; Pusher: 7 + 7 = 14). The
action space, reward, termination and the original ``info`` are gymnasium's, untouched; ``info``
gains ``is_success``, ``distance`` (m), ``ee_pos``, ``goal_pos`` (and ``object_pos`` for Pusher),
each (3,) world-frame body positions from the simulator.

Neither model has a camera, so each task gets a documented ``FreeCamera`` (an oblique view of the
arm's workspace). Register-and-make through ``gymnasium.make("ivnext/Reacher-v5")`` to get the
original time limits (50 / 100 steps).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium
import mujoco
import numpy as np
from gymnasium.utils import RecordConstructorArgs

from envs.camera import CameraRig, FreeCamera
from envs.spaces import make_observation_space, observe, validate_action

__all__ = ["AdapterConfig", "ADAPTERS", "CameraObservationAdapter", "make_adapter"]


@dataclass(frozen=True)
class AdapterConfig:
    """How to observe and score one gymnasium MuJoCo task.

    Args:
        gym_id: the gymnasium id to wrap.
        camera: the view to render.
        ee_body, goal_body: bodies whose positions are reported as ``ee_pos`` / ``goal_pos``.
        success_threshold: success when the xy distance to the goal is below this, metres.
        object_body: if set, the distance is object -> goal (a pushing task), else ee -> goal.
    """

    gym_id: str
    camera: FreeCamera
    ee_body: str
    goal_body: str
    success_threshold: float
    object_body: str | None = None


ADAPTERS = {
    # Reacher: the two-link arm spans a 0.42 m disc in a 0.6 m arena on the plane z = 0; the tip
    # (a sphere of radius 1 cm) must reach the target (radius 0.9 cm): 2 cm centre distance.
    "reacher": AdapterConfig(
        "Reacher-v5", FreeCamera(lookat=(0.0, 0.0, 0.0), distance=0.65, azimuth=90.0, elevation=-60.0),
        ee_body="fingertip", goal_body="target", success_threshold=0.02),
    # Pusher: a 7-DoF arm at (0, -0.6) pushes a cylinder (radius 5 cm) on the table plane
    # z = -0.325 to a goal at (0.45, -0.05); success when the object centre is within 5 cm in xy
    # (the goal disc is 8 cm in radius). The goal body sits 5 cm lower than the object, so the
    # distance is taken in xy.
    "pusher": AdapterConfig(
        "Pusher-v5", FreeCamera(lookat=(0.25, -0.1, -0.325), distance=1.6, azimuth=120.0, elevation=-55.0),
        ee_body="tips_arm", goal_body="goal", success_threshold=0.05, object_body="object"),
}


class CameraObservationAdapter(gymnasium.Wrapper, RecordConstructorArgs):
    """Gives a gymnasium MuJoCo env the ``envs`` observation dictionary and success info.

    Args:
        env: a gymnasium env whose ``unwrapped`` has ``model`` and ``data`` (a ``MujocoEnv``).
        config: cameras, bodies and success threshold, see ``AdapterConfig``.
        width, height: image size in pixels.
        render_mode: None or "rgb_array" (``render()`` returns the last observed image).

    Actions go to the wrapped env after a shape check (``ValueError`` naming the expected shape)
    and clipping to its action space; gymnasium's MuJoCo envs would otherwise rely on MuJoCo
    clamping the controls silently.
    """

    def __init__(self, env: gymnasium.Env, config: AdapterConfig, width: int = 128,
                 height: int = 128, render_mode: str | None = None):
        RecordConstructorArgs.__init__(self, config=config, width=width, height=height,
                                       render_mode=render_mode)
        gymnasium.Wrapper.__init__(self, env)
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.config = config
        sim = env.unwrapped
        model = sim.model
        # Read when an OpenGL context is created: no shadow map and no multisampling make offscreen
        # rendering ~15x faster (only our renderer is created after this point).
        model.vis.quality.shadowsize = 0
        model.vis.quality.offsamples = 0
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, height)
        self.camera = CameraRig(model, config.camera, width=width, height=height)

        # Actuated joints, in actuator order: the robot's own state, not the target's or object's.
        joints = model.actuator_trnid[:, 0]
        self._qpos_idx = model.jnt_qposadr[joints]
        self._qvel_idx = model.jnt_dofadr[joints]
        self._ee = model.body(config.ee_body).id
        self._goal = model.body(config.goal_body).id
        self._object = None if config.object_body is None else model.body(config.object_body).id

        if config.gym_id == "Reacher-v5":  # scripted expert (ExpertPolicy finds it on this wrapper)
            self.expert_action = self._reacher_expert_action
        self.observation_space = make_observation_space(height, width, proprio_dim=2 * len(joints))
        self.metadata = {**env.metadata, "render_modes": ["rgb_array"]}
        self._render_mode = render_mode
        self._last_rgb: np.ndarray | None = None

    @property
    def render_mode(self) -> str | None:
        return self._render_mode

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        _, info = self.env.reset(seed=seed, options=options)
        return self._observe(), self._add_info(info)

    def step(self, action):
        action = validate_action(action, self.env.action_space).astype(self.env.action_space.dtype)
        _, reward, terminated, truncated, info = self.env.step(action)
        return self._observe(), reward, terminated, truncated, self._add_info(info)

    def render(self):
        if self._render_mode != "rgb_array":
            gymnasium.logger.warn(f"render() does nothing with render_mode={self._render_mode!r}")
            return None
        if self._last_rgb is None:
            self._last_rgb, _ = self.camera.render(self.env.unwrapped.data)
        return self._last_rgb.copy()

    def close(self):
        self.camera.close()
        super().close()

    # Reacher-v5's links: upper arm 0.1 m, forearm to the fingertip centre 0.11 m (reacher.xml).
    REACHER_LINKS = (0.1, 0.11)

    def goal_joint_angles(self) -> np.ndarray:
        """Reacher only: joint angles (2,) rad that put the fingertip on the target (analytic
        two-link IK, the solution nearer the current angles)."""
        from envs.goals import two_link_ik

        if self.config.gym_id != "Reacher-v5":
            raise NotImplementedError(f"goal configuration is defined for Reacher-v5 only, not {self.config.gym_id}")
        data = self.env.unwrapped.data
        base = data.xpos[self.env.unwrapped.model.body("body0").id][:2]
        target = data.xpos[self._goal][:2] - base
        return two_link_ik(target, *self.REACHER_LINKS, near=data.qpos[self._qpos_idx])

    # PD gains of the Reacher expert (torques are clipped to the action space, [-1, 1]).
    EXPERT_KP, EXPERT_KD = 2.0, 0.15

    def _reacher_expert_action(self) -> np.ndarray:
        """``expert_action()`` of Reacher-v5 (the only adapted task with an expert): the scripted expert's action, a PD torque law ``kp (q* - q) - kd dq`` towards
        the inverse-kinematics solution ``q* = goal_joint_angles()`` (angle errors wrapped to
        [-pi, pi)), clipped to the action space. Reads privileged simulator state."""
        data = self.env.unwrapped.data
        q, dq = data.qpos[self._qpos_idx], data.qvel[self._qvel_idx]
        err = (self.goal_joint_angles() - q + np.pi) % (2 * np.pi) - np.pi
        space = self.env.action_space
        return np.clip(self.EXPERT_KP * err - self.EXPERT_KD * dq, space.low, space.high).astype(np.float32)

    def render_goal(self) -> dict[str, np.ndarray]:
        """Observation dictionary with the arm's fingertip on the target (Reacher only); the simulator
        state is left exactly as it was."""
        from envs.goals import rendered_state

        q = self.goal_joint_angles()
        sim, last = self.env.unwrapped, self._last_rgb

        def pose(data):
            data.qpos[self._qpos_idx] = q

        try:
            return rendered_state(sim.model, sim.data, pose, self._observe)
        finally:
            self._last_rgb = last

    def _observe(self) -> dict[str, np.ndarray]:
        sim = self.env.unwrapped
        data = sim.data
        # mj_step leaves body/camera poses one substep behind qpos; recompute them (derived
        # quantities only, the state is untouched) so image, proprio and info agree.
        mujoco.mj_forward(sim.model, data)
        proprio = np.concatenate([data.qpos[self._qpos_idx], data.qvel[self._qvel_idx]])
        obs = observe(self.camera, data, proprio)
        self._last_rgb = obs["rgb"]
        return obs

    def _add_info(self, info: dict[str, Any]) -> dict[str, Any]:
        xpos = self.env.unwrapped.data.xpos
        info = dict(info, ee_pos=xpos[self._ee].copy(), goal_pos=xpos[self._goal].copy())
        scored = info["ee_pos"]
        if self._object is not None:
            info["object_pos"] = scored = xpos[self._object].copy()
        distance = float(np.linalg.norm(scored[:2] - info["goal_pos"][:2]))
        info.update(distance=distance, is_success=distance < self.config.success_threshold)
        return info


def make_adapter(task: str, width: int = 128, height: int = 128, render_mode: str | None = None,
                 **gym_kwargs: Any) -> CameraObservationAdapter:
    """Entry point of ``ivnext/Reacher-v5`` and ``ivnext/Pusher-v5``.

    Args:
        task: a key of ``ADAPTERS`` ("reacher" or "pusher").
        width, height, render_mode: see ``CameraObservationAdapter``.
        gym_kwargs: passed to ``gymnasium.make`` of the wrapped id (e.g. ``reward_dist_weight``).
    """
    if task not in ADAPTERS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(ADAPTERS)}")
    config = ADAPTERS[task]
    # No inner time limit: the registered ivnext id applies the same one on the outside, where a
    # `max_episode_steps=` passed to gymnasium.make can override it.
    env = gymnasium.make(config.gym_id, max_episode_steps=-1, **gym_kwargs)
    return CameraObservationAdapter(env, config, width=width, height=height, render_mode=render_mode)
