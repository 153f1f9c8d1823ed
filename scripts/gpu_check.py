"""One-GPU check: does the toolkit's GPU path run, fit and go fast? PASS/FAIL lines, then a table.

    bash scripts/gpu_check.sh            # one CUDA GPU, Base 16x224, bf16; about 5-8 minutes on an H100/H200
    bash scripts/gpu_check.sh --cpu      # the same code path at tiny size on the CPU (CI runs this)

Checks, each reported PASS or FAIL with its numbers (a failing check does not stop the others):

1. Stage-1 and Stage-2 training steps through the real ``Trainer`` (bf16 on CUDA): a first run
   stops after a few steps with a checkpoint, a second one resumes from it and finishes.
2. Peak memory of a Stage-1 and a Stage-2 step at the preset batch, with and without gradient
   checkpointing (CUDA: ``torch.cuda.max_memory_allocated``; CPU: nothing to measure).
3. Compiled against eager step time (``LoopConfig.compile``), same model and batch.
4. MFU of the full Stage-1 step and of the encoder alone, against the datasheet bf16 peak and a
   matmul peak measured in the same process (FLOPs counted by FlopCounterMode).
5. World model on the device: encode, KV-cached and uncached rollout (equal within tolerance),
   decode, and one plan of each planner (CEM, MPPI, gradient).
6. A one-rank process group (NCCL on CUDA, gloo on the CPU) and one FSDP2 training step.

Exit status 0 only if every check passed.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ivnext_world.pretrain import EPDConfig, FrozenEncoder, Stage1Loss, Stage1Objective, Stage2Objective, build_epd
from ivnext_world.train import LoopConfig, Trainer
from ivnext_world.utils.flops import count_flops, datasheet_peak_flops, matmul_peak_flops, mfu


@dataclass(frozen=True)
class Size:
    """Model and batch of the check. ``gpu`` is slurm/stage1_4x8.sh's model at its per-GPU batch."""

    encoder: str
    img_size: int
    frames: int
    batch: int  # the preset's per-GPU batch (memory check)
    step_batch: int  # batch of the timed, compiled and Trainer steps (keeps the check short)
    predictor_dim: int
    predictor_depth: int
    predictor_heads: int
    decoder_width: int
    decoder_depth: int
    teacher: str
    teacher_img_size: int
    encoder_kwargs: tuple = ()


GPU = Size("ivnext_vit_base_patch14_224", 224, 16, 32, 8, 1024, 5, 16, 1536, 6, "vit_base_patch16_siglip_224", 224)
CPU = Size("ivnext_vit_tiny_patch14_224", 56, 4, 2, 2, 48, 1, 2, 32, 1, "vit_tiny_patch16_224", 56,
           (("embed_dim", 48), ("depth", 2), ("num_heads", 2), ("pool_num_heads", 2)))

RESULTS: list[tuple[str, bool, str]] = []  # (check, passed, detail)
TABLE: list[tuple[str, str]] = []  # (what, value)


