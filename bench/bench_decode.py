"""Decode throughput per backend x codec against plain PyAV, and clip cost before / after ivnext-prepare-videos.

    python bench/bench_decode.py                        # 4 synthetic 360x640 videos per codec, 150 frames
    python bench/bench_decode.py --clips 8 --frames 300 --size 720x1280 --repeats 3

Part 1: for H.264, AV1, HEVC and VP9 files (1 s GOP at 30 fps, as cameras write), every backend reads
the same clips (``--num-frames`` frames ``--stride`` apart, ``--windows`` windows per file, a fresh
reader per clip as the datasets do). "plain PyAV" is what one writes without a frame index: decode
from the start of the file up to the clip's last frame, one thread. Ratios are against it, in this run.

Part 2: the same files through ``VideoClipDataset`` with the eval transform (16 frames at 224, the
pretraining input), before and after ``ivnext-prepare-videos --short-side 256 --gop 16``: ms per clip.

Files are written before decord is imported: once loaded, decord's bundled libvpx breaks PyAV's VP9
encoder in the same process.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CODECS = {  # name -> (encoder, file suffix, options): fast presets, the decoder's work is what is timed
    "H.264": ("libx264", ".mp4", {"preset": "veryfast"}),
    "AV1": ("libsvtav1", ".mp4", {"preset": "12"}),
    "HEVC": ("libx265", ".mp4", {"preset": "ultrafast", "x265-params": "log-level=error"}),
    "VP9": ("libvpx-vp9", ".webm", {"deadline": "realtime", "cpu-used": "8"}),
}


def synth_video(t: int, h: int, w: int, seed: int) -> np.ndarray:
    """Moving gradients, a moving textured square and mild noise: enough detail for real codec work."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    texture = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    video = np.empty((t, h, w, 3), np.uint8)
    for i in range(t):
        video[i, ..., 0] = (xx + 3 * i + 11 * seed) % 256
        video[i, ..., 1] = (yy * 2 + i) % 256
        video[i, ..., 2] = ((xx + yy) // 2 + 5 * seed) % 256
        y, x = (7 * i) % (h - 64), (11 * i + 31 * seed) % (w - 64)
        video[i, y:y + 64, x:x + 64] = texture
        video[i] = np.clip(video[i] + rng.integers(-6, 7, (h, w, 1)), 0, 255)
    return video


def encode(path: Path, video: np.ndarray, codec: str, options: dict, fps: int, gop: int) -> None:
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.height, stream.width = video.shape[1:3]
        stream.pix_fmt, stream.options = "yuv420p", {**options, "g": str(gop)}
        for frame in video:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())


