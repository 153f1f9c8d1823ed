"""The Trainer's data path: one set of persistent workers, the exact data order, pixels normalised on
the device, and workers that survive a cluster's stop signals so the main process can checkpoint."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from ivnext_world.data.transforms import normalize_pixels
from ivnext_world.train import LoopConfig, Trainer, latest_checkpoint, list_checkpoints
from ivnext_world.train.data import ResumableSampler, StopSignalsToMain

JOB = Path(__file__).with_name("_signal_job.py")


class Tagged(Dataset):
    """Items that say which process loaded them; ``x`` carries a uint8 clip (C, T, H, W)."""

    def __len__(self):
        return 10

    def __getitem__(self, i):
        video = torch.randint(0, 256, (3, 2, 4, 4), dtype=torch.uint8)  # seeded per (epoch, i) by SeededDataset
        return {"index": i, "pid": os.getpid(), "video": video, "x": torch.full((4,), float(i))}


def _recording_trainer(tmp_path, **loop):
    seen = []

    def objective(model, batch, gen):
        seen.append(batch)
        return model(batch["x"]).pow(2).mean(), {}

    torch.manual_seed(0)
    cfg = LoopConfig(**{"steps": 9, "batch_size": 3, "num_workers": 2, "warmup_steps": 1, "ckpt_every": 100, **loop})
    return Trainer(torch.nn.Linear(4, 1), objective, Tagged(), cfg, tmp_path, device="cpu"), seen


def test_workers_persist_across_epochs_and_the_order_stays_exact(tmp_path):
    trainer, seen = _recording_trainer(tmp_path, prefetch_factor=3)
    trainer.fit()  # 10 items, batch 3, drop_last: 3 batches an epoch, 3 epochs
    assert trainer._loader.persistent_workers and trainer._loader.prefetch_factor == 3
    pids = {int(p) for b in seen for p in b["pid"]}
    assert len(pids) == 2 and os.getpid() not in pids  # the same two workers served all three epochs
    want = [i for epoch in range(3) for i in ResumableSampler(10, seed=0, epoch=epoch).order()[:9]]
    assert [int(i) for b in seen for i in b["index"]] == want
    assert trainer.data_pos == {"epoch": 2, "sample": 9}  # the next epoch starts when its first batch is read


def test_trainer_normalises_uint8_pixels_on_the_device(tmp_path):
    trainer, seen = _recording_trainer(tmp_path / "a", steps=2, num_workers=0)
    trainer.fit()
    raw = trainer.dataset[(0, int(seen[0]["index"][0]))]["video"]  # the same key: the same uint8 clip
    assert seen[0]["video"].dtype == torch.float32 and seen[0]["video"].shape == (3, 3, 2, 4, 4)  # (B, C, T, H, W)
    assert torch.equal(seen[0]["video"][0], normalize_pixels(raw, -4))


def test_workers_ignore_stop_signals_from_others_and_compose_init_fns(tmp_path):
    from _signal_job import SlowPoints

    marks = tmp_path / "init"
    marks.mkdir()
    init = StopSignalsToMain(then=lambda wid: (marks / str(wid)).touch())
    loader = DataLoader(SlowPoints(40), batch_size=2, num_workers=2, persistent_workers=True, worker_init_fn=init)
    it = iter(loader)
    next(it)
    workers = [w.pid for w in it._workers]
    for sig in ("TERM", "USR2"):  # from another process, as SLURM's are
        subprocess.run(["kill", f"-{sig}", *map(str, workers)], check=True)
    time.sleep(0.3)
    assert sum(1 for _ in it) == 19  # every remaining batch, no "DataLoader worker ... killed by signal"
    assert sorted(p.name for p in marks.iterdir()) == ["0", "1"]  # the existing worker_init_fn still ran
    assert [w.pid for w in iter(loader)._workers] == workers  # and the workers are still the same
    del it, loader


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, IndexError):
        return False


def _start(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(JOB), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group, for os.killpg


@pytest.mark.slow
def test_workers_end_with_their_main_process(tmp_path):
    """Ignoring stop signals must not keep workers alive: at interpreter exit multiprocessing terminates
    them with SIGTERM from the main process (a plain SIG_IGN hangs that exit forever), and a main process
    killed outright leaves them to the DataLoader's watchdog."""
    proc = _start("hold", "exit")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    workers = [int(p) for p in out.split("WORKERS")[1].split()]
    deadline = time.monotonic() + 10
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(_alive, workers))

    proc = _start("hold", "sleep")
    workers = [int(p) for p in proc.stdout.readline().split()[1:]]
    assert len(workers) == 2 and all(map(_alive, workers))
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 20  # the worker loop checks its parent every 5 s
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(map(_alive, workers))


def _finish(proc, timeout=120) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise


@pytest.mark.slow
def test_sigterm_to_the_process_group_checkpoints_that_step_and_resume_continues(tmp_path):
    """SLURM's SIGTERM reaches the main process and its 2 workers (here: os.killpg). The main process
    finishes its step, checkpoints it, stops with Preempted; the resumed run continues from that step
    and ends with the weights of an uninterrupted run."""
    ref = _start("train", str(tmp_path / "ref"))
    run = _start("train", str(tmp_path / "run"))
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 90
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 4):
        assert time.monotonic() < deadline and run.poll() is None, "the run did not get going"
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGTERM)
    out, err = _finish(run)
    assert run.returncode == 3, err[-3000:]
    assert "killed by signal" not in err and "caught SIGTERM" in err
    step = int(re.search(r"PREEMPTED stopped on request after step (\d+)", out).group(1))
    assert 4 <= step < 30
    assert [p.name for p in list_checkpoints(tmp_path / "run" / "checkpoints")] == [f"step_{step:08d}"]

    resumed = _start("train", str(tmp_path / "run"))
    out, err = _finish(resumed)
    assert resumed.returncode == 0, err[-3000:]
    assert f"(step {step})" in err  # "resumed from .../step_000000NN (step NN)"
    ref_out, ref_err = _finish(ref)
    assert ref.returncode == 0, ref_err[-3000:]
    assert out.split()[-3:] == ref_out.split()[-3:] and out.split()[-2] == "30"  # DONE 30 <same weights>
    assert latest_checkpoint(tmp_path / "run" / "checkpoints").name == "step_00000030"
