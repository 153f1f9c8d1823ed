"""PushT (gym-pusht's ``gym_pusht/PushT-v0``) through ``GymAdapter``: preset, task info and goals.

gym-pusht (the optional extra ``pip install 'ivnext_world[pusht]'``) simulates the PushT benchmark of
Diffusion Policy and DINO-WM with pymunk and draws it with pygame (offscreen: no display needed,
``envs.gym_adapters`` sets ``SDL_VIDEODRIVER=dummy`` when there is none). Facts of gym-pusht 0.1.8:

* **Board**: 512 x 512 pixel units, walls at 5 and 506. A disk agent (radius 15) pushes a T-shaped
  block (two 120 x 30 and 30 x 90 bars). The goal region is the T drawn in light green at the fixed
  pose ``(256, 256, pi/4)`` (x, y, angle in rad).
* **Action**: ``Box(0, 512, (2,), float32)``, the absolute target position of the agent in pixels;
  a PD controller (kp 100, kd 20) drives the agent towards it for 10 physics steps of 10 ms, so one
  env step is 0.1 s (10 Hz, ``render_fps`` 10).
* **Observation types** (``obs_type`` kwarg): ``state`` (5,) ``[agent_x, agent_y, block_x, block_y,
  block_angle]``; ``environment_state_agent_pos`` (16 T keypoints + agent position); ``pixels``
  (H, W, 3) uint8; ``pixels_agent_pos`` (pixels + ``agent_pos``). Images are ``observation_width``
  x ``observation_height`` (96 by default) and show no action marker (``render()`` draws one, at
  680 px, so the preset never uses it).
* **Success**: ``info["is_success"]`` = coverage of the goal T by the block > 0.95, and the episode
  terminates then. Reward = ``clip(coverage / 0.95, 0, 1)``. Time limit 300 steps. ``reset`` draws
  agent xy in [50, 450), block xy in [100, 400) and angle in [-pi, pi) from the env's seeded RNG.

The preset (``PRESET``): ``obs_type=pixels_agent_pos`` at the adapter's image size; ``rgb`` =
``obs.pixels``; ``proprio`` = ``[agent_x, agent_y, agent_vx, agent_vy]`` (pixels, pixels/s: DINO-WM's
PushT proprio with velocity); ``info`` gains ``coverage``, ``pos_error`` (block to goal centre, px),
``angle_error`` (rad) and ``distance`` = ``pos_error``; ground truth ``agent_pos`` (2,) and
``block_pose`` (3,) per step; goal = ``goal_pose`` below.

Relative actions (DINO-WM's): ``env.kwargs={action_mode: relative, max_delta: 25}`` wraps the env in
``RelativeTargetActions`` (action = the target's offset from the agent, ``Box(-max_delta, max_delta)``
px). The preset's ``expert`` is the scripted pusher of ``envs.pusht_expert`` (either action mode).

Goals for goal-conditioned planning (``env.adapter.goal``):

* ``envs.pusht:goal_pose`` (default): the env's own goal, rendered: the block on the goal T, the
  agent where it is now. Pairs with PushT's own success criterion (coverage > 0.95).
* ``envs.pusht:rollout_goal`` (DINO-WM's protocol): the state reached ``steps`` env steps along a
  seeded trajectory of a data policy (noisy scripted pusher or random walk), optionally from a
  start ``warmup`` steps into it; pair it with ``env.adapter.success=envs.pusht:goal_state_reached``,
  ``env.adapter.distance=envs.pusht:goal_state_distance`` (DINO-WM's ``eval_state``: agent and block
  positions within 20 px in norm, block angle within pi/9) and ``env.adapter.expert=envs.pusht:replay_expert``
  (the segment's own actions). ``configs/plan_eval_preset/pusht.yaml`` sets all of it.
"""

from __future__ import annotations

import gymnasium
import gymnasium.utils
import numpy as np

from envs.adapter_spec import AdapterSpec
from envs.gym_adapters import GymAdapter, Preset

__all__ = ["PRESET", "RelativeTargetActions", "goal_pose", "goal_state_distance", "goal_state_reached",
           "pusht_state", "replay_expert", "rollout_goal", "task_info", "to_env_action"]

ID = "gym_pusht/PushT-v0"
BOARD = 512.0  # gym-pusht's action box is [0, 512]^2 (pixels)
GOAL_POS_TOL, GOAL_ANGLE_TOL = 20.0, np.pi / 9  # DINO-WM's PushT eval_state


