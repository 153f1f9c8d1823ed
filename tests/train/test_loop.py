"""The shared training loop: exact resume, schedules, non-finite handling, checkpoints."""
import json

import pytest
import torch
from torch.utils.data import Dataset

from ivnext_world.train.checkpoint import CheckpointMismatchError, latest_checkpoint, list_checkpoints, load_checkpoint
from ivnext_world.train.loop import LoopConfig, NonFiniteLossError, Trainer, scaled_lr, warmup_cosine


class NoisyData(Dataset):
    """Each item draws augmentation noise from the global RNG, like a random crop would."""

    def __len__(self):
        return 10

    def __getitem__(self, i):
        x = torch.full((4,), float(i)) + torch.randn(4)
        return {"x": x, "y": x.sum(0, keepdim=True)}


def make_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Dropout(0.3), torch.nn.GELU(), torch.nn.Linear(16, 1))


def mse(model, batch, gen):
    noise = torch.randn(batch["x"].shape, generator=gen) * 0.01  # step-seeded randomness
    loss = torch.nn.functional.mse_loss(model(batch["x"] + noise), batch["y"])
    return loss, {"mse": loss.detach()}


def cfg(**kw):
    base = dict(steps=12, batch_size=3, num_workers=0, warmup_steps=2, ckpt_every=4, log_every=1, base_lr=0.5)
    base.update(kw)
    return LoopConfig(**base)


def weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("workers", [0, 2])
def test_interrupted_and_resumed_run_is_bitwise_identical(tmp_path, workers):
    full = Trainer(make_model(), mse, NoisyData(), cfg(num_workers=workers), tmp_path / "full")
    full.fit()

    part = Trainer(make_model(), mse, NoisyData(), cfg(num_workers=workers), tmp_path / "part")
    part.fit(stop_after=6)  # "killed" after step 6; last checkpoint at step 4
    resumed = Trainer(make_model(), mse, NoisyData(), cfg(num_workers=workers), tmp_path / "part")
    resumed.fit()
    assert resumed.step == 12
    assert torch.equal(weights(full.model), weights(resumed.model))
    rows = [json.loads(r) for r in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 13))  # rows from the killed steps 5-6 replaced


def test_checkpoints_are_pruned_and_complete(tmp_path):
    Trainer(make_model(), mse, NoisyData(), cfg(keep_last=2), tmp_path).fit()
    names = [p.name for p in list_checkpoints(tmp_path / "checkpoints")]
    assert names == ["step_00000008", "step_00000012"]
    assert not list((tmp_path / "checkpoints").glob(".*tmp"))
    assert (tmp_path / "tensorboard").is_dir()


def test_loss_decreases(tmp_path):
    hist = Trainer(make_model(), mse, NoisyData(), cfg(steps=40, base_lr=2.0), tmp_path).fit()
    first = sum(r["loss"] for r in hist[:5]) / 5
    last = sum(r["loss"] for r in hist[-5:]) / 5
    assert last < 0.5 * first


def test_checkpoint_from_other_model_names_tensors(tmp_path):
    Trainer(make_model(), mse, NoisyData(), cfg(steps=4), tmp_path).fit()
    other = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.3), torch.nn.GELU(), torch.nn.Linear(8, 1))
    with pytest.raises(CheckpointMismatchError, match=r"0\.weight: checkpoint \(16, 4\) vs model \(8, 4\)"):
        load_checkpoint(latest_checkpoint(tmp_path / "checkpoints"), other)


def test_nonfinite_steps_are_skipped_then_abort(tmp_path):
    calls = {"n": 0}

    def sometimes_nan(model, batch, gen):
        calls["n"] += 1
        loss, m = mse(model, batch, gen)
        return (loss * float("nan") if calls["n"] in (2, 3) else loss), m

    t = Trainer(make_model(), sometimes_nan, NoisyData(), cfg(steps=6, max_nonfinite=5), tmp_path / "a")
    t.fit()
    assert t.nonfinite == 2 and t.step == 6
    assert all(torch.isfinite(p).all() for p in t.model.parameters())

    def always_nan(model, batch, gen):
        loss, m = mse(model, batch, gen)
        return loss * float("inf"), m

    t = Trainer(make_model(), always_nan, NoisyData(), cfg(steps=10, max_nonfinite=2), tmp_path / "b")
    with pytest.raises(NonFiniteLossError, match="3 steps had a non-finite"):
        t.fit()
    assert latest_checkpoint(tmp_path / "b" / "checkpoints") is not None


def test_schedule_and_lr_rule():
    assert scaled_lr(1e-3, 2048) == pytest.approx(8e-3)
    assert warmup_cosine(0, 10, 100, 0.01) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 100, 0.01) == pytest.approx(1.0)
    assert warmup_cosine(100, 10, 100, 0.01) == pytest.approx(0.01)
    assert warmup_cosine(55, 10, 100, 0.0) == pytest.approx(0.5)


def test_dataset_smaller_than_batch_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="smaller than one batch"):
        Trainer(make_model(), mse, NoisyData(), cfg(batch_size=32), tmp_path).fit()


def test_auto_precision_is_bf16_only_on_gpus_with_native_bf16(monkeypatch):
    from ivnext_world.train.loop import resolve_precision

    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Tesla V100")
    # A V100/T4: torch reports bf16 "supported" only counting slow emulation.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert resolve_precision("auto", cuda) is None  # fp32
    with pytest.raises(ValueError, match="Tesla V100 has no native bf16"):
        resolve_precision("bf16", cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)  # A100, H100
    assert resolve_precision("auto", cuda) is torch.bfloat16 and resolve_precision("bf16", cuda) is torch.bfloat16
    assert resolve_precision("auto", cpu) is None and resolve_precision("fp32", cuda) is None
    assert resolve_precision("bf16", cpu) is torch.bfloat16
    with pytest.raises(ValueError, match="precision must be"):
        resolve_precision("fp16", cuda)


def test_checkpoint_is_written_in_the_background_from_a_snapshot(tmp_path, monkeypatch):
    import threading

    from ivnext_world.train import checkpoint as ck

    t = Trainer(make_model(), mse, NoisyData(), cfg(steps=6, ckpt_every=100), tmp_path)
    t.fit(stop_after=2)  # AdamW state exists now
    model_before = weights(t.model).clone()
    opt_before = {k: v.clone() for k, v in t.optimizer.state_dict()["state"][0].items()}

    started, release = threading.Event(), threading.Event()
    real_write = ck.write_checkpoint

    def held_write(*args, **kwargs):
        started.set()
        assert release.wait(60)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(ck, "write_checkpoint", held_write)
    path = t.save()
    assert started.wait(60) and not path.exists()  # save() returned while the write is in flight
    with torch.no_grad():  # training goes on, updating parameters and optimiser state in place
        for p in t.model.parameters():
            p.add_(1.0)
        t.optimizer.state[next(t.model.parameters())]["exp_avg"].add_(1.0)
    release.set()
    t.wait_for_checkpoint()
    assert path.name == "step_00000002" and (path / "state.json").is_file()
    fresh = make_model()
    fresh_opt = Trainer(fresh, mse, NoisyData(), cfg(steps=6), tmp_path / "other").optimizer
    load_checkpoint(path, fresh, fresh_opt)
    assert torch.equal(weights(fresh), model_before)  # what the model was at save(), not after
    assert all(torch.equal(fresh_opt.state_dict()["state"][0][k], v) for k, v in opt_before.items())

    def failing_write(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ck, "write_checkpoint", failing_write)
    t.save()
    with pytest.raises(RuntimeError, match="writing a checkpoint failed: disk full"):
        t.wait_for_checkpoint()
