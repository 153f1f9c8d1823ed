"""``python -m ivnext_world.launch`` (console script ``ivnext-launch``).

    ivnext-launch pretrain launcher=h100_4x8 stage=1 data.source=/data/clips out=/runs/s1
    ivnext-launch pretrain launcher=slurm out=/runs/lr --sweep loop.base_lr=1e-3 --sweep loop.base_lr=3e-4
    ivnext-launch gather /runs/lr
    ivnext-launch pretrain launcher=slurm ... --dry-run     # compose and check only, submit nothing

A GPU job's per-GPU memory is measured before anything is submitted (FakeTensor, no GPU needed) and
the job is refused when it does not fit the launcher's GPU (launcher.gpu) with launcher.memory_headroom
to spare; --no-memory-check skips this.

Overrides starting with ``launcher`` configure the launcher; the rest configure the job.
Resuming: run the same command again (same ``out``): the job resumes from its newest checkpoint.
"""
from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys

from .jobs import JOBS


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="ivnext-launch", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("job", help=f"one of {sorted(JOBS)}, or 'gather'")
    p.add_argument("overrides", nargs="*", help="key=value (job) and launcher=... / launcher.key=value; for gather: the sweep folder")
    p.add_argument("--sweep", action="append", default=[], metavar="'k=v k2=v2'", help="one array task per --sweep")
    p.add_argument("--sweep-dir", default=None, help="folder of the sweep (default: outputs/sweep/<job>)")
    p.add_argument("--wait", action="store_true", help="block until the job(s) end and print the results")
    p.add_argument("--dry-run", action="store_true",
                   help="compose and check the configs (including the per-GPU memory of a GPU job), submit nothing")
    p.add_argument("--no-memory-check", action="store_true",
                   help="skip measuring the per-GPU memory (it takes tens of seconds at paper scale)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    try:
        return _run(p, a, argv)
    except Exception as e:  # config and submission errors: one readable line, no traceback
        if isinstance(e, (ValueError, KeyError, FileNotFoundError)) or type(e).__module__.startswith(("omegaconf", "hydra")):
            print(f"ivnext-launch: error: {e}", file=sys.stderr)
            return 2
        raise


def _run(p: argparse.ArgumentParser, a: argparse.Namespace, argv: list[str]) -> int:
    from . import launcher as L
    from .gather import gather

    if a.job == "gather":
        if len(a.overrides) != 1:
            p.error("gather takes one sweep folder")
        rows = gather(a.overrides[0])
        print(open(f"{a.overrides[0]}/results.md").read())
        return 0 if all(r["status"] == "done" for r in rows) else 1
    lau, job_ovr = L.split_overrides(a.overrides)
    if a.dry_run:
        from .config import compose_launcher

        lc = compose_launcher(lau)
        spec, cfg, _ = L.prepare(a.job, job_ovr, lc)
        print(f"ok: {a.job} -> {cfg.out}; launcher {lc.kind}: {lc.nodes} node(s) x {lc.ntasks_per_node} task(s), "
              f"{lc.gpus_per_node} GPU(s)/node, time limit {lc.timeout_min} min")
        if not a.no_memory_check:
            from .memory import check_job_memory

            check_job_memory(spec.config, [cfg], lc)
        return 0
    cmd = ["ivnext-launch", *argv]
    check = not a.no_memory_check
    if a.sweep:
        sets = [shlex.split(s) for s in a.sweep]
        launched = L.launch_array(a.job, sets, a.overrides, a.sweep_dir or f"outputs/sweep/{a.job}", argv=cmd,
                                  check_memory=check)
    else:
        launched = L.launch(a.job, a.overrides, argv=cmd, check_memory=check)
    for j, out in zip(launched.jobs, launched.outs):
        print(f"submitted {j.job_id}: job folder {out}")
    if a.wait or launched.results is not None:
        print(json.dumps(launched.wait(), indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
