"""Stop-on-signal: the loop checkpoints the step it is in, raises Preempted, and resumes bit-identically."""
import pytest
import torch

from ivnext_world.train import STOP, Preempted, Trainer, latest_checkpoint

from ._tiny import TinyConfig, _mse, _Points, digest


def _trainer(out, stop_at=None):
    cfg = TinyConfig(out=str(out))
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 2)

    def objective(m, batch, gen):
        if stop_at is not None and trainer.step == stop_at - 1:
            STOP.set()  # as the SIGTERM/SIGUSR2 handler would, in the middle of step `stop_at`
        return _mse(m, batch, gen)

    trainer = Trainer(model, objective, _Points(), cfg.loop, out, device="cpu")
    return trainer, model


def test_stop_request_checkpoints_the_current_step_and_resume_is_bitwise(tmp_path):
    ref, ref_model = _trainer(tmp_path / "ref")
    ref.fit()
    STOP.clear()
    try:
        run, _ = _trainer(tmp_path / "run", stop_at=3)  # ckpt_every=4: step 3 is saved only because of the stop
        with pytest.raises(Preempted, match="after step 3"):
            run.fit()
    finally:
        STOP.clear()
    assert latest_checkpoint(tmp_path / "run" / "checkpoints").name == "step_00000003"
    resumed, model = _trainer(tmp_path / "run")
    resumed.fit()
    assert resumed.step == 8 and digest(model) == digest(ref_model)
