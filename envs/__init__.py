"""Simulated robot environments (gymnasium + MuJoCo) that emit what a video world model needs.

Importing ``envs`` registers four gymnasium ids and nothing else happens (MuJoCo is imported only
when an env is made):

=================== ===================================== =========== =======================
id                  what                                   time limit  success
=================== ===================================== =========== =======================
ivnext/Reach-v0     gantry fingertip to a goal marker      50 steps    ee within 2 cm of goal
ivnext/Push-v0      gantry fingertip pushes a puck         120 steps   puck within 5 cm of goal
ivnext/Reacher-v5   gymnasium Reacher-v5 + camera adapter  50 steps    tip within 2 cm of target
ivnext/Pusher-v5    gymnasium Pusher-v5 + camera adapter   100 steps   object within 5 cm of goal
=================== ===================================== =========== =======================

Every id returns the same observation dictionary (``envs.spaces``): ``rgb``, metric ``depth``,
``intrinsics``, ``extrinsics`` (world-to-camera, OpenCV) and ``proprio``; and ``info`` carries
``is_success``, ``distance``, ``ee_pos``, ``goal_pos`` (and ``object_pos`` for pushing tasks).

    import gymnasium, envs
    env = gymnasium.make(envs.TASKS["push"], width=128, height=128)
    policy = envs.experts.ExpertPolicy(env, noise_std=0.1, rng=0)

Any other gymnasium id gets the same dictionary through ``envs.make_gym_env(id, kwargs, adapter,
image_size)`` (``envs.gym_adapters``; settings in ``envs.adapter_spec``), e.g. gym-pusht's PushT
(``envs.pusht``).
"""

import importlib
import os
import sys

# Headless offscreen rendering: must be decided before mujoco is first imported, so users never
# have to set it. setdefault keeps an explicit choice (e.g. MUJOCO_GL=osmesa).
os.environ.setdefault("MUJOCO_GL", "egl")
if os.environ["MUJOCO_GL"] in ("egl", "osmesa"):  # PyOpenGL must agree with MuJoCo's backend
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

import gymnasium  # noqa: E402  (after the environment variables on purpose)


def _load_triton_before_gl() -> None:
    """Loads triton's native library (shipped with CUDA builds of torch) before any OpenGL context.
    Loaded after one (EGL or OSMesa: Mesa's llvmpipe brings its own LLVM), it segfaults, and torch
    loads it lazily (the first ``torch.optim`` optimizer, ``torch._dynamo``), so a script that made
    an env and then trained crashed. ~0.2 s, once; nothing where triton is not installed."""
    import importlib.util

    if "triton._C.libtriton" in sys.modules or importlib.util.find_spec("triton") is None:
        return
    try:
        import triton._C.libtriton  # noqa: F401
    except Exception:  # a broken triton is torch's concern; envs work without it
        pass


_load_triton_before_gl()

TASKS = {
    "reach": "ivnext/Reach-v0",
    "push": "ivnext/Push-v0",
    "reacher": "ivnext/Reacher-v5",
    "pusher": "ivnext/Pusher-v5",
}


def _register() -> None:
    specs = {
        "reach": dict(entry_point="envs.reach:ReachEnv", max_episode_steps=50),
        "push": dict(entry_point="envs.push:PushEnv", max_episode_steps=120),
        # Same limits as gymnasium's own ids, so results stay comparable.
        "reacher": dict(entry_point="envs.gym_adapters:make_adapter", kwargs={"task": "reacher"},
                        max_episode_steps=gymnasium.spec("Reacher-v5").max_episode_steps),
        "pusher": dict(entry_point="envs.gym_adapters:make_adapter", kwargs={"task": "pusher"},
                       max_episode_steps=gymnasium.spec("Pusher-v5").max_episode_steps),
    }
    for task, spec in specs.items():
        if TASKS[task] not in gymnasium.registry:  # importlib.reload must not warn
            gymnasium.register(TASKS[task], **spec)


_register()

_LAZY = {
    "CameraRig": "envs.camera", "FreeCamera": "envs.camera",
    "ReachEnv": "envs.reach", "PushEnv": "envs.push", "TabletopEnv": "envs.tabletop",
    "CameraObservationAdapter": "envs.gym_adapters", "GymAdapter": "envs.gym_adapters",
    "make_gym_env": "envs.gym_adapters", "AdapterSpec": "envs.adapter_spec",
    "ExpertPolicy": "envs.experts", "RandomPolicy": "envs.experts",
}
_SUBMODULES = {"camera", "spaces", "tabletop", "reach", "push", "experts", "gym_adapters", "adapter_spec", "pusht"}

__all__ = ["TASKS", *_LAZY, *sorted(_SUBMODULES)]


def __getattr__(name: str):
    # Lazy so that `import envs` stays cheap and does not import mujoco or create GL contexts.
    if name in _SUBMODULES:
        return importlib.import_module(f"envs.{name}")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'envs' has no attribute {name!r}")
