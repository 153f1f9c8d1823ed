"""The callable that runs on every task: distributed set-up, provenance, the job, preemption.

Preemption and time limits. SLURM sends SIGUSR2 ``signal_delay_s`` before the time limit (and
clusters may send it on preemption); ``scontrol requeue`` and preemption by requeue send SIGTERM
(then SIGKILL after the cluster's KillWait). Both set :data:`ivnext_world.train.STOP`; the
training loop writes a checkpoint at the end of the step it is in and raises ``Preempted``.
(SIGUSR2 outside the loop goes straight to submitit: requeue, resume from the last checkpoint.) On
SIGUSR2 rank 0 then hands over to submitit's own handler, which calls :meth:`TrainingJob.checkpoint`
(a ``DelayedSubmission`` of this same job), re-pickles it and requeues the job. On SIGTERM SLURM is
already requeuing (or cancelling) the job, so it just exits. Either way the next start resumes from
the newest complete checkpoint in ``<out>/checkpoints`` (the loop's ``resume=True``).

SLURM signals every process of the job, the Trainer's DataLoader workers too; they leave both signals
to the main process (:class:`~ivnext_world.train.data.StopSignalsToMain`), or the main process would
die of "DataLoader worker ... is killed by signal" before it could write the step's checkpoint.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import sys
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Callable

import submitit

from . import provenance
from .distributed import in_submitit_job, init_distributed, shutdown_distributed

log = logging.getLogger(__name__)


def to_jsonable(result: Any) -> Any:
    if is_dataclass(result):
        result = asdict(result)
    return json.loads(json.dumps(result, default=str))


class TrainingJob(submitit.helpers.Checkpointable):
    """``fn(cfg)`` as a requeueable submitit job; ``out`` is the job folder (``cfg.out``)."""

    def __init__(self, fn: Callable[[Any], Any], cfg: Any, out: str, backend: str = "auto", name: str = "job"):
        self.fn, self.cfg, self.out, self.backend, self.name = fn, cfg, str(out), backend, name

    def __call__(self) -> Any:
        from ..train import STOP, Preempted

        if not logging.getLogger().handlers:  # a fresh job process: show the loop's INFO lines in the job log
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
        STOP.clear()
        self._caught: list[str] = []
        usr_handler = self._install_signal_handlers()
        dist_info = init_distributed(self.backend)
        job_id = submitit.JobEnvironment().job_id if in_submitit_job() else None
        if dist_info.rank == 0:
            provenance.write_start(Path(self.out), dist_info, job_id)
        try:
            result = self.fn(self.cfg)
        except Preempted as e:
            log.warning("rank %d: %s", dist_info.rank, e)
            shutdown_distributed()
            if "USR2" in self._caught and usr_handler is not None:  # saved; submitit checkpoints, requeues, exits
                usr_handler(signal.SIGUSR2, None)
            sys.exit(0 if dist_info.rank else -1)  # SIGTERM: SLURM requeues (or cancels) the job itself
        shutdown_distributed()
        record = {"job": self.name, "job_id": job_id, "rank": dist_info.rank, "world_size": dist_info.world_size,
                  "result": to_jsonable(result)}
        if dist_info.rank == 0:  # the job folder's record; other ranks only return theirs to submitit
            (Path(self.out) / "result.json").write_text(json.dumps(record, indent=1))
        return record

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Called by submitit on SIGUSR2 once the loop has saved: resubmit this same job.

        The new job carries nothing but the config: the state is in ``<out>/checkpoints``.
        """
        log.info("requeueing %s; it will resume from the newest checkpoint in %s/checkpoints", self.name, self.out)
        return submitit.helpers.DelayedSubmission(TrainingJob(self.fn, self.cfg, self.out, self.backend, self.name))

    def _install_signal_handlers(self) -> Callable | None:
        """Route SIGUSR2/SIGTERM to the training loop's STOP; returns submitit's SIGUSR2 handler."""
        if not in_submitit_job():
            return None
        submitit_usr2 = signal.getsignal(signal.SIGUSR2)
        submitit_usr2 = submitit_usr2 if callable(submitit_usr2) else None
        route_stop_signals(self._caught, submitit_usr2)
        return submitit_usr2


def route_stop_signals(caught: list[str] | None = None, usr2_outside_loop: Callable | None = None) -> None:
    """SIGTERM and SIGUSR2 set :data:`ivnext_world.train.STOP` in this process: the training loop
    checkpoints the step it is in and raises ``Preempted``.

    Outside the training loop (building data, evaluating, a job without a loop such as collection)
    SIGUSR2 goes straight to ``usr2_outside_loop`` (submitit's handler: requeue now, resume from the
    last checkpoint), as nothing would act on STOP. The names of the signals caught are appended
    to ``caught``.
    """
    from ..train import IN_LOOP, STOP

    def on_signal(signum, frame):
        name = signal.Signals(signum).name.removeprefix("SIG")
        if caught is not None:
            caught.append(name)
        if name == "USR2" and not IN_LOOP.is_set() and usr2_outside_loop is not None:
            print(f"[ivnext launch] caught SIG{name} outside the training loop: requeue now", file=sys.stderr, flush=True)
            return usr2_outside_loop(signum, frame)
        STOP.set()
        print(f"[ivnext launch] caught SIG{name} in pid {os.getpid()}: checkpoint at the end of this step", file=sys.stderr, flush=True)

    signal.signal(signal.SIGUSR2, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
