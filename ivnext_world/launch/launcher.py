"""Submit a registered job (or a sweep of it, as one job array) with the chosen launcher.

    launch("pretrain", ["stage=1", "out=runs/s1"], ["launcher=h100_4x8"])       # one job
    launch_array("pretrain", [["loop.base_lr=1e-3"], ["loop.base_lr=3e-4"]],   # one array job
                 ["launcher=slurm"], sweep_dir="runs/lr_sweep")

Every check (job config against its schema, launcher keys, time limit, tasks vs. node size) runs
before anything is submitted. The job folder is the run's ``out``: checkpoints, metrics,
``summary.json``, ``result.json``, ``launch/`` (provenance) and ``submitit/`` (per-task logs).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import submitit
from omegaconf import OmegaConf

from . import provenance
from .config import LauncherConfig, check, compose_launcher
from .job import TrainingJob
from .jobs import JobSpec, job_spec
from .memory import check_job_memory


@dataclass
class Launched:
    """What was started: submitit jobs (None for launcher=local) or the in-process results."""

    jobs: list[Any]  # submitit.Job per task of an array (one for a single job)
    outs: list[Path]
    results: list[Any] | None = None  # filled for launcher=local

    def wait(self) -> list[Any]:
        """Per job: submitit's per-task results (list, one entry per rank) or the local result."""
        if self.results is None:
            self.results = [j.results() for j in self.jobs]
        return self.results


def split_overrides(overrides: Sequence[str]) -> tuple[list[str], list[str]]:
    """``launcher=...`` / ``launcher.x=...`` (also with +/~) go to the launcher, the rest to the job."""
    lau, job = [], []
    for o in overrides:
        key = o.lstrip("+~").split("=", 1)[0]
        (lau if key == "launcher" or key.startswith("launcher.") else job).append(o)
    return lau, job


def compose_job(spec: JobSpec, overrides: Sequence[str]) -> Any:
    """The job's typed config: ``configs/<spec.config>.yaml`` + overrides, checked against its schema."""
    from ..config import load_config

    return OmegaConf.to_object(load_config(spec.config, overrides))


def make_executor(lc: LauncherConfig, folder: Path, name: str) -> submitit.Executor:
    """submitit executor for ``lc.kind`` (never chosen by looking at the machine)."""
    folder.mkdir(parents=True, exist_ok=True)
    cluster = {"slurm": "slurm", "submitit_local": "local"}[lc.kind]
    ex = submitit.AutoExecutor(folder=folder, cluster=cluster, slurm_max_num_timeout=lc.max_requeues)
    params: dict[str, Any] = dict(
        name=lc.name or name, nodes=lc.nodes, tasks_per_node=lc.ntasks_per_node, cpus_per_task=lc.cpus_per_task,
        gpus_per_node=lc.gpus_per_node, timeout_min=lc.timeout_min,
        slurm_signal_delay_s=lc.signal_delay_s, slurm_array_parallelism=lc.array_parallelism,
    )
    if lc.mem_gb is not None:
        params["mem_gb"] = lc.mem_gb
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(lc, key) is not None:
            params[f"slurm_{key}"] = getattr(lc, key)
    if lc.setup:
        params["slurm_setup"] = list(lc.setup)
    ex.update_parameters(**params)
    return ex


def prepare(job: str | JobSpec, job_overrides: Sequence[str], launcher: LauncherConfig) -> tuple[JobSpec, Any, Callable]:
    spec = job_spec(job) if isinstance(job, str) else job
    cfg = compose_job(spec, job_overrides)
    if not hasattr(cfg, "out"):
        raise ValueError(f"config {spec.config!r} has no 'out' field: the launcher needs it as the job folder")
    check(launcher, distributed=spec.distributed)
    return spec, cfg, spec.function()


