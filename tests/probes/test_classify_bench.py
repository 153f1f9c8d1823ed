"""The temporal benchmark (Tabletop Motion-8): no single frame tells the class, the true motion does;
balanced classes, held-out test episodes, manifests that the probe reads like any dataset."""
import csv
import json

import numpy as np
import pytest
import torch

from ivnext_world.probes.classify import load_backbone, load_splits
from ivnext_world.sim.temporal_bench import (
    ARM_CLASSES, DIRECTIONS, KINDS, TemporalBenchConfig, centre_half_side, knn_accuracy, label_leak_check,
    make_temporal_bench, plan_arm_clip, plan_clip, split_episodes,
)


def planned(kind: str, n: int = 4000):
    """``(label, centre-frame pose, first-frame pose, true motion)`` of ``n`` planned clips (no rendering:
    rendering is kinematic playback of the plan, see test_rendered_clips_execute_the_plan)."""
    cfg = TemporalBenchConfig(kind=kind)
    if kind == "arm8":
        plans = [plan_arm_clip(cfg, i) for i in range(n)]
        omega, centre = np.stack([p[1] for p in plans]), np.stack([p[2] for p in plans])
        motion = omega * (cfg.frames - 1)

        def pose(q):  # what one frame shows of the arm: the shoulder angle on the circle, the elbow angle
            return np.stack([np.cos(q[:, 0]), np.sin(q[:, 0]), q[:, 1]], 1)
    else:
        half = centre_half_side(cfg)
        plans = [plan_clip(cfg, i, half) for i in range(n)]
        centre = np.stack([p[2] for p in plans])
        motion = np.stack([p[1] for p in plans]) * 0.02 * (cfg.frames - 1)  # metres over the clip

        def pose(q):
            return q
    label = np.array([p[0] for p in plans])
    return label, pose(centre), pose(centre - motion / 2), motion


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_single_frame_is_near_chance_while_the_true_motion_separates_the_classes(kind):
    """Over thousands of planned clips: the pose in the centre frame (everything one frame shows of the
    motion; the distractor is drawn independently by the env) predicts the class at chance, the pose
    change over the clip predicts it exactly."""
    label, centre, first, motion = planned(kind)
    assert np.bincount(label).tolist() == [500] * 8  # balanced
    tr, te = slice(0, 3000), slice(3000, None)
    single = knn_accuracy(centre[tr], label[tr], centre[te], label[te], k=25)
    oracle = knn_accuracy(motion[tr], label[tr], motion[te], label[te], k=25)
    assert abs(single - 1 / 8) < 0.04, single  # 1000 test clips: binomial sd ~0.01
    assert oracle > 0.99, oracle
    # frames away from the centre carry a weak cue near joint / workspace limits; it stays small
    assert knn_accuracy(first[tr], label[tr], first[te], label[te], k=25) < 0.3


@pytest.fixture(scope="module", params=sorted(KINDS))
def bench(request, tmp_path_factory):
    cfg = TemporalBenchConfig(kind=request.param, image_size=32, frames=8, train_per_class=2, val_per_class=1,
                              test_per_class=1, out=str(tmp_path_factory.mktemp("bench") / request.param))
    return cfg, make_temporal_bench(cfg)


def test_rendered_clips_execute_the_plan(bench):
    from ivnext_world.data import LeRobotDataset

    cfg, meta = bench
    ds = LeRobotDataset(cfg.out)
    classes = KINDS[cfg.kind][2]
    for ep in range(0, 32, 5):
        table = ds.episode_table(ep)
        if cfg.kind == "arm8":
            label, omega, centre = plan_arm_clip(cfg, ep)
            q = table["observation.joint_angles"]
            np.testing.assert_allclose(np.diff(q, axis=0), np.repeat(omega[None], len(q) - 1, 0), atol=1e-5)
            np.testing.assert_allclose(q.mean(0), centre, atol=1e-5)
            assert np.all(np.abs(q[:, 1]) < 3.0)  # the elbow stays inside its joint range
            assert np.array_equal(np.sign(omega), np.array(((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1))[label]))
        else:
            label, action, centre = plan_clip(cfg, ep, centre_half_side(cfg))
            ee = table["ground_truth.ee_pos"][:, :2]
            steps = np.diff(ee, axis=0)
            np.testing.assert_allclose(steps, np.repeat(action[None] * 0.02, len(steps), 0), atol=2e-4)  # constant velocity
            np.testing.assert_allclose(ee.mean(0), centre, atol=1e-3)  # the clip is centred where planned
            angle = np.degrees(np.arctan2(*(ee[-1] - ee[0])[::-1])) % 360
            assert min(abs(angle - 45 * label), 360 - abs(angle - 45 * label)) <= cfg.jitter_deg + 0.5
        assert int(table["label"][0]) == label and ds.task(ep) == classes[label]


