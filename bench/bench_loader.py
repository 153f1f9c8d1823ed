"""Clip-loading throughput at 16x224: the uint8 training path against the float32 one, and plain PyAV.

    python bench/bench_loader.py                        # 24 synthetic 340x256 clips, GOP 10 (SPEC section 7)
    python bench/bench_loader.py --data /path/to/mp4s --workers 0 2 4 --step-time 0.45 --gpu-batch 32

What a training DataLoader does per clip: decode 16 frames (decord, one thread), the training transform
(one random resized crop and flip for the clip, to 224), the (C, T, H, W) layout, the batch collated in
the worker and handed to the main process through shared memory. The two paths differ in what crosses
that boundary: uint8 clips (``build_video_transform(..., output="uint8")``; the Trainer normalises on the
device) or float32 ImageNet-normalised clips (the transform's float output, 4x the bytes). The main
process only receives batches, as a GPU-bound training loop does; the normalisation the uint8 path
moves to the device is timed separately (on this CPU, where training would run it on the GPU).

Every configuration decodes the same frames: dense sampling at eval positions (centred, deterministic),
so the PyAV baseline decodes exactly the frame indices the dataset picks. DataLoader workers are
persistent and warmed up once, so worker start-up (a fixed cost, not per clip) is left out. The
configurations are timed round-robin, ``--repeats`` times, and each keeps its best pass: a shared
machine's load then hurts them alike. Two rates per row: clips/s (wall clock) and clips per CPU-second
(the CPU time of every process of the configuration: the main process and its workers), which is the
per-core rate and is what sizes the workers a GPU needs: ``batch / step time`` clips/s.
"""
from __future__ import annotations

import argparse
import math
import os
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
from ivnext_world.data.transforms import normalize_pixels  # noqa: E402
from ivnext_world.data.video_io import encode_mp4, open_video, read_frames  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")


