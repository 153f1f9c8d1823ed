"""Run a policy in a simulated env for N seeded episodes and store them as a LeRobot v2.1 dataset.

The env is a built-in task (``env.task``) or any gymnasium id (``env.id``, ``env.kwargs``) seen through
``envs.gym_adapters.GymAdapter`` (``env.adapter``: where RGB, proprio, depth and camera parameters
come from). Everything that can be refused (unknown id, missing package, no RGB source, non-Box
actions, a policy that cannot be built or returns the wrong shape) is checked on a throwaway env
before the output folder is created; a run that then fails before any episode is complete removes
the folders it created (never a folder that existed before).

Episode ``i`` is reset with ``seed + i`` and its policy noise is seeded from the same number, so the
result does not depend on how episodes are spread over worker processes, and any episode can be
regenerated on its own. Workers write finished episodes atomically; the parent rewrites the shared
metadata once at the end, so a killed run loses at most the episodes in flight and a re-run skips
everything already complete.
"""
from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import shutil
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from ..config.schema import CollectConfig, EnvConfig, PolicyKind, Task
from .policies import make_policy

os.environ.setdefault("MUJOCO_GL", "egl")

log = logging.getLogger(__name__)

SCENE_KEY = "observation.images.scene"
# Simulator ground truth copied from `info` into the dataset: targets for probes, never model inputs.
GROUND_TRUTH_KEYS = ("ee_pos", "goal_pos", "object_pos")


def make_env(task: Task | str | EnvConfig = Task.push, image_size: int = 128, max_episode_steps: int | None = None,
             *, env_id: str | None = None, kwargs: dict | None = None, adapter=None, render_mode: str | None = None):
    """A built-in task (see ``envs.TASKS``) or any gymnasium id, with square ``image_size`` observations.

    Pass an ``EnvConfig`` as ``task`` to take everything from it. With ``env_id`` (or ``EnvConfig.id``)
    the env is ``envs.make_gym_env(env_id, kwargs, adapter, image_size)``; built-in ids
    (``ivnext/...``) already emit the observation dictionary and are made directly.
    """
    import gymnasium as gym

    import envs

    if isinstance(task, EnvConfig) or hasattr(task, "task") and hasattr(task, "id"):
        cfg = task
        task, image_size, max_episode_steps = cfg.task, cfg.image_size, cfg.max_episode_steps
        env_id, kwargs, adapter = cfg.id, cfg.kwargs, cfg.adapter
    if env_id is not None and env_id not in envs.TASKS.values():
        from envs.gym_adapters import make_gym_env

        return make_gym_env(env_id, kwargs, adapter, image_size, max_episode_steps, render_mode=render_mode)
    make_kwargs = {"width": image_size, "height": image_size, **dict(kwargs or {})}
    if render_mode is not None:
        make_kwargs["render_mode"] = render_mode
    if max_episode_steps is not None:
        make_kwargs["max_episode_steps"] = max_episode_steps
    return gym.make(env_id or envs.TASKS[Task(task).value], **make_kwargs)


def _adapter(env):
    """The ``GymAdapter`` in ``env``'s wrapper chain, or None (built-in tasks)."""
    from envs.gym_adapters import GymAdapter

    while env is not None:
        if isinstance(env, GymAdapter):
            return env
        env = getattr(env, "env", None)
    return None


def ground_truth(env, info: dict) -> dict[str, np.ndarray]:
    """Per-step simulator truth to store with a dataset: the adapter's ``ground_truth`` sources, or
    the built-in tasks' ``info`` entries (``GROUND_TRUTH_KEYS``)."""
    adapter = _adapter(env)
    if adapter is not None:
        return adapter.ground_truth(info)
    return {k: np.asarray(info[k], dtype=np.float32) for k in GROUND_TRUTH_KEYS if k in info}


@dataclass
class EpisodeRecord:
    """One episode as arrays, ``T`` = number of actions taken.

    Row ``t`` holds the observation the policy saw, the action it chose and whether the task was
    solved after that action (LeRobot's convention: the final observation is not stored).
    """

    rgb: np.ndarray  # (T, H, W, 3) uint8
    depth: np.ndarray | None  # (T, H, W) float32, metres (None: the env has no depth source)
    intrinsics: np.ndarray | None  # (T, 3, 3) float32 (None: no camera parameters)
    extrinsics: np.ndarray | None  # (T, 4, 4) float32, world-to-camera (OpenCV axes)
    proprio: np.ndarray  # (T, P) float32
    actions: np.ndarray  # (T, A) float32
    success: np.ndarray  # (T,) bool (False throughout for an env without a success criterion)
    ground_truth: dict[str, np.ndarray] = field(default_factory=dict)  # key -> (T, D) float32
    has_success: bool = True  # whether the env reported info["is_success"]

    @property
    def solved(self) -> bool:
        return bool(self.success.any())