def test_zoomed_frames_keep_the_camera_model():
    """Frames are cropped to the workspace and resized; the stored intrinsics move with them, so the
    fingertip's 3D position projects onto the orange fingertip in the stored frame."""
    from ivnext_world.sim.collection import make_env
    from ivnext_world.sim.temporal_bench import render_clip

    cfg = TemporalBenchConfig(kind="motion8", image_size=32, frames=8)  # motion8: an orange fingertip to find
    env = make_env("reach", cfg.image_size * cfg.render_scale, cfg.frames + 1)
    try:
        for ep in (0, 3):
            clip = render_clip(env, ep, cfg)
            assert clip.rgb.shape == (cfg.frames, 32, 32, 3) and clip.depth.shape == (cfg.frames, 32, 32)
            for t in (0, cfg.frames - 1):
                cam = clip.extrinsics[t] @ np.r_[clip.ee_pos[t], 1.0]
                uv = (clip.intrinsics[t] @ cam[:3])[:2] / (clip.intrinsics[t] @ cam[:3])[2]
                rgb = clip.rgb[t].astype(int)
                ys, xs = np.nonzero((rgb[..., 0] > 150) & (rgb[..., 1] < 130) & (rgb[..., 2] < 100))  # the orange tip
                assert len(xs) and np.hypot(xs.mean() - uv[0], ys.mean() - uv[1]) < 1.5, (uv, xs.mean(), ys.mean())
    finally:
        env.close()


def test_benchmark_files_are_balanced_held_out_and_readable_by_the_probe(bench):
    cfg, meta = bench
    root = meta["config"]["out"]
    names = list(ARM_CLASSES if cfg.kind == "arm8" else DIRECTIONS)
    splits = split_episodes(cfg)
    assert meta["splits"] == splits and not (set(splits["train"]) & set(splits["test"]))
    assert (json.loads(open(f"{root}/benchmark.json").read())["classes"]) == names
    rows = {s: list(csv.DictReader(open(f"{root}/{s}.csv"))) for s in ("train", "val", "test")}
    for s, per in (("train", 2), ("val", 1), ("test", 1)):
        assert sorted(r["label"] for r in rows[s]) == sorted(names * per)
    # the same labels through the manifest and through the LeRobot folder's label column / task strings
    by_manifest, classes = load_splits({"train": f"{root}/train.csv", "test": f"{root}/test.csv"}, f"{root}/classes.txt")
    by_column, _ = load_splits({"train": root, "test": root}, f"{root}/classes.txt", label_column="label",
                               episodes={"train": splits["train"], "test": splits["test"]})
    by_task, task_classes = load_splits({"train": root}, None, label_column="task_index", episodes={"train": splits["train"]})
    assert classes == names
    assert [it.label for it in by_manifest["test"].items] == [it.label for it in by_column["test"].items]
    assert [task_classes[it.label] for it in by_task["train"].items] == [classes[it.label] for it in by_manifest["train"].items]
    leak = label_leak_check(root)
    assert set(leak) == {"chance", "centre_frame", "first_frame", "true_motion", "test_clips"} and leak["test_clips"] == 8


def test_single_frame_backbone_sees_only_the_centre_frame():
    from ._classify_helpers import TINY_ENCODER

    bb = load_backbone("frame:random", num_frames=8, img_size=32, random_model=vars(TINY_ENCODER))
    video = torch.randn(2, 3, 8, 32, 32)
    other = video.clone()
    other[:, :, [0, 1, 2, 3, 5, 6, 7]] = torch.randn(2, 3, 7, 32, 32)  # every frame but the centre (index 4)
    assert torch.equal(bb(video), bb(other)) and bb(video).shape == (2, 4, 16)  # one tubelet: 2x2 tokens
    changed = video.clone()
    changed[:, :, 4] += 1
    assert not torch.allclose(bb(video), bb(changed))
    assert bb.name == "frame:random"
