"""Any gymnasium env with the ``envs`` observation dictionary: ``GymAdapter`` and its presets.

``GymAdapter`` wraps the env returned by ``gymnasium.make(...)`` and replaces its observation with
the dictionary every env in ``envs`` returns (``envs.spaces``): ``rgb`` (H, W, 3) uint8 and
``proprio`` (P,) float32, plus ``depth``, ``intrinsics`` and ``extrinsics`` when the adapter has a
source for them. Where each comes from is an ``AdapterSpec`` (``envs.adapter_spec``: ``render()``, a
MuJoCo camera, an observation key, an ``info`` entry, a simulator attribute or a function, each
optionally sliced). The action space, reward, termination and the original ``info`` are the env's;
``info`` gains ``is_success`` / ``distance`` when the adapter has a success / distance source, and
whatever the adapter's ``info`` function adds. Actions are shape-checked (``ValueError`` naming the
expected shape) and clipped to the action space. Only ``Box`` action spaces are accepted.

Presets (``PRESETS``, looked up by gymnasium id; user settings override them field by field):

* ``Reacher-v5`` / ``Pusher-v5``: gymnasium's MuJoCo arms seen by a documented ``FreeCamera`` (an
  oblique view of the workspace; neither model has a camera) with metric depth and calibration;
  ``proprio`` = ``[qpos, qvel]`` of the actuated joints (Reacher 2 + 2 values, rad and rad/s;
  Pusher 7 + 7); ``info`` gains ``ee_pos``, ``goal_pos`` (and ``object_pos`` for Pusher), (3,)
  world-frame body positions, ``distance`` (m, xy) and ``is_success``. Reacher-v5 has a scripted
  expert (PD control to the inverse-kinematics solution) and a goal image (the arm posed on the
  target). ``ivnext/Reacher-v5`` and ``ivnext/Pusher-v5`` are these presets registered with
  gymnasium's time limits (50 / 100 steps).
* ``gym_pusht/PushT-v0`` (the optional ``pusht`` extra): see ``envs.pusht``.

``make_gym_env(env_id, kwargs, adapter, image_size)`` builds any id; ``make_adapter(task)`` is the
entry point of the registered ``ivnext/Reacher-v5`` / ``ivnext/Pusher-v5``.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
from dataclasses import dataclass, replace
from typing import Any, Callable

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.utils import RecordConstructorArgs

from envs.adapter_spec import OFF, AdapterSpec, CameraSpec
from envs.spaces import OBS_KEYS, make_observation_space, validate_action

__all__ = ["AdapterConfig", "ADAPTERS", "PRESETS", "CameraObservationAdapter", "GymAdapter", "Preset",
           "load_callable", "make_adapter", "make_gym_env", "preset_for"]

# pygame-based envs (gym-pusht, gymnasium's classic control) draw offscreen into surfaces; without a
# display SDL must not look for one. setdefault keeps an explicit choice.
if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

_CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_SOURCE = re.compile(r"^(?P<base>[^\[\]]+?)(?:\[(?P<index>[^\[\]]*)\])?$")
_IMAGE_SOURCES = ("render", "camera")


def load_callable(target: str, what: str = "callable") -> Callable:
    """``"pkg.module:attr.path"`` -> the object; ``ValueError`` naming ``what`` when it is malformed,
    cannot be imported or is not callable."""
    if not isinstance(target, str) or not _CALLABLE.match(target):
        raise ValueError(f"{what} must be 'package.module:callable', got {target!r}")
    module_name, attr = target.split(":")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"{what} {target!r}: cannot import {module_name!r} ({e})") from e
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{what} {target!r}: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{what} {target!r} is not callable")
    return obj


def _parse_index(text: str | None):
    if text is None:
        return None
    text = text.strip()
    try:
        if ":" in text:
            parts = [int(p) if p.strip() else None for p in text.split(":")]
            if len(parts) > 3:
                raise ValueError
            return slice(*parts)
        return int(text)
    except ValueError:
        raise ValueError(f"bad index [{text}]: use one integer or a slice like [0:2]") from None


@dataclass(frozen=True)
class Source:
    """One parsed source string (``envs.adapter_spec``)."""

    text: str
    kind: str  # render | camera | obs | info | sim | call
    path: tuple[str, ...] = ()
    index: Any = None
    func: Callable | None = None

    @classmethod
    def parse(cls, text: str, what: str) -> Source:
        m = _SOURCE.match(text.strip()) if isinstance(text, str) else None
        if m is None:
            raise ValueError(f"{what}: cannot parse source {text!r}")
        base, index = m.group("base").strip(), _parse_index(m.group("index"))
        if _CALLABLE.match(base):
            return cls(text, "call", index=index, func=load_callable(base, what))
        head, *path = base.split(".")
        if head in _IMAGE_SOURCES and not path:
            return cls(text, head, index=index)
        if head in ("obs", "info", "sim") and all(path):
            if head in ("info", "sim") and not path:
                raise ValueError(f"{what}: {head!r} needs a key, e.g. {head}.name")
            return cls(text, head, tuple(path), index)
        raise ValueError(f"{what}: unknown source {text!r}; expected render, camera, obs[.key], info.key, "
                         "sim.attr or package.module:callable (optionally with [i] or [a:b])")


def _is_image_space(space) -> bool:
    return (isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3
            and 3 in (space.shape[0], space.shape[-1]))


def _fit_image(img, height: int, width: int, what: str) -> tuple[np.ndarray, tuple | None]:
    """Any RGB(A) image -> ``(height, width, 3)`` uint8: channels last, [0, 1] floats scaled, centre
    crop to the target aspect ratio, bilinear resize. Returns the image and the crop/resize applied
    (``(x0, y0, scale_x, scale_y)``, None when the image already had the size) for the intrinsics."""
    a = np.asarray(img)
    if a.ndim != 3:
        raise ValueError(f"{what}: expected an (H, W, 3) image, got shape {a.shape}")
    if a.shape[0] in (3, 4) and a.shape[-1] not in (3, 4):
        a = np.moveaxis(a, 0, -1)
    if a.shape[-1] not in (3, 4):
        raise ValueError(f"{what}: expected 3 colour channels, got shape {a.shape}")
    a = a[..., :3]
    if a.dtype != np.uint8:
        a = a.astype(np.float64)
        if a.size and a.max() <= 1.0:
            a = a * 255.0
        a = np.clip(np.round(a), 0, 255).astype(np.uint8)
    if a.shape[:2] == (height, width):
        return np.ascontiguousarray(a), None
    a, geom = _crop_resize(a, height, width, resample="bilinear")
    return a, geom


def _crop_resize(a: np.ndarray, height: int, width: int, resample: str) -> tuple[np.ndarray, tuple]:
    from PIL import Image

    h, w = a.shape[:2]
    target = width / height
    if w / h > target:  # too wide: crop columns
        cw, ch = int(round(h * target)), h
    else:
        cw, ch = w, int(round(w / target))
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    a = a[y0:y0 + ch, x0:x0 + cw]
    mode = Image.BILINEAR if resample == "bilinear" else Image.NEAREST
    img = Image.fromarray(a if a.ndim == 3 else a.astype(np.float32), mode=None if a.ndim == 3 else "F")
    out = np.asarray(img.resize((width, height), mode))
    return out, (x0, y0, width / cw, height / ch)


def _fit_intrinsics(k: np.ndarray, geom: tuple | None) -> np.ndarray:
    """Camera matrix of an image after ``_crop_resize`` (OpenCV pixel centres at integers)."""
    k = np.array(k, dtype=np.float64).reshape(3, 3)
    if geom is None:
        return k.astype(np.float32)
    x0, y0, sx, sy = geom
    k[0, 2] -= x0
    k[1, 2] -= y0
    k[0, 0] *= sx
    k[1, 1] *= sy
    k[0, 2] = (k[0, 2] + 0.5) * sx - 0.5
    k[1, 2] = (k[1, 2] + 0.5) * sy - 0.5
    return k.astype(np.float32)


class GymAdapter(gymnasium.Wrapper, RecordConstructorArgs):
    """Gives any gymnasium env with a ``Box`` action space the ``envs`` observation dictionary.

    Args:
        env: the env from ``gymnasium.make`` (made with ``render_mode="rgb_array"`` when ``rgb`` is
            ``render``; ``make_gym_env`` takes care of that).
        spec: where each observation entry comes from (``envs.adapter_spec.AdapterSpec``), already
            merged with the env's preset (``preset_for``).
        width, height: image size in pixels.
        render_mode: None or "rgb_array" (``render()`` returns the last observed ``rgb``).
        env_id: the gymnasium id, for messages and the default task description.

    Extra methods, present only when the spec configures them (so ``get_wrapper_attr`` finds
    them exactly then): ``render_goal()`` (``spec.goal``) and ``expert_action()`` (``spec.expert``).
    ``ground_truth(info)`` returns the ``spec.ground_truth`` values; ``has_success`` says whether
    the env has a success criterion.
    """

    def __init__(self, env: gymnasium.Env, spec: AdapterSpec, width: int = 128, height: int = 128,
                 render_mode: str | None = None, env_id: str | None = None):
        RecordConstructorArgs.__init__(self, spec=spec, width=width, height=height, render_mode=render_mode,
                                       env_id=env_id)
        gymnasium.Wrapper.__init__(self, env)
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.env_id = env_id or (env.spec.id if env.spec is not None else type(env.unwrapped).__name__)
        if not isinstance(env.action_space, spaces.Box):
            raise TypeError(f"{self.env_id}: only continuous Box action spaces are supported, got {env.action_space}")
        self.width, self.height = int(width), int(height)
        self.spec_ = spec = self._with_defaults(AdapterSpec.coerce(spec), env)
        what = f"{self.env_id} adapter"
        self._rgb = Source.parse(spec.rgb, f"{what} rgb")
        if self._rgb.kind == "render" and getattr(env, "render_mode", None) != "rgb_array":
            raise ValueError(f"{what}: rgb=render needs the env made with render_mode='rgb_array' "
                             f"(it has render_mode={getattr(env, 'render_mode', None)!r}); use make_gym_env")
        self._proprio = [Source.parse(s, f"{what} proprio") for s in spec.proprio]
        optional = {k: getattr(spec, k) for k in ("depth", "intrinsics", "extrinsics")}
        self._optional = {k: Source.parse(v, f"{what} {k}") for k, v in optional.items() if v not in (None, OFF)}
        if self._optional.get("depth") is not None and self._optional["depth"].kind == "render":
            raise ValueError(f"{what}: depth cannot come from render() (gymnasium's depth_array is a [0, 1] "
                             "z-buffer, not metres); use depth=camera on a MuJoCo env")
        self._success = None if spec.success in (None, OFF) else Source.parse(spec.success, f"{what} success")
        self._distance = None if spec.distance in (None, OFF) else Source.parse(spec.distance, f"{what} distance")
        self._info_fn = None if spec.info in (None, OFF) else load_callable(spec.info, f"{what} info")
        self._truth = {k: Source.parse(v, f"{what} ground_truth.{k}") for k, v in (spec.ground_truth or {}).items()}
        if spec.goal not in (None, OFF):
            goal_fn = load_callable(spec.goal, f"{what} goal")
            self.render_goal = lambda: goal_fn(self, **spec.goal_kwargs)
        if spec.expert not in (None, OFF):
            expert_fn = load_callable(spec.expert, f"{what} expert")
            self.expert_action = lambda: np.asarray(expert_fn(self), dtype=np.float32)

        for src in [self._rgb, *self._proprio, *self._optional.values()]:
            self._check_obs_path(src, what)
        self.camera = None
        if any(s.kind == "camera" for s in [self._rgb, *self._optional.values()]):
            self.camera = self._make_camera(env, spec.camera, what)
        self._render_mode = render_mode
        self._last_rgb: np.ndarray | None = None
        self.last_reset: dict[str, Any] | None = None  # seed and options of the latest reset
        self.goal_state: Any = None  # set by goal functions that define a goal state (see envs.pusht)
        # Goal functions may also move the episode's start (start_observation: the observation to begin
        # from) and leave the actions that reach the goal (goal_actions), e.g. envs.pusht:rollout_goal.
        self.start_observation: dict | None = None
        self.goal_actions: Any = None
        self.metadata = {**env.metadata, "render_modes": ["rgb_array"]}
        self.observation_space = self._infer_space()

    # ------------------------------------------------------------------------------ set-up
    def _with_defaults(self, spec: AdapterSpec, env: gymnasium.Env) -> AdapterSpec:
        """Fill what neither the user nor the preset set from the env's spaces."""
        space = env.observation_space
        what = f"{self.env_id} adapter"
        rgb, proprio = spec.rgb, spec.proprio
        if rgb is None:
            if isinstance(space, spaces.Dict) and any(_is_image_space(s) for s in space.spaces.values()):
                rgb = "obs." + next(k for k, s in space.spaces.items() if _is_image_space(s))
            elif _is_image_space(space):
                rgb = "obs"
            elif getattr(env, "render_mode", None) == "rgb_array":
                rgb = "render"
            else:
                raise ValueError(f"{what}: no RGB source: the observation has no image and the env cannot "
                                 "render rgb_array; set env.adapter.rgb (render, camera, obs.<key>)")
        if proprio is None:
            if isinstance(space, spaces.Dict):
                proprio = [f"obs.{k}" for k, s in space.spaces.items()
                           if isinstance(s, spaces.Box) and not _is_image_space(s) and f"obs.{k}" != rgb]
            elif isinstance(space, spaces.Box) and not _is_image_space(space) and len(space.shape) == 1:
                proprio = ["obs"]
            if not proprio:
                raise ValueError(f"{what}: no proprio source in observation space {space}; set env.adapter.proprio "
                                 "(e.g. [obs.agent_pos] or ['sim.data.qpos[0:2]'])")
        # No success setting: the env's own info["is_success"], when it reports one.
        self._success_optional = spec.success is None
        return replace(spec, rgb=rgb, proprio=list(proprio), success=spec.success or "info.is_success")

    def _make_camera(self, env, cam: CameraSpec, what: str):
        from envs.camera import CameraRig, FreeCamera

        sim = env.unwrapped
        if not (hasattr(sim, "model") and hasattr(sim, "data")):
            raise ValueError(f"{what}: the camera source needs a MuJoCo env (env.unwrapped.model/data); "
                             f"{type(sim).__name__} is not one")
        model = sim.model
        # Read when an OpenGL context is created: no shadow map and no multisampling make offscreen
        # rendering ~15x faster (only our renderer is created after this point).
        model.vis.quality.shadowsize = 0
        model.vis.quality.offsamples = 0
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, self.width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, self.height)
        if cam.name is not None:
            camera = cam.name
        elif cam.is_set():
            missing = [k for k in ("lookat", "distance", "azimuth", "elevation") if getattr(cam, k) is None]
            if missing:
                raise ValueError(f"{what}: a free camera needs camera.{missing} too (or camera.name)")
            camera = FreeCamera(tuple(cam.lookat), cam.distance, cam.azimuth, cam.elevation)
        else:
            camera = 0  # the model's first camera (CameraRig names the alternatives if it has none)
        return CameraRig(model, camera, width=self.width, height=self.height)

    def _infer_space(self) -> spaces.Dict:
        """The observation space. ``proprio``'s size comes from the observation space and the simulator
        when every proprio source is an observation key or a simulator attribute; otherwise (``info``
        or function sources) from one probe ``reset()`` here, which draws from the env's RNG as any
        unseeded reset does (a seeded reset starts over)."""
        static = self._static_proprio_dim()
        if static is not None:
            dim, present = static, set(self._optional)
        else:
            obs, info = self.env.reset()
            sample = self.observe(obs, info)
            dim, present = sample["proprio"].shape[0], set(sample) - {"rgb", "proprio"}
        full = make_observation_space(self.height, self.width, proprio_dim=dim)
        return spaces.Dict({k: full[k] for k in OBS_KEYS if k in ("rgb", "proprio") or k in present})

    def _check_obs_path(self, src: Source, what: str) -> None:
        """An ``obs.<key>`` source must name a key of the observation space (checked before any reset)."""
        if src.kind != "obs":
            return
        sub = self.env.observation_space
        for i, key in enumerate(src.path):
            if not isinstance(sub, spaces.Dict) or key not in sub.spaces:
                where = ".".join(["obs", *src.path[:i]])
                keys = sorted(sub.spaces) if isinstance(sub, spaces.Dict) else f"none: it is {sub}"
                raise ValueError(f"{what}: source {src.text!r}: {where} has no key {key!r} (keys: {keys})")
            sub = sub[key]

    def _static_proprio_dim(self) -> int | None:
        space, total = self.env.observation_space, 0
        for s in self._proprio:
            if s.kind == "sim":  # simulator attributes exist before the first reset (MuJoCo's data)
                try:
                    total += int(np.asarray(self.read(s, None, {})).size)
                    continue
                except (KeyError, AttributeError, TypeError, IndexError):
                    return None
            if s.kind != "obs":
                return None
            sub = space
            for key in s.path:
                if not isinstance(sub, spaces.Dict) or key not in sub.spaces:
                    return None
                sub = sub[key]
            if not isinstance(sub, spaces.Box):
                return None
            total += int(np.zeros(sub.shape)[s.index].size if s.index is not None else np.prod(sub.shape))
        return total

    # ------------------------------------------------------------------------------ reading
    def read(self, source: Source, obs, info: dict, cache: dict | None = None, sim=None):
        """The value of ``source`` for this observation / info (``sim`` overrides ``env.unwrapped``)."""
        cache = {} if cache is None else cache
        if source.kind == "render":
            if "render" not in cache:
                cache["render"] = self.env.render()
            value = cache["render"]
        elif source.kind == "camera":
            raise AssertionError("camera sources are read by observe()")
        elif source.kind in ("obs", "info", "sim"):
            value = {"obs": obs, "info": info, "sim": self.env.unwrapped if sim is None else sim}[source.kind]
            for i, key in enumerate(source.path):
                if isinstance(value, dict):
                    if key not in value:
                        raise KeyError(f"{self.env_id} adapter: source {source.text!r}: no key {key!r} "
                                       f"(keys: {sorted(value)})")
                    value = value[key]
                elif hasattr(value, key):
                    value = getattr(value, key)
                else:
                    raise KeyError(f"{self.env_id} adapter: source {source.text!r}: "
                                   f"{'.'.join([source.kind, *source.path[:i]])} has no {key!r}")
        else:
            value = source.func(self, obs, info)
        if source.index is not None:
            value = np.asarray(value)[source.index]
        return value

    def observe(self, obs, info: dict, sim=None) -> dict[str, np.ndarray]:
        """The observation dictionary of a raw observation of the wrapped env (and its ``info``).
        ``sim`` renders/reads another instance of the simulator (goal functions use a scratch copy)."""
        unwrapped = self.env.unwrapped if sim is None else sim
        cache: dict = {}
        if self.camera is not None:
            import mujoco

            # mj_step leaves body/camera poses one substep behind qpos; recompute them (derived
            # quantities only, the state is untouched) so image, proprio and info agree.
            mujoco.mj_forward(unwrapped.model, unwrapped.data)
            cache["camera"] = self.camera.render(unwrapped.data)
        geom = None
        if self._rgb.kind == "camera":
            rgb = cache["camera"][0]
        else:
            rgb, geom = _fit_image(self.read(self._rgb, obs, info, cache, sim), self.height, self.width,
                                   f"{self.env_id} adapter rgb {self._rgb.text!r}")
        out = {"rgb": rgb}
        for key, src in self._optional.items():
            if src.kind == "camera":
                out[key] = {"depth": lambda: cache["camera"][1], "intrinsics": lambda: self.camera.intrinsics,
                            "extrinsics": lambda: self.camera.extrinsics(unwrapped.data)}[key]()
                continue
            value = np.asarray(self.read(src, obs, info, cache, sim), dtype=np.float32)
            if key == "depth" and value.shape != (self.height, self.width):
                value, _ = _crop_resize(value, self.height, self.width, resample="nearest")
            elif key == "intrinsics":
                value = _fit_intrinsics(value, geom)
            out[key] = np.asarray(value, dtype=np.float32).reshape({"depth": (self.height, self.width),
                                                                     "intrinsics": (3, 3), "extrinsics": (4, 4)}[key])
        parts = [np.asarray(self.read(s, obs, info, cache, sim), dtype=np.float32).reshape(-1) for s in self._proprio]
        out["proprio"] = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        return {k: out[k] for k in OBS_KEYS if k in out}

    def _add_info(self, obs, info: dict) -> dict:
        info = dict(info)
        if self._info_fn is not None:
            info.update(self._info_fn(self, info))
        for key, src in (("is_success", self._success), ("distance", self._distance)):
            if src is None:
                continue
            if key == "is_success" and self._success_optional and "is_success" not in info:
                continue
            value = self.read(src, obs, info)
            info[key] = bool(value) if key == "is_success" else float(value)
        return info

    @property
    def has_success(self) -> bool:
        """Whether this env has a success criterion (``info["is_success"]`` at every step). A default
        ``info.is_success`` source counts only once the env has reported it."""
        if self._success is None:
            return False
        return not self._success_optional or self._reported_success

    _reported_success = False

    def ground_truth(self, info: dict) -> dict[str, np.ndarray]:
        """``spec.ground_truth`` values (float32 arrays) for this step's ``info``."""
        return {k: np.asarray(self.read(s, None, info), dtype=np.float32) for k, s in self._truth.items()}

    @property
    def description(self) -> str:
        return self.spec_.description or f"gymnasium {self.env_id}"

    # ------------------------------------------------------------------------------ gymnasium API
    @property
    def render_mode(self) -> str | None:
        return self._render_mode

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self.last_reset = {"seed": seed, "options": options}
        self.goal_state = None
        self.start_observation = self.goal_actions = None  # set by goal functions (envs.pusht:rollout_goal)
        return self._finish(obs, info)

    def step(self, action):
        action = validate_action(action, self.env.action_space).astype(self.env.action_space.dtype)
        obs, reward, terminated, truncated, info = self.env.step(action)
        obs, info = self._finish(obs, info)
        return obs, reward, terminated, truncated, info

    def _finish(self, obs, info):
        out = self.observe(obs, info)
        self._last_rgb = out["rgb"]
        info = self._add_info(obs, info)
        if "is_success" in info:
            self._reported_success = True
        return out, info

    def render(self):
        if self._render_mode != "rgb_array":
            gymnasium.logger.warn(f"render() does nothing with render_mode={self._render_mode!r}")
            return None
        if self._last_rgb is None:
            raise gymnasium.error.ResetNeeded("call reset() before render()")
        return self._last_rgb.copy()

    def close(self):
        if self.camera is not None:
            self.camera.close()
        super().close()


