"""Per-GPU memory measured before submission: the fake-GPU machinery, the measurement, the refusal.

The emulation is checked against what can be observed here: PyTorch's own CUDA autocast kernels
(registered in every build), a forward pass on fake *CUDA* tensors under real CUDA autocast (which
runs without a GPU; only backward needs one), and a real CPU step (for the byte counting itself).
"""
import contextlib

import torch
import torch.nn.functional as F
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

import pytest

from ivnext_world.launch import fake_gpu
from ivnext_world.launch.memory import (GIB, MemoryCheckError, PeakMemory, StepMemory, check_fits, estimate_pretrain,
                                        gpu_memory_bytes)


# ------------------------------------------------------------------------------ fake GPU machinery
def test_autocast_tables_are_exactly_pytorchs_cuda_autocast_ops():
    # An op PyTorch adds to (or drops from) CUDA autocast shows up here, not as a wrong number later.
    assert fake_gpu.CUDA_POLICY_OPS == fake_gpu.registered_autocast_ops("AutocastCUDA")


def _saved_on(device: str, build, run, routing: bool = True):
    """(shape, dtype) of every tensor autograd saves while ``run(module, device)`` runs under bf16
    autocast: real CUDA autocast on fake CUDA tensors, the emulated policy on fake CPU tensors."""
    saved = []
    with torch.device("meta"):
        module = build()
    with FakeTensorMode(allow_non_fake_inputs=True):
        module.to_empty(device=device)
        kernels = fake_gpu.gpu_kernels() if routing else contextlib.nullcontext()
        with kernels, torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append((tuple(t.shape), t.dtype)) or t,
                                                                 lambda t: t):
            if device == "cuda":  # torch.autocast refuses "cuda" without a GPU; the dispatcher does not
                torch.set_autocast_enabled("cuda", True)
                torch.set_autocast_dtype("cuda", torch.bfloat16)
                try:
                    out = run(module, device)
                finally:
                    torch.set_autocast_enabled("cuda", False)
                    torch.clear_autocast_cache()
            else:
                with fake_gpu.cuda_autocast_policy(), fake_gpu.autocast_region(torch.bfloat16):
                    out = run(module, device)
    outs = [t.dtype for t in (out if isinstance(out, (tuple, list)) else [out]) if isinstance(t, torch.Tensor)]
    return saved, outs


def _parts():
    from ivnext_world.models import AlignmentHead, DiffusionDecoder, LatentPredictionHead, Predictor, VideoViT
    from ivnext_world.pretrain.epd import cosine_loss

    def vit():
        return VideoViT(img_size=28, patch_size=14, num_frames=2, embed_dim=64, depth=2, num_heads=4, pool_num_heads=4)

    def vit_run(m, d):
        x = torch.randn(2, 3, 2, 28, 28, device=d)
        return m.forward_head(m.forward_features(x))

    def pred_run(m, d):
        return m(torch.randn(2, 4 + 8, 64, device=d, requires_grad=True), None, (2, 2, 2)).patches

    def dec_run(m, d):
        cond = torch.randn(2, 8, 32, device=d, requires_grad=True)
        return m.loss(cond, torch.randn(2, 8, 24, device=d), None, generator=torch.Generator().manual_seed(0))

    def heads_run(m, d):
        x = torch.randn(2, 8, 64, device=d, requires_grad=True)
        return cosine_loss(m[0](x), torch.randn(2, 8, 32, device=d)) + cosine_loss(m[1](x), torch.randn(2, 8, 48, device=d))

    return {
        "encoder": (vit, vit_run),
        "predictor": (lambda: Predictor(enc_dim=64, embed_dim=64, depth=2, num_heads=4, grid_size=(2, 2, 2)), pred_run),
        "decoder": (lambda: DiffusionDecoder(cond_dim=32, patch_dim=24, width=32, depth=2), dec_run),
        "heads": (lambda: nn.ModuleList([AlignmentHead(64, 32), LatentPredictionHead(64, 48)]), heads_run),
    }


