"""LeRobot layout: write/read round trip, parallel writers, killed writes, v3.0 conversion."""
from __future__ import annotations

import json
import multiprocessing as mp

import numpy as np
import pyarrow.parquet as pq
import pytest

from _data_helpers import CAM, FPS, H, W, episode_arrays, frame_ids, make_dataset, make_writer, write_episodes, write_then_die
from ivnext_world.data.lerobot import LeRobotDataset, convert_v21_to_v30
from ivnext_world.data.lerobot import layout as L
from ivnext_world.data.video_io import open_video, read_frames

LENGTHS = {0: 12, 1: 20, 2: 7}


@pytest.fixture(scope="module")
def v21(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("v21"), LENGTHS)


@pytest.fixture(scope="module")
def v30(v21, tmp_path_factory):
    # 3 episodes, 2 per file: file-000 holds episodes 0 and 1 back to back, file-001 episode 2.
    return convert_v21_to_v30(v21, tmp_path_factory.mktemp("v30") / "ds", episodes_per_file=2)


def decode_episode(ds: LeRobotDataset, ep: int) -> np.ndarray:
    path, start_s, end_s = ds.video_ref(ep, CAM)
    reader = open_video(path)
    first = round(start_s * ds.fps)
    assert round(end_s * ds.fps) - first == ds.episode_length(ep)
    return read_frames(reader, path, first + np.arange(ds.episode_length(ep)))


def test_round_trip_values_and_frames(v21):
    ds = LeRobotDataset(v21)
    assert (ds.version, ds.fps, ds.num_episodes, ds.num_frames) == ("v2.1", FPS, 3, sum(LENGTHS.values()))
    assert ds.camera_keys == [CAM]
    offset = 0
    for ep, t in LENGTHS.items():
        want = episode_arrays(ep, t)
        tab = ds.episode_table(ep)
        assert ds.episode_length(ep) == t and ds.task(ep) == want["task"]
        np.testing.assert_array_equal(tab["action"], want["actions"])
        np.testing.assert_array_equal(tab["observation.state"], want["states"])
        np.testing.assert_array_equal(tab["ground_truth.ee_pos"], want["extra"]["ground_truth.ee_pos"])
        np.testing.assert_array_equal(tab["camera.scene.intrinsics"].reshape(t, 3, 3), want["intrinsics"][CAM])
        np.testing.assert_array_equal(tab["camera.scene.extrinsics"].reshape(t, 4, 4), want["extrinsics"][CAM])
        np.testing.assert_array_equal(tab["next.success"], want["success"])
        assert tab["next.done"].tolist() == [False] * (t - 1) + [True]
        np.testing.assert_array_equal(tab["frame_index"], np.arange(t))
        np.testing.assert_allclose(tab["timestamp"], np.arange(t) / FPS, atol=1e-6)
        np.testing.assert_array_equal(tab["index"], offset + np.arange(t))  # global frame index
        assert (tab["episode_index"] == ep).all()
        depth = ds.depth(ep, CAM)
        assert depth.dtype == np.float32 and np.array_equal(depth, want["depth"][CAM])  # lossless
        frames = decode_episode(ds, ep)
        assert frames.shape == (t, H, W, 3)
        assert (frame_ids(frames) == np.arange(t)).all()
        # H.264 yuv420p at CRF 18 on this content measures ~1.9/255 mean absolute error.
        assert np.abs(frames.astype(np.float32) - want["frames"][CAM]).mean() < 3.0
        offset += t