# -------------------------------------------------------------------------------------------
# gymnasium's MuJoCo arms (Reacher-v5, Pusher-v5)


def _body_task_info(adapter: GymAdapter, ee: str, goal: str, threshold: float, obj: str | None = None) -> dict:
    sim = adapter.env.unwrapped
    xpos = sim.data.xpos
    out = {"ee_pos": xpos[sim.model.body(ee).id].copy(), "goal_pos": xpos[sim.model.body(goal).id].copy()}
    scored = out["ee_pos"]
    if obj is not None:
        out["object_pos"] = scored = xpos[sim.model.body(obj).id].copy()
    distance = float(np.linalg.norm(scored[:2] - out["goal_pos"][:2]))
    return {**out, "distance": distance, "is_success": distance < threshold}


def reacher_info(adapter: GymAdapter, info: dict) -> dict:
    """Reacher-v5: the fingertip (a sphere of radius 1 cm) must reach the target (radius 0.9 cm):
    success when their centres are within 2 cm."""
    return _body_task_info(adapter, "fingertip", "target", 0.02)


def pusher_info(adapter: GymAdapter, info: dict) -> dict:
    """Pusher-v5: a 7-DoF arm pushes a cylinder (radius 5 cm) on the table plane z = -0.325 to a goal
    at (0.45, -0.05); success when the object centre is within 5 cm in xy (the goal disc is 8 cm in
    radius; the goal body sits 5 cm lower than the object, so the distance is taken in xy)."""
    return _body_task_info(adapter, "tips_arm", "goal", 0.05, obj="object")


