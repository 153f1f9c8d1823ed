"""Run a policy in a simulated task for N seeded episodes and store them as a LeRobot v2.1 dataset.

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
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from ..config.schema import CollectConfig, PolicyConfig, PolicyKind, Task

os.environ.setdefault("MUJOCO_GL", "egl")

log = logging.getLogger(__name__)

SCENE_KEY = "observation.images.scene"
# Simulator ground truth copied from `info` into the dataset: targets for probes, never model inputs.
GROUND_TRUTH_KEYS = ("ee_pos", "goal_pos", "object_pos")


def make_env(task: Task | str, image_size: int = 128, max_episode_steps: int | None = None):
    """Build a registered task with square ``image_size`` observations (see ``envs.TASKS``)."""
    import gymnasium as gym

    import envs

    task = Task(task)
    kwargs = {"width": image_size, "height": image_size}
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = max_episode_steps
    return gym.make(envs.TASKS[task.value], **kwargs)


def make_policy(env, cfg: PolicyConfig, seed: int) -> Callable[[dict], np.ndarray]:
    """A callable ``obs -> action`` for ``env``; its randomness is seeded by ``seed`` alone."""
    from envs.experts import ExpertPolicy, RandomPolicy

    rng = np.random.default_rng(seed)
    if cfg.kind == PolicyKind.random:
        return RandomPolicy(env, rng=rng)
    return ExpertPolicy(env, noise_std=cfg.noise_std, rng=rng)


@dataclass
class EpisodeRecord:
    """One episode as arrays, ``T`` = number of actions taken.

    Row ``t`` holds the observation the policy saw, the action it chose and whether the task was
    solved after that action (LeRobot's convention: the final observation is not stored).
    """

    rgb: np.ndarray  # (T, H, W, 3) uint8
    depth: np.ndarray  # (T, H, W) float32, metres
    intrinsics: np.ndarray  # (T, 3, 3) float32
    extrinsics: np.ndarray  # (T, 4, 4) float32, world-to-camera (OpenCV axes)
    proprio: np.ndarray  # (T, P) float32
    actions: np.ndarray  # (T, A) float32
    success: np.ndarray  # (T,) bool
    ground_truth: dict[str, np.ndarray] = field(default_factory=dict)  # key -> (T, 3) float32

    @property
    def solved(self) -> bool:
        return bool(self.success.any())


def record_episode(env, policy: Callable[[dict], np.ndarray], seed: int) -> EpisodeRecord:
    """Roll ``policy`` from ``env.reset(seed=seed)`` until termination or truncation."""
    obs, info = env.reset(seed=seed)
    rows: dict[str, list] = {k: [] for k in ("rgb", "depth", "intrinsics", "extrinsics", "proprio", "actions", "success")}
    truth: dict[str, list] = {k: [] for k in GROUND_TRUTH_KEYS if k in info}
    done = False
    while not done:
        action = np.asarray(policy(obs), dtype=np.float32)
        for k in ("rgb", "depth", "intrinsics", "extrinsics", "proprio"):
            rows[k].append(obs[k])
        for k in truth:
            truth[k].append(np.asarray(info[k], dtype=np.float32))
        obs, _, terminated, truncated, info = env.step(action)
        rows["actions"].append(action)
        rows["success"].append(bool(info.get("is_success", False)))
        done = terminated or truncated
    arrays = {k: np.stack(v) for k, v in rows.items()}
    return EpisodeRecord(
        rgb=arrays["rgb"],
        depth=arrays["depth"].astype(np.float32),
        intrinsics=arrays["intrinsics"].astype(np.float32),
        extrinsics=arrays["extrinsics"].astype(np.float32),
        proprio=arrays["proprio"].astype(np.float32),
        actions=arrays["actions"],
        success=arrays["success"].astype(bool),
        ground_truth={k: np.stack(v) for k, v in truth.items()},
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
        robot_type=f"ivnext_{Task(cfg.env.task).value}",
        camera_keys=[SCENE_KEY],
        image_size=(h, w),
        action_dim=int(np.prod(env.action_space.shape)),
        state_dim=int(obs_space["proprio"].shape[0]),
    )


def _init_worker(cfg: CollectConfig) -> None:
    env = make_env(cfg.env.task, cfg.env.image_size, cfg.env.max_episode_steps)
    _WORKER.update(cfg=cfg, env=env, writer=_writer_for(cfg, env))


def _run_one(index: int) -> tuple[int, bool, int]:
    from ..data.lerobot import ground_truth_key

    cfg: CollectConfig = _WORKER["cfg"]
    env, writer = _WORKER["env"], _WORKER["writer"]
    seed = cfg.seed + index
    ep = record_episode(env, make_policy(env, cfg.policy, seed), seed)
    writer.write_episode(
        index,
        task=task_description(cfg.env.task),
        frames={SCENE_KEY: ep.rgb},
        depth={SCENE_KEY: ep.depth},
        intrinsics={SCENE_KEY: ep.intrinsics},
        extrinsics={SCENE_KEY: ep.extrinsics},
        actions=ep.actions,
        states=ep.proprio,
        success=ep.success,
        extra={ground_truth_key(k): v for k, v in ep.ground_truth.items()},
    )
    return index, ep.solved, len(ep.actions)


def task_description(task: Task | str) -> str:
    return {
        Task.reach: "move the end effector to the goal marker",
        Task.push: "push the puck into the goal region",
        Task.reacher: "move the fingertip of the two-link arm to the target",
        Task.pusher: "push the object to the goal with the arm",
    }[Task(task)]


@dataclass
class CollectSummary:
    out: str
    task: str
    policy: str
    noise_std: float
    episodes: int
    written: int
    skipped: int
    success_rate: float | None  # fraction of the requested episodes solved at some step
    frames: int

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))


def collect(cfg: CollectConfig) -> CollectSummary:
    """Collect ``cfg.episodes`` episodes into ``cfg.out`` (LeRobot v2.1), resuming a partial run."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    # The writer reads nothing from the env but its spaces; a throwaway env gives them cheaply.
    probe_env = make_env(cfg.env.task, cfg.env.image_size, cfg.env.max_episode_steps)
    writer = _writer_for(cfg, probe_env)
    probe_env.close()

    todo = [i for i in range(cfg.episodes) if cfg.overwrite or not writer.is_complete(i)]
    skipped = cfg.episodes - len(todo)
    if skipped:
        log.info("%d/%d episodes already complete in %s: skipping them", skipped, cfg.episodes, out)

    results: list[tuple[int, bool, int]] = []
    bar = tqdm(total=len(todo), desc=f"collect {Task(cfg.env.task).value}", unit="ep", dynamic_ncols=True)
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
        task=Task(cfg.env.task).value,
        policy=PolicyKind(cfg.policy.kind).value,
        noise_std=float(cfg.policy.noise_std),
        episodes=cfg.episodes,
        written=len(results),
        skipped=skipped,
        success_rate=float(np.mean(solved)) if solved else None,
        frames=sum(n for _, _, n in results),
    )
    summary.save(out / "collect_summary.json")
    return summary
