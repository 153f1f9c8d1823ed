"""``ivnext-prepare-videos``: any codec in, H.264 with a short GOP out; new manifest, report, resume, atomic files."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

import ivnext_world.data.prepare as prep
from _codec_files import make_codec_files
from _data_helpers import frame_ids, make_dataset
from ivnext_world.data import VideoClipDataset, read_manifest
from ivnext_world.data.prepare import PrepareSettings, output_size, prepare_videos
from ivnext_world.data.video_io import open_video, probe_video

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("prep_src")
    make_codec_files(root)
    return root


def _keyframes(path: Path) -> list[int]:
    """Indices (presentation order) of the keyframes of ``path``."""
    with av.open(str(path)) as c:
        packets = sorted((p.pts, p.is_keyframe) for p in c.demux(c.streams.video[0]) if p.pts is not None)
    return [i for i, (_, key) in enumerate(packets) if key]


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "ivnext_world.cli.prepare_videos", *args], env=env, capture_output=True,
                          text=True, timeout=300)


def test_output_size():
    assert output_size(480, 640, 256) == (256, 342)  # aspect kept, even sides
    assert output_size(1920, 1080, 256) == (456, 256)  # portrait: 455.1 rounds to the even 456
    assert output_size(61, 97, 256) == (60, 96)  # never upscaled; odd sides rounded to even
    assert output_size(16, 16, 8) == (8, 8)


def test_prepare_manifest_cli(files, tmp_path):
    names = ["h264.mp4", "av1.mp4", "hevc.mp4", "vp9.webm", "rot90.mp4", "tiny16.mp4", "odd97x61.mp4"]
    rows = [f"{n},{'run' if i % 2 else 'walk'},note{i}" for i, n in enumerate(names)]
    rows += ["truncated.mp4,walk,t", "damaged.mp4,run,d", "missing.mp4,walk,m", ",run,no path"]
    (files / "m.csv").write_text("path,label,note\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    done = _cli(str(files / "m.csv"), "--short-side", "48", "--gop", "4", "--out", str(out), "--workers", "2",
                "--no-progress")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary == {"manifest": str(out / "m.csv"), "videos": 10, "encoded": 7, "already_done": 0,
                       "seconds": summary["seconds"], "failed": 3}
    assert "3 input(s) could not be decoded" in done.stderr
    # Undecodable inputs: listed with the reason, left out of the manifest, not fatal.
    report = json.loads((out / "report.json").read_text())
    reasons = {Path(f["path"]).name: f["reason"] for f in report["failed"]}
    assert set(reasons) == {"truncated.mp4", "damaged.mp4", "missing.mp4"} and reasons["missing.mp4"] == "no such file"
    assert "after 12 frames" in reasons["truncated.mp4"] and "after 12 frames" in reasons["damaged.mp4"]
    assert report["bad_rows"] == [",run,no path"]
    assert not list(out.rglob("*.tmp"))
    # The new manifest: same format (header, labels, other columns), outputs relative to it.
    lines = (out / "m.csv").read_text().splitlines()
    assert lines[0] == "path,label,note" and len(lines) == 1 + len(names)
    assert lines[4] == "videos/vp9.webm.mp4,run,note3"
    old, old_classes = read_manifest(files / "m.csv")
    new, new_classes = read_manifest(out / "m.csv")
    assert new_classes == old_classes and [it.label for it in new] == [it.label for it in old[: len(names)]]
    for item, name in zip(new, names):
        src = probe_video(files / name)
        info = probe_video(item.path)
        assert info.codec == "h264" and info.rotation == 0  # rotation baked in: upright pixels
        h, w = src.shape
        assert info.shape == output_size(h, w, 48)
        n = len(open_video(files / name))
        reader = open_video(item.path, "pyav")
        assert len(reader) == n and reader.fps == 10
        assert _keyframes(item.path) == list(range(0, n, 4))  # --gop 4: one keyframe every 4 frames
        if info.shape == src.shape and w >= 64:  # not resized: the 8-pixel id blocks stay readable (rot90)
            np.testing.assert_array_equal(frame_ids(reader.read(np.arange(n))), np.arange(n))
    ds = VideoClipDataset(out / "m.csv", num_frames=4, stride=2, train=False, on_error="raise")
    assert [ds[i]["video"].shape[2:] for i in range(len(ds))] == [probe_video(it.path).shape for it in new]


def test_prepare_keeps_frames_when_not_resized(files, tmp_path):
    """Short side above the input's: same size, frame i is still frame i, close to the source pixels."""
    (files / "k.jsonl").write_text("".join(json.dumps({"path": n, "label": i, "extra": [i]}) + "\n"
                                           for i, n in enumerate(["av1.mp4", "hevc.mp4", "rot-90.mp4"])) + "not json\n")
    report = prepare_videos(files / "k.jsonl", tmp_path / "o", PrepareSettings(short_side=256, gop=8), progress=False)
    assert report["encoded"] == 3 and report["bad_rows"] == ["not json"] and not report["failed"]
    rows = [json.loads(line) for line in (tmp_path / "o" / "k.jsonl").read_text().splitlines()]
    assert rows[2] == {"path": "videos/rot-90.mp4", "label": 2, "extra": [2]}
    for row in rows:
        src = open_video(files / Path(row["path"]).name, "pyav")
        dst = open_video(tmp_path / "o" / row["path"], "pyav")
        a, b = src.read(np.arange(len(src))), dst.read(np.arange(len(dst)))
        assert a.shape == b.shape
        np.testing.assert_array_equal(frame_ids(b), np.arange(len(b)))
        assert np.abs(a.astype(np.float32) - b).mean() < 3.0