# Reacher-v5's links: upper arm 0.1 m, forearm to the fingertip centre 0.11 m (reacher.xml).
REACHER_LINKS = (0.1, 0.11)
# PD gains of the Reacher expert (torques are clipped to the action space, [-1, 1]).
REACHER_KP, REACHER_KD = 2.0, 0.15


def reacher_goal_joint_angles(adapter: GymAdapter) -> np.ndarray:
    """Joint angles (2,) rad that put Reacher's fingertip on the target (analytic two-link IK, the
    solution nearer the current angles)."""
    from envs.goals import two_link_ik

    sim = adapter.env.unwrapped
    data = sim.data
    base = data.xpos[sim.model.body("body0").id][:2]
    target = data.xpos[sim.model.body("target").id][:2] - base
    return two_link_ik(target, *REACHER_LINKS, near=data.qpos[:2])


def reacher_expert(adapter: GymAdapter) -> np.ndarray:
    """Reacher-v5's scripted expert: a PD torque law ``kp (q* - q) - kd dq`` towards the inverse-
    kinematics solution ``q*`` (angle errors wrapped to [-pi, pi)), clipped to the action space.
    Reads privileged simulator state."""
    data = adapter.env.unwrapped.data
    q, dq = data.qpos[:2], data.qvel[:2]
    err = (reacher_goal_joint_angles(adapter) - q + np.pi) % (2 * np.pi) - np.pi
    space = adapter.env.action_space
    return np.clip(REACHER_KP * err - REACHER_KD * dq, space.low, space.high).astype(np.float32)


