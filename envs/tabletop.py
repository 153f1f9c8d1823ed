"""Base class of the tabletop tasks: a Cartesian arm over a table, seen by one fixed camera.

The scene (``assets/tabletop.xml``): the table top is the plane z = 0; a gantry arm moves a
spherical fingertip (radius 2 cm) in x and y at the fixed height z = 0.025 m over the square
workspace ``|x|, |y| <= 0.25`` m. Two slide joints carry it, each driven by a stiff velocity servo
(5 ms time constant), so the fingertip moves at the commanded constant speed within each control
step and its state is fully described by position and velocity (no hidden servo target). The fixed
camera ``scene`` looks at the table from the front at ~50 deg.

Subclasses (``ReachEnv``, ``PushEnv``) only place their objects at reset, define the task distance
and write a scripted expert; everything else (control, observation, info, seeding) lives here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import gymnasium
import mujoco
import numpy as np
from gymnasium import spaces
from gymnasium.envs.mujoco import MujocoEnv

from envs.camera import CameraRig
from envs.spaces import make_observation_space, observe, validate_action

ASSETS = Path(__file__).parent / "assets"


class TabletopEnv(MujocoEnv):
    """Shared mechanics of the tabletop tasks (see the module docstring for the scene).

    Observation (``spaces.Dict``, see ``envs.spaces``): ``rgb`` (H, W, 3) uint8, ``depth`` (H, W)
    float32 metres, ``intrinsics`` (3, 3), ``extrinsics`` (4, 4) world-to-camera OpenCV, and
    ``proprio`` (4,) float32 = ``[ee_x, ee_y, ee_vx, ee_vy]``: fingertip position (m, world frame)
    and velocity (m/s).

    Action: ``Box(-1, 1, (2,), float32)``, the commanded fingertip displacement in world x, y
    over this step in units of ``MAX_STEP`` = 0.02 m, i.e. a velocity command of
    ``0.02 * action / dt`` m/s held for the step. Commands that would leave the workspace are
    shortened to end on its border. Values outside [-1, 1] are clipped; a wrong shape or a
    non-finite value raises ``ValueError``. The realised displacement is the command minus the
    servo's 5 ms lag when the speed changes (~0.9x from rest, 1.0x at constant speed). With the
    default ``frame_skip=20`` (2 ms physics step) one env step is ``dt`` = 40 ms: 25 Hz control,
    at most 0.5 m/s.

    Reward: minus the task distance in metres (dense). ``terminated`` is always False: episodes
    run to the time limit set at registration (fixed-length episodes suit world-model training);
    ``info["is_success"]`` says whether the task distance is below ``SUCCESS_THRESHOLD`` now.

    Info (reset and step): ``is_success`` (bool), ``distance`` (float, m), ``ee_pos`` (3,) fingertip
    centre, ``goal_pos`` (3,) goal centre, plus task-specific entries, all world frame, metres,
    straight from the simulator (privileged; meant for evaluation and probing, not for policies).

    Args:
        width, height: image size in pixels (at most 640).
        render_mode: None or "rgb_array" (``render()`` then returns the last observed image).
        frame_skip: physics steps of 2 ms per env step.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 25}
    xml_file: ClassVar[str]
    obs_camera: ClassVar[str] = "scene"  # the model camera observations are rendered from
    hidden_geoms: ClassVar[tuple[str, ...]] = ()  # geoms moved to group 3, which cameras do not draw
    SUCCESS_THRESHOLD: ClassVar[float]
    MAX_STEP: ClassVar[float] = 0.02  # m per env step at |action| = 1
    WORKSPACE: ClassVar[float] = 0.25  # m, half side of the square the fingertip can reach

    def __init__(self, width: int = 128, height: int = 128, render_mode: str | None = None,
                 frame_skip: int = 20):
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}")
        self._frame_skip_arg = frame_skip  # read by _initialize_simulation below
        super().__init__(str(ASSETS / self.xml_file), frame_skip, observation_space=None,
                         render_mode=render_mode, width=width, height=height)
        for name in self.hidden_geoms:  # visual only: physics ignores geom groups
            self.model.geom_group[self.model.geom(name).id] = 3
        self.camera = CameraRig(self.model, self.obs_camera, width=width, height=height)
        self.observation_space = make_observation_space(height, width, proprio_dim=4)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        joints = [self.model.joint(name) for name in ("slide_x", "slide_y")]
        self._ee_qpos = np.array([j.qposadr[0] for j in joints])
        self._ee_qvel = np.array([j.dofadr[0] for j in joints])
        self._ee_site = self.model.site("ee").id
        self._goal_mocap = self.model.body("goal").mocapid[0]
        self._ee_radius = float(self.model.geom("fingertip").size[0])
        self._last_rgb: np.ndarray | None = None

    def _initialize_simulation(self):
        model, data = super()._initialize_simulation()
        # render_fps is the control rate, so it follows frame_skip (MujocoEnv asserts they agree).
        fps = int(round(1.0 / (model.opt.timestep * self._frame_skip_arg)))
        self.metadata = {**type(self).metadata, "render_fps": fps}
        return model, data

    # ----------------------------------------------------------------- task hooks (subclasses)
    def _place_objects(self, qpos: np.ndarray) -> np.ndarray:
        """Samples the task layout from ``self.np_random``: sets the goal (``self.data.mocap_pos``)
        and any object entries of ``qpos``; returns the initial fingertip xy (2,)."""
        raise NotImplementedError

    def _task_distance(self) -> float:
        """The distance (m) that success and reward are measured on."""
        raise NotImplementedError

    def _task_info(self) -> dict[str, Any]:
        return {}

    def expert_action(self) -> np.ndarray:
        """A scripted expert's action (2,) float32 from privileged simulator state."""
        raise NotImplementedError

    def _pose_goal(self, data: mujoco.MjData) -> None:
        """Puts the scene in its solved configuration (edits ``data.qpos``), for ``render_goal``."""
        raise NotImplementedError

    def render_goal(self) -> dict[str, np.ndarray]:
        """Observation dictionary of the solved task (the goal image for goal-conditioned planning),
        rendered from the current episode's layout; the simulator state is left exactly as it was."""
        from envs.goals import rendered_state

        last = self._last_rgb
        try:
            return rendered_state(self.model, self.data, self._pose_goal, self._get_obs)
        finally:
            self._last_rgb = last

    # ------------------------------------------------------------------------ state accessors
    @property
    def ee_xy(self) -> np.ndarray:
        """Fingertip position (2,) in world x, y, metres (a copy)."""
        return self.data.qpos[self._ee_qpos].copy()

    @property
    def goal_xy(self) -> np.ndarray:
        return self.data.mocap_pos[self._goal_mocap, :2].copy()

    # --------------------------------------------------------------------------- gymnasium API
    def reset_model(self) -> dict[str, np.ndarray]:
        qpos, qvel = self.init_qpos.copy(), np.zeros(self.model.nv)
        ee_xy = self._place_objects(qpos)
        qpos[self._ee_qpos] = ee_xy
        self.set_state(qpos, qvel)
        return self._get_obs()

    def _get_reset_info(self) -> dict[str, Any]:
        return self._get_info()

    def step(self, action):
        action = validate_action(action, self.action_space)
        ee = self.ee_xy
        target = np.clip(ee + self.MAX_STEP * action, -self.WORKSPACE, self.WORKSPACE)
        self.do_simulation((target - ee) / self.dt, self.frame_skip)  # m/s for the servos
        # mj_step leaves body/camera poses one substep behind qpos; recompute them so that the
        # image, proprio and info all describe the same instant.
        mujoco.mj_forward(self.model, self.data)
        obs, info = self._get_obs(), self._get_info()
        return obs, -info["distance"], False, False, info

    def render(self):
        if self.render_mode != "rgb_array":
            gymnasium.logger.warn(f"render() does nothing with render_mode={self.render_mode!r}")
            return None
        if self._last_rgb is None:
            self._last_rgb, _ = self.camera.render(self.data)
        return self._last_rgb.copy()

    def close(self):
        self.camera.close()
        super().close()

    # -------------------------------------------------------------------------------- helpers
    def _get_obs(self) -> dict[str, np.ndarray]:
        proprio = np.concatenate([self.data.qpos[self._ee_qpos], self.data.qvel[self._ee_qvel]])
        obs = observe(self.camera, self.data, proprio)
        self._last_rgb = obs["rgb"]
        return obs

    def _get_info(self) -> dict[str, Any]:
        distance = self._task_distance()
        return {
            "is_success": bool(distance < self.SUCCESS_THRESHOLD),
            "distance": distance,
            "ee_pos": self.data.site_xpos[self._ee_site].copy(),
            "goal_pos": self.data.mocap_pos[self._goal_mocap].copy(),
            **self._task_info(),
        }

    def _sample_xy(self, half: float, away_from: tuple[tuple[np.ndarray, float], ...] = ()) -> np.ndarray:
        """Uniform point in the square ``[-half, half]^2`` at least ``d`` from each ``(p, d)``."""
        while True:  # rejection sampling; the constraints used here accept >50% of draws
            p = self.np_random.uniform(-half, half, size=2)
            if all(np.linalg.norm(p - q) >= d for q, d in away_from):
                return p

    def _action_toward(self, target_xy: np.ndarray, max_speed: float = 1.0) -> np.ndarray:
        """Proportional action that moves the fingertip to ``target_xy`` (dead-beat: a full step
        when within reach), scaled down as a whole so the direction survives the [-1, 1] bound."""
        a = (np.asarray(target_xy) - self.ee_xy) / self.MAX_STEP
        return _limit(a, max_speed)


def _limit(a: np.ndarray, max_norm: float = 1.0) -> np.ndarray:
    """Scales ``a`` so that its largest component is at most ``max_norm`` in magnitude."""
    peak = np.max(np.abs(a))
    if peak > max_norm:
        a = a * (max_norm / peak)
    return a.astype(np.float32)
