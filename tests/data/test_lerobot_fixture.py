"""We read what LeRobot writes: fixtures made by lerobot's own recording API (``LeRobotDataset.create``,
``add_frame``, ``save_episode``, ``finalize``), v3.0 with AV1 (its default, libsvtav1) and with H.264.

tests/fixtures/lerobot/make_lerobot_fixture.py made them (GENERATED.json records the versions and the
command) and defines the written values as numpy functions, imported here: metadata, states and
actions must come back exactly; frames went through a lossy codec (LeRobot's CRF 30), so they are
checked by PSNR against the frames written, and against the neighbouring frame so a decoder that
returns the wrong frame fails.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from ivnext_world.data import TrajectoryDataset, VideoClipDataset
from ivnext_world.data.lerobot import LeRobotDataset

HERE = Path(__file__).resolve().parents[1] / "fixtures" / "lerobot"
_spec = importlib.util.spec_from_file_location("make_lerobot_fixture", HERE / "make_lerobot_fixture.py")
F = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(F)

# Measured with PyAV on these files: 37.0-38.8 dB (H.264), 37.3-40.6 dB (AV1); the neighbouring frame
# scores ~13 dB (the square moves 4 px per frame).
MIN_PSNR = 33.0
CODECS = [pytest.param("h264", id="h264"), pytest.param("av1", id="av1")]
DECODE = CODECS  # AV1 decodes through the per-file fallback to PyAV (decord 0.6 has no AV1 decoder)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def assert_frames(decoded: np.ndarray, ep: int, frame_indices) -> None:
    """(T, H, W, 3) uint8 frames decoded from episode ``ep`` are the written ``frame_indices``."""
    assert decoded.shape == (len(frame_indices), F.H, F.W, 3)
    for got, t in zip(decoded, frame_indices):
        score = psnr(got, F.frame(ep, t))
        assert score > MIN_PSNR, f"episode {ep} frame {t}: {score:.1f} dB"
        for other in (t - 1, t + 1):
            if 0 <= other < F.LENGTHS[ep]:
                assert psnr(got, F.frame(ep, other)) < score - 10, f"episode {ep} frame {t} looks like frame {other}"


def to_uint8(frames) -> np.ndarray:
    """float [0, 1] (T, C, H, W) -> uint8 (T, H, W, C)."""
    return (frames.numpy() * 255).round().clip(0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def test_fixture_was_made_by_lerobot():
    record = json.loads((HERE / "GENERATED.json").read_text())
    assert record["lerobot"] == "0.4.4" and "make_lerobot_fixture.py" in record["command"]
    for name, codec in (("av1", "av1"), ("h264", "h264")):
        info = json.loads((HERE / name / "meta/info.json").read_text())
        assert info["codebase_version"] == "v3.0" and info["features"][F.CAMERA]["info"]["video.codec"] == codec
    assert sum(p.stat().st_size for p in HERE.rglob("*") if p.is_file()) < 1_000_000


@pytest.mark.parametrize("codec", CODECS)
def test_metadata_states_actions_exact(codec):
    ds = LeRobotDataset(HERE / codec)
    assert (ds.version, ds.fps, ds.num_episodes, ds.num_frames) == ("v3.0", F.FPS, 2, sum(F.LENGTHS))
    assert ds.camera_keys == [F.CAMERA] and ds.depth_keys == {} and ds.renames == {}
    assert ds.features[F.CAMERA]["shape"] == [F.H, F.W, 3]
    for ep, length in enumerate(F.LENGTHS):
        assert ds.episode_length(ep) == length and ds.task(ep) == F.TASKS[ep]
        tab = ds.episode_table(ep)
        np.testing.assert_array_equal(tab["observation.state"], np.stack([F.state(ep, t) for t in range(length)]))
        np.testing.assert_array_equal(tab["action"], np.stack([F.action(ep, t) for t in range(length)]))
        np.testing.assert_array_equal(tab["frame_index"], np.arange(length))
        np.testing.assert_allclose(tab["timestamp"], np.arange(length) / F.FPS, atol=1e-6)
        assert (tab["episode_index"] == ep).all()
    # Both episodes share one mp4; the second starts where the first ends.
    (p0, s0, e0), (p1, s1, e1) = ds.video_ref(0, F.CAMERA), ds.video_ref(1, F.CAMERA)
    assert p0 == p1 and (s0, e0, s1, e1) == pytest.approx((0, 1.0, 1.0, 1.8))


@pytest.mark.parametrize("codec", DECODE)
def test_trajectory_dataset_frames(codec):
    ds = TrajectoryDataset(HERE / codec, window=4, stride=2, on_error="raise")
    assert len(ds) == 4 + 3  # windows starting at 0, 2, 4, 6 (10 frames) and 0, 2, 4 (8 frames)
    for i in range(len(ds)):
        item = ds[i]
        ep, rows = item["episode_index"], item["frame_index"].numpy()
        assert_frames(to_uint8(item["frames"]), ep, rows)
        np.testing.assert_array_equal(item["proprio"].numpy(), np.stack([F.state(ep, t) for t in rows]))
        np.testing.assert_array_equal(item["actions"].numpy(), np.stack([F.action(ep, t) for t in rows]))


@pytest.mark.parametrize("codec", DECODE)
def test_video_clip_dataset_frames(codec):
    ds = VideoClipDataset(HERE / codec, num_frames=4, stride=2, train=False, on_error="raise")
    assert len(ds) == 2  # one clip per (episode, camera)
    for ep in range(2):
        item = ds[ep]
        video = item["video"].permute(1, 0, 2, 3)  # (C, T, H, W) -> (T, C, H, W)
        assert_frames(to_uint8(video), ep, item["frame_indices"].tolist())