def submit(fn: Callable, cfgs: Sequence[Any], launcher: LauncherConfig, name: str, folder: Path,
           argv: Sequence[str] | None = None) -> Launched:
    """Run ``fn(cfg)`` for each typed config: one job, or one array job for several configs."""
    check(launcher)
    outs = [Path(c.out) for c in cfgs]
    if len(set(outs)) != len(outs):
        raise ValueError(f"jobs of one array must have distinct out folders, got {[str(o) for o in outs]}")
    for cfg, out in zip(cfgs, outs):
        provenance.write_submission(out, cfg, launcher, list(argv) if argv is not None else None)
    jobs = [TrainingJob(fn, cfg, str(out), launcher.backend, name) for cfg, out in zip(cfgs, outs)]
    if launcher.kind == "local":
        return Launched(jobs=[], outs=outs, results=[job() for job in jobs])
    ex = make_executor(launcher, folder, name)
    if len(jobs) == 1:
        submitted = [ex.submit(jobs[0])]
    else:
        with ex.batch():
            submitted = [ex.submit(j) for j in jobs]
    for s, out in zip(submitted, outs):
        (out / "launch" / "job_id.txt").write_text(f"{s.job_id}\n")
    return Launched(jobs=submitted, outs=outs)


def launch(job: str | JobSpec, overrides: Sequence[str] = (), launcher_overrides: Sequence[str] = (),
           argv: Sequence[str] | None = None, check_memory: bool = True) -> Launched:
    """One job. ``overrides`` may also hold ``launcher=...`` items (as on the command line).

    ``check_memory``: on a GPU launcher, measure the job's per-GPU memory first and refuse a job that
    does not fit the launcher's GPU (:func:`ivnext_world.launch.memory.check_job_memory`).
    """
    lau, job_ovr = split_overrides(list(launcher_overrides) + list(overrides))
    lc = compose_launcher(lau)
    spec, cfg, fn = prepare(job, job_ovr, lc)
    if check_memory:
        check_job_memory(spec.config, [cfg], lc)
    folder = Path(lc.folder) if lc.folder else Path(cfg.out) / "submitit"
    return submit(fn, [cfg], lc, spec.config, folder, argv)


def launch_array(job: str | JobSpec, sweep: Sequence[Sequence[str]], overrides: Sequence[str] = (),
                 sweep_dir: str | Path = "outputs/sweep", argv: Sequence[str] | None = None,
                 check_memory: bool = True) -> Launched:
    """One array job: task ``i`` runs with ``overrides + sweep[i]``; its ``out`` defaults to ``sweep_dir/task_<i>``."""
    if not sweep:
        raise ValueError("a sweep needs at least one override set")
    sweep_dir = Path(sweep_dir)
    lau, base = split_overrides(overrides)
    lc = compose_launcher(lau)
    cfgs, sets = [], []
    for i, extra in enumerate(sweep):
        l2, ovr = split_overrides(extra)
        if l2:
            raise ValueError(f"sweep set {i} changes the launcher ({l2}); one array shares one launcher")
        ovr = list(base) + list(ovr)
        if not any(o.split("=", 1)[0].lstrip("+") == "out" for o in ovr):
            ovr.append(f"out={sweep_dir / f'task_{i:03d}'}")
        spec, cfg, fn = prepare(job, ovr, lc)
        cfgs.append(cfg)
        sets.append(list(extra))
    if check_memory:
        check_job_memory(spec.config, cfgs, lc)
    return submit_array(fn, cfgs, sets, lc, sweep_dir, spec.config, argv)


def submit_array(fn: Callable, cfgs: Sequence[Any], sets: Sequence[Sequence[str]], lc: LauncherConfig,
                 sweep_dir: str | Path, name: str, argv: Sequence[str] | None = None) -> Launched:
    """Submit typed configs as one array job and record the sweep in ``sweep_dir/sweep.json`` for :func:`gather`."""
    sweep_dir = Path(sweep_dir)
    folder = Path(lc.folder) if lc.folder else sweep_dir / "submitit"
    sweep_dir.mkdir(parents=True, exist_ok=True)
    launched = submit(fn, cfgs, lc, name, folder, argv)
    tasks = [{"task": i, "overrides": list(s), "out": str(o), "job_id": j.job_id if j is not None else None}
             for i, (s, o, j) in enumerate(zip(sets, launched.outs, launched.jobs or [None] * len(sets)))]
    (sweep_dir / "sweep.json").write_text(json.dumps({"job": name, "tasks": tasks}, indent=1))
    return launched
