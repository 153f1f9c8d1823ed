"""Benchmark: KV-cached world-model rollouts against full recomputation (``use_cache=False``).

For horizons 4, 8, 16 and batch sizes (candidate action sequences) 1 and 256, one shared context
frame, random weights (speed and memory do not depend on the values). Reports time per rollout,
model steps/s (``H / time``: sequential imagined frames), candidate frames/s (``B * H / time``) and
peak memory above the pre-run level, both modes measured in the same process, and the ratios
full / cached.

Peak memory: CUDA = ``torch.cuda.max_memory_allocated`` (exact, tensors only). CPU = peak resident
set size sampled every ~0.5 ms by a thread, minus the level before the run, after ``malloc_trim``
returns freed heap to the OS (approximate; ``tracemalloc`` does not see tensor buffers and
``resource.getrusage`` only gives a process-lifetime maximum, useless for comparing configurations).

    python bench/bench_rollout.py                      # tiny predictor, CPU
    python bench/bench_rollout.py --size default --device cuda
"""
from __future__ import annotations

import argparse
import ctypes
import os
import threading
import time

import torch

from ivnext_world.world_model import ACPredictorConfig, ActionConditionedPredictor

SIZES = {
    # The tests' tiny model (56 px, patch 14: 4 cls + 16 patch tokens of width 48).
    "tiny": dict(enc_dim=48, tokens_per_frame=20, embed_dim=32, depth=2, num_heads=2),
    # ACPredictorConfig's defaults (the built-in tasks' world model: 192 wide, 4 blocks).
    "default": dict(),
}


class PeakRSS:
    """Peak resident memory (bytes) above the level at ``__enter__``, sampled by a thread."""

    def __init__(self, interval: float = 5e-4):
        self.interval, self.peak = interval, 0
        self._page = os.sysconf("SC_PAGE_SIZE")
        try:
            self._trim = ctypes.CDLL("libc.so.6").malloc_trim
        except OSError:
            self._trim = None

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    def _poll(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss() - self.base)
            time.sleep(self.interval)

    def __enter__(self):
        if self._trim is not None:
            self._trim(0)
        self.base, self.peak = self._rss(), 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss() - self.base)


def measure(pred, ctx, acts, use_cache: bool, repeats: int, device: torch.device) -> tuple[float, float]:
    """Seconds per rollout (median of ``repeats``) and peak memory in MiB."""
    pred.rollout(ctx, acts, use_cache=use_cache)  # warm-up (kernels, allocator)
    times = []
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        for _ in range(repeats):
            t0 = time.perf_counter()
            pred.rollout(ctx, acts, use_cache=use_cache)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        peak = torch.cuda.max_memory_allocated() - base
    else:
        with PeakRSS() as mem:
            for _ in range(repeats):
                t0 = time.perf_counter()
                pred.rollout(ctx, acts, use_cache=use_cache)
                times.append(time.perf_counter() - t0)
        peak = mem.peak
    return sorted(times)[len(times) // 2], peak / 2**20


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="tiny")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--horizons", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 256])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    cfg = ACPredictorConfig(**SIZES[args.size], action_dim=2, proprio_dim=None, max_frames=max(args.horizons) + 1)
    pred = ActionConditionedPredictor(cfg).to(device).eval()
    n_params = sum(p.numel() for p in pred.parameters())
    print(f"# predictor '{args.size}': {n_params / 1e6:.2f} M params, {cfg.tokens_per_frame} latent tokens/frame of "
          f"width {cfg.enc_dim}, embed {cfg.embed_dim}, depth {cfg.depth}; device {device} "
          f"({torch.get_num_threads()} threads); 1 context frame; median of {args.repeats}")
    header = (f"{'B':>4} {'H':>3} | {'cached ms':>10} {'steps/s':>8} {'frames/s':>9} {'MiB':>7} | "
              f"{'full ms':>10} {'steps/s':>8} {'frames/s':>9} {'MiB':>7} | {'speedup':>7} {'mem full/cached':>15}")
    print(header)
    print("-" * len(header))
    rows = []
    with torch.inference_mode():
        for b in args.batch_sizes:
            for h in args.horizons:
                ctx = torch.randn(1, 1, cfg.tokens_per_frame, cfg.enc_dim, device=device)
                acts = torch.randn(b, h, 2, device=device)
                tc, mc = measure(pred, ctx, acts, True, args.repeats, device)
                tf, mf = measure(pred, ctx, acts, False, args.repeats, device)
                row = dict(batch=b, horizon=h, cached_s=tc, full_s=tf, cached_mib=mc, full_mib=mf)
                rows.append(row)
                print(f"{b:>4} {h:>3} | {tc * 1e3:>10.2f} {h / tc:>8.1f} {b * h / tc:>9.0f} {mc:>7.1f} | "
                      f"{tf * 1e3:>10.2f} {h / tf:>8.1f} {b * h / tf:>9.0f} {mf:>7.1f} | "
                      f"{tf / tc:>6.2f}x {mf / mc if mc > 0 else float('nan'):>14.2f}x")
    return rows


if __name__ == "__main__":
    main()
