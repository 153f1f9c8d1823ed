"""How to turn any gymnasium env into the ``envs`` observation dictionary: the adapter's settings.

``AdapterSpec`` is plain data (strings, lists, dicts) so that it is also the hydra config group
``env.adapter`` of ``ivnext-collect`` and ``ivnext-plan-eval``. ``envs.gym_adapters.GymAdapter``
interprets it. Every field left at ``None`` takes the value of the env's preset (``PRESETS`` in
``envs.gym_adapters``: gymnasium's Reacher-v5 / Pusher-v5, gym-pusht's PushT) or else a default
inferred from the env's spaces; the string ``"none"`` switches a preset's value off.

**Sources** (where a value is read from; every field below that takes a source uses this syntax):

==================== =========================================================================
``render``           ``env.render()`` (the inner env is made with ``render_mode="rgb_array"``)
``camera``           a MuJoCo camera (``camera`` below) rendered on ``env.unwrapped.model/data``:
                     RGB, metric depth, intrinsics and extrinsics, all from one ``CameraRig``
``obs``              the observation; ``obs.<key>`` a key of a ``Dict`` observation
``info``             ``info.<key>``: an entry of the ``info`` dict of ``reset``/``step``
``sim``              ``sim.<attr>.<attr>``: an attribute path on ``env.unwrapped`` (e.g.
                     ``sim.data.qpos`` of a MuJoCo env)
``pkg.mod:func``     ``func(adapter, obs, info)`` returns the value
==================== =========================================================================

Any source may end in one index: ``[3]``, ``[0:2]``, ``[::2]`` (numpy basic indexing on the value).
Proprio sources are flattened and concatenated in the order given, as float32.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Dict, List, Optional

__all__ = ["AdapterSpec", "CameraSpec", "OFF"]

OFF = "none"  # a field set to this string is off, whatever the preset says


@dataclass
class CameraSpec:
    """The MuJoCo camera of ``rgb: camera``: a camera of the model by ``name``, or else a free camera
    (MuJoCo's ``mjCAMERA_FREE``: ``lookat`` point in metres, ``distance`` in metres, ``azimuth`` and
    ``elevation`` in degrees; field of view from the model's ``<visual><global fovy>``)."""

    name: Optional[str] = None
    lookat: Optional[List[float]] = None
    distance: Optional[float] = None
    azimuth: Optional[float] = None
    elevation: Optional[float] = None

    def is_set(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))


@dataclass
class AdapterSpec:
    """Settings of ``envs.gym_adapters.GymAdapter`` (see the module docstring for sources).

    Attributes:
        rgb: source of the RGB image: ``render``, ``camera``, ``obs`` or ``obs.<key>`` (default: an
            image key of a Dict observation, an image observation, else ``render``). Any image is
            converted to ``(S, S, 3)`` uint8: channels last, alpha dropped, [0, 1] floats scaled,
            centre-cropped to a square and resized (bilinear) to the env's ``image_size``.
        proprio: sources concatenated into ``proprio`` (default: every non-image key of a Dict
            observation, or a flat Box observation itself).
        depth: source of a metric depth map ``(H, W)`` in metres, e.g. ``camera`` (optional).
        intrinsics, extrinsics: sources of the 3x3 OpenCV camera matrix and the 4x4 world-to-camera
            transform (``camera`` gives both; optional).
        camera: the MuJoCo camera used by the ``camera`` source.
        info: ``pkg.mod:func``; ``func(adapter, info) -> dict`` adds task entries to every ``info``
            (e.g. ``distance``, object positions) before ``success``/``distance`` are read.
        success: bool source written to ``info["is_success"]`` (default ``info.is_success`` when the
            env reports it; an env without any has no success criterion).
        distance: float source written to ``info["distance"]`` (task distance; optional).
        goal: ``pkg.mod:func``; ``func(adapter, **goal_kwargs) -> observation dict`` of the goal
            (at least ``rgb`` and ``proprio``) for the episode just reset; it must leave the episode
            as it was. Needed by goal-conditioned planning (``ivnext-plan-eval``).
        goal_kwargs: keyword arguments of ``goal``.
        expert: ``pkg.mod:func``; ``func(adapter) -> action``: a scripted expert from privileged
            state (``policy.kind=expert``).
        ground_truth: column name -> source of per-step simulator truth stored with a dataset
            (targets for probes, never model inputs), e.g. ``{block_pose: info.block_pose}``;
            replaces the preset's mapping as a whole (empty: the preset's).
        description: the task text stored with a dataset (default: the gymnasium id).
    """

    rgb: Optional[str] = None
    proprio: Optional[List[str]] = None
    depth: Optional[str] = None
    intrinsics: Optional[str] = None
    extrinsics: Optional[str] = None
    camera: CameraSpec = field(default_factory=CameraSpec)
    info: Optional[str] = None
    success: Optional[str] = None
    distance: Optional[str] = None
    goal: Optional[str] = None
    goal_kwargs: Dict[str, Any] = field(default_factory=dict)
    expert: Optional[str] = None
    ground_truth: Dict[str, str] = field(default_factory=dict)
    description: Optional[str] = None

    def over(self, preset: AdapterSpec) -> AdapterSpec:
        """This spec's settings on top of ``preset``'s: every field set here wins, the others come
        from ``preset`` (the camera field by field, ``goal_kwargs`` key by key)."""
        out = {}
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(preset, f.name)
            if f.name == "camera":
                out[f.name] = mine if mine.is_set() else theirs
            elif f.name == "goal_kwargs":
                out[f.name] = {**theirs, **mine}
            elif f.name == "ground_truth":  # whole mapping: an empty one means "the preset's"
                out[f.name] = dict(mine or theirs)
            else:
                out[f.name] = theirs if mine is None else mine
        return replace(self, **out)

    @classmethod
    def coerce(cls, value: Any) -> AdapterSpec:
        """An ``AdapterSpec`` from itself, ``None``, a mapping or any object with the same attributes
        (e.g. an OmegaConf node); unknown keys raise ``ValueError`` naming them."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            if hasattr(value, "items"):  # DictConfig and other mappings
                value = dict(value.items())
            else:
                value = {f.name: getattr(value, f.name) for f in fields(cls) if hasattr(value, f.name)}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown adapter keys {unknown}; known: {sorted(known)}")
        value = dict(value)
        cam = value.get("camera")
        if cam is not None and not isinstance(cam, CameraSpec):
            cam = dict(cam.items()) if hasattr(cam, "items") else {f.name: getattr(cam, f.name) for f in fields(CameraSpec)}
            value["camera"] = CameraSpec(**cam)
        for key in ("goal_kwargs", "ground_truth"):
            if value.get(key) is not None:
                value[key] = dict(value[key])
        if value.get("proprio") is not None:
            value["proprio"] = list(value["proprio"])
        return cls(**{k: v for k, v in value.items() if v is not None or k not in ("camera", "goal_kwargs", "ground_truth")})
