"""Benchmark: planning latency per executed action, CEM / MPPI / gradient, cached vs naive rollouts.

Every planner gets DINO-WM's CEM budget: 300 candidate sequences of horizon 5, 30 iterations
(CEM: top 30; MPPI: 30 elites; gradient: 300 parallel restarts, 30 Adam steps) = 9,000 imagined
5-step rollouts per plan. Both rollout modes run in the same process on the same inputs:
``cached`` = ``WorldModel.rollout`` with its key/value cache (each imagined step costs one frame's
tokens), ``naive`` = ``use_cache=False`` (every step re-runs the whole history, as DINO-WM and
V-JEPA 2-AC do). Per executed action = plan time / actions executed per plan (DINO-WM executes 5;
1 = replan every step). Random weights: speed does not depend on their values.

    python bench/bench_planning.py                          # tiny model (the tests'), CPU
    python bench/bench_planning.py --size reach             # the size trained for the reach evidence
    python bench/bench_planning.py --world-model outputs/world_model --device cuda
"""
from __future__ import annotations

import argparse
import time

import torch

from ivnext_world.planning import Bounds, LatentGoalCost, WorldModelDynamics, build_planner, make_cost
from ivnext_world.pretrain import EPDConfig, build_epd
from ivnext_world.world_model import ACPredictorConfig, ActionConditionedPredictor, NormStats, WorldModel

TINY_EPD = dict(img_size=56, num_frames=4, encoder_kwargs={"embed_dim": 48, "depth": 2, "num_heads": 2, "pool_num_heads": 2},
                predictor_dim=48, predictor_depth=1, predictor_heads=2, decoder_width=32, decoder_depth=1)
SIZES = {
    # The tests' tiny predictor: 20 latent tokens of width 48, 32 wide, 2 blocks.
    "tiny": dict(enc_dim=48, embed_dim=32, depth=2, num_heads=2),
    # The reach evidence run: 20 tokens (112 px, pool 2) of width 192, 128 wide, 3 blocks.
    "reach": dict(enc_dim=192, embed_dim=128, depth=3, num_heads=4),
}
BUDGET = dict(horizon=5, iterations=30)  # DINO-WM
PLANNER_ARGS = {"cem": dict(samples=300, topk=30), "mppi": dict(samples=300, elites=30),
                "gradient": dict(restarts=300)}


def build_wm(size: str, device: str) -> WorldModel:
    torch.manual_seed(0)
    epd = build_epd(EPDConfig(**TINY_EPD))  # only its token count matters: dynamics take latents directly
    pred = ActionConditionedPredictor(ACPredictorConfig(tokens_per_frame=20, action_dim=2, proprio_dim=4, max_frames=32,
                                                        **SIZES[size]))
    with torch.no_grad():
        torch.nn.init.normal_(pred.output_proj.weight, std=0.02)
    return WorldModel(epd, pred, NormStats([0.0, 0.0], [0.5, 0.5], [0.0] * 4, [1.0] * 4)).to(device)


def time_plan(wm, name: str, use_cache: bool, context_frames: int, device: str) -> float:
    g = torch.Generator().manual_seed(0)
    n, d = wm.tokens_per_frame, wm.predictor.cfg.enc_dim
    ctx = torch.randn(1, context_frames, n, d, generator=g).to(device)
    acts = torch.zeros(1, context_frames - 1, 2, device=device) if context_frames > 1 else None
    dyn = WorldModelDynamics(wm, ctx, torch.zeros(1, context_frames, 4, device=device), acts, use_cache=use_cache)
    cost = make_cost(dyn, LatentGoalCost(torch.randn(n, d, generator=g).to(device)), dyn.to_raw)
    planner = build_planner(name, **BUDGET, **PLANNER_ARGS[name])
    bounds = Bounds.symmetric(2, 2.0).to(device)  # the planners search on the world model's device
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    planner.plan(cost, bounds, generator=torch.Generator().manual_seed(1))
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(SIZES), default="tiny")
    ap.add_argument("--world-model", help="a trained world-model run instead of --size")
    ap.add_argument("--planners", default="cem,mppi,gradient")
    ap.add_argument("--context-frames", type=int, default=1)
    ap.add_argument("--execute", type=int, default=5, help="actions executed per plan (DINO-WM: 5)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="auto", help="world-model inference: auto (bf16 on a bf16 GPU) | fp32 | bf16")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    wm = WorldModel.load(args.world_model, args.device) if args.world_model else build_wm(args.size, args.device)
    wm.precision = args.precision
    p = wm.predictor.cfg
    print(f"model: {args.world_model or args.size} (predictor {p.embed_dim} wide x {p.depth}, {p.tokens_per_frame} tokens/frame), "
          f"device {args.device}, precision {args.precision}, {torch.get_num_threads()} thread(s), "
          f"context {args.context_frames} frame(s)")
    print(f"budget: 300 candidates x horizon 5 x 30 iterations per plan; per action = plan / {args.execute} executed")
    time_plan(wm, "cem", True, args.context_frames, args.device)  # warm-up (allocator, kernels)
    rows = []
    for name in args.planners.split(","):
        t_cache = time_plan(wm, name, True, args.context_frames, args.device)
        t_naive = time_plan(wm, name, False, args.context_frames, args.device)
        rows.append((name, t_cache, t_naive))
    print(f"\n| planner | cached s/plan | naive s/plan | cached s/action | naive s/action | naive / cached |")
    print("|---|---|---|---|---|---|")
    for name, tc, tn in rows:
        print(f"| {name} | {tc:.2f} | {tn:.2f} | {tc / args.execute:.3f} | {tn / args.execute:.3f} | {tn / tc:.2f}x |")


if __name__ == "__main__":
    main()