@pytest.mark.parametrize("part", ["encoder", "predictor", "decoder", "heads"])
def test_fake_cpu_step_saves_what_cuda_autocast_saves(part):
    build, run = _parts()[part]
    on_cuda, cuda_out = _saved_on("cuda", build, run)
    on_cpu, cpu_out = _saved_on("cpu", build, run)
    assert on_cpu == on_cuda and cpu_out == cuda_out
    # without the emulation, CPU autocast saves something else (layer/rms norms, softmax, sums)
    if part in ("encoder", "predictor", "heads"):
        with torch.device("meta"):
            module = build()
        plain = []
        with FakeTensorMode(allow_non_fake_inputs=True):
            module.to_empty(device="cpu")
            with fake_gpu.gpu_kernels(), torch.autograd.graph.saved_tensors_hooks(
                    lambda t: plain.append((tuple(t.shape), t.dtype)) or t, lambda t: t):
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    run(module, "cpu")
        assert plain != on_cuda


def test_rms_norm_runs_cudas_fused_kernel():
    from timm.layers import RmsNorm

    def run(m, d):
        return m(torch.randn(2, 5, 16, device=d, requires_grad=True))

    on_cuda, _ = _saved_on("cuda", lambda: RmsNorm(16), run, routing=False)  # PyTorch's own CUDA path
    on_cpu, _ = _saved_on("cpu", lambda: RmsNorm(16), run)
    assert on_cpu == on_cuda == [((2, 5, 16), torch.float32), ((16,), torch.float32), ((2, 5, 1), torch.float32)]


@pytest.mark.parametrize("dtype,mask", [(torch.bfloat16, False), (torch.float32, False), (torch.bfloat16, True)])
def test_attention_saves_q_k_v_out_lse_never_the_score_matrix(dtype, mask):
    b, h, n, d = 2, 4, 256, 32
    with FakeTensorMode():
        q, k, v = (torch.randn(b, h, n, d, dtype=dtype, requires_grad=True) for _ in range(3))
        attn_mask = torch.ones(n, n, dtype=torch.bool).tril() if mask else None
        saved = []
        with fake_gpu.gpu_kernels(), torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        out.float().sum().backward()  # the GPU kernels' backward runs too
        assert q.grad.shape == q.shape
    shapes = [tuple(t.shape) for t in saved]
    assert not any(s[-2:] == (n, n) and len(s) == 4 and s[:2] == (b, h) and t.untyped_storage().nbytes() >= b * h * n * n
                   for s, t in zip(shapes, saved))
    assert (b, h, n) in shapes  # the float32 logsumexp
    assert sum(t.untyped_storage().nbytes() for t in saved if t.dim() == 4 and t.shape[-1] == d) > 0


def test_small_constants_make_masks_computable_and_large_tensors_stay_fake():
    from ivnext_world.masking import random_tube_mask, visible_indices

    with FakeTensorMode() as mode, fake_gpu.small_constants(mode, limit=10_000):
        mask = random_tube_mask(4, (2, 6, 6), 0.75, generator=torch.Generator().manual_seed(0))
        idx = visible_indices(mask)  # int() and bool() of mask sums: needs values
        big = torch.randn(200, 200)  # more than the limit: no values
        x = torch.randn(4, 72, 64)
        rows = x[mask]  # boolean indexing with a known mask has a known shape
    assert idx.shape == (4, 2 * 9) and rows.shape == (4 * 2 * 27, 64)
    assert idx.constant is not None and big.constant is None and rows.constant is None


# ------------------------------------------------------------------------------ counting bytes
def test_peak_memory_counts_each_storage_once_and_follows_frees():
    with PeakMemory() as m:
        a = torch.empty(1000)  # 4000 bytes -> 4096 (512-byte blocks)
        b = a.view(10, 100)  # a view: no new storage
        c = torch.empty(10)  # 40 -> 512
        assert m.live == 4096 + 512
        del a, b
        d = torch.empty(100)  # 400 -> 512
    assert m.live == 1024 and m.peak == 4096 + 512
    del c, d


