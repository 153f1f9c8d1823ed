"""Tabletop Motion-8: a temporal classification benchmark rendered from the built-in reach task.

SSv2 is the model: a label that no single frame can give away. Each clip shows the gantry
fingertip of ``ivnext/Reach-v0`` sliding at constant speed in one of 8 compass directions
(``east`` = world +x, ``north`` = world +y, 45 degrees apart); the goal marker sits at a random
place as a distractor. The class is the direction of motion, so it needs the order of the frames.

Why no single frame gives the label away (the benchmark's one design rule):

- the fingertip's position *at the clip's centre frame* is drawn uniformly from one square that is
  the same for every class (every clip fits in the workspace from any point of it), and the goal
  marker is drawn by the env's own reset, independently of the class;
- speed (fraction of the full step) and the exact angle (jitter inside the 45 degree bin) are
  random, so neither the path length nor the angle is a per-class constant;
- the fingertip already moves at the commanded velocity in the first frame (no servo lag), so the
  first step does not differ from the others.

Frames away from the centre do carry a weak cue: a clip that ends near the east edge is more likely
to move east. :func:`label_leak_check` measures it with the simulator's ground truth: a k-NN on
everything that varies in one frame (fingertip and goal positions) against the true motion.

Layout written to ``out`` (one clip = one LeRobot episode, so the loaders and ``ivnext-pretrain``
read it like any collection):

- a LeRobot v2.1 dataset (``meta/``, ``data/``, ``videos/``, depth) whose task string is the class
  name, with per-step columns ``label`` (class index) and ``observation.ee_pos`` / ``goal_pos``;
- ``train.csv``, ``val.csv``, ``test.csv``: ``path,label`` manifests (label = class name) over
  disjoint episodes (the test clips are held-out episodes), each class equally often;
- ``classes.txt``: the class names, one per line, in index order;
- ``benchmark.json``: the settings, the episode splits, chance level and the leak check.
"""
from __future__ import annotations

import csv
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List

import numpy as np
from tqdm.auto import tqdm

os.environ.setdefault("MUJOCO_GL", "egl")

log = logging.getLogger(__name__)

NAME = "tabletop-motion8"
DIRECTIONS = ("east", "northeast", "north", "northwest", "west", "southwest", "south", "southeast")
SCENE_KEY = "observation.images.scene"
SPLITS = ("train", "val", "test")


@dataclass
class TemporalBenchConfig:
    image_size: int = 64  # side of the stored square frames
    # Render at render_scale x image_size and keep the square around the workspace (the table area the
    # fingertip can reach), resized to image_size: the fixed camera shows much floor and wall, and the
    # fingertip is ~6 px wide in the zoomed frame instead of ~3 px. 1: the camera's full frame.
    render_scale: int = 2
    frames: int = 16  # frames per clip (25 fps: 0.64 s)
    train_per_class: int = 64
    val_per_class: int = 8
    test_per_class: int = 16
    # Fingertip speed in units of the env's full step (0.02 m per 40 ms step). Slow enough that a
    # clip's path (<= 0.135 m) is short next to the workspace (0.5 m), which keeps the off-centre
    # frames' position cue small; fast enough to move 5-11 px at 64 px.
    speed: List[float] = field(default_factory=lambda: [0.2, 0.45])
    jitter_deg: float = 10.0  # uniform angle jitter inside each 45 degree bin (+-22.5 would touch the next)
    seed: int = 0  # clip i is rendered from env seed ``seed + i`` and its own motion RNG
    overwrite: bool = False  # False: episodes already complete in ``out`` are kept
    out: str = "outputs/temporal_bench"


@dataclass
class Clip:
    rgb: np.ndarray  # (T, H, W, 3) uint8
    depth: np.ndarray  # (T, H, W) float32
    intrinsics: np.ndarray  # (T, 3, 3)
    extrinsics: np.ndarray  # (T, 4, 4)
    proprio: np.ndarray  # (T, 4)
    actions: np.ndarray  # (T, 2)
    ee_pos: np.ndarray  # (T, 3) fingertip, world metres
    goal_pos: np.ndarray  # (T, 3)
    label: int


