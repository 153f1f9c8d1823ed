"""uint8 clips through the workers, ImageNet normalisation on the device: the same numbers as the float path."""
from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2

from _data_helpers import make_dataset, write_video
from ivnext_world.data import TrajectoryDataset, VideoClipDataset, build_video_transform
from ivnext_world.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize_batch, normalize_pixels
from ivnext_world.train.data import SeededDataset

# Two transforms may differ only by the uint8 rounding of the resize: half a grey level, normalised.
ROUNDING = 0.5 / 255 / min(IMAGENET_STD) + 1e-6


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("uint8")
    for i in range(3):
        write_video(root / f"v{i}.mp4", 24, fps=30, seed=i, h=48, w=80)
    (root / "m.csv").write_text("".join(f"v{i}.mp4\n" for i in range(3)))
    return root / "m.csv"


def test_normalisation_equals_torchvision_bit_for_bit():
    x = torch.randint(0, 256, (2, 5, 3, 6, 7), dtype=torch.uint8)  # (B, T, C, H, W)
    ref = v2.Normalize(list(IMAGENET_MEAN), list(IMAGENET_STD))(v2.ToDtype(torch.float32, scale=True)(x))
    assert torch.equal(normalize_pixels(x, -3), ref)
    # (B, C, T, H, W): the channels elsewhere, the same numbers.
    assert torch.equal(normalize_pixels(x.transpose(1, 2).contiguous(), -4), ref.transpose(1, 2))


def test_normalize_pixels_rejects_bad_input():
    with pytest.raises(TypeError, match="expects uint8"):
        normalize_pixels(torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="expected 3 colour channels at dim -3 of \\(4, 4, 4\\), found 4"):
        normalize_pixels(torch.zeros(4, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match="output must be one of"):
        build_video_transform(True, 32, output="half")


def test_normalize_batch_touches_only_uint8_pixels():
    video = torch.randint(0, 256, (2, 3, 4, 8, 8), dtype=torch.uint8)  # (B, C, T, H, W)
    frames = torch.randint(0, 256, (2, 4, 3, 8, 8), dtype=torch.uint8)  # (B, T, C, H, W)
    other = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)  # e.g. a BC policy's own pixel input
    out = normalize_batch({"video": video, "frames": frames, "x": other, "label": torch.tensor([1, 2])})
    assert torch.equal(out["video"], normalize_pixels(video, 1)) and torch.equal(out["frames"], normalize_pixels(frames, 2))
    assert out["x"] is other and out["label"].dtype == torch.int64
    already = {"video": torch.randn(2, 3, 4, 8, 8)}  # a float transform ran in the workers: not normalised twice
    assert normalize_batch(already)["video"] is already["video"]
    assert normalize_batch((video, other))[0] is video  # not a dict: left alone


@pytest.mark.parametrize("train", [True, False])
def test_uint8_clips_match_the_float_pipeline(manifest, train):
    """VideoClipDataset items under the same key (same crop, flip, frames): uint8 + device normalisation
    == the float transform, up to the resize's uint8 rounding."""
    kw = dict(num_frames=4, stride=2, train=train)
    new = SeededDataset(VideoClipDataset(manifest, **kw, transform=build_video_transform(train, 32, output="uint8")), seed=3)
    old = SeededDataset(VideoClipDataset(manifest, **kw, transform=build_video_transform(train, 32)), seed=3)
    for key in [(0, 0), (0, 2), (1, 1), (5, 2)]:
        a, b = new[key], old[key]
        assert a["video"].dtype == torch.uint8 and a["video"].shape == (3, 4, 32, 32) and a["video"].is_contiguous()
        assert torch.equal(a["frame_indices"], b["frame_indices"])
        torch.testing.assert_close(normalize_pixels(a["video"], -4), b["video"], atol=ROUNDING, rtol=0)


def test_trajectory_windows_for_training_match_the_eval_path(tmp_path):
    """World-model training windows (uint8, normalised by the Trainer) get exactly what the latent cache,
    the probes and WorldModel.encode compute with the float transform: normalised once."""
    root = make_dataset(tmp_path / "traj", {0: 10})
    tf = dict(crop_pct=1.0, flip=False)
    u8 = TrajectoryDataset(root, window=4, transform=build_video_transform(False, 32, **tf, output="uint8"))
    fl = TrajectoryDataset(root, window=4, transform=build_video_transform(False, 32, **tf))
    for i in (0, 3):
        frames = u8[i]["frames"]  # (T, C, S, S)
        assert frames.dtype == torch.uint8 and frames.shape == (4, 3, 32, 32) and frames.is_contiguous()
        batch = normalize_batch({"frames": torch.stack([frames, frames])})  # what the Trainer does
        torch.testing.assert_close(batch["frames"][1], fl[i]["frames"], atol=ROUNDING, rtol=0)
