"""Clip-loading throughput: VideoClipDataset + DataLoader against a plain PyAV decode of the same frames.

    python bench/bench_loader.py                      # 32 synthetic 256x256 clips, 64 frames at 30 fps
    python bench/bench_loader.py --data /path/to/mp4s --workers 0 2 4

Every configuration decodes the same frames: dense sampling at eval (centred, deterministic), so the
PyAV baseline can decode exactly the frame indices the dataset picks. Each number is the best of
``--repeats`` full passes after one warm-up pass; DataLoader workers are persistent, so worker
start-up (a fixed cost per epoch, not per clip) is left out.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ivnext_world.data import VideoClipDataset, build_video_transform  # noqa: E402
from ivnext_world.data.sampling import sample_indices  # noqa: E402
from ivnext_world.data.video_io import encode_mp4, open_video  # noqa: E402


def make_clips(folder: Path, n: int, size: int, frames: int, fps: int) -> list[Path]:
    """Moving gradients and squares: enough texture that the codec does real work."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    paths = []
    for i in range(n):
        video = np.empty((frames, size, size, 3), np.uint8)
        for t in range(frames):
            video[t, ..., 0] = (xx + 3 * t + 11 * i) % 256
            video[t, ..., 1] = (yy * 2 + t) % 256
            video[t, ..., 2] = ((xx + yy) // 2 + 5 * i) % 256
            y, x = rng.integers(0, size - 48, 2)
            video[t, y : y + 48, x : x + 48] = rng.integers(0, 256, 3)
        paths.append(folder / f"clip_{i:03d}.mp4")
        encode_mp4(paths[-1], video, fps)
    return paths


def pyav_decode(path: Path, indices: np.ndarray) -> np.ndarray:
    """Decode from the start up to the last wanted frame with one thread; keep the wanted ones."""
    wanted, out = set(indices.tolist()), []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type, stream.codec_context.thread_count = "SLICE", 1
        for i, frame in enumerate(container.decode(stream)):
            if i in wanted:
                out.append(frame.to_ndarray(format="rgb24"))
            if i >= indices[-1]:
                break
    return np.stack(out)


def consume(iterable) -> None:
    """Drop results as they come, as a training loop would (holding them all adds page faults)."""
    for _ in iterable:
        pass


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, help="folder of .mp4 files (default: synthesise clips)")
    p.add_argument("--clips", type=int, default=32)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--frames", type=int, default=64, help="frames per synthetic clip")
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--num-frames", type=int, default=16, help="frames per sampled clip")
    p.add_argument("--stride", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--crop", type=int, default=224, help="output size of the train transform")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(1)  # one core per loader process, like the decoders

    with tempfile.TemporaryDirectory() as tmp:
        if args.data is None:
            t0 = time.perf_counter()
            paths = make_clips(Path(tmp), args.clips, args.size, args.frames, args.fps)
            print(f"synthesised {len(paths)} clips of {args.frames}x{args.size}x{args.size} in {time.perf_counter() - t0:.1f}s")
        else:
            paths = sorted(args.data.glob("*.mp4"))
        manifest = Path(tmp) / "manifest.csv"
        manifest.write_text("".join(f"{q}\n" for q in paths))
        common = dict(num_frames=args.num_frames, sampling="dense", stride=args.stride, train=False)
        plain = VideoClipDataset(manifest, **common)
        with_tf = VideoClipDataset(manifest, **common, transform=build_video_transform(True, args.crop, flip=True))

        # The same frame indices the dataset decodes (eval sampling is deterministic).
        index_of = {q: sample_indices(len(open_video(q)), args.num_frames, "dense", args.stride, False) for q in paths}
        n = len(paths)
        rows = [
            ("pyav, 1 process (baseline)", best_of(args.repeats, lambda: consume(pyav_decode(q, index_of[q]) for q in paths))),
            ("decord alone, 1 process, uint8", best_of(args.repeats, lambda: consume(
                open_video(q).get_batch(index_of[q].tolist()).asnumpy() for q in paths))),
        ]
        for workers in args.workers:
            for name, ds in (("float (C,T,H,W), no transform", plain), (f"train transform ({args.crop})", with_tf)):
                # Steady state, as in a long epoch: workers started once and warmed up before timing.
                loader = DataLoader(ds, batch_size=args.batch_size, num_workers=workers, persistent_workers=workers > 0)
                consume(loader)
                rows.append((f"VideoClipDataset, {workers} workers, {name}", best_of(args.repeats, lambda: consume(loader))))
                del loader

    base = n / rows[0][1]
    print(f"\n{n} clips x {args.num_frames} frames (dense, stride {args.stride}), batch {args.batch_size}, "
          f"best of {args.repeats}, {torch.get_num_threads()} torch thread(s)")
    print(f"{'configuration':<62} {'clips/s':>9} {'frames/s':>9} {'vs pyav':>8}")
    for name, seconds in rows:
        rate = n / seconds
        print(f"{name:<62} {rate:>9.1f} {rate * args.num_frames:>9.0f} {rate / base:>7.2f}x")


if __name__ == "__main__":
    main()