def record_episode(env, policy: Callable[[dict], np.ndarray], seed: int) -> EpisodeRecord:
    """Roll ``policy`` from ``env.reset(seed=seed)`` until termination or truncation."""
    obs, info = env.reset(seed=seed)
    cams = [k for k in ("depth", "intrinsics", "extrinsics") if k in obs]
    rows: dict[str, list] = {k: [] for k in ("rgb", *cams, "proprio", "actions", "success")}
    truth: dict[str, list] = {}
    has_success = "is_success" in info
    done = False
    while not done:
        action = np.asarray(policy(obs), dtype=np.float32)
        for k in ("rgb", *cams, "proprio"):
            rows[k].append(obs[k])
        for k, v in ground_truth(env, info).items():
            truth.setdefault(k, []).append(v)
        obs, _, terminated, truncated, info = env.step(action)
        rows["actions"].append(action)
        rows["success"].append(bool(info.get("is_success", False)))
        has_success = has_success or "is_success" in info
        done = terminated or truncated
    arrays = {k: np.stack(v) for k, v in rows.items()}
    return EpisodeRecord(
        rgb=arrays["rgb"],
        depth=arrays["depth"].astype(np.float32) if "depth" in arrays else None,
        intrinsics=arrays["intrinsics"].astype(np.float32) if "intrinsics" in arrays else None,
        extrinsics=arrays["extrinsics"].astype(np.float32) if "extrinsics" in arrays else None,
        proprio=arrays["proprio"].astype(np.float32),
        actions=arrays["actions"],
        success=arrays["success"].astype(bool),
        ground_truth={k: np.stack(v) for k, v in truth.items()},
        has_success=has_success,
    )


# ---------------------------------------------------------------------------------------------
# Worker side: one environment and one writer per process, built once by the pool initializer.

_WORKER: dict = {}


def _writer_for(cfg: CollectConfig, env):
    from ..data.lerobot import LeRobotWriter

    obs_space = env.observation_space
    h, w = obs_space["rgb"].shape[:2]
    return LeRobotWriter(
        root=Path(cfg.out),
        fps=int(env.metadata.get("render_fps", 10)),
        robot_type=f"ivnext_{cfg.env.name}" if cfg.env.id is None else cfg.env.id,
        camera_keys=[SCENE_KEY],
        image_size=(h, w),
        action_dim=int(np.prod(env.action_space.shape)),
        state_dim=int(obs_space["proprio"].shape[0]),
    )


def _init_worker(cfg: CollectConfig) -> None:
    env = make_env(cfg.env)
    _WORKER.update(cfg=cfg, env=env, writer=_writer_for(cfg, env))


def _run_one(index: int) -> tuple[int, bool, int]:
    from ..data.lerobot import ground_truth_key

    cfg: CollectConfig = _WORKER["cfg"]
    env, writer = _WORKER["env"], _WORKER["writer"]
    seed = cfg.seed + index
    ep = record_episode(env, make_policy(env, cfg.policy, seed), seed)

    def per_camera(x):
        return {} if x is None else {SCENE_KEY: x}

    writer.write_episode(
        index,
        task=describe(env, cfg),
        frames={SCENE_KEY: ep.rgb},
        depth=per_camera(ep.depth),
        intrinsics=per_camera(ep.intrinsics),
        extrinsics=per_camera(ep.extrinsics),
        actions=ep.actions,
        states=ep.proprio,
        success=ep.success,
        extra={ground_truth_key(k): v for k, v in ep.ground_truth.items()},
    )
    return index, ep.solved, len(ep.actions)


def describe(env, cfg: CollectConfig) -> str:
    """The task text stored with each episode: the built-in task's, or the adapter's description."""
    adapter = _adapter(env)
    if cfg.env.id is not None and adapter is not None:
        return adapter.description
    return task_description(cfg.env.task) if cfg.env.id is None else f"gymnasium {cfg.env.id}"


