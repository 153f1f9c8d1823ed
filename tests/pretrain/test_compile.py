"""``loop.compile``: the parts a pretraining step runs are compiled, without graph breaks, and
compute what the eager step computes.

``aot_eager`` (dynamo + AOTAutograd, no code generation) keeps these tests fast on the CPU while
tracing exactly what inductor would be given: forward and backward graphs, graph breaks, recompiles.
"""
import copy
import functools

import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend
from torch._dynamo.utils import counters

from ivnext_world.pretrain import FrozenEncoder, Stage1Loss, Stage1Objective, Stage2Objective, build_epd
from ivnext_world.train import LoopConfig, Trainer
from ivnext_world.train import loop as loop_module

from ._helpers import tiny_cfg
from .test_objectives import teacher, video


@pytest.fixture(autouse=True)
def fresh_dynamo(one_torch_thread):
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def _compile_parts(parts: dict) -> dict[str, CompileCounterWithBackend]:
    """Compile each part in place with its own counting backend (separate caches per backend)."""
    backends = {}
    for name, module in parts.items():
        backends[name] = CompileCounterWithBackend("aot_eager")
        assert loop_module.compile_in_place(module, backend=backends[name]), name
    return backends


def _graph_breaks() -> dict:
    return dict(counters["graph_break"])


def _step(objective, model, v, seed):
    loss, metrics = objective(model, {"video": v}, torch.Generator().manual_seed(seed))
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_same(loss_c, grads_c, loss_e, grads_e):
    torch.testing.assert_close(loss_c, loss_e, rtol=1e-5, atol=1e-6)
    assert grads_c.keys() == grads_e.keys() and grads_c
    for name in grads_e:
        torch.testing.assert_close(grads_c[name], grads_e[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.slow
def test_stage1_step_compiles_every_part_without_graph_breaks():
    t = teacher()
    model = build_epd(tiny_cfg(teacher_dim=t.embed_dim))
    eager_model = copy.deepcopy(model)
    obj = Stage1Objective(Stage1Loss(), t)
    backends = _compile_parts({"encoder": model.encoder, "predictor": model.predictor,
                               "decoder": model.decoder, "teacher": t})
    v = video()
    loss_c, grads_c = _step(obj, model, v, seed=0)
    assert _graph_breaks() == {}
    # One graph per block shape (all blocks of a part share it), forward and backward traced.
    assert {name: b.frame_count > 0 for name, b in backends.items()} == dict.fromkeys(backends, True)
    _assert_same(loss_c, grads_c, *_step(obj, eager_model, v, seed=0))


@pytest.mark.slow
def test_stage2_step_compiles_every_part_without_graph_breaks():
    model = build_epd(tiny_cfg(decoder="none", latent_head=True))
    eager_model = copy.deepcopy(model)
    frozen = FrozenEncoder(model.encoder)
    obj = Stage2Objective(frozen)
    backends = _compile_parts({"encoder": model.encoder, "predictor": model.predictor, "teacher": frozen})
    v = video()
    for seed in (0, 1):  # the views' visible counts differ from view to view and step to step
        loss_c, grads_c = _step(obj, model, v, seed)
        _assert_same(loss_c, grads_c, *_step(obj, eager_model, v, seed))
        model.zero_grad(set_to_none=True)
        eager_model.zero_grad(set_to_none=True)
    assert _graph_breaks() == {}
    assert all(b.frame_count > 0 for b in backends.values())
    # A changing visible count makes the encoder's graph dynamic once, not a compile per count.
    assert backends["encoder"].frame_count <= 3


@pytest.mark.slow
def test_trainer_compile_flag_compiles_what_the_objective_runs(tmp_path, monkeypatch):
    if hasattr(loop_module, "compile_in_place"):  # the default backend (inductor) is slow on a CPU
        monkeypatch.setattr(loop_module, "compile_in_place",
                            functools.partial(loop_module.compile_in_place, backend="eager"))
    t = teacher()
    model = build_epd(tiny_cfg(teacher_dim=t.embed_dim))
    data = [{"video": video(1, seed=i)[0]} for i in range(4)]
    cfg = LoopConfig(steps=2, batch_size=2, num_workers=0, warmup_steps=1, compile=True, log_every=1, ckpt_every=100)
    trainer = Trainer(model, Stage1Objective(Stage1Loss(), t), data, cfg, tmp_path, device="cpu")
    history = trainer.fit()
    assert len(history) == 2 and all(torch.isfinite(torch.tensor(r["loss"])) for r in history)
    assert counters["stats"]["unique_graphs"] > 0 and _graph_breaks() == {}
    compiled = [m for m in [*model.modules(), *t.modules()] if m._compiled_call_impl is not None]
    blocks = [*model.encoder.blocks, *model.predictor.blocks, *model.decoder.net.blocks, *t.model.blocks]
    assert set(map(id, blocks)) <= set(map(id, compiled))
    # Compiled in place: the checkpoint has the plain parameter names.
    assert set(model.state_dict()) == set(build_epd(tiny_cfg(teacher_dim=t.embed_dim)).state_dict())


def _fsdp_rank(rank: int, world_size: int, port: int, results) -> None:
    """One gloo rank: FSDP2-shard a two-block model, compile it in place, compare with eager DDP maths."""
    import os

    import torch.distributed as dist

    from ivnext_world.models import Block
    from ivnext_world.train.fsdp import shard

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        class Tiny(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.blocks = torch.nn.ModuleList([Block(32, 2) for _ in range(2)])
                self.head = torch.nn.Linear(32, 1)

            def forward(self, x):
                for blk in self.blocks:
                    x = blk(x)
                return self.head(x).mean()

        torch.manual_seed(0)
        model, ref = Tiny(), Tiny()
        ref.load_state_dict(model.state_dict())
        shard(model)  # what Trainer does in __init__ with parallel="fsdp"; fit compiles afterwards
        backend = CompileCounterWithBackend("aot_eager")
        loop_module.compile_in_place(model, backend=backend)
        x = torch.randn(2, 5, 32, generator=torch.Generator().manual_seed(rank))
        loss = model(x)
        loss.backward()
        ref_loss = ref(x)
        ref_loss.backward()
        grad = model.blocks[0].attn.qkv.weight.grad.full_tensor()
        ref_grad = ref.blocks[0].attn.qkv.weight.grad
        dist.all_reduce(ref_grad)
        results[rank] = (backend.frame_count, dict(counters["graph_break"]), float((loss - ref_loss).abs()),
                         float((grad - ref_grad / world_size).abs().max()))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_compiled_blocks_run_under_fsdp():
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_fsdp_rank, args=(2, port, results), nprocs=2)
        results = dict(results)
    for frames, breaks, loss_diff, grad_diff in results.values():
        assert frames > 0 and breaks == {}
        assert loss_diff < 1e-6 and grad_diff < 1e-6
