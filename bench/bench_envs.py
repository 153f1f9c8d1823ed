"""Frames per second of the ``envs`` environments (one process, one thread of MuJoCo).

Two tables:

1. env throughput: ``env.step`` with random actions, which simulates one control step and renders
   the RGB + metric depth observation, for each registered id, at ``--size`` x ``--size``.
2. renderer reference: raw ``mujoco.Renderer`` RGB frames/s on the push scene with the model's
   shadow map (4096^2, MuJoCo's default) and multisampling on vs. both off, which is why every env
   here renders without them.

With ``--expert-episodes N`` it also measures the scripted experts' success rate on
``ivnext/Reach-v0`` and ``ivnext/Push-v0`` over seeds ``0..N-1`` (success = ``info["is_success"]``
at the last step of the time-limited episode; images at 32x32 since the expert does not look).

    python bench/bench_envs.py --steps 300 --size 128 --expert-episodes 100
"""

from __future__ import annotations

import argparse
import time

import gymnasium
import numpy as np

import envs  # noqa: F401  (registers the ids and sets MUJOCO_GL before mujoco is imported)
import mujoco
from envs.experts import ExpertPolicy, RandomPolicy
from envs.tabletop import ASSETS


def bench_env(env_id: str, steps: int, size: int) -> float:
    """env.step (physics + RGB + depth render) frames/s, resets excluded."""
    env = gymnasium.make(env_id, width=size, height=size)
    policy = RandomPolicy(env, rng=0)
    obs, _ = env.reset(seed=0)
    env.step(policy(obs))  # warm-up: first render allocates GL buffers
    elapsed, done = 0.0, 0
    while done < steps:
        t0 = time.perf_counter()
        obs, _, terminated, truncated, _ = env.step(policy(obs))
        elapsed += time.perf_counter() - t0
        done += 1
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return steps / elapsed


def bench_renderer(shadows: bool, steps: int, size: int) -> float:
    """Raw mujoco.Renderer RGB frames/s on the push scene."""
    model = mujoco.MjModel.from_xml_path(str(ASSETS / "push.xml"))
    if shadows:  # MuJoCo's defaults, which our XML turns off: lights cast shadows, 4096^2 map, 4x MSAA
        model.vis.quality.shadowsize, model.vis.quality.offsamples = 4096, 4
        model.light_castshadow[:] = 1
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    with mujoco.Renderer(model, height=size, width=size) as renderer:
        renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = shadows
        renderer.update_scene(data, camera="scene")
        renderer.render()
        t0 = time.perf_counter()
        for _ in range(steps):
            renderer.update_scene(data, camera="scene")
            renderer.render()
        return steps / (time.perf_counter() - t0)


def expert_success(env_id: str, episodes: int) -> tuple[float, float]:
    """(success rate at the final step, mean steps until first success) over seeds 0..N-1."""
    env = gymnasium.make(env_id, width=32, height=32)
    policy = ExpertPolicy(env)
    wins, first_success = 0, []
    for seed in range(episodes):
        obs, _ = env.reset(seed=seed)
        done, t, first = False, 0, None
        while not done:
            obs, _, terminated, truncated, info = env.step(policy(obs))
            done, t = terminated or truncated, t + 1
            if info["is_success"] and first is None:
                first = t
        wins += info["is_success"]
        first_success += [first] if first is not None else []
    env.close()
    return wins / episodes, float(np.mean(first_success)) if first_success else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="timed env steps / frames per row")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--expert-episodes", type=int, default=0,
                        help="also measure expert success over seeds 0..N-1 (0: skip)")
    args = parser.parse_args()

    print(f"env step + render (RGB + depth), {args.size}x{args.size}, {args.steps} steps")
    print(f"{'id':<20} {'frames/s':>9}")
    for env_id in envs.TASKS.values():
        print(f"{env_id:<20} {bench_env(env_id, args.steps, args.size):>9.1f}")

    on, off = (bench_renderer(s, args.steps, args.size) for s in (True, False))
    print(f"\nmujoco.Renderer RGB only, push scene, {args.size}x{args.size}")
    print(f"{'shadows+MSAA on':<20} {on:>9.1f}\n{'shadows+MSAA off':<20} {off:>9.1f}")
    print(f"{'speed-up':<20} {off / on:>8.1f}x")
    if args.expert_episodes:
        print(f"\nscripted expert, seeds 0..{args.expert_episodes - 1}")
        print(f"{'id':<20} {'success':>9} {'steps to success':>17}")
        for task in ("reach", "push"):
            rate, steps = expert_success(envs.TASKS[task], args.expert_episodes)
            print(f"{envs.TASKS[task]:<20} {rate:>9.0%} {steps:>17.1f}")
    print(f"(MUJOCO_GL={__import__('os').environ['MUJOCO_GL']}, numpy {np.__version__}, mujoco {mujoco.__version__})")


if __name__ == "__main__":
    main()
