"""Which part of PushT planning falls short? Rank the goal segment's own actions among random candidates.

For held-out episodes of the plan-eval preset's protocol, the world model + latent objective score the
goal segment's true 25 actions (5 chunks; they reach the goal exactly) and ``--candidates`` random action
sequences drawn as CEM's first iteration draws them (normalised N(0, 1) in the action box). If the true
actions rank near the top, the world model and objective would lead a planner to the goal and the
search is what falls short; if they rank like a random sequence, the world model (or objective) does.

    python scripts/pusht_oracle_rank.py --world-model outputs/pusht/wm_random --episodes 10
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
    args = ap.parse_args()

    import torch
    from omegaconf import OmegaConf

    from ivnext_world.config import load_config
    from ivnext_world.planning.evaluate import make_env
    from ivnext_world.planning.objectives import LatentGoalCost
    from ivnext_world.planning.problem import WorldModelDynamics, make_cost
    from ivnext_world.world_model import WorldModel

    cfg = OmegaConf.to_object(load_config("plan_eval", ["+plan_eval_preset=pusht", f"world_model={args.world_model}"]))
    wm, env = WorldModel.load(args.world_model), make_env(cfg)
    k, oc = wm.frame_skip, cfg.objective
    gen = torch.Generator().manual_seed(0)
    ranks = []
    for seed in range(args.seed, args.seed + args.episodes):
        env.reset(seed=seed)
        goal = env.get_wrapper_attr("render_goal")()
        start = env.get_wrapper_attr("start_observation")
        expert = env.get_wrapper_attr("expert_action")
        acts = []
        for _ in range(25):
            acts.append(expert())
            env.step(acts[-1])
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
        print(f"seed {seed}: true-action cost {float(c_true):.5f}, random candidates median {float(c_rand.median()):.5f}, "
              f"fraction of random candidates scored better: {ranks[-1]:.2f}", flush=True)
    env.close()
    print(f"mean fraction of random candidates the world model + objective prefer to the true actions: "
          f"{np.mean(ranks):.2f} (0 = true actions best, 0.5 = no better than random)")


if __name__ == "__main__":
    main()
