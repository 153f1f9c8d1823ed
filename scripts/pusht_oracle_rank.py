"""Which part of PushT planning falls short? Rank the goal segment's own actions among random candidates.

For held-out episodes of the plan-eval preset's protocol, the world model + latent objective score the
goal segment's true 25 actions (5 chunks; they reach the goal exactly) and ``--candidates`` random action
sequences drawn as CEM's first iteration draws them (normalised N(0, 1) in the action box). If the true
actions rank near the top, the world model and objective would lead a planner to the goal and the
search is what falls short; if they rank like a random sequence, the world model (or objective) does.

    python scripts/pusht_oracle_rank.py --world-model outputs/pusht/wm_random --episodes 10
    python scripts/pusht_oracle_rank.py --world-model outputs/pusht/wm_random --episodes 10 --cem 100,10,10

With ``--cem SAMPLES,TOPK,ITERATIONS`` it also runs one CEM plan over the same 5 chunks from the start and
executes it open loop in the simulator: if CEM's imagined cost is below the true actions' while its real
outcome is far from the goal, the planner exploits the world model (the model falls short, not the
search); if CEM's cost stays above the true actions', the search falls short. One random candidate per
episode is executed the same way as the baseline.
"""
from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world-model", required=True)
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--candidates", type=int, default=300)
    ap.add_argument("--cem", default=None, help="SAMPLES,TOPK,ITERATIONS: also plan with CEM and execute it")
    args = ap.parse_args()

    import torch
    from omegaconf import OmegaConf

    from ivnext_world.config import load_config
    from ivnext_world.planning import CEM, CEMConfig
    from ivnext_world.planning.evaluate import make_env
    from ivnext_world.planning.objectives import LatentGoalCost
    from ivnext_world.planning.problem import WorldModelDynamics, make_cost
    from ivnext_world.world_model import WorldModel

    cfg = OmegaConf.to_object(load_config("plan_eval", ["+plan_eval_preset=pusht", f"world_model={args.world_model}"]))
    wm, env = WorldModel.load(args.world_model), make_env(cfg)
    k, oc = wm.frame_skip, cfg.objective
    gen = torch.Generator().manual_seed(0)
    ranks, cem_rows = [], []
    cem = None
    if args.cem:
        n, top, iters = (int(x) for x in args.cem.split(","))
        cem = CEM(CEMConfig(horizon=25 // k, samples=n, topk=top, iterations=iters))
    for seed in range(args.seed, args.seed + args.episodes):
        env.reset(seed=seed)
        goal = env.get_wrapper_attr("render_goal")()
        start = env.get_wrapper_attr("start_observation")
        expert = env.get_wrapper_attr("expert_action")
        acts = []
        for _ in range(25):
            acts.append(expert())
            _, _, _, _, info_true = env.step(acts[-1])
        true = torch.as_tensor(np.stack(acts), dtype=torch.float32).reshape(25 // k, k * acts[0].shape[0])  # (5, 10)
        ctx = wm.encode_image(start["rgb"])[None, None]  # (1, 1, n, D)
        prop = torch.as_tensor(start["proprio"], dtype=torch.float32)[None, None]
        dyn = WorldModelDynamics(wm, ctx, prop, None)
        obj = LatentGoalCost(wm.encode_image(goal["rgb"]), oc.norm, oc.frames, oc.tokens, wm.num_prefix_tokens)
        cost = make_cost(dyn, obj, dyn.to_raw)
        low = np.tile(env.action_space.low, k)
        high = np.tile(env.action_space.high, k)
        b = dyn.bounds(torch.as_tensor(low), torch.as_tensor(high))
        u = torch.randn(args.candidates, true.shape[0], true.shape[1], generator=gen)
        u = torch.maximum(torch.minimum(u, b.high), b.low)
        with torch.no_grad():
            c_rand = cost(u)
            c_true = cost(dyn.from_raw(true)[None])[0]
        ranks.append(float((c_rand < c_true).float().mean()))
        line = (f"seed {seed}: true-action cost {float(c_true):.5f}, random candidates median {float(c_rand.median()):.5f}, "
                f"fraction of random candidates scored better: {ranks[-1]:.2f}")
        if cem is not None:
            with torch.no_grad():
                plan = cem.plan(cost, b, None, generator=gen)
            ends = []
            for seq in (plan.actions, u[0]):  # CEM's plan, then a random candidate as the baseline
                raw = dyn.to_raw(seq).reshape(-1, acts[0].shape[0]).numpy()  # (25, 2) env actions
                env.reset(seed=seed)  # the same start and goal (the goal state is set when its image is made)
                env.get_wrapper_attr("render_goal")()
                for a in raw:
                    _, _, _, _, info = env.step(a)
                ends.append(float(info["distance"]))
            cem_rows.append((plan.cost < float(c_true), ends[0], ends[1], float(info_true["distance"])))
            line += f"; CEM cost {plan.cost:.5f} ({'below' if cem_rows[-1][0] else 'above'} the true actions'), " \
                    f"executed: agent + T {ends[0]:.1f} px from the goal state (a random candidate: {ends[1]:.1f})"
        print(line, flush=True)
    env.close()
    print(f"mean fraction of random candidates the world model + objective prefer to the true actions: "
          f"{np.mean(ranks):.2f} (0 = true actions best, 0.5 = no better than random)")
    if cem_rows:
        below, dist, dist_rand, dist_true = zip(*cem_rows)
        print(f"CEM's imagined cost below the true actions' in {sum(below)}/{len(below)} episodes; executed open "
              f"loop its plans end {np.mean(dist):.1f} px (agent + T) from the goal state (random candidates: "
              f"{np.mean(dist_rand):.1f}; true actions: {np.mean(dist_true):.1f})")


if __name__ == "__main__":
    main()
