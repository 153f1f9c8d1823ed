"""Temporal classification benchmarks rendered from the built-in tasks: labels no single frame gives away.

SSv2 is the model. Two kinds, each with 8 balanced classes and one clip per LeRobot episode:

- ``arm8`` (default, "Reacher-Turn-8"): the two-link arm of ``ivnext/Reacher-v5`` turns its shoulder,
  its elbow or both, each counter-clockwise or clockwise (seen from above), at a random constant
  angular speed; the class is the pattern (``shoulder ccw``, ``elbow cw``, ``both ccw``,
  ``shoulder ccw, elbow cw``, ...). The target ball is a distractor at the env's random place.
- ``motion8`` ("Tabletop Motion-8"): the gantry fingertip of ``ivnext/Reach-v0`` slides in one of 8
  compass directions (``east`` = world +x, 45 degrees apart) at a random speed, angle jittered
  inside its bin; the goal marker is a distractor.

Why one frame does not tell the class (the design rule): the pose at the clip's *centre frame* is
drawn from one distribution shared by all classes (``arm8``: shoulder angle uniform on the circle,
elbow angle uniform in a range every clip fits in; ``motion8``: fingertip uniform in a square every
clip fits in), speeds and angles are random, the distractor comes from the env's reset, and the
motion is already at full speed in the first frame. Frames away from the centre carry a weak cue
(a clip ending near a limit is more likely to move toward it; the shoulder has no limit).
:func:`label_leak_check` measures both with simulator ground truth: a k-NN on everything that varies
within one frame (pose and distractor) against the true motion (an oracle).

Rendering is kinematic playback: the joints (or the fingertip) are set to the planned pose of each
frame and the scene is rendered, so every clip is exactly its plan. Frames are rendered at
``render_scale`` x ``image_size`` and cropped to the square around the reachable area (intrinsics
moved with the crop), so the moving parts fill more of the small frames.

Layout written to ``out`` (the loaders and ``ivnext-pretrain`` read it like any collection):

- a LeRobot v2.1 dataset (``meta/``, ``data/``, ``videos/``, depth) whose task string is the class
  name, with per-step columns ``label`` (class index), ``ground_truth.ee_pos``, ``ground_truth.goal_pos``
  and, for ``arm8``, ``observation.joint_angles``; ``action`` holds the planned per-frame motion;
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

DIRECTIONS = ("east", "northeast", "north", "northwest", "west", "southwest", "south", "southeast")
# (shoulder, elbow) turning directions per class; +1 = counter-clockwise seen from above (joint axis +z)
ARM_PATTERNS = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1))
ARM_CLASSES = ("shoulder ccw", "shoulder cw", "elbow ccw", "elbow cw", "both ccw", "both cw",
               "shoulder ccw, elbow cw", "shoulder cw, elbow ccw")
KINDS = {"arm8": ("reacher-turn8", "reacher", ARM_CLASSES), "motion8": ("tabletop-motion8", "reach", DIRECTIONS)}
ELBOW_LIMIT = 3.0  # rad, Reacher-v5's joint1 range
REACHER_REACH = 0.21  # m, upper arm + forearm to the fingertip centre
SCENE_KEY = "observation.images.scene"
SPLITS = ("train", "val", "test")


@dataclass
class TemporalBenchConfig:
    kind: str = "arm8"  # arm8 (Reacher arm turning patterns) | motion8 (fingertip motion directions)
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
    speed: List[float] = field(default_factory=lambda: [0.2, 0.45])  # motion8
    # arm8: joint speed in rad per frame (50 fps); a moving joint turns 0.9-1.8 rad over 16 frames
    angular_speed: List[float] = field(default_factory=lambda: [0.06, 0.12])
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
    joints: np.ndarray | None = None  # (T, 2) shoulder and elbow angles, rad (arm8)


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


def elbow_half_range(cfg: TemporalBenchConfig) -> float:
    """Half range of the elbow angle at the clip's centre: every clip stays 0.05 rad inside the joint limit."""
    half = ELBOW_LIMIT - 0.05 - max(cfg.angular_speed) * (cfg.frames - 1) / 2
    if half <= 0:
        raise ValueError(f"clips of {cfg.frames} frames at {max(cfg.angular_speed)} rad/frame do not fit the elbow's range")
    return half