def test_info_and_meta_files(v21):
    info = json.loads((v21 / "meta/info.json").read_text())
    assert info["codebase_version"] == "v2.1" and info["robot_type"] == "synthetic_arm"
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, 39, 2)
    assert (info["total_videos"], info["total_chunks"], info["chunks_size"], info["fps"]) == (3, 1, 1000, FPS)
    assert info["splits"] == {"train": "0:3"}
    assert info["data_path"] == "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
    assert info["video_path"] == "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
    f = info["features"]
    assert f["action"] == {"dtype": "float32", "shape": [3], "names": ["dx", "dy", "dz"]}
    assert f[CAM]["dtype"] == "video" and f[CAM]["shape"] == [H, W, 3] and f[CAM]["info"]["video.codec"] == "h264"
    k, e = f["camera.scene.intrinsics"], f["camera.scene.extrinsics"]
    assert k["shape"] == [9] and "pixel centres" in k["info"]["convention"] and k["info"]["camera"] == CAM
    assert "world-to-camera" in e["info"]["convention"] and e["info"]["camera"] == CAM
    assert f["ground_truth.ee_pos"]["shape"] == [3] and f["next.success"]["dtype"] == "bool"
    # LeRobot's conventions: "image" in a name means an image, observation.* means a policy input.
    assert [n for n in f if "image" in n] == [CAM]
    assert sorted(n for n in f if n.startswith("observation.")) == sorted([CAM, "observation.state"])
    # Depth is documented outside "features" (LeRobot's loader maps every feature to a column/video).
    depth = info["depth_features"]["observation.depth.scene"]
    assert depth["camera"] == CAM and depth["info"]["unit"] == "m" and "float32" in depth["info"]["storage"]
    assert info["depth_path"].format(episode_chunk=0, depth_key="observation.depth.scene", episode_index=2) == \
        "depth/chunk-000/observation.depth.scene/episode_000002.npz"
    tasks = [json.loads(x)["task"] for x in (v21 / "meta/tasks.jsonl").read_text().splitlines()]
    assert tasks == ["push the puck", "reach the goal"]
    eps = [json.loads(x) for x in (v21 / "meta/episodes.jsonl").read_text().splitlines()]
    assert [(e["episode_index"], e["length"]) for e in eps] == list(LENGTHS.items())
    stats = [json.loads(x) for x in (v21 / "meta/episodes_stats.jsonl").read_text().splitlines()]
    want = episode_arrays(1, LENGTHS[1])["actions"]
    np.testing.assert_allclose(stats[1]["stats"]["action"]["mean"], want.mean(0), rtol=1e-5)
    assert np.asarray(stats[1]["stats"][CAM]["mean"]).shape == (3, 1, 1)
    assert pq.read_table(v21 / "data/chunk-000/episode_000001.parquet")["task_index"].to_pylist() == [1] * 20


def test_parallel_writers_then_finalize(tmp_path):
    lengths = {0: 6, 1: 9, 2: 4, 3: 8, 4: 5}
    ctx = mp.get_context("spawn")  # what the collection command uses
    procs = [ctx.Process(target=write_episodes, args=(tmp_path, {e: lengths[e] for e in part})) for part in ([0, 2, 4], [1, 3])]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    writer = make_writer(tmp_path)
    assert all(writer.is_complete(e) for e in lengths)
    # Before finalize, workers leave the cross-episode columns unset.
    assert set(pq.read_table(writer.data_file(3))["index"].to_pylist()) == {-1}
    info = writer.finalize()
    assert (info["total_episodes"], info["total_frames"]) == (5, sum(lengths.values()))
    ds = LeRobotDataset(tmp_path)
    index = np.concatenate([ds.episode_table(e)["index"] for e in ds.episode_indices])
    np.testing.assert_array_equal(index, np.arange(sum(lengths.values())))
    tasks = {ds.task(e): ds.episode_table(e)["task_index"][0] for e in ds.episode_indices}
    assert tasks == {"push the puck": 0, "reach the goal": 1}
    assert writer.finalize() == info  # idempotent


def test_killed_write_is_not_complete_and_can_be_rewritten(tmp_path):
    write_episodes(tmp_path, {0: 6})
    writer = make_writer(tmp_path)
    ctx = mp.get_context("spawn")
    # Episode 1: killed after its video reached its final name (depth and parquet not written).
    # Episode 0: a *rewrite* killed after everything but the marker.
    for ep, after in ((1, 1), (0, 3)):
        p = ctx.Process(target=write_then_die, args=(tmp_path, ep, 6, after))
        p.start()
        p.join(60)
        assert p.exitcode == 3
        assert not writer.is_complete(ep)
    assert writer.video_file(1, CAM).exists()  # a final-named file exists, yet the episode is not complete
    assert list(tmp_path.rglob(".*.tmp"))
    with pytest.warns(UserWarning, match=r"episodes \[0, 1\]"):
        info = writer.finalize()
    assert info["total_episodes"] == 0
    write_episodes(tmp_path, {0: 6, 1: 5})
    assert writer.is_complete(0) and writer.is_complete(1)
    assert not list(tmp_path.rglob(".*.tmp"))  # stale temporaries of these episodes are cleaned up
    assert writer.finalize()["total_frames"] == 11


