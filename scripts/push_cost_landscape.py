"""Does the latent goal cost rank push states by the puck? A diagnostic for planning on push.

For seeded push episodes, the goal image's latent L1 cost (the planners' default objective) of three
real, rendered states: the start; the puck on the goal with the fingertip where it started; and the
fingertip at its goal pose with the puck where it started. If the second costs more than the
third, the objective prefers moving the arm to moving the puck, and a latent-only planner will not push.

    python scripts/push_cost_landscape.py --world-model outputs/world_model --episodes 10
    python scripts/push_cost_landscape.py --world-model outputs/world_model --scene topdown   # PushEnv scenes
"""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world-model", required=True, help="world-model or pretraining run folder")
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--scene", default="front", help="PushEnv scene: front (default) or topdown")
    args = ap.parse_args()

    import gymnasium

    import envs
    from envs.goals import rendered_state
    from ivnext_world.planning.agent import ObjectiveConfig
    from ivnext_world.planning.objectives import LatentGoalCost
    from ivnext_world.world_model import WorldModel

    wm = WorldModel.load(args.world_model)
    env = gymnasium.make(envs.TASKS["push"], width=args.image_size, height=args.image_size, scene=args.scene)
    u = env.unwrapped

    obj = ObjectiveConfig()  # the planners' default latent objective
    rows = []
    for seed in range(args.seed, args.seed + args.episodes):
        obs, _ = env.reset(seed=seed)
        goal_xy, puck_xy = u.goal_xy, u.puck_xy

        def puck_on_goal(data):
            data.qpos[u._puck_qpos:u._puck_qpos + 2] = goal_xy

        def fingertip_at_goal_pose(data):
            u._pose_goal(data)
            data.qpos[u._puck_qpos:u._puck_qpos + 2] = puck_xy

        goal = wm.encode_image(u.render_goal()["rgb"])
        cost = LatentGoalCost(goal, obj.norm, obj.frames, obj.tokens, wm.num_prefix_tokens)
        states = [obs["rgb"]] + [rendered_state(u.model, u.data, pose, u._get_obs)["rgb"]
                                 for pose in (puck_on_goal, fingertip_at_goal_pose)]
        rows.append([float(cost(wm.encode_image(s)[None, None])) for s in states])  # (1 plan, 1 frame, n, D)
    env.close()
    r = np.asarray(rows)
    print(f"scene {args.scene}: latent L1 to the goal image, mean over {len(r)} episodes (seeds {args.seed}+):")
    for name, v in zip(("start", "puck on goal, fingertip at start", "fingertip at goal pose, puck at start"), r.mean(0)):
        print(f"  {name:40s} {v:.4f}")
    print(f"puck-on-goal state is the closer one in {int((r[:, 1] < r[:, 2]).sum())}/{len(r)} episodes")


if __name__ == "__main__":
    main()
