"""DDP runs without find_unused_parameters: every objective in the repository freezes exactly the
parameters it never gives a gradient (``freeze_unused``), and the standard pretraining and
world-model objectives take 2-rank DDP steps that way."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch.utils.data import Dataset

from ivnext_world.pretrain.epd import FrozenEncoder, build_epd
from ivnext_world.pretrain.stage1 import Stage1Loss, Stage1Objective
from ivnext_world.pretrain.stage2 import Stage2Objective
from ivnext_world.train.loop import LoopConfig, Trainer
from ivnext_world.world_model.latents import NormStats
from ivnext_world.world_model.train import WMPredictorSize, WorldModelObjective, WorldModelTrainConfig, build_predictor

from ._ranks import run_ranks

TINY = dict(img_size=56, num_frames=4, encoder_kwargs={"embed_dim": 48, "depth": 3, "num_heads": 2, "pool_num_heads": 2},
            predictor_dim=48, predictor_depth=1, predictor_heads=2, decoder_width=64, decoder_depth=2, align_layers=2,
            drop_path=0.1)
STATS = NormStats(action_mean=[0.0, 0.0], action_std=[1.0, 1.0], proprio_mean=[0.0] * 3, proprio_std=[1.0] * 3)


def _teacher():
    from ivnext_world.models import ImageTeacher

    torch.manual_seed(1)
    return ImageTeacher("vit_tiny_patch16_224", None, num_layers=2, img_size=56)


def stage1(w_middle=1.0, w_final=1.0, w_recon=1.0, teacher=None):
    """Model and objective as run_pretrain builds them for these loss weights."""
    from ivnext_world.pretrain.epd import EPDConfig

    loss = Stage1Loss(w_middle=w_middle, w_final=w_final, w_recon=w_recon)
    teacher = teacher if (w_middle or w_final) else None
    cfg = EPDConfig(**TINY, teacher_dim=teacher.embed_dim if teacher else None, decoder="diffusion" if w_recon else "none")
    torch.manual_seed(0)
    return build_epd(cfg), Stage1Objective(loss, teacher)


def stage2():
    s1, _ = stage1(w_middle=0, w_final=0)
    student = build_epd(replace(s1.cfg, decoder="none", teacher_dim=None, latent_head=True))
    student.load_state_dict(s1.state_dict(), strict=False)
    return student, Stage2Objective(FrozenEncoder(s1.encoder))


def world_model(**kw):
    s1, _ = stage1(w_middle=0, w_final=0)
    cfg = WorldModelTrainConfig(predictor=WMPredictorSize(embed_dim=32, depth=1, num_heads=2, max_frames=16), **kw)
    torch.manual_seed(0)
    predictor = build_predictor(cfg, s1.encoder, 56, STATS)
    return predictor, WorldModelObjective(s1.encoder, STATS, cfg.loss, cfg.rollout_steps, cfg.w_teacher_forcing,
                                          cfg.w_rollout, cfg.pool, cfg.w_proprio)


class Clips(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return {"video": torch.randn(3, 4, 56, 56)}  # (C, T, H, W)


class Windows(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):  # frames (T, C, H, W), actions (T, A), proprio (T, S)
        return {"frames": torch.randn(4, 3, 56, 56), "actions": torch.randn(4, 2), "proprio": torch.randn(4, 3)}


def _no_grad(model, objective, batch) -> set[str]:
    model.train()
    loss, _ = objective(model, batch, torch.Generator().manual_seed(0))
    loss.backward()
    return {n for n, p in model.named_parameters() if p.requires_grad and p.grad is None}


CASES = {
    "stage1": lambda t: stage1(teacher=t), "stage1 no middle": lambda t: stage1(w_middle=0, teacher=t),
    "stage1 no final": lambda t: stage1(w_final=0, teacher=t), "stage1 no recon": lambda t: stage1(w_recon=0, teacher=t),
    "stage1 recon only": lambda t: stage1(w_middle=0, w_final=0), "stage2": lambda t: stage2(),
    "wm": lambda t: world_model(), "wm tf only, no proprio loss": lambda t: world_model(w_proprio=0.0, w_rollout=0.0),
    "wm action-free": lambda t: world_model(action_conditioned=False),
}


def test_objectives_freeze_exactly_what_they_leave_without_gradient(one_torch_thread):
    teacher = _teacher()
    video = {"video": torch.randn(2, 3, 4, 56, 56)}
    windows = {"frames": torch.randn(2, 4, 3, 56, 56), "actions": torch.randn(2, 4, 2), "proprio": torch.randn(2, 4, 3)}
    expected_frozen = {"stage2": "encoder.head.", "stage1 no middle": ("align_heads.", "align_pos_embed."), "stage1 recon only": "encoder.head.",
                       "stage1 no recon": "predictor.", "wm tf only, no proprio loss": "proprio_head."}
    for name, build in CASES.items():
        batch = windows if name.startswith("wm") else video
        model, objective = build(teacher)
        unused = _no_grad(model, objective, batch)  # without freezing: what DDP would wait for forever
        model, objective = build(teacher)
        objective.freeze_unused(model)
        frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
        assert frozen == unused, name
        assert not _no_grad(model, objective, batch), name  # every trainable parameter gets a gradient
        if name in expected_frozen:
            allowed = ("encoder.head.", "final_align_head.", *((expected_frozen[name],) if isinstance(expected_frozen[name], str) else expected_frozen[name]))
            assert frozen and all(n.startswith(allowed) for n in frozen), name
    # The standard objectives (paper Stage 1 and 2 aside from the pooling head, default world model) train everything.
    assert not any(not p.requires_grad for p in stage1(teacher=teacher)[0].parameters())


def _ddp_steps(rank: int, root: str) -> dict:
    made = []

    class RecordingDDP(torch.nn.parallel.DistributedDataParallel):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self.find_unused_parameters)

    torch.nn.parallel.DistributedDataParallel = RecordingDDP
    loop = LoopConfig(steps=2, batch_size=2, num_workers=0, warmup_steps=1, ckpt_every=100, log_every=1, base_lr=0.05)
    steps = {}
    for name, (model, objective), data in [("stage1", stage1(teacher=_teacher()), Clips()), ("stage2", stage2(), Clips()),
                                           ("world_model", world_model(), Windows())]:
        trainer = Trainer(model, objective, data, loop, f"{root}/{name}", device="cpu")
        steps[name] = [r["step"] for r in trainer.fit()]  # a parameter without gradient fails at step 2
    return {"find_unused": made, "steps": steps}


@pytest.mark.slow
def test_standard_objectives_take_ddp_steps_without_find_unused_parameters(tmp_path):
    for r in run_ranks(_ddp_steps, (str(tmp_path),), tmp_path / "pg", timeout=300):
        assert r["find_unused"] == [False, False, False]
        assert r["steps"] == {"stage1": [1, 2], "stage2": [1, 2], "world_model": [1, 2]}