def task_description(task: Task | str) -> str:
    return {
        Task.reach: "move the end effector to the goal marker",
        Task.push: "push the puck into the goal region",
        Task.reacher: "move the fingertip of the two-link arm to the target",
        Task.pusher: "push the object to the goal with the arm",
    }[Task(task)]


def validate(cfg: CollectConfig) -> tuple[object, bool]:
    """Everything that can refuse a run, on a throwaway env, before anything is written: the env is
    made (unknown id, missing package, no RGB or proprio source, non-Box actions), the writer accepts
    its spaces, and the policy is built and acts once with an action of the right shape. Returns the
    writer and whether the env has a success criterion."""
    env = make_env(cfg.env)
    try:
        writer = _writer_for(cfg, env)
        policy = make_policy(env, cfg.policy, cfg.seed)
        obs, info = env.reset(seed=cfg.seed)
        action = np.asarray(policy(obs), dtype=np.float32)
        if action.shape != env.action_space.shape:
            raise ValueError(f"policy {PolicyKind(cfg.policy.kind).value}"
                             f"{'' if cfg.policy.target is None else ' ' + cfg.policy.target} returned an action of "
                             f"shape {action.shape}; the env's action space is {env.action_space}")
        _, _, _, _, step_info = env.step(action)
        return writer, "is_success" in info or "is_success" in step_info
    finally:
        env.close()


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of ``path`` that does not exist yet (what ``mkdir(parents=True)`` creates)."""
    missing = None
    for p in (path, *path.parents):
        if p.exists():
            break
        missing = p
    return missing


@dataclass
class CollectSummary:
    out: str
    task: str  # the built-in task or the gymnasium id
    policy: str
    noise_std: float
    episodes: int
    written: int
    skipped: int
    success_rate: float | None  # fraction of the requested episodes solved at some step (None: no criterion)
    frames: int

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))


def collect(cfg: CollectConfig) -> CollectSummary:
    """Collect ``cfg.episodes`` episodes into ``cfg.out`` (LeRobot v2.1), resuming a partial run.

    Raises (before creating ``cfg.out``) ``ValueError`` / ``TypeError`` naming the problem when the
    env or the policy is refused (see ``validate``).
    """
    out = Path(cfg.out)
    writer, has_success = validate(cfg)
    created = _first_missing(out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _collect(cfg, out, writer, has_success)
    except BaseException:
        # A run that fails before any episode is complete leaves nothing behind that it made; with
        # complete episodes the folder stays, so that a re-run resumes.
        if created is not None and not any(writer.is_complete(i) for i in range(cfg.episodes)):
            shutil.rmtree(created, ignore_errors=True)
        raise


def _collect(cfg: CollectConfig, out: Path, writer, has_success: bool) -> CollectSummary:
    todo = [i for i in range(cfg.episodes) if cfg.overwrite or not writer.is_complete(i)]
    skipped = cfg.episodes - len(todo)
    if skipped:
        log.info("%d/%d episodes already complete in %s: skipping them", skipped, cfg.episodes, out)

    results: list[tuple[int, bool, int]] = []
    bar = tqdm(total=len(todo), desc=f"collect {cfg.env.name}", unit="ep", dynamic_ncols=True)
    if cfg.workers <= 0:
        _init_worker(cfg)
        try:
            for i in todo:
                results.append(_run_one(i))
                bar.update()
        finally:
            _WORKER.pop("env").close()
    elif todo:
        # spawn, not fork: EGL/OpenGL contexts and OpenMP pools do not survive fork safely.
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(min(cfg.workers, len(todo)), mp_context=ctx, initializer=_init_worker, initargs=(cfg,)) as pool:
            for fut in as_completed([pool.submit(_run_one, i) for i in todo]):
                results.append(fut.result())
                bar.update()
    bar.close()

    writer.finalize()
    # Success over every requested episode, including those kept from an earlier run.
    from ..data.lerobot import LeRobotDataset

    ds = LeRobotDataset(out)
    solved = [bool(ds.episode_table(i)["next.success"].any()) for i in range(cfg.episodes) if i in set(ds.episode_indices)]
    summary = CollectSummary(
        out=str(out),
        task=cfg.env.id or Task(cfg.env.task).value,
        policy=PolicyKind(cfg.policy.kind).value,
        noise_std=float(cfg.policy.noise_std),
        episodes=cfg.episodes,
        written=len(results),
        skipped=skipped,
        success_rate=float(np.mean(solved)) if solved and has_success else None,
        frames=sum(n for _, _, n in results),
    )
    summary.save(out / "collect_summary.json")
    return summary