def reacher_goal(adapter: GymAdapter) -> dict[str, np.ndarray]:
    """Observation dictionary with Reacher's fingertip on the target; the simulator state is left
    exactly as it was."""
    from envs.goals import rendered_state

    q = reacher_goal_joint_angles(adapter)
    sim, last = adapter.env.unwrapped, adapter._last_rgb

    def pose(data):
        data.qpos[:2] = q

    try:
        return rendered_state(sim.model, sim.data, pose, lambda: adapter.observe(None, {}))
    finally:
        adapter._last_rgb = last


@dataclass(frozen=True)
class Preset:
    """Adapter settings of one gymnasium id, and its ``gymnasium.make`` keyword arguments for an
    image size (``kwargs(width, height) -> dict``; the user's kwargs override them). ``requires``
    names the package the id needs, for the error message when it is missing. ``wrap(env, **own)``
    wraps the made env (e.g. PushT's relative actions); ``own_kwargs`` are the keyword arguments it
    takes, removed from the user's kwargs before ``gymnasium.make``."""

    spec: AdapterSpec
    kwargs: Callable[[int, int], dict] = lambda w, h: {}
    requires: str | None = None
    wrap: Callable[..., gymnasium.Env] | None = None
    own_kwargs: tuple[str, ...] = ()