def make_clips(folder: Path, n: int, width: int, height: int, frames: int, fps: int) -> list[Path]:
    """Moving gradients and squares: enough texture that the codec does real work (GOP 10, CRF 18)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width]
    paths = []
    for i in range(n):
        video = np.empty((frames, height, width, 3), np.uint8)
        for t in range(frames):
            video[t, ..., 0] = (xx + 3 * t + 11 * i) % 256
            video[t, ..., 1] = (yy * 2 + t) % 256
            video[t, ..., 2] = ((xx + yy) // 2 + 5 * i) % 256
            y, x = rng.integers(0, height - 48), rng.integers(0, width - 48)
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


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


class Config:
    """One row: a callable that handles every clip once, and the processes whose CPU time it uses."""

    def __init__(self, name: str, procs: int, run, worker_pids=()):
        self.name, self.procs, self.run, self.worker_pids = name, procs, run, list(worker_pids)
        self.best_wall, self.best_cpu = math.inf, math.inf

    def time_once(self) -> None:
        cpu0 = time.process_time() + sum(proc_cpu_s(p) for p in self.worker_pids)
        t0 = time.perf_counter()
        self.run()
        wall = time.perf_counter() - t0
        cpu = time.process_time() + sum(proc_cpu_s(p) for p in self.worker_pids) - cpu0
        self.best_wall, self.best_cpu = min(self.best_wall, wall), min(self.best_cpu, cpu)


def consume(iterable) -> None:
    """Drop results as they come, as a training loop would (holding them all adds page faults)."""
    for _ in iterable:
        pass


def loader_config(name: str, ds, workers: int, batch: int) -> Config:
    loader = DataLoader(ds, batch_size=batch, num_workers=workers, persistent_workers=workers > 0)
    consume(loader)  # start and warm the workers
    pids = [w.pid for w in loader._iterator._workers] if workers else []
    return Config(f"{name}, {workers} workers", max(1, workers), lambda: consume(loader), pids)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, help="folder of .mp4 files (default: synthesise clips)")
    p.add_argument("--clips", type=int, default=24)
    p.add_argument("--width", type=int, default=340)
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--frames", type=int, default=48, help="frames per synthetic clip")
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--num-frames", type=int, default=16, help="frames per sampled clip")
    p.add_argument("--stride", type=int, default=2)
    p.add_argument("--crop", type=int, default=224, help="output size of the train transform")
    p.add_argument("--batch-size", type=int, default=4, help="loader batch (clips a worker collates at once)")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--step-time", type=float, default=0.45, help="seconds per training step of one GPU")
    p.add_argument("--gpu-batch", type=int, default=32, help="clips per GPU per step")
    args = p.parse_args()
    torch.set_num_threads(1)  # one core per loader process, like the decoders
    started = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        if args.data is None:
            t0 = time.perf_counter()
            paths = make_clips(Path(tmp), args.clips, args.width, args.height, args.frames, args.fps)
            source = f"{len(paths)} synthetic {args.width}x{args.height} clips of {args.frames} frames, GOP 10"
            print(f"synthesised {source} in {time.perf_counter() - t0:.1f}s", flush=True)
        else:
            paths = sorted(args.data.glob("*.mp4"))
            source = f"{len(paths)} clips from {args.data}"
        manifest = Path(tmp) / "manifest.csv"
        manifest.write_text("".join(f"{q}\n" for q in paths))
        common = dict(num_frames=args.num_frames, sampling="dense", stride=args.stride, train=False)
        datasets = {
            "uint8": VideoClipDataset(manifest, **common, transform=build_video_transform(True, args.crop, output="uint8")),
            "float32": VideoClipDataset(manifest, **common, transform=build_video_transform(True, args.crop)),
        }
        # The same frame indices the dataset decodes (eval sampling is deterministic).
        index_of = {q: sample_indices(len(open_video(q)), args.num_frames, "dense", args.stride, False) for q in paths}
        n = len(paths)
        configs = [
            Config("pyav decode only (baseline)", 1, lambda: consume(pyav_decode(q, index_of[q]) for q in paths)),
            Config("decord decode only", 1, lambda: consume(read_frames(open_video(q), q, index_of[q]) for q in paths)),
        ]
        for workers in args.workers:
            for kind in ("float32", "uint8"):
                configs.append(loader_config(f"VideoClipDataset {kind}", datasets[kind], workers, args.batch_size))
        clip = datasets["uint8"][0]["video"][None]  # (1, C, T, S, S) uint8
        norm = Config("normalise on the device (here: CPU)", 1, lambda: [normalize_pixels(clip, 1) for _ in range(n)])
        configs.append(norm)
        for _ in range(args.repeats):  # round-robin: a load spike costs every configuration alike
            for c in configs:
                c.time_once()

    rows = {c.name: c for c in configs}
    base = n / rows["pyav decode only (baseline)"].best_wall
    print(f"\n{source}; {args.num_frames} frames (dense, stride {args.stride}) -> {args.num_frames}x{args.crop} "
          f"(train crop + flip), loader batch {args.batch_size}, best of {args.repeats}, {os.cpu_count()} cores here, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'configuration':<42} {'procs':>5} {'clips/s':>8} {'clips/s/core':>12} {'clips/CPU-s':>11} {'ms/clip':>8} {'vs pyav':>8}")
    for c in configs:
        rate = n / c.best_wall
        print(f"{c.name:<42} {c.procs:>5} {rate:>8.1f} {rate / c.procs:>12.1f} {n / c.best_cpu:>11.1f} "
              f"{1000 * c.best_wall / n:>8.1f} {rate / base:>7.2f}x")

    dec, pyav = rows["decord decode only"], rows["pyav decode only (baseline)"]
    print(f"\ndecode per clip ({args.num_frames} frames, one core): decord {1000 * dec.best_wall / n:.1f} ms "
          f"({1000 * dec.best_cpu / n:.1f} ms CPU), pyav {1000 * pyav.best_wall / n:.1f} ms ({1000 * pyav.best_cpu / n:.1f} ms CPU)")
    for workers in [w for w in args.workers if w > 0]:
        u8, f32 = rows[f"VideoClipDataset uint8, {workers} workers"], rows[f"VideoClipDataset float32, {workers} workers"]
        print(f"uint8 / float32 with {workers} workers: {f32.best_wall / u8.best_wall:.2f}x clips/s, "
              f"{f32.best_cpu / u8.best_cpu:.2f}x clips per CPU-s (goal: >= 1.5x clips/s with 2 workers)")
    need = args.gpu_batch / args.step_time
    print(f"one GPU at {args.step_time} s/step x batch {args.gpu_batch} needs {need:.0f} clips/s:")
    for kind in ("uint8", "float32"):
        w = max(args.workers)  # the measurement with the most workers
        c = rows[f"VideoClipDataset {kind}, {w} workers"]
        per_core = n / c.best_cpu
        print(f"  {kind:>7}: {per_core:.1f} clips per CPU-s ({w} workers) -> {math.ceil(need / per_core)} loader cores "
              f"(workers) per GPU, {8 * math.ceil(need / per_core)} for 8 GPUs")
    print(f"(device-side normalisation, timed on this CPU: {1000 * norm.best_wall / n:.1f} ms per clip; on a GPU it is "
          f"a few elementwise kernels)\nbench took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