class RelativeTargetActions(gymnasium.ActionWrapper, gymnasium.utils.RecordConstructorArgs):
    """DINO-WM's relative PushT actions: the action is the target's offset from the agent's current
    position, ``Box(-max_delta, max_delta, (2,))`` pixels; the wrapped env gets ``clip(agent + a, 0, 512)``.
    (DINO-WM stores these offsets divided by 100; our world model normalises actions by the data's
    mean and std, so the scale does not matter.)"""

    def __init__(self, env: gymnasium.Env, max_delta: float = 100.0):
        gymnasium.utils.RecordConstructorArgs.__init__(self, max_delta=max_delta)
        gymnasium.ActionWrapper.__init__(self, env)
        if not max_delta > 0:
            raise ValueError(f"max_delta must be > 0 pixels, got {max_delta}")
        self.max_delta = float(max_delta)
        self.action_space = gymnasium.spaces.Box(-self.max_delta, self.max_delta, (2,), np.float32)

    def action(self, action):
        agent = np.asarray(self.env.unwrapped.agent.position, np.float64)
        return np.clip(agent + np.asarray(action, np.float64), 0.0, BOARD).astype(np.float32)


def wrap_action_mode(env: gymnasium.Env, action_mode: str = "absolute", max_delta: float = 100.0) -> gymnasium.Env:
    """``Preset.wrap`` of PushT: ``env.kwargs={action_mode: relative, max_delta: 100}`` gives relative actions."""
    if action_mode == "absolute":
        return env
    if action_mode == "relative":
        return RelativeTargetActions(env, max_delta)
    raise ValueError(f"PushT action_mode must be 'absolute' or 'relative', got {action_mode!r}")


def _relative_wrapper(adapter: GymAdapter) -> RelativeTargetActions | None:
    env = adapter.env
    while isinstance(env, gymnasium.Wrapper):
        if isinstance(env, RelativeTargetActions):
            return env
        env = env.env
    return None


def reachable_target(adapter: GymAdapter, target) -> np.ndarray:
    """The absolute target the env would really get for ``target``: within ``max_delta`` of the agent
    when it has relative actions (so goal segments move as fast as the data, no faster), on the board."""
    target = np.asarray(target, np.float64)
    rel = _relative_wrapper(adapter)
    if rel is not None:
        agent = np.asarray(adapter.env.unwrapped.agent.position, np.float64)
        target = agent + np.clip(target - agent, -rel.max_delta, rel.max_delta)
    return np.clip(target, 0.0, BOARD)


def to_env_action(adapter: GymAdapter, target) -> np.ndarray:
    """An absolute target (pixels) as the adapter's action: itself, or its offset from the agent when
    the env has relative actions (clipped to the action box)."""
    target, space = np.asarray(target, np.float64), adapter.env.action_space
    if _relative_wrapper(adapter) is not None:
        target = target - np.asarray(adapter.env.unwrapped.agent.position, np.float64)
    return np.clip(target, space.low, space.high).astype(space.dtype)