_MUJOCO_CAMERA = dict(rgb="camera", depth="camera", intrinsics="camera", extrinsics="camera")
PRESETS: dict[str, Preset | str] = {
    # Reacher: the two-link arm spans a 0.42 m disc in a 0.6 m arena on the plane z = 0.
    "Reacher-v5": Preset(AdapterSpec(
        **_MUJOCO_CAMERA, camera=CameraSpec(lookat=[0.0, 0.0, 0.0], distance=0.65, azimuth=90.0, elevation=-60.0),
        proprio=["sim.data.qpos[0:2]", "sim.data.qvel[0:2]"], info="envs.gym_adapters:reacher_info",
        expert="envs.gym_adapters:reacher_expert", goal="envs.gym_adapters:reacher_goal",
        ground_truth={"ee_pos": "info.ee_pos", "goal_pos": "info.goal_pos"},
        description="move the fingertip of the two-link arm to the target")),
    # Pusher: a 7-DoF arm at (0, -0.6) pushes a cylinder on the table plane z = -0.325.
    "Pusher-v5": Preset(AdapterSpec(
        **_MUJOCO_CAMERA,
        camera=CameraSpec(lookat=[0.25, -0.1, -0.325], distance=1.6, azimuth=120.0, elevation=-55.0),
        proprio=["sim.data.qpos[0:7]", "sim.data.qvel[0:7]"], info="envs.gym_adapters:pusher_info",
        ground_truth={"ee_pos": "info.ee_pos", "goal_pos": "info.goal_pos", "object_pos": "info.object_pos"},
        description="push the object to the goal with the arm")),
    "gym_pusht/PushT-v0": "envs.pusht:PRESET",  # imported on use: gym-pusht is an optional extra
}


