"""Run a function on N CPU processes joined in one gloo process group, with a hard time limit.

``run_ranks(fn, args, tmp)`` spawns ``fn(rank, *args)`` in ``world_size`` fresh processes and
returns their results (index = rank). A rank that raises fails the call with its exit code; ranks
that hang (a collective one of them never joins) are killed after ``timeout`` seconds and the call
raises ``TimeoutError``: a desynchronised run fails the test instead of hanging the suite.
"""
from __future__ import annotations

import datetime
import multiprocessing as mp
import pickle
import time
from pathlib import Path


def _entry(fn, rank: int, world_size: int, tmp: str, args: tuple, pg_timeout_s: float) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/pg_init", rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=pg_timeout_s))
    try:
        result = fn(rank, *args)
        (Path(tmp) / f"rank{rank}.pkl").write_bytes(pickle.dumps(result))
    finally:
        dist.destroy_process_group()


def run_ranks(fn, args: tuple, tmp: Path, world_size: int = 2, timeout: float = 180, pg_timeout_s: float = 60) -> list:
    tmp = Path(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_entry, args=(fn, r, world_size, str(tmp), args, pg_timeout_s)) for r in range(world_size)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    hung = [r for r, p in enumerate(procs) if p.is_alive()]
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    if hung:
        raise TimeoutError(f"rank(s) {hung} still running after {timeout:.0f} s (a collective that not every rank joined?)")
    failed = {r: p.exitcode for r, p in enumerate(procs) if p.exitcode != 0}
    if failed:
        raise RuntimeError(f"rank(s) exited with an error: {failed} (their tracebacks are in the captured stderr)")
    return [pickle.loads((tmp / f"rank{r}.pkl").read_bytes()) for r in range(world_size)]