def test_fake_measurement_equals_a_real_cpu_step():
    # Same Stage-1 objective, float32, PyTorch's own kernels: bytes alive after the forward pass and
    # the peak of the backward pass measured on real tensors and on fake ones (with constant masks).
    # Alignment losses only: the CPU kernel of mse_loss returns its scalar as a view of the
    # unreduced buffer (a CPU quirk fake tensors do not have), which would break exact equality.
    from ivnext_world.models import ImageTeacher
    from ivnext_world.pretrain import build_epd
    from ivnext_world.pretrain.stage1 import Stage1Loss, Stage1Objective
    from ivnext_world.launch.memory import _UniformAttentionTeacher, _module_tensors

    from pretrain._helpers import tiny_cfg  # tests/ is on sys.path

    def run(fake: bool):
        torch.manual_seed(0)
        with torch.device("meta" if fake else "cpu"):
            teacher = ImageTeacher("vit_tiny_patch16_224", img_size=56, num_layers=2, model_kwargs={"depth": 3})
            model = build_epd(tiny_cfg(teacher_dim=teacher.embed_dim, drop_path=0.0, decoder="none")).train()
        objective = Stage1Objective(Stage1Loss(w_recon=0.0), _UniformAttentionTeacher(teacher) if fake else teacher)
        with contextlib.ExitStack() as stack:
            if fake:
                mode = stack.enter_context(FakeTensorMode(allow_non_fake_inputs=True))
                model.to_empty(device="cpu")
                teacher.to_empty(device="cpu")
            video = torch.randn(2, 3, 4, 56, 56)
            if fake:
                stack.enter_context(fake_gpu.small_constants(mode))
            m = stack.enter_context(PeakMemory())
            for t in [*_module_tensors(model), *_module_tensors(teacher), video]:
                m.add(t)
            start = m.live
            loss, _ = objective(model, {"video": video}, torch.Generator().manual_seed(0))
            alive = m.live - start
            m.reset_peak()
            loss.backward()
            return alive, m.peak - start

    assert run(fake=True) == run(fake=False)


# ------------------------------------------------------------------------------ estimates and checks
def _tiny_pretrain(*overrides):
    from omegaconf import OmegaConf

    from ivnext_world.config import load_config

    base = ["model.img_size=56", "model.num_frames=4", "model.predictor_dim=48", "model.predictor_depth=1",
            "model.predictor_heads=2", "model.decoder_width=64", "model.decoder_depth=2", "model.align_layers=2",
            "teacher.model=vit_tiny_patch16_224", "teacher.num_layers=2", "teacher.allow_random=true", "loop.batch_size=2"]
    return OmegaConf.to_object(load_config("pretrain", [*base, *overrides]))


def test_stage1_estimate_follows_batch_and_checkpointing():
    off2 = estimate_pretrain(_tiny_pretrain())
    off4 = estimate_pretrain(_tiny_pretrain("loop.batch_size=4"))
    on2 = estimate_pretrain(_tiny_pretrain("model.grad_checkpointing=true"))
    assert off2.params > 0 and off2.optimizer >= 2 * off2.params * 0.9 and off2.frozen > 0
    # activations grow with the batch (less than 2x: the weights' bf16 copies are made once per step)
    assert 1.3 < off4.activations / off2.activations < 2.0
    assert off4.params == off2.params and off4.optimizer == off2.optimizer
    assert on2.activations < 0.7 * off2.activations and on2.params == off2.params
    assert off2.peak >= off2.params + off2.optimizer + off2.activations
    assert off2.ddp_buckets == 0 and off2.total == off2.peak + off2.runtime


def test_stage2_estimate_runs_two_views_without_a_stage1_checkpoint():
    mem = estimate_pretrain(_tiny_pretrain("stage=2"), world_size=8)
    assert mem.activations > 0 and mem.frozen > 0 and mem.notes
    assert mem.ddp_buckets == mem.params and mem.total == mem.peak + mem.params + mem.runtime  # DDP's gradient buckets