def plan_arm_clip(cfg: TemporalBenchConfig, episode: int) -> tuple[int, np.ndarray, np.ndarray]:
    """``(label, omega (2,) rad/frame, centre (2,) rad)`` of ``arm8`` clip ``episode``: class ``episode % 8``;
    each moving joint turns at its own random speed; the centre pose is the same distribution for all
    classes (shoulder uniform on the circle, elbow uniform in :func:`elbow_half_range`)."""
    lo, hi = cfg.angular_speed
    if not 0 < lo <= hi:
        raise ValueError(f"angular_speed must satisfy 0 < min <= max, got {cfg.angular_speed}")
    label = episode % len(ARM_CLASSES)
    rng = np.random.default_rng([cfg.seed, episode, 23])
    omega = rng.uniform(lo, hi, size=2) * np.array(ARM_PATTERNS[label], float)
    centre = np.array([rng.uniform(-np.pi, np.pi), rng.uniform(-1, 1) * elbow_half_range(cfg)])
    return label, omega, centre


def render_arm_clip(env, episode: int, cfg: TemporalBenchConfig) -> Clip:
    """``arm8`` clip ``episode``: the Reacher env reset with ``cfg.seed + episode`` (target ball), then the
    arm posed at the planned angles of each frame and rendered through the env's camera adapter."""
    env.reset(seed=cfg.seed + episode)
    label, omega, centre = plan_arm_clip(cfg, episode)
    sim = env.unwrapped
    # The adapter's own observation and info functions: the same camera, proprio and body positions
    # as env.step, for a state we set ourselves.
    from envs.gym_adapters import GymAdapter

    adapter = env
    while not isinstance(adapter, GymAdapter):
        adapter = adapter.env
    observe = lambda: adapter.observe(sim._get_obs(), {})  # noqa: E731
    add_info = lambda info: adapter._add_info(sim._get_obs(), info)  # noqa: E731
    joints = [sim.model.joint(name) for name in ("joint0", "joint1")]  # Reacher's two actuated hinges
    qidx, vidx = [int(j.qposadr[0]) for j in joints], [int(j.dofadr[0]) for j in joints]
    rows: dict[str, list] = {k: [] for k in ("rgb", "depth", "intrinsics", "extrinsics", "proprio", "ee_pos", "goal_pos", "joints")}
    for t in range(cfg.frames):
        angles = centre + (t - (cfg.frames - 1) / 2) * omega
        qpos, qvel = sim.data.qpos.copy(), np.zeros(sim.model.nv)
        qpos[qidx], qvel[vidx] = angles, omega / sim.dt
        sim.set_state(qpos, qvel)
        obs, info = observe(), add_info({})
        for k in ("rgb", "depth", "intrinsics", "extrinsics", "proprio"):
            rows[k].append(obs[k])
        rows["ee_pos"].append(info["ee_pos"])
        rows["goal_pos"].append(info["goal_pos"])
        rows["joints"].append(angles)
    a = {k: np.stack(v).astype(np.float32) if k != "rgb" else np.stack(v) for k, v in rows.items()}
    clip = Clip(rgb=a["rgb"], depth=a["depth"], intrinsics=a["intrinsics"], extrinsics=a["extrinsics"], proprio=a["proprio"],
                actions=np.repeat(omega[None].astype(np.float32), cfg.frames, 0), ee_pos=a["ee_pos"], goal_pos=a["goal_pos"],
                label=label, joints=a["joints"])
    if cfg.render_scale > 1:  # the square around the arm's reach (the target may fall outside it)
        base = sim.data.xpos[sim.model.body("body0").id]
        window = workspace_window(clip.intrinsics[0], clip.extrinsics[0], clip.rgb.shape[1], REACHER_REACH + 0.02,
                                  float(base[2]))
        clip = crop_resize(clip, window, cfg.image_size)
    return clip