def test_damaged_file_after_completion_is_detected(tmp_path):
    write_episodes(tmp_path, {0: 5})
    writer = make_writer(tmp_path)
    video = writer.video_file(0, CAM)
    video.write_bytes(video.read_bytes()[:100])
    assert not writer.is_complete(0)


def test_writer_rejects_bad_shapes(tmp_path):
    writer = make_writer(tmp_path)
    args = episode_arrays(0, 5)
    with pytest.raises(ValueError, match="actions"):
        writer.write_episode(0, **{**args, "actions": args["actions"][:4]})
    with pytest.raises(ValueError, match=r"frames\[observation.images.scene\]"):
        writer.write_episode(0, **{**args, "frames": {CAM: args["frames"][CAM][:, :32]}})
    with pytest.raises(ValueError, match="even"):
        type(writer)(tmp_path, 10, "x", [CAM], (63, 64), 3, 5)


def test_v30_matches_v21(v21, v30):
    a, b = LeRobotDataset(v21), LeRobotDataset(v30)
    assert b.version == "v3.0" and (b.num_episodes, b.num_frames, b.fps) == (a.num_episodes, a.num_frames, a.fps)
    assert (v30 / "meta/tasks.parquet").exists() and (v30 / "meta/episodes/chunk-000/file-000.parquet").exists()
    assert sorted(p.name for p in (v30 / "videos" / CAM / "chunk-000").iterdir()) == ["file-000.mp4", "file-001.mp4"]
    refs = {ep: b.video_ref(ep, CAM) for ep in b.episode_indices}
    assert refs[0][0] == refs[1][0] != refs[2][0]  # episodes 0 and 1 share a file
    assert refs[1][1] == pytest.approx(LENGTHS[0] / FPS) and refs[2][1] == 0.0
    for ep in a.episode_indices:
        assert b.task(ep) == a.task(ep) and b.episode_length(ep) == a.episode_length(ep)
        ta, tb = a.episode_table(ep), b.episode_table(ep)
        assert ta.keys() == tb.keys()
        for k in ta:
            np.testing.assert_array_equal(ta[k], tb[k])
        np.testing.assert_array_equal(a.depth(ep, CAM), b.depth(ep, CAM))
        # Remuxed, not re-encoded: the episode's slice decodes to exactly the v2.1 frames.
        np.testing.assert_array_equal(decode_episode(a, ep), decode_episode(b, ep))


def test_v30_episode_metadata_columns(v30):
    cols = pq.read_table(v30 / "meta/episodes/chunk-000/file-000.parquet").column_names
    for name in ("episode_index", "tasks", "length", "dataset_from_index", "dataset_to_index", "data/chunk_index",
                 "data/file_index", f"videos/{CAM}/chunk_index", f"videos/{CAM}/file_index",
                 f"videos/{CAM}/from_timestamp", f"videos/{CAM}/to_timestamp", "stats/action/mean"):
        assert name in cols
    info = json.loads((v30 / "meta/info.json").read_text())
    assert info["data_path"] == L.V30_DATA_PATH and "total_chunks" not in info


def test_reader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="finalize"):
        LeRobotDataset(tmp_path)
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta/info.json").write_text(json.dumps({"codebase_version": "v2.0"}))
    with pytest.raises(ValueError, match=r"'v2.0' is not supported.*'v2.1' and 'v3.0'"):
        LeRobotDataset(tmp_path)


OLD_NAMES = {"camera.scene.intrinsics": f"{CAM}.intrinsics", "camera.scene.extrinsics": f"{CAM}.extrinsics",
             "ground_truth.ee_pos": "observation.ee_pos"}


