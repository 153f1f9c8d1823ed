"""TrajectoryDataset: aligned windows over v2.1 and v3.0 folders, camera data, bad videos."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from _data_helpers import ACTION_DIM, CAM, STATE_DIM, H, W, episode_arrays, frame_ids, make_dataset, make_writer, synthetic_frames
from ivnext_world.data import TrajectoryDataset, VideoLoadError, VideoLoadWarning, convert_v21_to_v30
from ivnext_world.data.video_io import encode_mp4

LENGTHS = {0: 12, 1: 20, 2: 9}


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("traj")
    v21 = make_dataset(base / "v21", LENGTHS)
    return {"v2.1": v21, "v3.0": convert_v21_to_v30(v21, base / "v30", episodes_per_file=2)}


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_windows_are_aligned(roots, version):
    ds = TrajectoryDataset(roots[version], window=4, stride=3, frame_skip=2)
    span = 3 * 2 + 1
    assert len(ds) == sum(len(range(0, n - span + 1, 3)) for n in LENGTHS.values())
    for i in range(len(ds)):
        item = ds[i]
        ep, rows = item["episode_index"], item["frame_index"].numpy()
        assert ds.windows[i] == (ep, rows[0]) and (np.diff(rows) == 2).all()
        want = episode_arrays(ep, LENGTHS[ep])
        # Row r of every modality is step r of the episode.
        np.testing.assert_array_equal(item["actions"].numpy(), want["actions"][rows])
        np.testing.assert_array_equal(item["proprio"].numpy(), want["states"][rows])
        np.testing.assert_array_equal(item["depth"].numpy(), want["depth"][CAM][rows])
        np.testing.assert_array_equal(item["intrinsics"].numpy(), want["intrinsics"][CAM][rows])
        np.testing.assert_array_equal(item["extrinsics"].numpy(), want["extrinsics"][CAM][rows])
        assert (frame_ids(item["frames"].mul(255).numpy()) == rows).all()  # the decoded frames are rows' frames
    assert item["frames"].shape == (4, 3, H, W) and item["frames"].dtype == torch.float32
    assert item["actions"].shape == (4, ACTION_DIM) and item["proprio"].shape == (4, STATE_DIM)
    assert item["depth"].shape == (4, H, W) and item["intrinsics"].shape == (4, 3, 3) and item["extrinsics"].shape == (4, 4, 4)


def test_action_chunks_by_hand():
    from ivnext_world.data.trajectory import action_chunks

    acts = np.arange(10, dtype=np.float32).reshape(5, 2)  # step r's action = [2r, 2r + 1]
    np.testing.assert_array_equal(action_chunks(acts, np.array([0, 2]), 1), [[0, 1], [4, 5]])
    np.testing.assert_array_equal(action_chunks(acts, np.array([0, 2]), 2), [[0, 1, 2, 3], [4, 5, 6, 7]])
    # Past the last action the chunk repeats it (only a window's last frame reaches there).
    np.testing.assert_array_equal(action_chunks(acts, np.array([3]), 3), [[6, 7, 8, 9, 8, 9]])


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_chunked_actions_cover_every_skipped_step(roots, version):
    ds = TrajectoryDataset(roots[version], window=3, stride=2, frame_skip=3, chunk_actions=True)
    plain = TrajectoryDataset(roots[version], window=3, stride=2, frame_skip=3)
    assert len(ds) == len(plain)
    for i in range(len(ds)):
        item = ds[i]
        ep, rows = item["episode_index"], item["frame_index"].numpy()
        want = episode_arrays(ep, LENGTHS[ep])["actions"]
        assert item["actions"].shape == (3, 3 * ACTION_DIM)
        for t in range(2):  # between frames r_t and r_t + 3: actions r_t, r_t + 1, r_t + 2
            np.testing.assert_array_equal(item["actions"][t].numpy(), want[rows[t]:rows[t] + 3].reshape(-1))
        np.testing.assert_array_equal(item["actions"][:, :ACTION_DIM].numpy(), plain[i]["actions"].numpy())
        np.testing.assert_array_equal(item["proprio"].numpy(), plain[i]["proprio"].numpy())


def test_v30_items_equal_v21(roots):
    a, b = (TrajectoryDataset(roots[v], window=5, stride=4) for v in ("v2.1", "v3.0"))
    assert len(a) == len(b)
    for i in range(len(a)):
        x, y = a[i], b[i]
        assert x.keys() == y.keys()
        for k in x:
            assert torch.equal(torch.as_tensor(x[k]), torch.as_tensor(y[k])), k


def test_episode_subset_and_loader(roots):
    ds = TrajectoryDataset(roots["v3.0"], window=3, stride=5, episodes=[1, 2])
    assert {ep for ep, _ in ds.windows} == {1, 2}
    batch = next(iter(DataLoader(ds, batch_size=4, num_workers=2)))
    assert batch["frames"].shape == (4, 3, 3, H, W) and batch["actions"].shape == (4, 3, ACTION_DIM)
    with pytest.raises(IndexError, match=r"no episodes \[7\]"):
        TrajectoryDataset(roots["v2.1"], episodes=[7])
    with pytest.warns(UserWarning, match=r"episodes \[0, 2\] are shorter than one window"):
        assert {ep for ep, _ in TrajectoryDataset(roots["v2.1"], window=15).windows} == {1}


@pytest.fixture
def damaged(tmp_path):
    """Episode 1's video is re-encoded with 3 frames missing; episode 2's video is deleted."""
    root = make_dataset(tmp_path, {0: 8, 1: 10, 2: 8})
    writer = make_writer(root)
    encode_mp4(writer.video_file(1, CAM), synthetic_frames(7, seed=1), 10)
    writer.video_file(2, CAM).unlink()
    return root


def test_bad_videos_under_both_policies(damaged):
    ds = TrajectoryDataset(damaged, window=8, stride=8, max_failure_fraction=None)
    assert ds.windows == [(0, 0), (1, 0), (2, 0)]
    assert [(b.index, b.kind) for b in ds.scan()] == [(1, "frame count mismatch"), (2, "missing file")]
    with pytest.warns(VideoLoadWarning) as record:
        item = ds[1]
    assert item["episode_index"] == 0 and item["index"] == 0  # wrapped around to the next valid window
    messages = " ".join(str(w.message) for w in record)
    assert "episode_000001.mp4: frame count mismatch (video has 7 frames, metadata expects 10" in messages
    assert "episode_000002.mp4: missing file" in messages
    assert ds.failures == {"frame count mismatch": 1, "missing file": 1}
    strict = TrajectoryDataset(damaged, window=8, stride=8, on_error="raise")
    with pytest.raises(VideoLoadError, match=r"episode_000001.mp4: frame count mismatch"):
        strict[1]
    with pytest.raises(VideoLoadError, match=r"episode_000002.mp4: missing file"):
        strict[2]
    assert strict[0]["frames"].shape == (8, 3, H, W)
