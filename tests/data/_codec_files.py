"""Real videos in the codecs and shapes users bring, written with PyAV's encoders (tiny, a few frames).

Run as a script in a subprocess (:func:`make_codec_files`, :func:`reencode_in_subprocess`): once
decord is imported, its bundled libvpx shadows PyAV's, and PyAV's VP9 encoder then fails to open
(``avcodec_open2("libvpx-vp9") returned 22``); a fresh process has no decord loaded.

``facts.json`` describes each file: frame count, upright (H, W), whether frames carry readable ids
(:func:`_data_helpers.frame_ids`), and for damaged files the first frame that cannot be decoded.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

T, FPS, GOP = 24, 10, 8
DAMAGED_FROM = 12  # first damaged frame of truncated.mp4 / damaged.mp4 (a P-frame inside the GOP 8..15)

# name -> (encoder, pixel format, encoder options); frames 64 wide so frame ids are readable.
CODECS = {
    "h264.mp4": ("libx264", "yuv420p", {"g": str(GOP), "bf": "3"}),  # B-frames: decode order != display order
    "hevc.mp4": ("libx265", "yuv420p", {"x265-params": f"keyint={GOP}:log-level=error"}),  # x265 default: open GOP
    "av1.mp4": ("libsvtav1", "yuv420p", {"g": str(GOP), "preset": "12"}),  # LeRobot's default codec
    "vp9.webm": ("libvpx-vp9", "yuv420p", {"g": str(GOP), "deadline": "realtime", "cpu-used": "8"}),
}


def _encode(path: Path, frames: np.ndarray, codec: str, pix_fmt: str, options: dict, rotation: int = 0,
            faststart: bool = False) -> None:
    import av

    container_options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), mode="w", options=container_options) as out:
        stream = out.add_stream(codec, rate=FPS)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt, stream.options = pix_fmt, dict(options)
        if rotation:
            stream.set_display_rotation(rotation)  # display matrix: players turn the picture by this much
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        out.mux(stream.encode())


def _packets(path: Path) -> list[tuple[int, int, int]]:
    """(pts, byte position, size) of every video packet, in presentation order."""
    import av

    with av.open(str(path)) as c:
        rows = [(p.pts, p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.pts is not None]
    return sorted(rows)


def write_codec_files(root: Path) -> dict:
    from _data_helpers import synthetic_frames

    assert "decord" not in sys.modules, "run in a fresh process: decord's libvpx breaks PyAV's VP9 encoder"
    root.mkdir(parents=True, exist_ok=True)
    facts: dict[str, dict] = {}
    frames = synthetic_frames(T, 64, 64)
    for name, (codec, pix, opts) in CODECS.items():
        _encode(root / name, frames, codec, pix, opts)
        facts[name] = {"frames": T, "shape": [64, 64], "ids": True, "codec": name.split(".")[0]}
    # Rotated: the upright picture is 48x64 (ids readable); the file stores it turned the other way and
    # says so in its display matrix, as phones do.
    upright = synthetic_frames(T, 48, 64, seed=1)
    _encode(root / "upright.mp4", upright, "libx264", "yuv420p", {"g": str(GOP), "bf": "0"})
    facts["upright.mp4"] = {"frames": T, "shape": [48, 64], "ids": True, "codec": "h264"}
    for deg in (90, -90, 180):
        stored = np.rot90(upright, -deg // 90, axes=(1, 2))
        _encode(root / f"rot{deg}.mp4", stored, "libx264", "yuv420p", {"g": str(GOP), "bf": "0"}, rotation=deg)
        facts[f"rot{deg}.mp4"] = {"frames": T, "shape": [48, 64], "ids": True, "codec": "h264", "rotation": deg}
    # Sizes decord gets wrong, and an odd size (4:4:4, since 4:2:0 H.264 needs even sides).
    tiny = np.ascontiguousarray(synthetic_frames(8, 64, 64)[:, ::4, ::4])  # 16x16
    _encode(root / "tiny16.mp4", tiny, "libx264", "yuv420p", {"g": "4"})
    facts["tiny16.mp4"] = {"frames": 8, "shape": [16, 16], "ids": False, "codec": "h264"}
    odd = synthetic_frames(8, 61, 97)
    _encode(root / "odd97x61.mp4", odd, "libx264", "yuv444p", {"g": "4"})
    facts["odd97x61.mp4"] = {"frames": 8, "shape": [61, 97], "ids": True, "codec": "h264"}
    _encode(root / "odd97x61_vp9.webm", odd, "libvpx-vp9", "yuv420p", {"g": "4", "deadline": "realtime", "cpu-used": "8"})
    facts["odd97x61_vp9.webm"] = {"frames": 8, "shape": [61, 97], "ids": True, "codec": "vp9"}
    # Partly corrupt. truncated.mp4: index first (faststart), file cut inside frame 12's data.
    # damaged.mp4: frame 12's bytes overwritten with garbage; the rest of the file is intact.
    plain = {"g": str(GOP), "bf": "0"}
    _encode(root / "clean.mp4", frames, "libx264", "yuv420p", plain, faststart=True)
    facts["clean.mp4"] = {"frames": T, "shape": [64, 64], "ids": True, "codec": "h264"}
    data = (root / "clean.mp4").read_bytes()
    _, pos, size = _packets(root / "clean.mp4")[DAMAGED_FROM]
    (root / "truncated.mp4").write_bytes(data[: pos + size // 2])
    broken = bytearray(data)
    broken[pos:pos + size] = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes()
    (root / "damaged.mp4").write_bytes(bytes(broken))
    for name in ("truncated.mp4", "damaged.mp4"):
        facts[name] = {"frames": T, "shape": [64, 64], "ids": True, "codec": "h264", "damaged_from": DAMAGED_FROM}
    (root / "facts.json").write_text(json.dumps(facts, indent=1))
    return facts


def reencode(path: Path, codec: str = "libsvtav1") -> None:
    """Re-encode ``path`` in place with ``codec``, same frames and frame rate (timestamps t / fps)."""
    import av

    with av.open(str(path)) as src:
        stream = src.streams.video[0]
        frames = np.stack([f.to_ndarray(format="rgb24") for f in src.decode(stream)])
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    opts = {"g": str(GOP), "preset": "12"} if codec == "libsvtav1" else {"g": str(GOP)}
    _encode(tmp, frames, codec, "yuv420p", opts)
    tmp.replace(path)


def _run(*args: str) -> None:
    here = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(Path(__file__)), *args], cwd=here, env=env, capture_output=True,
                          text=True, timeout=300)
    if done.returncode:
        raise RuntimeError(f"{Path(__file__).name} {' '.join(args)} failed:\n{done.stderr[-3000:]}")


def make_codec_files(root: Path) -> dict:
    _run("files", str(root))
    return json.loads((root / "facts.json").read_text())


def reencode_in_subprocess(paths: list[Path], codec: str = "libsvtav1") -> None:
    _run("reencode", codec, *map(str, paths))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    if sys.argv[1] == "files":
        write_codec_files(Path(sys.argv[2]))
    else:
        for p in sys.argv[3:]:
            reencode(Path(p), sys.argv[2])