def split_episodes(cfg: TemporalBenchConfig) -> dict[str, list[int]]:
    """Episode indices per split: train first, then val, then test (never shared)."""
    n = len(DIRECTIONS)
    sizes = [cfg.train_per_class * n, cfg.val_per_class * n, cfg.test_per_class * n]
    if min(sizes) <= 0:
        raise ValueError(f"every split needs at least one clip per class, got per-class counts "
                         f"train={cfg.train_per_class}, val={cfg.val_per_class}, test={cfg.test_per_class}")
    starts = np.cumsum([0] + sizes)
    return {s: list(range(int(starts[i]), int(starts[i + 1]))) for i, s in enumerate(SPLITS)}


def centre_half_side(cfg: TemporalBenchConfig, workspace: float = 0.25, max_step: float = 0.02, ee_radius: float = 0.02) -> float:
    """Half side of the square the centre-frame position is drawn from (the same for every class): the
    workspace minus the fingertip's radius (+5 mm) minus half the longest path, so no clip is clipped."""
    half = workspace - (ee_radius + 0.005) - max(cfg.speed) * max_step * (cfg.frames - 1) / 2
    if half <= 0:
        raise ValueError(f"clips of {cfg.frames} frames at speed {max(cfg.speed)} do not fit the workspace")
    return half


def plan_clip(cfg: TemporalBenchConfig, episode: int, half: float) -> tuple[int, np.ndarray, np.ndarray]:
    """``(label, action (2,), centre (2,))`` of clip ``episode``: class ``episode % 8``, a constant command
    of random speed and jittered angle, and the fingertip position at the clip's centre (uniform in the
    square ``[-half, half]^2``, the same square for every class)."""
    lo, hi = cfg.speed
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"speed must satisfy 0 < min <= max <= 1 (action units), got {cfg.speed}")
    label = episode % len(DIRECTIONS)
    rng = np.random.default_rng([cfg.seed, episode, 17])
    angle = np.deg2rad(45.0 * label + rng.uniform(-cfg.jitter_deg, cfg.jitter_deg))
    action = (rng.uniform(lo, hi) * np.array([np.cos(angle), np.sin(angle)])).astype(np.float32)
    return label, action, rng.uniform(-half, half, size=2)


def workspace_window(intrinsics: np.ndarray, extrinsics: np.ndarray, size: int, workspace: float, height: float,
                     margin: float = 0.06) -> tuple[int, int, int]:
    """``(x0, y0, side)``: the square (in pixels of a ``size`` frame) around the projection of the
    workspace square ``|x|, |y| <= workspace`` at ``height``, ``margin`` wider, kept inside the frame."""
    corners = np.array([[sx * workspace, sy * workspace, height, 1.0] for sx in (-1, 1) for sy in (-1, 1)])
    cam = (extrinsics @ corners.T)[:3]  # (3, 4) camera frame
    uv = (intrinsics @ cam)[:2] / (intrinsics @ cam)[2]  # (2, 4) pixel centres
    lo, hi = uv.min(1), uv.max(1)
    side = int(min(size, np.ceil((hi - lo).max() * (1 + margin))))
    x0, y0 = (np.clip(np.round((lo + hi) / 2 - side / 2), 0, size - side)).astype(int)
    return int(x0), int(y0), side


def crop_resize(clip: "Clip", window: tuple[int, int, int], out: int) -> "Clip":
    """Crop every frame to ``window`` and resize to ``out`` px: RGB with Pillow's antialiased bilinear
    filter, depth by nearest sample (no invented depths at edges), intrinsics moved and scaled to match."""
    from PIL import Image

    x0, y0, side = window
    s = out / side
    rgb = np.stack([np.asarray(Image.fromarray(f[y0:y0 + side, x0:x0 + side]).resize((out, out), Image.BILINEAR)) for f in clip.rgb])
    idx = np.minimum(((np.arange(out) + 0.5) / s).astype(int), side - 1)
    depth = clip.depth[:, y0 + idx[:, None], x0 + idx[None, :]]
    k = clip.intrinsics.copy()
    k[:, 0, 0] *= s
    k[:, 1, 1] *= s
    k[:, 0, 2] = (k[:, 0, 2] - x0 + 0.5) * s - 0.5  # pixel centres (OpenCV convention)
    k[:, 1, 2] = (k[:, 1, 2] - y0 + 0.5) * s - 0.5
    return Clip(**{**clip.__dict__, "rgb": rgb, "depth": depth.astype(np.float32), "intrinsics": k})