def to_old_names(root, renames=OLD_NAMES):
    """Rewrite a v2.1 dataset in place with the column names our writer used before the rename."""
    for path in (root / "data").rglob("*.parquet"):
        table = pq.read_table(path)
        pq.write_table(table.rename_columns([renames.get(n, n) for n in table.column_names]), path)
    info = json.loads((root / "meta/info.json").read_text())
    info["features"] = {renames.get(k, k): v for k, v in info["features"].items()}
    (root / "meta/info.json").write_text(json.dumps(info))
    stats = [json.loads(x) for x in (root / "meta/episodes_stats.jsonl").read_text().splitlines()]
    for row in stats:
        row["stats"] = {renames.get(k, k): v for k, v in row["stats"].items()}
    (root / "meta/episodes_stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in stats))


@pytest.fixture(scope="module")
def v21_old(tmp_path_factory):
    root = make_dataset(tmp_path_factory.mktemp("v21_old"), {0: 6, 1: 5})
    to_old_names(root)
    return root


def test_old_column_names_still_load(v21_old, tmp_path):
    assert "observation.ee_pos" in pq.read_table(v21_old / "data/chunk-000/episode_000000.parquet").column_names
    ds = LeRobotDataset(v21_old)
    assert ds.renames == {v: k for k, v in OLD_NAMES.items()}
    assert set(OLD_NAMES) <= set(ds.features) and not set(OLD_NAMES.values()) & set(ds.features)
    want = episode_arrays(1, 5)
    tab = ds.episode_table(1)
    np.testing.assert_array_equal(tab["ground_truth.ee_pos"], want["extra"]["ground_truth.ee_pos"])
    np.testing.assert_array_equal(tab["camera.scene.intrinsics"].reshape(5, 3, 3), want["intrinsics"][CAM])
    # The trajectory loader finds the camera matrices under their old names too.
    from ivnext_world.data import TrajectoryDataset

    item = TrajectoryDataset(v21_old, window=3, stride=3, episodes=[1])[0]
    np.testing.assert_array_equal(item["extrinsics"].numpy(), want["extrinsics"][CAM][:3])
    # Converting an old dataset writes the current names (data, info and stats).
    out = convert_v21_to_v30(v21_old, tmp_path / "v30")
    assert "camera.scene.intrinsics" in pq.read_table(out / "data/chunk-000/file-000.parquet").column_names
    info = json.loads((out / "meta/info.json").read_text())
    assert "ground_truth.ee_pos" in info["features"] and f"{CAM}.intrinsics" not in info["features"]
    episodes = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet")
    assert "stats/camera.scene.extrinsics/mean" in episodes.column_names
    assert LeRobotDataset(out).renames == {}


def test_foreign_observation_columns_keep_their_names(tmp_path):
    # Someone else's dataset (no depth_features: not written by us) with an observation.ee_pos policy input.
    root = make_dataset(tmp_path, {0: 4})
    to_old_names(root)
    info = json.loads((root / "meta/info.json").read_text())
    del info["depth_features"]
    for key in OLD_NAMES.values():
        info["features"][key].pop("info", None)
    (root / "meta/info.json").write_text(json.dumps(info))
    ds = LeRobotDataset(root)
    assert ds.renames == {} and "observation.ee_pos" in ds.episode_table(0)


def test_writer_refuses_names_lerobot_would_misread(tmp_path):
    args = episode_arrays(0, 4)
    writer = type(make_writer(tmp_path))(tmp_path, FPS, "x", ["observation.image"], (H, W), 3, 5)
    cam = {k: {"observation.image": v[CAM]} for k, v in args.items() if isinstance(v, dict) and CAM in v}
    with pytest.raises(ValueError, match="camera.image.intrinsics.*contains 'image'"):
        writer.write_episode(0, **{**args, **cam})
    with pytest.raises(ValueError, match="extra\\['ground_truth.image_pos'\\].*'image'"):
        make_writer(tmp_path).write_episode(0, **{**args, "extra": {"ground_truth.image_pos": args["states"]}})
    with pytest.raises(ValueError, match="collide"):
        type(writer)(tmp_path, FPS, "x", [CAM, "scene"], (H, W), 3, 5)


def test_declared_depth_without_its_folder_reads_without_depth(v21, tmp_path):
    # What LeRobot's own v2.1 -> v3.0 converter leaves: our info.json, no depth/ folder.
    import shutil

    shutil.copytree(v21, tmp_path / "ds", ignore=shutil.ignore_patterns("depth"))
    with pytest.warns(UserWarning, match="declares depth.*is missing"):
        ds = LeRobotDataset(tmp_path / "ds")
    assert ds.depth_keys == {} and ds.depth(0, CAM) is None
    assert LeRobotDataset(v21).depth_keys == {CAM: "observation.depth.scene"}
