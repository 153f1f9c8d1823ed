"""Eager vs ``loop.compile`` step time of Stage 1 and Stage 2 (numbers only, nothing is asserted).

One training step = the objective's forward + backward + AdamW, as ``Trainer`` runs it (bf16 autocast
on CUDA, fp32 on the CPU). "compiled" is the same model after ``compile_in_place`` (what
``loop.compile=true`` does: every block of the model and of the teacher compiled in place, inductor
by default). The first compiled steps include compilation; it is reported separately, and the
timed steps come after ``--warmup`` steps.

    python bench/bench_compile.py                       # tiny Stage 1 on the CPU, 8 x 112 px, batch 2
    python bench/bench_compile.py --stage 2
    python bench/bench_compile.py --preset base --frames 16 --img-size 224 --batch 32   # on a GPU
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from ivnext_world.models import ImageTeacher
from ivnext_world.pretrain import EPDConfig, FrozenEncoder, Stage1Loss, Stage1Objective, Stage2Objective, build_epd
from ivnext_world.train.loop import compile_in_place, param_groups


def build(args):
    cfg = EPDConfig(encoder=f"ivnext_vit_{args.preset}_patch14_224", img_size=args.img_size, num_frames=args.frames)
    if args.preset != "tiny":  # the paper's predictor and decoder
        cfg.predictor_dim, cfg.predictor_depth, cfg.predictor_heads = 1024, 5, 16
        cfg.decoder_width, cfg.decoder_depth = 1536, 6
    if args.stage == 1:
        teacher = ImageTeacher("vit_base_patch16_siglip_224" if args.preset != "tiny" else "vit_tiny_patch16_224",
                               img_size=args.img_size, num_layers=min(6, cfg.align_layers))
        cfg.teacher_dim = teacher.embed_dim
        return build_epd(cfg), teacher, lambda t: Stage1Objective(Stage1Loss(), t)
    cfg.decoder, cfg.latent_head = "none", True
    model = build_epd(cfg)
    return model, FrozenEncoder(model.encoder), Stage2Objective


def step_fn(model, objective, device, video):
    opt = torch.optim.AdamW(param_groups(model, 0.05), lr=1e-4)
    step = 0

    def run():
        nonlocal step
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss, _ = objective(model, {"video": video}, torch.Generator(device).manual_seed(step))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        step += 1
        if device.type == "cuda":
            torch.cuda.synchronize()
    return run


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", type=int, choices=(1, 2), default=1)
    ap.add_argument("--preset", default="tiny", choices=("tiny", "small", "base", "large"))
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--img-size", type=int, default=112)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--backend", default="inductor")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # as Trainer (loop.tf32)

    torch.manual_seed(0)
    model, teacher, make_objective = build(args)
    model, teacher = model.to(device).train(), teacher.to(device)
    video = torch.randn(args.batch, 3, args.frames, args.img_size, args.img_size, device=device)
    c_model, c_teacher = copy.deepcopy(model), copy.deepcopy(teacher)
    if args.stage == 2:  # the compiled student's teacher is a copy of *its* encoder's weights
        c_teacher = FrozenEncoder(c_model.encoder)
    eager = step_fn(model, make_objective(teacher), device, video)
    n = len(compile_in_place(c_model, c_teacher, backend=args.backend))
    compiled = step_fn(c_model, make_objective(c_teacher), device, video)

    t0 = time.perf_counter()
    compiled()  # compiles the forward and backward graphs
    first = time.perf_counter() - t0
    timed(eager, args.warmup)
    timed(compiled, max(args.warmup - 1, 0))
    te, tc = [], []
    for _ in range(args.iters):  # alternate, so a drifting clock hits both alike
        te += timed(eager, 1)
        tc += timed(compiled, 1)
    me, mc = statistics.median(te), statistics.median(tc)
    print(f"Stage {args.stage}, {args.preset}, {args.frames}x{args.img_size}, batch {args.batch}, {device.type}, "
          f"{torch.get_num_threads()} threads; {n} modules compiled ({args.backend})")
    print(f"first compiled step (compilation): {first:.1f} s")
    print(f"eager    {me * 1e3:8.1f} ms/step (median of {args.iters})")
    print(f"compiled {mc * 1e3:8.1f} ms/step (median of {args.iters})   speed-up {me / mc:.2f}x")


if __name__ == "__main__":
    main()
