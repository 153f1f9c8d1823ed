"""Decoder backends on real files: every codec users bring, rotated, tiny, odd-sized and partly corrupt.

The files come from :mod:`_codec_files` (PyAV's libx264, libx265, libsvtav1 and libvpx-vp9 encoders).
"""
from __future__ import annotations

import logging
import re
import shutil
import sys

import numpy as np
import pytest
import torch

import ivnext_world.data.video_io as vio
from _codec_files import DAMAGED_FROM, make_codec_files, reencode_in_subprocess
from _data_helpers import frame_ids, make_dataset
from ivnext_world.data import TrajectoryDataset, VideoClipDataset, VideoLoadError, VideoLoadWarning
from ivnext_world.data.failures import DECODE, UNREADABLE, BadInput
from ivnext_world.data.video_io import DECODERS, open_video, probe_video

# torchcodec is an optional extra (scripts/setup.sh installs it); without it the tests use the others.
_NO_TORCHCODEC = vio._backend_status("torchcodec")
TORCHCODEC = [] if _NO_TORCHCODEC else ["torchcodec"]
BACKENDS = ["decord", "pyav"] + TORCHCODEC
CLEAN = ["h264.mp4", "hevc.mp4", "av1.mp4", "vp9.webm", "rot90.mp4", "rot-90.mp4", "rot180.mp4", "tiny16.mp4",
         "odd97x61.mp4", "odd97x61_vp9.webm"]