def make_temporal_bench(cfg: TemporalBenchConfig) -> dict:
    """Render (or complete) the benchmark in ``cfg.out``; returns the contents of ``benchmark.json``."""
    from ..data.lerobot import LeRobotDataset, LeRobotWriter
    from .collection import make_env

    if cfg.kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {cfg.kind!r}")
    if cfg.render_scale < 1:
        raise ValueError(f"render_scale must be >= 1, got {cfg.render_scale}")
    name, task, classes = KINDS[cfg.kind]
    render = render_arm_clip if cfg.kind == "arm8" else render_clip
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    splits = split_episodes(cfg)
    total = sum(len(v) for v in splits.values())
    env = make_env(task, cfg.image_size * cfg.render_scale, max_episode_steps=cfg.frames + 1)
    writer = LeRobotWriter(out, fps=int(env.metadata.get("render_fps", 25)), robot_type=f"ivnext_{task}_{name}",
                           camera_keys=[SCENE_KEY], image_size=(cfg.image_size, cfg.image_size), action_dim=2, state_dim=4)
    todo = [i for i in range(total) if cfg.overwrite or not writer.is_complete(i)]
    try:
        for i in tqdm(todo, desc=f"render {name}", unit="clip", dynamic_ncols=True):
            clip = render(env, i, cfg)
            extra = {"label": np.full(cfg.frames, clip.label, np.float32), "ground_truth.ee_pos": clip.ee_pos,
                     "ground_truth.goal_pos": clip.goal_pos}
            if clip.joints is not None:
                extra["observation.joint_angles"] = clip.joints
            writer.write_episode(
                i, task=classes[clip.label], frames={SCENE_KEY: clip.rgb}, depth={SCENE_KEY: clip.depth},
                intrinsics={SCENE_KEY: clip.intrinsics}, extrinsics={SCENE_KEY: clip.extrinsics}, actions=clip.actions,
                states=clip.proprio, success=np.zeros(cfg.frames, bool), extra=extra)
    finally:
        env.close()
    writer.finalize()
    ds = LeRobotDataset(out)
    (out / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
    for split, eps in splits.items():
        with open(out / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label"])
            for ep in eps:
                path, _, _ = ds.video_ref(ep, SCENE_KEY)
                w.writerow([path.relative_to(out).as_posix(), classes[int(ds.episode_table(ep)["label"][0])]])
    meta = {
        "name": name, "kind": cfg.kind, "classes": list(classes), "chance": 1 / len(classes), "config": asdict(cfg),
        "splits": splits, "manifests": {s: f"{s}.csv" for s in SPLITS}, "camera": SCENE_KEY,
        "leak_check": label_leak_check(out, splits),
    }
    from ..utils.io import atomic_write_text

    atomic_write_text(out / "benchmark.json", json.dumps(meta, indent=2))
    return meta


# ------------------------------------------------------------------------------ leak check
def ground_truth(root: str | Path, episodes: list[int]) -> dict[str, np.ndarray]:
    """Per clip: ``label (N,)``, fingertip ``ee (N, T, 2)`` and distractor ``goal (N, 2)`` xy in metres,
    and for ``arm8`` the joint angles ``joints (N, T, 2)`` (rad)."""
    from ..data.lerobot import LeRobotDataset

    ds = LeRobotDataset(root)
    tables = [ds.episode_table(ep) for ep in episodes]
    out = {
        "label": np.array([int(t["label"][0]) for t in tables]),
        "ee": np.stack([t["ground_truth.ee_pos"][:, :2] for t in tables]),
        "goal": np.stack([t["ground_truth.goal_pos"][0, :2] for t in tables]),
    }
    if "observation.joint_angles" in tables[0]:
        out["joints"] = np.stack([t["observation.joint_angles"] for t in tables])
    return out


def frame_features(gt: dict[str, np.ndarray], i: int) -> np.ndarray:
    """Everything that varies within frame ``i`` (the pose and the distractor): ``(N, F)``."""
    if "joints" in gt:
        q = gt["joints"][:, i]
        return np.stack([np.cos(q[:, 0]), np.sin(q[:, 0]), q[:, 1], gt["goal"][:, 0], gt["goal"][:, 1]], 1)
    return np.concatenate([gt["ee"][:, i], gt["goal"]], 1)


def true_motion(gt: dict[str, np.ndarray]) -> np.ndarray:
    """The oracle: the change of the pose over the clip, ``(N, 2)`` (joint angles for arm8, xy for motion8)."""
    pose = gt["joints"] if "joints" in gt else gt["ee"]
    return pose[:, -1] - pose[:, 0]


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

    ``centre_frame`` / ``first_frame``: everything that varies within one frame (:func:`frame_features`):
    near chance (1/8) means one frame does not tell the class. ``true_motion``: the pose change over
    the clip (an oracle, :func:`true_motion`): near 1 means the label is well defined.
    """
    if splits is None:
        splits = json.loads((Path(root) / "benchmark.json").read_text())["splits"]
    tr, te = ground_truth(root, splits["train"]), ground_truth(root, splits["test"])
    t = tr["ee"].shape[1]
    n_classes = int(max(tr["label"].max(), te["label"].max())) + 1
    return {
        "chance": 1 / n_classes,
        "centre_frame": knn_accuracy(frame_features(tr, t // 2), tr["label"], frame_features(te, t // 2), te["label"]),
        "first_frame": knn_accuracy(frame_features(tr, 0), tr["label"], frame_features(te, 0), te["label"]),
        "true_motion": knn_accuracy(true_motion(tr), tr["label"], true_motion(te), te["label"]),
        "test_clips": int(len(te["label"])),
    }