def _wrap(angle):
    return (np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi


def pusht_state(sim) -> np.ndarray:
    """``[agent_x, agent_y, block_x, block_y, block_angle]`` (5,) of a ``PushTEnv`` (angle unwrapped)."""
    return np.array([*sim.agent.position, *sim.block.position, sim.block.angle], dtype=np.float64)


def task_info(adapter: GymAdapter, info: dict) -> dict:
    """``coverage`` (also at reset, where gym-pusht leaves it out), ``pos_error`` (px), ``angle_error``
    (rad, in [0, pi]) of the block against the goal pose, and ``distance`` = ``pos_error``."""
    sim = adapter.env.unwrapped
    block, goal = np.asarray(info["block_pose"], float), np.asarray(info["goal_pose"], float)
    pos_error = float(np.linalg.norm(block[:2] - goal[:2]))
    coverage = info["coverage"] if "coverage" in info else float(sim._get_coverage())
    out = {"coverage": float(coverage), "pos_error": pos_error,
           "angle_error": float(np.abs(_wrap(block[2] - goal[2]))), "distance": pos_error}
    if getattr(adapter, "goal_state", None) is not None:  # the goal protocol's goal state (rollout_goal)
        gs = np.asarray(adapter.goal_state, float)
        out["goal_block_pos_error"] = float(np.linalg.norm(block[:2] - gs[2:4]))
        out["goal_block_angle_error"] = float(np.abs(_wrap(block[2] - gs[4])))
        out["goal_agent_pos_error"] = float(np.linalg.norm(np.asarray(info["pos_agent"], float) - gs[:2]))
    return out


def _scratch(adapter: GymAdapter):
    """A second ``PushTEnv`` with the live env's settings, for rendering states without touching the
    episode (kept on the adapter)."""
    scratch = getattr(adapter, "_pusht_scratch", None)
    if scratch is None:
        sim = adapter.env.unwrapped
        scratch = type(sim)(obs_type=sim.obs_type, render_mode="rgb_array", block_cog=sim.block_cog,
                            damping=sim.damping, observation_width=sim.observation_width,
                            observation_height=sim.observation_height)
        adapter._pusht_scratch = scratch
    return scratch


def render_state(adapter: GymAdapter, agent_xy, block_pose) -> dict[str, np.ndarray]:
    """Observation dictionary of the board with the agent at ``agent_xy`` (at rest) and the block at
    ``block_pose`` = (x, y, angle); the live episode is not touched (a scratch env draws it)."""
    scratch = _scratch(adapter)
    scratch.reset(seed=0)  # builds the pymunk space; the state is set below
    scratch.agent.position = tuple(float(v) for v in agent_xy)
    scratch.agent.velocity = (0.0, 0.0)
    # Angle first, then position: the block's origin then lands exactly on block_pose[:2] (setting the
    # angle rotates about the centre of gravity, which is not the origin of the T).
    scratch.block.angle = float(block_pose[2])
    scratch.block.position = (float(block_pose[0]), float(block_pose[1]))
    for body in (scratch.agent, scratch.block):  # shapes' world vertices follow the bodies for drawing
        scratch.space.reindex_shapes_for_body(body)
    info = scratch._get_info()
    return adapter.observe(scratch.get_obs(), info, sim=scratch)


def goal_pose(adapter: GymAdapter) -> dict[str, np.ndarray]:
    """The env's goal: the block on the goal T (``goal_pose``), the agent where it is now."""
    sim = adapter.env.unwrapped
    return render_state(adapter, sim.agent.position, sim.goal_pose)


def _make_goal_policy(adapter: GymAdapter, policy: str, rng: np.random.Generator, step_std: float,
                      noise_px: float):
    """``policy(sim) -> absolute target`` of the goal protocol: a smooth random walk of the target
    (``step_std`` x the board per step) or the scripted pusher plus Gaussian noise of ``noise_px``."""
    low, high = np.zeros(2), np.full(2, BOARD)
    if policy == "random_walk":
        state = {"target": None}

        def walk(sim):
            t = state["target"]
            t = np.asarray(sim.agent.position, float) if t is None else t
            state["target"] = np.clip(t + rng.normal(0.0, step_std * (high - low)), low, high)
            return state["target"]
        return walk
    if policy == "expert":
        from envs.pusht_expert import PushTExpert

        expert = PushTExpert()
        return lambda sim: np.clip(expert(sim) + rng.normal(0.0, noise_px, 2), low, high)
    raise ValueError(f"rollout_goal: policy must be 'random_walk' or 'expert', got {policy!r}")


def rollout_goal(adapter: GymAdapter, steps: int = 25, step_std: float = 0.05, policy: str = "random_walk",
                 noise_px: float = 20.0, warmup: int = 0) -> dict[str, np.ndarray]:
    """DINO-WM's goal protocol: the goal is the state that ``steps`` env steps of a data-collection
    policy reach from the episode's start state (DINO-WM: 25 = goal_H 5 x frameskip 5 steps of a
    held-out dataset trajectory, replayed in the env).

    The policy (seeded by the episode's seed, so held-out seeds give held-out trajectories) is a smooth
    random walk of the target (``policy="random_walk"``, ``step_std`` x the board per step) or the noisy
    scripted pusher (``policy="expert"``, Gaussian noise of ``noise_px`` pixels, ``envs.pusht_expert``).
    With ``warmup`` > 0 the start state is itself mid-trajectory: the state after ``warmup`` steps of
    the same policy from the reset (DINO-WM samples start states at random offsets inside held-out
    trajectories). The live env is then put back on the start state by resetting with the episode's
    seed and replaying the warm-up targets (gym-pusht is deterministic), and the start observation is
    left in ``adapter.start_observation`` for the evaluation to begin from. The goal state goes to
    ``adapter.goal_state`` (for ``goal_state_reached``) and the segment's targets to
    ``adapter.goal_actions`` (for ``replay_expert``). The goal segment steps the simulator directly
    (outside the time limit) with absolute targets limited as the env's actions are
    (``reachable_target``: with relative actions, within ``max_delta`` of the agent, as the data).
    """
    reset = adapter.last_reset
    if reset is None or reset["seed"] is None:
        raise ValueError("rollout_goal needs an episode started with reset(seed=...)")
    if steps < 1 or warmup < 0:
        raise ValueError(f"rollout_goal needs steps >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    env, sim = adapter.env, adapter.env.unwrapped
    rng = np.random.default_rng([int(reset["seed"]), 0x601])
    act = _make_goal_policy(adapter, policy, rng, step_std, noise_px)
    targets = []
    for _ in range(warmup + steps):
        # Limited as the env limits its actions (relative: max_delta), float32 as the env's actions.
        targets.append(reachable_target(adapter, act(sim)).astype(np.float32))
        obs, _, _, _, info = sim.step(targets[-1])
    goal = adapter.observe(obs, info)
    state = pusht_state(sim)
    obs, info = env.reset(seed=reset["seed"], options=reset["options"])
    for target in targets[:warmup]:
        obs, _, _, _, info = sim.step(target)
    adapter.start_observation = adapter.observe(obs, info) if warmup else None
    adapter.goal_state = state
    adapter.goal_actions = np.stack(targets[warmup:])  # (steps, 2) absolute targets
    adapter._replay_index = 0
    return goal


def replay_expert(adapter: GymAdapter) -> np.ndarray:
    """The goal segment's own actions, replayed (DINO-WM's ground-truth actions): the expert of the
    goal protocol. It reaches the goal state exactly in ``steps`` env steps (gym-pusht is deterministic),
    then holds the last target. Needs ``rollout_goal`` as the goal function."""
    actions = getattr(adapter, "goal_actions", None)
    if actions is None:
        raise ValueError("replay_expert needs env.adapter.goal=envs.pusht:rollout_goal (no goal segment yet)")
    i = min(adapter._replay_index, len(actions) - 1)
    adapter._replay_index += 1
    return to_env_action(adapter, actions[i])


def _state_errors(adapter: GymAdapter, info: dict) -> tuple[float, float] | None:
    if adapter.goal_state is None:
        return None
    cur = np.r_[np.asarray(info["pos_agent"], float), np.asarray(info["block_pose"], float)]
    goal = np.asarray(adapter.goal_state, float)
    return float(np.linalg.norm(cur[:4] - goal[:4])), float(np.abs(_wrap(cur[4] - goal[4])))


def goal_state_reached(adapter: GymAdapter, obs, info: dict) -> bool:
    """DINO-WM's PushT success: agent and block positions within 20 px (norm of the 4-vector) and the
    block angle within pi/9 of ``adapter.goal_state``; False before a goal state is set."""
    errors = _state_errors(adapter, info)
    return errors is not None and errors[0] < GOAL_POS_TOL and errors[1] < GOAL_ANGLE_TOL


def goal_state_distance(adapter: GymAdapter, obs, info: dict) -> float:
    """Norm of the agent and block position errors (px) against ``adapter.goal_state`` (NaN before one)."""
    errors = _state_errors(adapter, info)
    return float("nan") if errors is None else errors[0]


PRESET = Preset(
    AdapterSpec(rgb="obs.pixels", proprio=["obs.agent_pos", "info.vel_agent"], info="envs.pusht:task_info",
                success="info.is_success", distance="info.distance", goal="envs.pusht:goal_pose",
                expert="envs.pusht_expert:pusht_expert",
                ground_truth={"agent_pos": "info.pos_agent", "block_pose": "info.block_pose"},
                description="push the T-shaped block onto the green goal T"),
    kwargs=lambda w, h: {"obs_type": "pixels_agent_pos", "observation_width": w, "observation_height": h},
    requires="'ivnext_world[pusht]' (gym-pusht)",
    wrap=wrap_action_mode, own_kwargs=("action_mode", "max_delta"),
)