@contextlib.contextmanager
def check(name: str):
    """Run a check; record PASS (no exception) or FAIL (the exception, with the last traceback line)."""
    t0 = time.perf_counter()
    try:
        yield
    except Exception as e:  # noqa: BLE001 - every failure is reported, the next check still runs
        tb = traceback.format_exc().strip().splitlines()
        RESULTS.append((name, False, f"{type(e).__name__}: {e} [{tb[-3].strip() if len(tb) > 2 else ''}]"))
        print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
        if os.environ.get("GPU_CHECK_TRACEBACK"):
            traceback.print_exc()
    else:
        RESULTS.append((name, True, f"{time.perf_counter() - t0:.1f} s"))
        print(f"PASS {name} ({time.perf_counter() - t0:.1f} s)", flush=True)
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def record(what: str, value: str) -> None:
    TABLE.append((what, value))
    print(f"     {what}: {value}", flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def epd_config(size: Size, **kw) -> EPDConfig:
    return EPDConfig(
        encoder=size.encoder, img_size=size.img_size, num_frames=size.frames, encoder_kwargs=dict(size.encoder_kwargs),
        predictor_dim=size.predictor_dim, predictor_depth=size.predictor_depth, predictor_heads=size.predictor_heads,
        decoder_width=size.decoder_width, decoder_depth=size.decoder_depth, **kw)


class RandomClips(torch.utils.data.Dataset):
    """Seeded random clips in the layout the pretraining datasets return."""

    def __init__(self, size: Size, n: int = 64):
        self.size, self.n = size, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        s = self.size
        return {"video": torch.randn(3, s.frames, s.img_size, s.img_size, generator=g), "index": i}


def collate(items: list[dict]) -> dict:
    return {"video": torch.stack([it["video"] for it in items]), "index": torch.tensor([it["index"] for it in items])}


def stage_models(size: Size, device: torch.device, grad_ckpt: bool = False):
    """(Stage-1 model, Stage-1 objective, Stage-2 model, Stage-2 objective), random weights."""
    from ivnext_world.models import ImageTeacher

    torch.manual_seed(0)
    teacher = ImageTeacher(size.teacher, img_size=size.teacher_img_size).to(device)
    s1 = build_epd(epd_config(size, teacher_dim=teacher.embed_dim, grad_checkpointing=grad_ckpt)).to(device)
    s2 = build_epd(epd_config(size, decoder="none", latent_head=True, grad_checkpointing=grad_ckpt)).to(device)
    return s1, Stage1Objective(Stage1Loss(), teacher), s2, Stage2Objective(FrozenEncoder(s2.encoder).to(device))


def loop_config(steps: int, batch: int, **kw) -> LoopConfig:
    return LoopConfig(steps=steps, batch_size=batch, num_workers=0, warmup_steps=1, ckpt_every=1000, log_every=1, **kw)


# ------------------------------------------------------------------------------------- checks
def check_trainer(size: Size, device: torch.device, out: Path) -> None:
    for stage in (1, 2):
        with check(f"stage {stage}: Trainer steps, checkpoint, resume"):
            s1, o1, s2, o2 = stage_models(size, device)
            model, objective = (s1, o1) if stage == 1 else (s2, o2)
            run = out / f"stage{stage}"
            first = Trainer(model, objective, RandomClips(size), loop_config(4, size.step_batch), run, collate, device=device)
            first.fit(stop_after=2)
            first.save()
            s1, o1, s2, o2 = stage_models(size, device)
            model, objective = (s1, o1) if stage == 1 else (s2, o2)
            second = Trainer(model, objective, RandomClips(size), loop_config(4, size.step_batch), run, collate, device=device)
            history = second.fit()
            if second.step != 4 or [r["step"] for r in history] != [1, 2, 3, 4]:
                raise AssertionError(f"resumed run ended at step {second.step} with logged steps {[r['step'] for r in history]}")
            losses = [r["loss"] for r in history]
            if not all(torch.isfinite(torch.tensor(losses))):
                raise AssertionError(f"non-finite losses {losses}")
            record(f"stage {stage} losses (steps 1-4, resumed after 2)", " ".join(f"{x:.4f}" for x in losses))


def one_step(model, objective, video, device, autocast_dtype, opt=None):
    opt = opt or torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    opt.zero_grad(set_to_none=True)
    gen = torch.Generator(device=device).manual_seed(0)
    with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
        loss, _ = objective(model, {"video": video}, gen)
    loss.backward()
    opt.step()
    return loss


def check_memory(size: Size, device: torch.device, autocast_dtype) -> None:
    for grad_ckpt in (False, True):
        with check(f"peak memory at the preset batch {size.batch}, grad checkpointing {'on' if grad_ckpt else 'off'}"):
            s1, o1, s2, o2 = stage_models(size, device, grad_ckpt=grad_ckpt)
            video = torch.randn(size.batch, 3, size.frames, size.img_size, size.img_size, device=device)
            for stage, model, objective in ((1, s1, o1), (2, s2, o2)):
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                try:
                    one_step(model, objective, video, device, autocast_dtype)
                except torch.cuda.OutOfMemoryError:
                    record(f"stage {stage} peak memory, batch {size.batch}, ckpt {grad_ckpt}", "OOM")
                    torch.cuda.empty_cache()
                    continue
                if device.type == "cuda":
                    peak = torch.cuda.max_memory_allocated(device) / 2**30
                    record(f"stage {stage} peak memory, batch {size.batch}, ckpt {grad_ckpt}", f"{peak:.1f} GiB")
                else:
                    record(f"stage {stage} step, batch {size.batch}, ckpt {grad_ckpt}", "ran (no peak memory on a CPU)")
            del s1, s2, o1, o2


def timed(fn, device, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def check_compile(size: Size, device: torch.device, autocast_dtype, iters: int) -> None:
    with check("compiled vs eager Stage-1 step"):
        from ivnext_world.train.loop import compile_in_place

        s1, o1, _, _ = stage_models(size, device)
        video = torch.randn(size.step_batch, 3, size.frames, size.img_size, size.img_size, device=device)
        opt = torch.optim.AdamW(s1.parameters(), lr=1e-5)
        eager = timed(lambda: one_step(s1, o1, video, device, autocast_dtype, opt), device, 2, iters)
        # as Trainer.fit does with loop.compile=true; on the CPU path dynamo's capture without inductor's
        # C++ code generation (minutes on 2 cores): the graphs are checked, the timing means nothing there
        compile_in_place(s1, o1.teacher, **({} if device.type == "cuda" else {"backend": "aot_eager"}))
        t0 = time.perf_counter()
        one_step(s1, o1, video, device, autocast_dtype, opt)
        record("compile time (first compiled step)", f"{time.perf_counter() - t0:.1f} s")
        compiled = timed(lambda: one_step(s1, o1, video, device, autocast_dtype, opt), device, 2, iters)
        record(f"Stage-1 step, batch {size.step_batch}: eager / compiled", f"{1e3 * eager:.0f} / {1e3 * compiled:.0f} ms "
               f"({eager / compiled:.2f}x)")


def check_mfu(size: Size, device: torch.device, autocast_dtype, iters: int) -> None:
    with check("MFU: full Stage-1 step and encoder alone"):
        if device.type == "cuda":
            name = torch.cuda.get_device_name(device)
            measured = matmul_peak_flops(device)
        else:
            name = "CPU"
            measured = matmul_peak_flops(device, n=256, iters=5, dtype=torch.float32)
        sheet = datasheet_peak_flops(name) if device.type == "cuda" else None
        record("device", name)
        record("matmul peak: datasheet bf16 / measured", f"{'n/a' if sheet is None else f'{sheet / 1e12:.0f}'} / "
               f"{measured / 1e12:.1f} TFLOP/s")
        s1, o1, _, _ = stage_models(size, device)
        video = torch.randn(size.step_batch, 3, size.frames, size.img_size, size.img_size, device=device)
        opt = torch.optim.AdamW(s1.parameters(), lr=1e-5)
        enc = s1.encoder

        def encoder_step():
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
                out = enc.forward_features(video)
            out.float().square().mean().backward()
            opt.step()

        for what, fn in (("full Stage-1 step", lambda: one_step(s1, o1, video, device, autocast_dtype, opt)),
                         ("encoder alone (all tokens)", encoder_step)):
            flops = count_flops(fn, device)
            t = timed(fn, device, 2, iters)
            vs_sheet = mfu(flops, t, sheet)
            record(f"{what}, batch {size.step_batch}", f"{1e3 * t:.0f} ms, {flops / 1e9:.1f} GFLOP, MFU "
                   f"{'n/a' if vs_sheet is None else f'{100 * vs_sheet:.1f}%'} of datasheet, "
                   f"{100 * mfu(flops, t, measured):.1f}% of measured matmul")


def check_world_model(size: Size, device: torch.device) -> None:
    with check("world model on the device: encode, rollout (cached == uncached), decode, CEM/MPPI/gradient"):
        from ivnext_world.planning import LatentGoalCost, WorldModelDynamics, build_planner, make_cost
        from ivnext_world.world_model import ACPredictorConfig, ActionConditionedPredictor, WorldModel
        from ivnext_world.world_model.latents import NormStats

        torch.manual_seed(0)
        epd = build_epd(epd_config(size))
        wm0 = WorldModel(epd)
        pred = ActionConditionedPredictor(ACPredictorConfig(
            enc_dim=epd.encoder.embed_dim, tokens_per_frame=wm0.tokens_per_frame, action_dim=2, proprio_dim=4,
            embed_dim=min(384, size.predictor_dim), depth=2, num_heads=2, max_frames=16))
        stats = NormStats([0.0, 0.0], [1.0, 1.0], [0.0] * 4, [1.0] * 4)
        wm = WorldModel(epd, pred, stats).to(device)
        frames = torch.rand(1, 3, 3, size.img_size, size.img_size, device=device)  # (B, T, 3, H, W) in [0, 1]
        z = wm.encode(frames)
        actions = torch.randn(8, 4, 2, device=device)
        cached = wm.rollout(z, actions)
        plain = wm.rollout(z, actions, use_cache=False)
        err = (cached - plain).abs().max().item()
        record("rollout: cached vs uncached max |diff|", f"{err:.2e}")
        if not err < 1e-3:
            raise AssertionError(f"cached and uncached rollouts differ by {err}")
        pixels = wm.decode(cached[:1, :1], num_steps=2)
        record("decode", f"{tuple(pixels.shape)} on {pixels.device}")
        dyn = WorldModelDynamics(wm, z)
        cost = make_cost(dyn, LatentGoalCost(z[0, -1]), dyn.to_raw)
        bounds = dyn.bounds([-1.0, -1.0], [1.0, 1.0])
        budgets = {"cem": dict(horizon=5, samples=300, topk=30, iterations=3),
                   "mppi": dict(horizon=5, samples=300, iterations=3), "gradient": dict(horizon=5, iterations=3)}
        for name, kw in budgets.items():
            t0 = time.perf_counter()
            plan = build_planner(name, **kw).plan(cost, bounds)
            record(f"{name} plan ({kw})", f"{time.perf_counter() - t0:.2f} s, actions {tuple(plan.actions.shape)}")


def check_fsdp(size: Size, device: torch.device, autocast_dtype) -> None:
    backend = "nccl" if device.type == "cuda" else "gloo"
    with check(f"one-rank {backend} process group + FSDP2 step"):
        import torch.distributed as dist

        from ivnext_world.train.fsdp import shard
        from ivnext_world.train.loop import ObjectiveModule

        store = dist.FileStore(tempfile.mktemp(prefix="gpu_check_store_"), 1)
        dist.init_process_group(backend, store=store, rank=0, world_size=1, device_id=device if device.type == "cuda" else None)
        try:
            s1, o1, _, _ = stage_models(size, device)
            wrapped = shard(ObjectiveModule(s1, o1))
            opt = torch.optim.AdamW(wrapped.parameters(), lr=1e-5)
            video = torch.randn(size.step_batch, 3, size.frames, size.img_size, size.img_size, device=device)
            with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
                loss, _ = wrapped({"video": video}, torch.Generator(device=device).manual_seed(0))
            loss.backward()
            opt.step()
            record(f"FSDP2 Stage-1 step loss ({backend})", f"{loss.item():.4f}")
            if not torch.isfinite(loss):
                raise AssertionError(f"non-finite FSDP loss {float(loss)}")
        finally:
            dist.destroy_process_group()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cpu", action="store_true", help="run the same checks at tiny size on the CPU")
    p.add_argument("--out", type=Path, default=None, help="folder for the check's runs (default: a temporary one)")
    p.add_argument("--iters", type=int, default=None, help="timed iterations (default 10 on CUDA, 2 on the CPU)")
    args = p.parse_args(argv)
    if args.cpu:
        device, size, autocast_dtype = torch.device("cpu"), CPU, None
        torch.set_num_threads(min(2, torch.get_num_threads()))
    else:
        if not torch.cuda.is_available():
            print("FAIL no CUDA device (use --cpu for the CPU path)")
            return 1
        device, size = torch.device("cuda", 0), GPU
        autocast_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else None
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    iters = args.iters or (10 if device.type == "cuda" else 2)
    print(f"gpu_check: torch {torch.__version__}, device {device}, {size.encoder} {size.frames}x{size.img_size}, "
          f"precision {'bf16' if autocast_dtype else 'fp32'}", flush=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        check_trainer(size, device, out)
        check_memory(size, device, autocast_dtype)
        check_compile(size, device, autocast_dtype, iters)
        check_mfu(size, device, autocast_dtype, iters)
        check_world_model(size, device)
        check_fsdp(size, device, autocast_dtype)
    passed = sum(ok for _, ok, _ in RESULTS)
    print(f"\n| check | result |\n|---|---|")
    for name, ok, detail in RESULTS:
        print(f"| {name} | {'PASS' if ok else 'FAIL'} ({detail}) |")
    print("\n| measurement | value |\n|---|---|")
    for what, value in TABLE:
        print(f"| {what} | {value} |")
    print(f"\ngpu_check: {passed} passed, {len(RESULTS) - passed} failed in {time.perf_counter() - t0:.0f} s")
    return 0 if passed == len(RESULTS) else 1


if __name__ == "__main__":
    sys.exit(main())