def plain_pyav(path: Path, indices: np.ndarray) -> np.ndarray:
    """Decode from the start up to the last wanted frame with one thread; keep the wanted ones."""
    wanted, out = set(indices.tolist()), []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        for i, frame in enumerate(container.decode(stream)):
            if i in wanted:
                out.append(frame.to_ndarray(format="rgb24"))
            if i >= indices.max():
                break
    return np.stack(out)


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=4, help="videos per codec")
    p.add_argument("--frames", type=int, default=150, help="frames per video")
    p.add_argument("--size", default="360x640", help="HxW of the synthetic videos")
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--src-gop", type=int, default=30, help="keyframe interval of the source files (1 s at 30 fps)")
    p.add_argument("--num-frames", type=int, default=16)
    p.add_argument("--stride", type=int, default=4)
    p.add_argument("--windows", type=int, default=3, help="clips read per file, evenly spaced")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--short-side", type=int, default=256)
    p.add_argument("--gop", type=int, default=16)
    p.add_argument("--workers", type=int, default=2, help="ivnext-prepare-videos processes")
    p.add_argument("--backends", nargs="+", default=["decord", "pyav", "torchcodec", "auto"])
    args = p.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    if (args.num_frames - 1) * args.stride + 1 > args.frames:
        p.error(f"--frames {args.frames} is shorter than one clip of {args.num_frames} frames at stride {args.stride}")

    import torch

    torch.set_num_threads(1)  # one core per loader process, like the decoders
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files: dict[str, list[Path]] = {}
        t0 = time.perf_counter()
        for name, (codec, suffix, opts) in CODECS.items():
            files[name] = []
            for i in range(args.clips):
                path = tmp / "src" / f"{name.replace('.', '')}_{i}{suffix}"
                path.parent.mkdir(exist_ok=True)
                encode(path, synth_video(args.frames, h, w, i), codec, opts, args.fps, args.src_gop)
                files[name].append(path)
        print(f"wrote {args.clips} x {len(CODECS)} videos of {args.frames} frames {h}x{w} (GOP {args.src_gop}) "
              f"in {time.perf_counter() - t0:.0f}s")

        from ivnext_world.data.prepare import PrepareSettings, prepare_videos

        manifest = tmp / "src.csv"
        manifest.write_text("".join(f"src/{q.name}\n" for qs in files.values() for q in qs))
        t0 = time.perf_counter()
        report = prepare_videos(manifest, tmp / "prepared", PrepareSettings(args.short_side, args.gop),
                                workers=args.workers, progress=False)
        prep_s = time.perf_counter() - t0
        assert not report["failed"], report["failed"]

        from ivnext_world.data import VideoClipDataset, build_video_transform
        from ivnext_world.data.failures import BadInput
        from ivnext_world.data.video_io import _backend_status, open_video

        span = (args.num_frames - 1) * args.stride + 1
        starts = np.linspace(0, args.frames - span, args.windows).round().astype(int)
        windows = [s + args.stride * np.arange(args.num_frames) for s in starts]
        n_clips = args.clips * args.windows
        backends = [b for b in args.backends if b in ("decord", "pyav", "auto") or _backend_status(b) is None]
        print(f"\nPart 1: {n_clips} clips per codec ({args.num_frames} frames, stride {args.stride}, {h}x{w}), "
              f"best of {args.repeats}, one decoding thread")
        print(f"{'codec':<7} {'decoder':<20} {'clips/s':>8} {'ms/clip':>8} {'vs plain PyAV':>14}")
        for name, paths in files.items():
            rows = [("plain PyAV", lambda: [plain_pyav(q, ix) for q in paths for ix in windows])]
            rows += [(b, lambda b=b: [open_video(q, b).read(ix) for q in paths for ix in windows]) for b in backends]
            base = None
            for label, fn in rows:
                try:
                    fn()  # warm-up: imports, page cache
                except BadInput as err:  # decord: no AV1 decoder; HEVC with B-frames refused (wrong frames)
                    why = err.detail.split("could not be decoded (", 1)[-1].rsplit(");", 1)[0]
                    print(f"{name:<7} {label:<20} refused: {why}")
                    continue
                sec = best_of(args.repeats, fn)
                base = base or sec
                label = f"{label} ({open_video(paths[0], label).backend})" if label == "auto" else label
                print(f"{name:<7} {label:<20} {n_clips / sec:>8.1f} {1000 * sec / n_clips:>8.1f} {base / sec:>13.2f}x")

        print(f"\nPart 2: VideoClipDataset, eval transform, {args.num_frames}x224 clips (decoder auto), ms per clip")
        print(f"prepare: {len(report['failed']) + report['encoded']} videos -> short side {args.short_side}, GOP "
              f"{args.gop} in {prep_s:.1f}s with {args.workers} workers")
        tf = build_video_transform(False, 224)
        before = VideoClipDataset(manifest, num_frames=args.num_frames, stride=args.stride, train=False, transform=tf)
        after = VideoClipDataset(tmp / "prepared" / "src.csv", num_frames=args.num_frames, stride=args.stride,
                                 train=False, transform=tf)
        print(f"{'codec':<7} {'before ms':>10} {'after ms':>10} {'speed-up':>9}")
        for k, name in enumerate(files):
            idx = range(k * args.clips, (k + 1) * args.clips)
            ms = []
            for ds in (before, after):
                [ds[i] for i in idx]  # warm-up
                ms.append(1000 * best_of(args.repeats, lambda ds=ds: [ds[i] for i in idx]) / len(idx))
            print(f"{name:<7} {ms[0]:>10.1f} {ms[1]:>10.1f} {ms[0] / ms[1]:>8.2f}x")


if __name__ == "__main__":
    main()
