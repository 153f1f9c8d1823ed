"""VideoClipDataset: manifests, sampling, fps-aware stride, workers, LeRobot sources, bad inputs."""
from __future__ import annotations

import json
import re
import shutil
from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from _data_helpers import CAM, frame_ids, make_dataset, write_video
from ivnext_world.data import VideoClipDataset, VideoLoadError, VideoLoadWarning, build_video_transform, convert_v21_to_v30
from ivnext_world.data.lerobot import LeRobotDataset


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Three good 48-frame 30 fps clips, named a/b/c, plus manifests in three formats."""
    root = tmp_path_factory.mktemp("clips")
    for i, name in enumerate("abc"):
        write_video(root / "videos" / f"{name}.mp4", 48, fps=30, seed=i)
    (root / "header.csv").write_text("path,label\nvideos/a.mp4,0\nvideos/b.mp4,1\nvideos/c.mp4,2\n")
    (root / "plain.csv").write_text(f"{root}/videos/a.mp4,5\nvideos/b.mp4\n\nvideos/c.mp4,7\n")
    rows = [{"path": "videos/a.mp4", "label": "walk"}, {"path": "videos/b.mp4", "label": "run"}, {"path": "videos/c.mp4"}]
    (root / "list.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_manifest_formats(clips):
    ds = VideoClipDataset(clips / "header.csv", num_frames=4, train=False)
    assert [it.label for it in ds.items] == [0, 1, 2] and all(it.path.is_file() for it in ds.items)
    ds = VideoClipDataset(clips / "plain.csv", num_frames=4, train=False)
    assert [it.label for it in ds.items] == [5, -1, 7] and all(it.path.is_file() for it in ds.items)
    ds = VideoClipDataset(clips / "list.jsonl", num_frames=4, train=False)
    assert ds.classes == ["run", "walk"] and [it.label for it in ds.items] == [1, 0, -1]
    item = ds[1]
    assert item["label"] == 0 and item["index"] == 1 and item["path"].endswith("b.mp4")
    assert item["video"].shape == (3, 4, 64, 64) and item["video"].dtype == torch.float32
    assert 0.0 <= item["video"].min() and item["video"].max() <= 1.0


def test_dense_sampling(clips):
    ds = VideoClipDataset(clips / "header.csv", num_frames=8, stride=3, sampling="dense", train=False)
    item = ds[0]
    idx = item["frame_indices"].numpy()
    span = 7 * 3 + 1
    np.testing.assert_array_equal(idx, (48 - span) // 2 + 3 * np.arange(8))  # centred at eval
    assert (frame_ids(item["video"].permute(1, 0, 2, 3).mul(255).numpy()) == idx).all()  # decoded the right frames
    torch.manual_seed(0)
    train = VideoClipDataset(clips / "header.csv", num_frames=8, stride=3, sampling="dense", train=True)
    starts = {int(train[0]["frame_indices"][0]) for _ in range(20)}
    assert len(starts) > 1 and max(starts) <= 48 - span
    assert all((np.diff(train[0]["frame_indices"].numpy()) == 3).all() for _ in range(3))


def test_segment_sampling(clips):
    ds = VideoClipDataset(clips / "header.csv", num_frames=8, sampling="segment", train=False)
    np.testing.assert_array_equal(ds[0]["frame_indices"].numpy(), 6 * np.arange(8) + 3)  # segment centres
    torch.manual_seed(0)
    train = VideoClipDataset(clips / "header.csv", num_frames=8, sampling="segment", train=True)
    draws = np.stack([train[0]["frame_indices"].numpy() for _ in range(20)])
    assert ((draws >= 6 * np.arange(8)) & (draws < 6 * np.arange(8) + 6)).all()  # one per segment
    assert len({tuple(d) for d in draws}) > 1


def test_fps_aware_stride(tmp_path):
    # The same 1.6 s of motion at 30 and at 60 fps; stride 2 at a 30 fps reference spans equal time.
    write_video(tmp_path / "slow.mp4", 48, fps=30)
    write_video(tmp_path / "fast.mp4", 96, fps=60)
    (tmp_path / "m.csv").write_text("slow.mp4\nfast.mp4\n")
    ds = VideoClipDataset(tmp_path / "m.csv", num_frames=8, stride=2, target_fps=30, train=False)
    slow, fast = ds[0]["frame_indices"].numpy(), ds[1]["frame_indices"].numpy()
    assert (np.diff(slow) == 2).all() and (np.diff(fast) == 4).all()
    np.testing.assert_array_equal(slow, (48 - 15) // 2 + 2 * np.arange(8))
    np.testing.assert_array_equal(fast, (96 - 29) // 2 + 4 * np.arange(8))
    plain = VideoClipDataset(tmp_path / "m.csv", num_frames=8, stride=2, train=False)
    assert (np.diff(plain[1]["frame_indices"].numpy()) == 2).all()  # without target_fps: file frames


def test_dataloader_workers(clips):
    ds = VideoClipDataset(clips / "header.csv", num_frames=4, stride=2, train=False)
    loader = DataLoader(ds, batch_size=2, num_workers=2, shuffle=False)
    batches = list(loader)
    assert [int(i) for b in batches for i in b["index"]] == [0, 1, 2]
    assert [int(x) for b in batches for x in b["label"]] == [0, 1, 2]
    single = torch.stack([ds[i]["video"] for i in range(3)])
    torch.testing.assert_close(torch.cat([b["video"] for b in batches]), single)


def test_train_and_eval_transforms(clips):
    train = VideoClipDataset(clips / "header.csv", num_frames=4, transform=build_video_transform(True, 32))
    assert train[0]["video"].shape == (3, 4, 32, 32)
    ev = build_video_transform(False, 32, crop_pct=0.5)
    # Constant colour: normalisation must give exactly (c / 255 - mean) / std per channel.
    rgb = torch.tensor([200, 100, 30], dtype=torch.uint8)
    out = ev(rgb.view(1, 3, 1, 1).expand(4, 3, 80, 120).clone())
    assert out.shape == (4, 3, 32, 32)
    want = (rgb.float() / 255 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(out.mean((0, 2, 3)), want, atol=1e-4, rtol=0)
    # One crop and one flip for all frames: identical frames stay identical.
    frame = torch.randint(0, 256, (1, 3, 48, 64), dtype=torch.uint8).expand(6, 3, 48, 64).clone()
    torch.manual_seed(1)
    y = build_video_transform(True, 24)(frame)
    assert torch.equal(y, y[:1].expand_as(y))


def test_lerobot_sources(tmp_path):
    v21 = make_dataset(tmp_path / "v21", {0: 12, 1: 20, 2: 9})
    v30 = convert_v21_to_v30(v21, tmp_path / "v30")
    for root in (v21, v30):
        ds = VideoClipDataset(root, num_frames=4, stride=2, train=False)
        assert len(ds) == 3
        for i, length in enumerate((12, 20, 9)):
            item = ds[i]
            idx = item["frame_indices"].numpy()
            np.testing.assert_array_equal(idx, (length - 7) // 2 + 2 * np.arange(4))
            # Indices count from the episode's first frame, also inside a shared v3.0 file.
            assert (frame_ids(item["video"].permute(1, 0, 2, 3).mul(255).numpy()) == idx).all()
    assert len(VideoClipDataset(v30, num_frames=4, episodes=[1])) == 1
    assert LeRobotDataset(v30).video_ref(2, CAM)[1] > 0


# ---------------------------------------------------------------------------------------------
# Bad inputs: each kind of broken file, under both policies.


@pytest.fixture
def broken(clips, tmp_path):
    """Manifest rows 0..7: good, missing, zero-byte, truncated, text, too short, malformed, good."""
    good = clips / "videos" / "a.mp4"
    shutil.copy(good, tmp_path / "good.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    data = good.read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.mp4").write_text("this is not a video\n" * 20)
    write_video(tmp_path / "short.mp4", 5, fps=30)
    shutil.copy(good, tmp_path / "good2.mp4")
    rows = ["good.mp4,0", "missing.mp4,1", "empty.mp4,2", "truncated.mp4,3", "text.mp4,4", "short.mp4,5",
            "a,b,c,d", "good2.mp4,7"]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "m.csv"


CASES = [(1, "missing.mp4", "missing file"), (2, "empty.mp4", "empty file"), (3, "truncated.mp4", "unreadable video"),
         (4, "text.mp4", "unreadable video"), (5, "short.mp4", "clip too short"), (6, "m.csv:7", "bad manifest row")]


@pytest.mark.parametrize("index,name,kind", CASES)
def test_bad_item_skipped(broken, index, name, kind):
    ds = VideoClipDataset(broken, num_frames=8, stride=2, train=False, max_failures=None, max_failure_fraction=None)
    with pytest.warns(VideoLoadWarning) as record:
        item = ds[index]
    assert re.search(re.escape(name) + ".*" + kind, str(record[0].message))  # names the file and reason
    assert item["path"].endswith("good2.mp4") and item["index"] == 7  # deterministic: next valid item
    assert ds.failures == Counter(k for i, _, k in CASES if i >= index)  # rows index..6 all failed on the way
    assert any(name in e.path for e in ds.failure_examples)
    before = dict(ds.failures)
    ds[index]  # remembered as bad: not retried, not counted again
    assert dict(ds.failures) == before


@pytest.mark.parametrize("index,name,kind", CASES)
def test_bad_item_raises(broken, index, name, kind):
    ds = VideoClipDataset(broken, num_frames=8, stride=2, train=False, on_error="raise")
    with pytest.raises(VideoLoadError, match=re.escape(name) + ".*" + kind):
        ds[index]


def test_short_clip_pad(broken):
    ds = VideoClipDataset(broken, num_frames=8, stride=2, train=False, short_clip="pad", on_error="raise")
    item = ds[5]
    np.testing.assert_array_equal(item["frame_indices"].numpy(), [0, 2, 4, 4, 4, 4, 4, 4])
    assert item["video"].shape == (3, 8, 64, 64)


def test_too_many_failures_names_examples(broken):
    ds = VideoClipDataset(broken, num_frames=8, stride=2, train=False, max_failures=2, max_failure_fraction=None)
    with pytest.warns(VideoLoadWarning):
        with pytest.raises(VideoLoadError, match=r"3 items failed.*max_failures=2.*missing.mp4.*empty.mp4"):
            ds[1]  # rows 1, 2, 3 fail in turn while looking for a valid replacement
    frac = VideoClipDataset(broken, num_frames=8, stride=2, train=False, max_failures=None, max_failure_fraction=0.2)
    with pytest.warns(VideoLoadWarning):
        with pytest.raises(VideoLoadError, match=r"2/8 items failed.*max_failure_fraction=0.2"):
            frac[1]


def test_failure_limit_applies_in_each_worker(broken):
    ds = VideoClipDataset(broken, num_frames=8, stride=2, train=False, max_failures=0, max_failure_fraction=None)
    batches = iter(DataLoader(ds, batch_size=1, num_workers=2))
    try:
        with pytest.raises(VideoLoadError, match="missing.mp4"):
            list(batches)  # the worker given row 1 stops at its first failure
    finally:
        # The re-raised worker error sits in a reference cycle with the iterator; left to the garbage
        # collector, torch's worker shutdown times out (~5 s per worker), so stop the workers now.
        batches._shutdown_workers()


def test_scan_reports_every_bad_item(broken):
    ds = VideoClipDataset(broken, num_frames=8, stride=2)
    bad = ds.scan()
    assert [(b.index, b.kind) for b in bad] == [(i, k) for i, _, k in CASES]
    assert not ds.failures  # scanning does not count as training-time failures