def test_resume_and_atomic_outputs(files, tmp_path, monkeypatch):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for name, dest in (("h264.mp4", "a.mp4"), ("av1.mp4", "sub/b.mp4"), ("vp9.webm", "sub/c.webm")):
        shutil.copy(files / name, src / dest)
    out = tmp_path / "out"
    real = prep.encode_frames_mp4
    calls = []

    def dies_on_second_video(dest, frames, *args, **kwargs):
        calls.append(dest)
        if len(calls) == 2:  # killed half-way through the second file
            for i, _ in enumerate(frames):
                if i == 5:
                    raise KeyboardInterrupt
        return real(dest, frames, *args, **kwargs)

    monkeypatch.setattr(prep, "encode_frames_mp4", dies_on_second_video)
    with pytest.raises(KeyboardInterrupt):
        prepare_videos(src, out, PrepareSettings(short_side=32, gop=4), progress=False)
    first = out / "videos" / "a.mp4"
    assert first.is_file() and len(open_video(first)) == 24
    assert sorted(p.name for p in (out / "videos").rglob("*")) == ["a.mp4", "sub"]  # no half-written file, no temp
    mtime = first.stat().st_mtime_ns
    monkeypatch.setattr(prep, "encode_frames_mp4", real)
    report = prepare_videos(src, out, PrepareSettings(short_side=32, gop=4), progress=False)
    assert report["already_done"] == 1 and report["encoded"] == 2 and first.stat().st_mtime_ns == mtime
    assert (out / "manifest.csv").read_text() == "path\nvideos/a.mp4\nvideos/sub/b.mp4\nvideos/sub/c.webm.mp4\n"
    assert prepare_videos(src, out, PrepareSettings(short_side=32, gop=4), progress=False)["encoded"] == 0
    with pytest.raises(ValueError, match="prepared with .*short_side.*32.*use another --out"):
        prepare_videos(src, out, PrepareSettings(short_side=64, gop=4), progress=False)


def test_refuses_lerobot_folder_and_unknown_source(tmp_path):
    root = make_dataset(tmp_path / "ds", {0: 4})
    done = _cli(str(root), "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and "is a LeRobot dataset" in done.stderr
    (tmp_path / "list.txt").write_text("a.mp4\n")
    with pytest.raises(ValueError, match="give a .csv or .jsonl manifest or a folder"):
        prepare_videos(tmp_path / "list.txt", tmp_path / "o2")
