"""Gradient checkpointing reaches every stack of a Stage-1 step: same gradients, fewer saved bytes.

Saved bytes are counted with ``torch.autograd.graph.saved_tensors_hooks`` (distinct storages that
autograd keeps for backward) and, as a second measure, as the bytes still alive after the forward
pass (``PeakMemory``), which also counts what a checkpoint keeps: its block inputs.
"""
import torch
from torch import nn

from ivnext_world.launch.memory import PeakMemory
from ivnext_world.models import DiffusionDecoder, ImageTeacher
from ivnext_world.pretrain import EPDConfig, build_epd
from ivnext_world.pretrain.stage1 import Stage1Loss, Stage1Objective

from ._helpers import tiny_cfg


def _forward_bytes(fn, *existing):
    """``(result, saved-for-backward bytes, bytes alive after fn beyond those before)``.

    ``existing``: modules and tensors made before (their storages are not new when an op views them).
    """
    saved: dict[int, int] = {}

    def pack(t):
        st = t.untyped_storage()
        saved[st.data_ptr()] = st.nbytes()
        return t

    with PeakMemory() as tracker, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        for x in existing:
            for t in ([*x.parameters(), *x.buffers()] if isinstance(x, nn.Module) else [x]):
                tracker.add(t)
        start = tracker.live
        out = fn()
    for x in existing:  # parameters and inputs are not activations
        for t in ([*x.parameters(), *x.buffers()] if isinstance(x, nn.Module) else [x]):
            saved.pop(t.untyped_storage().data_ptr(), None)
    return out, sum(saved.values()), tracker.live - start


def _decoder_step(dec: DiffusionDecoder, cond: torch.Tensor, target: torch.Tensor):
    mask = torch.zeros(cond.shape[:2], dtype=torch.bool)
    mask[:, ::2] = True
    return dec.loss(cond, target, mask, generator=torch.Generator().manual_seed(0))


def test_decoder_checkpointing_same_gradients_fewer_saved_bytes():
    torch.manual_seed(0)
    dec = DiffusionDecoder(cond_dim=16, patch_dim=24, width=128, depth=4)
    for m in dec.net.modules():  # zero-init modulations would make most gradients exactly zero
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.05)
    cond, target = torch.randn(2, 200, 16), torch.randn(2, 200, 24)
    runs = {}
    for ckpt in (False, True):
        dec.set_grad_checkpointing(ckpt)
        dec.zero_grad(set_to_none=True)
        c = cond.clone().requires_grad_(True)
        loss, saved, alive = _forward_bytes(lambda: _decoder_step(dec, c, target), dec, c, target)
        loss.backward()
        runs[ckpt] = (loss.detach(), c.grad, [p.grad.clone() for p in dec.parameters()], saved, alive)
    (l0, g0, p0, saved0, alive0), (l1, g1, p1, saved1, alive1) = runs[False], runs[True]
    assert torch.equal(l0, l1) and torch.equal(g0, g1)
    assert all(torch.equal(a, b) for a, b in zip(p0, p1))
    assert saved1 < saved0 / 2, (saved1, saved0)
    assert alive1 < alive0 / 2, (alive1, alive0)


def test_epd_config_flag_reaches_the_decoder():
    target = torch.randn(2, 400, 3 * 14 * 14)
    cond = torch.randn(2, 400, 48)
    alive = {}
    for ckpt in (False, True):
        torch.manual_seed(0)
        # Noise-only loss: the learned-variance term (official default) adds activations outside the
        # residual blocks that dominate at this tiny width; this test is about the blocks.
        model = build_epd(tiny_cfg(grad_checkpointing=ckpt, decoder_learn_sigma=False)).train()
        c = cond.clone().requires_grad_(True)
        _, _, alive[ckpt] = _forward_bytes(lambda: _decoder_step(model.decoder, c, target), model, c, target)
    # Off: every residual block keeps ~10 (rows, width) tensors; on: its input only.
    assert alive[True] < 0.8 * alive[False], alive


def test_set_grad_checkpointing_covers_every_stack_of_a_stage1_step():
    torch.manual_seed(0)
    teacher = ImageTeacher("vit_tiny_patch16_224", img_size=56, num_layers=2, model_kwargs={"depth": 3})
    model = build_epd(tiny_cfg(teacher_dim=teacher.embed_dim, decoder_learn_sigma=False)).train()  # blocks only (see above)
    objective = Stage1Objective(Stage1Loss(), teacher)
    video = torch.randn(2, 3, 4, 56, 56)
    stacks = {"encoder": [model.encoder], "predictor": [model.predictor], "decoder": [model.decoder],
              "align_heads": list(model.align_heads)}

    def step(on: bool, except_: str | None = None):
        model.set_grad_checkpointing(on)
        for part in stacks.get(except_, []):
            part.set_grad_checkpointing(False)
        model.zero_grad(set_to_none=True)
        (loss, _), saved, alive = _forward_bytes(
            lambda: objective(model, {"video": video}, torch.Generator().manual_seed(1)), model, teacher, video)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, alive

    l0, g0, alive_off = step(False)
    l1, g1, alive_on = step(True)
    assert torch.equal(l0, l1) and g0.keys() == g1.keys()
    for name in g0:
        torch.testing.assert_close(g1[name], g0[name], rtol=1e-5, atol=1e-7, msg=name)
    assert alive_on < 0.6 * alive_off, (alive_on, alive_off)
    for name in stacks:  # each stack's share: turning it alone off keeps more alive
        assert step(True, except_=name)[2] > alive_on, name
    model.set_grad_checkpointing(False)
    assert not model.cfg.grad_checkpointing
    assert not any(p.grad_checkpointing for p in [model.encoder, model.predictor, model.decoder.net, *model.align_heads])


def test_checkpointing_is_off_by_default_and_stored_in_the_config():
    cfg = EPDConfig()
    assert cfg.grad_checkpointing is False
    model = build_epd(tiny_cfg(grad_checkpointing=True, teacher_dim=64))
    assert model.decoder.net.grad_checkpointing and all(h.grad_checkpointing for h in model.align_heads)
    assert build_epd(model.config_dict()).decoder.net.grad_checkpointing