# What decord 0.6.0 cannot do (measured): no AV1 decoder in its FFmpeg 4.1, a wrong frame buffer for
# 16-pixel-wide frames, and seeks that land on the wrong frame in x265's open GOPs.
DECORD_CANNOT = {"av1.mp4": "has no AV1 decoder", "tiny16.mp4": "mis-sizes 16x16 frames",
                 "hevc.mp4": "wrong frames on HEVC with B-frames"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("codecs")
    return root, make_codec_files(root)


@pytest.fixture
def fresh_state(monkeypatch, caplog):
    """Forget what this process learnt about decord, so fallbacks and their log lines happen again."""
    monkeypatch.setattr(vio, "_DECORD_CANNOT", set())
    monkeypatch.setattr(vio, "_LOGGED", set())
    caplog.set_level(logging.WARNING, logger="ivnext_world.data.video_io")
    return caplog


def _sequential(path, backend: str, n: int) -> np.ndarray:
    return open_video(path, backend).read(np.arange(n))


@pytest.mark.parametrize("backend", BACKENDS + ["auto"])
@pytest.mark.parametrize("name", CLEAN)
def test_random_access_equals_sequential_decode(files, name, backend):
    root, facts = files
    fact = facts[name]
    if backend == "decord" and name in DECORD_CANNOT:
        with pytest.raises(BadInput, match=re.escape(DECORD_CANNOT[name]) + ".*decoder='auto'") as err:
            _sequential(root / name, backend, fact["frames"])
        assert err.value.path == str(root / name)
        return
    reader = open_video(root / name, backend)
    n = len(reader)
    assert n == fact["frames"] and reader.info.shape == tuple(fact["shape"])
    seq = reader.read(np.arange(n))
    assert seq.shape == (n, *fact["shape"], 3) and seq.dtype == np.uint8
    if fact["ids"]:
        np.testing.assert_array_equal(frame_ids(seq), np.arange(n))  # upright, and frame i is frame i
    picks = np.array([n - 1, 3, n // 2, n // 2, 0, 1, n - 2])  # backwards, repeats, across keyframes
    np.testing.assert_array_equal(open_video(root / name, backend).read(picks), seq[picks])
    if backend == "auto":
        assert reader.backend == ("pyav" if name in DECORD_CANNOT else "decord")


@pytest.mark.parametrize("name", ["rot90.mp4", "rot-90.mp4", "rot180.mp4"])
def test_rotation_applied_the_same_by_every_backend(files, name):
    root, facts = files
    assert probe_video(root / name).rotation == facts[name]["rotation"]
    upright = _sequential(root / "upright.mp4", "pyav", 24).astype(np.float32)
    decoded = {b: _sequential(root / name, b, 24) for b in BACKENDS}
    for backend, frames in decoded.items():
        assert frames.shape == (24, 48, 64, 3), backend
        # Same picture as the never-rotated encode (lossy: two separate encodes, so not bit-equal).
        assert np.abs(frames - upright).mean() < 4.0, backend
    # decord and torchcodec rotate inside FFmpeg, PyAV's frames are turned here: same pixels.
    for backend in BACKENDS:
        np.testing.assert_array_equal(decoded[backend], decoded["pyav"])


def test_auto_falls_back_per_file_and_logs_once_per_reason(files, fresh_state, tmp_path):
    root, _ = files
    copies = [shutil.copy(root / "av1.mp4", tmp_path / f"av1_{i}.mp4") for i in range(3)]
    readers = [open_video(p) for p in copies]
    assert [r.backend for r in readers] == ["pyav"] * 3
    av1_lines = [r.getMessage() for r in fresh_state.records if "AV1" in r.getMessage()]
    assert len(av1_lines) == 1 and "av1_0.mp4" in av1_lines[0] and "using PyAV" in av1_lines[0]
    assert readers[1].tried == [("decord", "known not to handle files like this one")]  # not retried
    assert open_video(root / "h264.mp4").backend == "decord"  # other codecs keep decord
    # A second reason gets its own single line; the tiny file fails inside decord's read, not at open.
    for _ in range(2):
        reader = open_video(root / "tiny16.mp4")
        assert reader.read([0, 7]).shape == (2, 16, 16, 3) and reader.backend == "pyav"
    assert len([r for r in fresh_state.records if "16x16" in r.getMessage()]) == 1
    assert len(fresh_state.records) == 2


def test_silent_crop_is_detected(files, fresh_state, monkeypatch):
    """decord has been seen to return 96x60 frames for a 97x61 stream; the decord here does not, so
    its reader is wrapped to crop like that, and the size check must catch it."""
    import decord

    root, _ = files
    real = decord.VideoReader

    class Cropping(real):
        def get_batch(self, indices):
            frames = real.get_batch(self, indices).asnumpy()[:, :60, :96]
            return type("Batch", (), {"asnumpy": lambda _self: frames})()

    monkeypatch.setattr(decord, "VideoReader", Cropping)
    reader = open_video(root / "odd97x61.mp4")
    frames = reader.read([0, 5])
    assert frames.shape == (2, 61, 97, 3) and reader.backend == "pyav"
    np.testing.assert_array_equal(frame_ids(frames), [0, 5])
    assert [r.getMessage().count("returned 60x96x3 frames for a 61x97 stream") for r in fresh_state.records] == [1]
    with pytest.raises(BadInput, match="returned 60x96x3 frames for a 61x97 stream"):
        open_video(root / "odd97x61.mp4", "decord").read([0])


@pytest.mark.parametrize("backend", BACKENDS + ["auto"])
@pytest.mark.parametrize("name", ["truncated.mp4", "damaged.mp4"])
def test_partly_corrupt_file(files, name, backend):
    root, _ = files
    path = root / name
    clean = _sequential(root / "clean.mp4", "pyav", DAMAGED_FROM)
    if backend == "decord" and name == "truncated.mp4":  # decord reads the whole index at open and gives up
        with pytest.raises(BadInput, match="cannot open it") as err:
            open_video(path, backend)
        assert err.value.kind == UNREADABLE and err.value.path == str(path)
        return
    if backend != "decord":  # decord's decoder thread reads ahead into the damage, so it may fail earlier
        before = open_video(path, backend).read(np.arange(DAMAGED_FROM))
        np.testing.assert_array_equal(frame_ids(before), np.arange(DAMAGED_FROM))
        assert np.abs(before.astype(np.float32) - clean).max() <= 2  # same frames (FFmpeg builds differ by 1-2)
    for past in ([DAMAGED_FROM], [DAMAGED_FROM + 1, DAMAGED_FROM + 3], [2, DAMAGED_FROM + 2]):
        with pytest.raises(BadInput) as err:
            open_video(path, backend).read(past)
        assert err.value.kind == DECODE and err.value.path == str(path)
        assert "H.264 (h264)" in err.value.detail


def test_nothing_decodes_names_codec_and_fix(files, fresh_state, monkeypatch):
    root, _ = files
    # A damaged file: every backend tried, each one's reason, and the fix.
    with pytest.raises(BadInput) as err:
        open_video(root / "damaged.mp4").read(np.arange(DAMAGED_FROM + 2))
    msg = str(err.value)
    assert "damaged.mp4" in msg and "H.264 (h264) could not be decoded by any backend" in msg
    assert "PyAV: decoding frame 12 failed" in msg and "the file itself is damaged" in msg
    assert ("torchcodec: decoding failed" in msg) == bool(TORCHCODEC)
    # AV1 where the PyAV build lacks dav1d and torchcodec is absent (neither can be removed here, so
    # they are made to report that): the fix names the missing decoder.
    monkeypatch.setattr(vio, "_has_pyav_decoder", lambda codec: False)
    monkeypatch.setattr(vio, "_backend_status", lambda name: "not installed" if name == "torchcodec" else None)

    def no_av1(path, info):
        raise vio._BackendFailed(f"this build has no {vio._name(info.codec)} decoder")

    monkeypatch.setitem(vio._BACKENDS, "pyav", no_av1)
    with pytest.raises(BadInput) as err:
        open_video(root / "av1.mp4")
    assert err.value.kind == UNREADABLE
    assert re.search(r"AV1 \(av1\) could not be decoded by any backend \(decord: its FFmpeg 4.1 has no AV1 decoder; "
                     r"PyAV: this build has no AV1 decoder\); fix: install a PyAV build with a AV1 decoder .*dav1d.*"
                     r"install torchcodec", str(err.value))


def test_missing_torchcodec_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchcodec", None)  # as if not installed: importing it fails
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", None)
    with pytest.raises(ImportError, match="pip install 'ivnext_world\\[torchcodec\\]'"):
        VideoClipDataset("x.csv", decoder="torchcodec")


def test_decord_style_calls_still_work(files):
    root, _ = files
    reader = open_video(root / "av1.mp4")  # read by PyAV: the decord-style calls do not depend on decord
    batch = reader.get_batch([5, 2]).asnumpy()
    assert type(batch) is np.ndarray and reader.get_avg_fps() == 10.0 and reader[5].shape == (64, 64, 3)
    np.testing.assert_array_equal(frame_ids(batch), [5, 2])


def test_decoder_setting_is_validated():
    assert DECODERS == ("auto", "decord", "pyav", "torchcodec")
    with pytest.raises(ValueError, match="decoder must be one of"):
        open_video("x.mp4", "ffmpeg")


def test_clip_dataset_reads_every_codec(files):
    root, facts = files
    names = CLEAN + ["truncated.mp4"]
    (root / "all.csv").write_text("".join(f"{n},{i}\n" for i, n in enumerate(names)))
    with pytest.raises(ValueError, match="decoder must be one of"):
        VideoClipDataset(root / "all.csv", decoder="opencv")
    by_backend = {}
    for decoder in ["auto", "pyav"] + TORCHCODEC:
        ds = VideoClipDataset(root / "all.csv", num_frames=4, stride=2, train=False, decoder=decoder,
                              max_failure_fraction=None)
        got = []
        for i, name in enumerate(CLEAN):
            item = ds[i]
            assert item["path"].endswith(name) and item["video"].shape == (3, 4, *facts[name]["shape"])
            if facts[name]["ids"]:
                video = item["video"].permute(1, 0, 2, 3).mul(255).round().byte().numpy()
                np.testing.assert_array_equal(frame_ids(video), item["frame_indices"].numpy())
            got.append(item["video"])
        by_backend[decoder] = got
        # The truncated clip (12 whole frames and part of one) reaches into the damage: skipped, named,
        # and the next item returned; one that needs more frames than remain is too short.
        for num_frames, why in ((7, "decode error.*H.264"), (8, r"clip too short \(13 frames")):
            ds = VideoClipDataset(root / "all.csv", num_frames=num_frames, stride=2, train=False, decoder=decoder,
                                  max_failure_fraction=None)
            with pytest.warns(VideoLoadWarning, match="truncated.mp4: " + why):
                assert ds[len(names) - 1]["path"].endswith(CLEAN[0])
    for name, a, b in zip(CLEAN, by_backend["pyav"], by_backend.get("torchcodec", by_backend["auto"])):
        if name == "odd97x61_vp9.webm":  # odd-sized 4:2:0: FFmpeg versions upsample chroma differently
            assert (a - b).abs().mean() < 1 / 255
        else:
            assert torch.equal(a, b), name  # the same frames whichever library decodes them


TRAJ_CODECS = {"av1": "libsvtav1", "hevc": "libx265", "vp9": "libvpx-vp9"}


@pytest.fixture(scope="module")
def reencoded(tmp_path_factory):
    """A LeRobot v3.0 dataset (H.264), and copies with its videos re-encoded to AV1 (LeRobot's
    default), HEVC and VP9 (in the same .mp4 files)."""
    from ivnext_world.data import convert_v21_to_v30

    base = tmp_path_factory.mktemp("reencoded")
    h264 = convert_v21_to_v30(make_dataset(base / "v21", {0: 12, 1: 10}), base / "h264", episodes_per_file=2)
    roots = {"h264": h264}
    for name, encoder in TRAJ_CODECS.items():
        roots[name] = base / name
        shutil.copytree(h264, roots[name])
        videos = sorted(roots[name].glob("videos/**/*.mp4"))
        reencode_in_subprocess(videos, encoder)
        assert all(probe_video(v).codec == name for v in videos)
    return roots


@pytest.mark.parametrize("codec", list(TRAJ_CODECS))
def test_trajectory_dataset_reads_reencoded_videos(reencoded, codec):
    ref = TrajectoryDataset(reencoded["h264"], window=4, stride=3)
    for decoder in ["auto", "pyav"] + TORCHCODEC:
        ds = TrajectoryDataset(reencoded[codec], window=4, stride=3, decoder=decoder, on_error="raise")
        assert len(ds) == len(ref)
        for i in range(len(ds)):
            got, want = ds[i], ref[i]
            assert got["episode_index"] == want["episode_index"]
            np.testing.assert_array_equal(got["actions"].numpy(), want["actions"].numpy())
            np.testing.assert_array_equal(frame_ids(got["frames"].mul(255).numpy()), want["frame_index"].numpy())
            assert (got["frames"] - want["frames"]).abs().mean() < 0.03  # re-encoded: close, not equal
    if codec == "av1":
        with pytest.raises(VideoLoadError, match=r"AV1 \(av1\).*no AV1 decoder.*decoder='auto'"):
            TrajectoryDataset(reencoded[codec], window=4, decoder="decord", on_error="raise")[0]


def test_configs_pass_the_decoder(files, reencoded):
    from types import SimpleNamespace

    from ivnext_world.config import load_config
    from ivnext_world.pretrain.run import ClipDataConfig, build_clip_dataset
    from ivnext_world.probes.depth.train import DepthDataConfig, depth_dataset

    root, _ = files
    for name in ("pretrain", "world_model", "depth"):
        assert load_config(name, ["data.decoder=pyav"]).data.decoder == "pyav"
    (root / "one.csv").write_text("av1.mp4\n")
    clips = build_clip_dataset(ClipDataConfig(source=str(root / "one.csv"), decoder="pyav"),
                               SimpleNamespace(num_frames=4, img_size=32), train=False)
    assert clips.decoder == "pyav"
    depth = depth_dataset(DepthDataConfig(source=str(reencoded["av1"]), decoder="torchcodec" if TORCHCODEC else "pyav"),
                          [0], window=2, stride=2)
    assert depth.decoder == (TORCHCODEC or ["pyav"])[0] and depth[0]["frames"].shape == (2, 3, 64, 64)