def preset_for(env_id: str) -> Preset:
    """The preset of ``env_id`` (an empty one for ids without a preset)."""
    preset = PRESETS.get(env_id.split(":")[-1], Preset(AdapterSpec()))
    if isinstance(preset, str):
        module, name = preset.split(":")
        preset = getattr(importlib.import_module(module), name)
    return preset


def _entry_point_class(env_id: str):
    try:
        entry = gymnasium.spec(env_id).entry_point
        if isinstance(entry, str):
            from gymnasium.envs.registration import load_env_creator

            entry = load_env_creator(entry)
        return entry if inspect.isclass(entry) else None
    except Exception:  # noqa: BLE001 (only used to decide whether to pass width/height)
        return None


def _ensure_registered(env_id: str, requires: str | None) -> None:
    """gymnasium imports ``module`` of ``"module:Id"`` itself, but not the package of a namespace
    ``"ns/Id"``: import it here (gym-pusht registers its id on import)."""
    if ":" in env_id or env_id in gymnasium.registry or "/" not in env_id:
        return
    namespace = env_id.split("/")[0]
    try:
        importlib.import_module(namespace)
    except ImportError as e:
        hint = f" (pip install {requires})" if requires else ""
        raise ValueError(f"env.id={env_id!r} needs the package that provides {namespace!r}, which cannot be "
                         f"imported: {e}{hint}") from e