def render_clip(env, episode: int, cfg: TemporalBenchConfig) -> Clip:
    """Clip ``episode`` (see :func:`plan_clip`), the env reset with ``cfg.seed + episode`` (goal marker)."""
    env.reset(seed=cfg.seed + episode)  # random goal marker (the distractor)
    u = env.unwrapped
    label, action, centre = plan_clip(cfg, episode, centre_half_side(cfg, u.WORKSPACE, u.MAX_STEP, u._ee_radius))
    step = u.MAX_STEP * action.astype(np.float64)  # metres per env step
    start = centre - step * (cfg.frames - 1) / 2
    # Start already moving at the commanded velocity: the servo then holds it, so every step moves
    # the same distance and the first frame looks like any other.
    qpos, qvel = u.data.qpos.copy(), np.zeros(u.model.nv)
    qpos[u._ee_qpos] = start
    qvel[u._ee_qvel] = step / u.dt
    u.set_state(qpos, qvel)
    obs, info = u._get_obs(), u._get_info()
    rows: dict[str, list] = {k: [] for k in ("rgb", "depth", "intrinsics", "extrinsics", "proprio", "ee_pos", "goal_pos")}
    for t in range(cfg.frames):
        for k in ("rgb", "depth", "intrinsics", "extrinsics", "proprio"):
            rows[k].append(obs[k])
        rows["ee_pos"].append(info["ee_pos"])
        rows["goal_pos"].append(info["goal_pos"])
        if t < cfg.frames - 1:
            obs, _, _, _, info = env.step(action)
    a = {k: np.stack(v) for k, v in rows.items()}
    clip = Clip(rgb=a["rgb"], depth=a["depth"].astype(np.float32), intrinsics=a["intrinsics"].astype(np.float32),
                extrinsics=a["extrinsics"].astype(np.float32), proprio=a["proprio"].astype(np.float32),
                actions=np.repeat(action[None], cfg.frames, 0), ee_pos=a["ee_pos"].astype(np.float32),
                goal_pos=a["goal_pos"].astype(np.float32), label=label)
    if cfg.render_scale > 1:
        size = clip.rgb.shape[1]
        window = workspace_window(clip.intrinsics[0], clip.extrinsics[0], size, u.WORKSPACE, float(clip.ee_pos[0, 2]))
        clip = crop_resize(clip, window, cfg.image_size)
    return clip


