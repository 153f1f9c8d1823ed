"""Does the latent goal cost rank PushT states by the T's pose? The PushT twin of push_cost_landscape.py.

For seeded held-out episodes of DINO-WM's protocol (start: 10 steps into a noisy-pusher trajectory,
goal: 25 steps later), every state is rendered by gym-pusht itself (``envs.pusht.render_state``):

* the three states of push_cost_landscape.py: the start; the T on its goal pose with the agent where
  it starts; the agent at its goal position with the T where it starts. If the second costs more
  than the third, the objective prefers moving the agent to moving the T;
* ``--probes`` states with the agent at its goal position and the T at random poses between the start
  and the goal pose (and a little beyond): the Spearman rank correlation of the latent cost with the
  T's pose error (px + 100 px/rad x angle error) says whether the latent distance ranks states by the T.

    python scripts/pusht_cost_landscape.py --world-model outputs/pusht/wm_random --episodes 20
"""
from __future__ import annotations

import argparse

import numpy as np


def _spearman(a, b) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world-model", required=True, help="world-model run folder (its backbone encodes)")
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--probes", type=int, default=16, help="random T poses per episode for the rank correlation")
    ap.add_argument("--norm", default="l2", choices=["l1", "l2"])
    ap.add_argument("--max-delta", type=float, default=25.0, help="relative action box (px) of the goal segments")
    ap.add_argument("--tokens", default="patch", choices=["all", "patch", "cls"])
    args = ap.parse_args()

    from envs.adapter_spec import AdapterSpec
    from envs.gym_adapters import make_gym_env
    from envs.pusht import pusht_state, render_state
    from ivnext_world.planning.objectives import LatentGoalCost
    from ivnext_world.world_model import WorldModel

    wm = WorldModel.load(args.world_model)
    spec = AdapterSpec(goal="envs.pusht:rollout_goal", goal_kwargs={"steps": 25, "policy": "expert", "warmup": 10})
    kwargs = {"action_mode": "relative", "max_delta": args.max_delta}  # as configs/plan_eval_preset/pusht.yaml
    env = make_gym_env("gym_pusht/PushT-v0", kwargs=kwargs, adapter=spec, image_size=args.image_size)
    rows, rhos = [], []
    for seed in range(args.seed, args.seed + args.episodes):
        env.reset(seed=seed)
        goal = env.get_wrapper_attr("render_goal")()
        start, gs = pusht_state(env.unwrapped), np.asarray(env.get_wrapper_attr("goal_state"))
        cost = LatentGoalCost(wm.encode_image(goal["rgb"]), args.norm, "last", args.tokens, wm.num_prefix_tokens)

        def c(agent_xy, block_pose) -> float:
            img = render_state(env, agent_xy, block_pose)["rgb"]
            return float(cost(wm.encode_image(img)[None, None]))

        rows.append([c(start[:2], start[2:]), c(start[:2], gs[2:]), c(gs[:2], start[2:])])
        rng = np.random.default_rng(seed)
        t = rng.uniform(-0.2, 1.2, args.probes)  # along the start -> goal pose path, a little beyond
        poses = start[2:] + t[:, None] * (gs[2:] - start[2:]) + rng.normal(0, [15, 15, 0.2], (args.probes, 3))
        err = np.linalg.norm(poses[:, :2] - gs[2:4], axis=1) + 100 * np.abs(
            (poses[:, 2] - gs[4] + np.pi) % (2 * np.pi) - np.pi)
        costs = [c(gs[:2], p) for p in poses]
        rhos.append(_spearman(costs, err))
    env.close()
    r = np.asarray(rows)
    print(f"latent {args.norm} ({args.tokens} tokens) to the goal image, mean over {len(r)} episodes (seeds {args.seed}+):")
    for name, v in zip(("start", "T on goal pose, agent at start", "agent at goal, T at start"), r.mean(0)):
        print(f"  {name:34s} {v:.4f}")
    print(f"T-on-goal state is the closer one in {int((r[:, 1] < r[:, 2]).sum())}/{len(r)} episodes")
    print(f"Spearman(latent cost, T pose error), agent at goal, {args.probes} poses/episode: "
          f"mean {np.mean(rhos):.3f}, min {np.min(rhos):.3f}, max {np.max(rhos):.3f}")


if __name__ == "__main__":
    main()