def test_check_fits_requires_the_headroom():
    mem = StepMemory(params=GIB, optimizer=2 * GIB, activations=60 * GIB, peak_forward=66 * GIB, peak_backward=65 * GIB)
    assert mem.total == 68 * GIB
    name, size = gpu_memory_bytes("h100")
    assert name == "h100_80gb" and check_fits(mem, name, size) > 0.1
    mem.peak_forward = 70 * GIB  # 72 GiB of 79.6: less than 10% free
    with pytest.raises(MemoryCheckError, match=r"needs 72.0 GiB per GPU, but one h100_80gb has 79.6 GiB and 10% must stay free"):
        check_fits(mem, name, size)
    assert gpu_memory_bytes("x", 40.0) == ("x", 40 * GIB)
    with pytest.raises(ValueError, match="not a known GPU"):
        gpu_memory_bytes("h1000")


# ------------------------------------------------------------------------------ the launcher refuses
def test_dry_run_prints_the_measured_memory_and_refuses_what_does_not_fit(tmp_path, capsys):
    from ivnext_world.launch.__main__ import main

    base = ["pretrain", f"out={tmp_path / 'run'}", "launcher=h100_1x8"]
    assert main(base + ["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "memory per GPU (Stage 1, ivnext_vit_tiny_patch14_224" in out and "fits one h100_80gb (79.6 GiB)" in out
    # the same tiny job on a 2 GiB GPU: the CUDA runtime allowance alone takes 2 GiB
    assert main(base + ["launcher.gpu_memory_gib=2", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "GiB per GPU, but one h100_80gb has 2.0 GiB and 10% must stay free" in err
    assert main(base + ["launcher.gpu=h1000", "--dry-run"]) == 2
    assert "launcher.gpu='h1000' is not a known GPU" in capsys.readouterr().err
    assert main(base + ["launcher.gpu_memory_gib=2", "--dry-run", "--no-memory-check"]) == 0
    assert "memory per GPU" not in capsys.readouterr().out
    assert not (tmp_path / "run").exists()


def test_submission_is_refused_before_anything_is_written(tmp_path):
    from ivnext_world.launch import launch

    with pytest.raises(MemoryCheckError, match="needs"):
        launch("pretrain", [f"out={tmp_path / 'run'}", "launcher=slurm", "launcher.gpus_per_node=1",
                            "launcher.gpu_memory_gib=2"])
    assert not (tmp_path / "run").exists()  # no provenance, no sbatch


@pytest.mark.slow
def test_every_shipped_slurm_recipe_fits_its_gpu_with_headroom(tmp_path):
    """The scripts in slurm/ and every launcher preset, at the size they are configured for."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "IVNEXT_PYTHON": sys.executable, "DATA": str(tmp_path / "clips.csv"), "OUT": str(tmp_path / "run"),
           "TEACHER": str(tmp_path / "siglip.safetensors"), "ACCOUNT": "test"}
    runs = [[str(script), "--dry-run"] for script in sorted((repo / "slurm").glob("*.sh")) if script.name != "launch.sh"]
    # README: Stage 2 is the Stage-1 command with stage=2 init_from=... loop.base_lr=1e-4
    runs.append([str(repo / "slurm" / "stage1_4x8.sh"), "stage=2", f"init_from={tmp_path / 'stage1'}", "loop.base_lr=1e-4", "--dry-run"])
    runs += [[str(repo / "slurm" / "launch.sh"), "pretrain", f"launcher={p.stem}", f"out={tmp_path / p.stem}", "--dry-run"]
             for p in sorted((repo / "slurm" / "launcher").glob("*.yaml"))]
    assert len(runs) >= 5
    for cmd in runs:
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        assert r.returncode == 0, (cmd, r.stdout, r.stderr)
        gpu_job = "gpus_per_node" not in r.stdout and " 0 GPU(s)/node" not in r.stdout
        if gpu_job:
            assert "fits one h100_80gb" in r.stdout, (cmd, r.stdout)