def make_gym_env(env_id: str, kwargs: dict | None = None, adapter: AdapterSpec | dict | None = None,
                 image_size: int = 128, max_episode_steps: int | None = None,
                 render_mode: str | None = None) -> GymAdapter:
    """``gymnasium.make(env_id, **kwargs)`` wrapped in a ``GymAdapter`` with ``image_size`` square images.

    ``env_id`` is any registered id, ``"ns/Id"`` (the package ``ns`` is imported first, as gym-pusht
    needs) or ``"module:Id"``. The adapter settings go on top of the id's preset. A MuJoCo env whose
    RGB comes from ``render()`` is made at ``image_size`` directly (``width``/``height``).

    Raises:
        ValueError: unknown id, missing package, no RGB/proprio source, malformed adapter settings.
        TypeError: a non-Box action space.
    """
    preset = preset_for(env_id)
    spec = AdapterSpec.coerce(adapter).over(preset.spec)
    make_kwargs = {**preset.kwargs(image_size, image_size), **dict(kwargs or {})}
    own = {k: make_kwargs.pop(k) for k in preset.own_kwargs if k in make_kwargs}
    _ensure_registered(env_id, preset.requires)
    if spec.rgb in (None, "render"):
        make_kwargs.setdefault("render_mode", "rgb_array")
        cls = _entry_point_class(env_id) if ":" not in env_id else None
        from gymnasium.envs.mujoco import MujocoEnv

        if cls is not None and issubclass(cls, MujocoEnv):
            make_kwargs.setdefault("width", image_size)
            make_kwargs.setdefault("height", image_size)
    if max_episode_steps is not None:
        make_kwargs["max_episode_steps"] = max_episode_steps
    try:
        env = gymnasium.make(env_id, **make_kwargs)
    except gymnasium.error.Error as e:  # unknown id / namespace / version
        raise ValueError(f"env.id={env_id!r}: {e}") from e
    except ModuleNotFoundError as e:
        hint = f" (pip install {preset.requires})" if preset.requires else ""
        raise ValueError(f"env.id={env_id!r}: {e}{hint}") from e
    try:
        if preset.wrap is not None:
            env = preset.wrap(env, **own)
        return GymAdapter(env, spec, width=image_size, height=image_size, render_mode=render_mode, env_id=env_id)
    except Exception:
        env.close()
        raise