def make_temporal_bench(cfg: TemporalBenchConfig) -> dict:
    """Render (or complete) the benchmark in ``cfg.out``; returns the contents of ``benchmark.json``."""
    from ..data.lerobot import LeRobotDataset, LeRobotWriter
    from .collection import make_env

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    splits = split_episodes(cfg)
    total = sum(len(v) for v in splits.values())
    if cfg.render_scale < 1:
        raise ValueError(f"render_scale must be >= 1, got {cfg.render_scale}")
    env = make_env("reach", cfg.image_size * cfg.render_scale, max_episode_steps=cfg.frames + 1)
    writer = LeRobotWriter(out, fps=int(env.metadata.get("render_fps", 25)), robot_type=f"ivnext_reach_{NAME}",
                           camera_keys=[SCENE_KEY], image_size=(cfg.image_size, cfg.image_size), action_dim=2, state_dim=4)
    todo = [i for i in range(total) if cfg.overwrite or not writer.is_complete(i)]
    try:
        for i in tqdm(todo, desc=f"render {NAME}", unit="clip", dynamic_ncols=True):
            clip = render_clip(env, i, cfg)
            writer.write_episode(
                i, task=DIRECTIONS[clip.label], frames={SCENE_KEY: clip.rgb}, depth={SCENE_KEY: clip.depth},
                intrinsics={SCENE_KEY: clip.intrinsics}, extrinsics={SCENE_KEY: clip.extrinsics}, actions=clip.actions,
                states=clip.proprio, success=np.zeros(cfg.frames, bool),
                extra={"label": np.full(cfg.frames, clip.label, np.float32), "observation.ee_pos": clip.ee_pos,
                       "observation.goal_pos": clip.goal_pos})
    finally:
        env.close()
    writer.finalize()
    ds = LeRobotDataset(out)
    (out / "classes.txt").write_text("".join(f"{c}\n" for c in DIRECTIONS))
    for split, eps in splits.items():
        with open(out / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label"])
            for ep in eps:
                path, _, _ = ds.video_ref(ep, SCENE_KEY)
                w.writerow([path.relative_to(out).as_posix(), DIRECTIONS[int(ds.episode_table(ep)["label"][0])]])
    meta = {
        "name": NAME, "classes": list(DIRECTIONS), "chance": 1 / len(DIRECTIONS), "config": asdict(cfg),
        "splits": splits, "manifests": {s: f"{s}.csv" for s in SPLITS}, "camera": SCENE_KEY,
        "leak_check": label_leak_check(out, splits),
    }
    from ..utils.io import atomic_write_text

    atomic_write_text(out / "benchmark.json", json.dumps(meta, indent=2))
    return meta


# ------------------------------------------------------------------------------ leak check
def ground_truth(root: str | Path, episodes: list[int]) -> dict[str, np.ndarray]:
    """Per clip: ``label (N,)``, fingertip ``ee (N, T, 2)`` and goal ``goal (N, 2)`` xy in metres."""
    from ..data.lerobot import LeRobotDataset

    ds = LeRobotDataset(root)
    tables = [ds.episode_table(ep) for ep in episodes]
    return {
        "label": np.array([int(t["label"][0]) for t in tables]),
        "ee": np.stack([t["observation.ee_pos"][:, :2] for t in tables]),
        "goal": np.stack([t["observation.goal_pos"][0, :2] for t in tables]),
    }


def knn_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, k: int = 7) -> float:
    """Test accuracy of a k-nearest-neighbour vote on standardised features: flexible enough to find
    any dependence of the label on a few numbers, without a model to tune."""
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-9
    a, b = (x_train - mu) / sd, (x_test - mu) / sd
    d = ((b[:, None, :] - a[None, :, :]) ** 2).sum(-1)  # (N_test, N_train)
    k = max(1, min(k, len(y_train) // (y_train.max() + 1)))  # at most one class's worth of neighbours
    nearest = np.argsort(d, axis=1)[:, :k]
    votes = y_train[nearest]
    pred = np.array([np.bincount(v, minlength=y_train.max() + 1).argmax() for v in votes])
    return float((pred == y_test).mean())


def label_leak_check(root: str | Path, splits: dict[str, list[int]] | None = None) -> dict:
    """k-NN (fit on train, scored on test) from simulator ground truth.

    ``centre_frame`` / ``first_frame``: everything that varies within one frame (fingertip xy and
    goal xy): near chance (1/8) means one frame does not tell the class. ``true_motion``: the
    fingertip's displacement over the clip (an oracle): near 1 means the label is well defined.
    """
    if splits is None:
        splits = json.loads((Path(root) / "benchmark.json").read_text())["splits"]
    tr, te = ground_truth(root, splits["train"]), ground_truth(root, splits["test"])
    t = tr["ee"].shape[1]

    def frame(gt, i):
        return np.concatenate([gt["ee"][:, i], gt["goal"]], 1)

    def motion(gt):
        return gt["ee"][:, -1] - gt["ee"][:, 0]

    return {
        "chance": 1 / len(DIRECTIONS),
        "centre_frame": knn_accuracy(frame(tr, t // 2), tr["label"], frame(te, t // 2), te["label"]),
        "first_frame": knn_accuracy(frame(tr, 0), tr["label"], frame(te, 0), te["label"]),
        "true_motion": knn_accuracy(motion(tr), tr["label"], motion(te), te["label"]),
        "test_clips": int(len(te["label"])),
    }