# -------------------------------------------------------------------------------------------
# Backwards compatible names: the two registered MuJoCo arms.

ADAPTERS = {"reacher": "Reacher-v5", "pusher": "Pusher-v5"}
AdapterConfig = AdapterSpec
CameraObservationAdapter = GymAdapter


def make_adapter(task: str, width: int = 128, height: int = 128, render_mode: str | None = None,
                 **gym_kwargs: Any) -> GymAdapter:
    """Entry point of ``ivnext/Reacher-v5`` and ``ivnext/Pusher-v5``.

    Args:
        task: a key of ``ADAPTERS`` ("reacher" or "pusher").
        width, height, render_mode: see ``GymAdapter``.
        gym_kwargs: passed to ``gymnasium.make`` of the wrapped id (e.g. ``reward_dist_weight``).
    """
    if task not in ADAPTERS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(ADAPTERS)}")
    gym_id = ADAPTERS[task]
    # No inner time limit: the registered ivnext id applies the same one on the outside, where a
    # `max_episode_steps=` passed to gymnasium.make can override it.
    env = gymnasium.make(gym_id, max_episode_steps=-1, **gym_kwargs)
    return GymAdapter(env, preset_for(gym_id).spec, width=width, height=height, render_mode=render_mode, env_id=gym_id)
