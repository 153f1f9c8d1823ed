"""PushT beyond the adapter basics (test_byo_adapter.py): relative actions, the scripted pusher, PushT's
own success criterion reached by it, and DINO-WM's goal protocol (start states, goal segments, replay)."""

import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from omegaconf import OmegaConf

from _env_helpers import SIZE
from envs.adapter_spec import AdapterSpec
from envs.gym_adapters import make_gym_env

pytest.importorskip("gym_pusht", reason="optional extra: pip install 'ivnext_world[pusht]' (scripts/setup.sh does)")

ID = "gym_pusht/PushT-v0"
PROTOCOL = dict(goal="envs.pusht:rollout_goal", success="envs.pusht:goal_state_reached",
                distance="envs.pusht:goal_state_distance", expert="envs.pusht:replay_expert")


@pytest.fixture
def make():
    made = []

    def _make(**kw):
        kw.setdefault("image_size", SIZE)
        env = make_gym_env(ID, **kw)
        made.append(env)
        return env

    yield _make
    for env in made:
        env.close()


def _state(env):
    from envs.pusht import pusht_state

    return pusht_state(env.unwrapped)


def test_relative_actions_pass_the_checker_and_move_the_agent_by_the_offset(make):
    env = make(kwargs={"action_mode": "relative", "max_delta": 50}, max_episode_steps=6)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(infinity|different from the unwrapped|precision).*")
        check_env(env)
    assert env.action_space == gymnasium.spaces.Box(-50, 50, (2,), np.float32)
    absolute = make(max_episode_steps=6)
    obs, _ = env.reset(seed=3)
    absolute.reset(seed=3)
    for delta in ([30.0, 0.0], [0.0, -40.0], [25.0, 25.0]):
        target = np.clip(env.unwrapped.agent.position + np.array(delta), 0, 512).astype(np.float32)
        obs, *_ = env.step(np.array(delta, np.float32))
        ref, *_ = absolute.step(target)  # the same target as an absolute action: the same physics
        np.testing.assert_allclose(obs["proprio"], ref["proprio"], rtol=1e-5, atol=1e-3)
    with pytest.raises(ValueError, match="action_mode"):
        make(kwargs={"action_mode": "velocity"})


@pytest.mark.parametrize("kwargs", [{}, {"action_mode": "relative"}])
def test_scripted_pusher_is_deterministic_and_reaches_pushts_own_success(make, kwargs):
    """Seed 7 is one the pusher solves (7 of seeds 0-11 within 300 steps; README): coverage > 0.95,
    PushT's own criterion, then the episode terminates."""
    from envs.experts import ExpertPolicy

    env = make(kwargs=kwargs, max_episode_steps=200)

    def run(seed):
        obs, info = env.reset(seed=seed)
        policy, coverage, states = ExpertPolicy(env), [info["coverage"]], [_state(env)]
        for _ in range(200):
            obs, reward, terminated, truncated, info = env.step(policy(obs))
            coverage.append(info["coverage"])
            states.append(_state(env))
            if terminated or truncated:
                break
        return info, terminated, np.array(coverage), np.stack(states)

    info, terminated, coverage, states = run(7)
    assert terminated and info["is_success"] is True and coverage[-1] > 0.95 and coverage[:-1].max() <= 0.95
    assert coverage[0] < 0.2 and info["pos_error"] < 3 and info["angle_error"] < 0.05
    again = run(7)
    np.testing.assert_array_equal(states, again[3])  # same seed, same episode


@pytest.mark.parametrize("kwargs", [{}, {"action_mode": "relative", "max_delta": 25}])
def test_goal_protocol_with_warmup_starts_mid_trajectory_and_replay_reaches_the_goal(make, kwargs):
    """With relative actions the goal segment moves only as far per step as the env's actions can
    (max_delta), so its replay through the env's own action box reaches the goal exactly too."""
    from ivnext_world.planning.baselines import make_baseline

    spec = AdapterSpec(**PROTOCOL, goal_kwargs={"steps": 25, "policy": "expert", "noise_px": 20, "warmup": 15})
    env = make(adapter=spec, kwargs=kwargs, max_episode_steps=40)
    reset_obs, _ = env.reset(seed=21)
    goal = env.get_wrapper_attr("render_goal")()
    start = env.get_wrapper_attr("start_observation")
    goal_state = env.get_wrapper_attr("goal_state")
    start_state = _state(env)
    # The live env sits on the start state (15 steps in), not on the reset state, and shows it.
    assert np.linalg.norm(start_state[:2] - reset_obs["proprio"][:2]) > 5
    np.testing.assert_allclose(start["proprio"][:2], start_state[:2], atol=1e-6)
    assert np.linalg.norm(goal_state[:2] - start_state[:2]) > 5 and goal["rgb"].shape == (SIZE, SIZE, 3)
    assert env.get_wrapper_attr("goal_actions").shape == (25, 2)
    # The replayed segment reaches the goal state (deterministic sim) and meets DINO-WM's criterion.
    expert = make_baseline("expert", env, seed=21)
    info = None
    for _ in range(25):
        _, _, _, _, info = env.step(expert(None))
    np.testing.assert_allclose(_state(env), goal_state, atol=1e-2)
    assert info["is_success"] is True and info["distance"] < 1e-2 and info["goal_block_pos_error"] < 1e-2
    # Same seed, same start and goal; another seed, another.
    env.reset(seed=21)
    env.get_wrapper_attr("render_goal")()
    np.testing.assert_array_equal(env.get_wrapper_attr("goal_state"), goal_state)
    np.testing.assert_array_equal(_state(env), start_state)
    env.reset(seed=22)
    env.get_wrapper_attr("render_goal")()
    assert not np.allclose(env.get_wrapper_attr("goal_state"), goal_state)


def test_expert_goal_segments_move_the_block_more_often_than_random_walk_ones(make):
    """Why the protocol uses the pusher: DINO-WM's goals come from demonstrations, which move the T."""
    moved = {}
    for policy in ("expert", "random_walk"):
        env = make(adapter=AdapterSpec(**PROTOCOL, goal_kwargs={"steps": 25, "policy": policy, "warmup": 15}),
                   max_episode_steps=40)
        shifts = []
        for seed in range(100, 106):
            env.reset(seed=seed)
            env.get_wrapper_attr("render_goal")()
            shifts.append(np.linalg.norm(env.get_wrapper_attr("goal_state")[2:4] - _state(env)[2:4]))
        moved[policy] = np.array(shifts)
    expert, walk = (np.mean(moved[p] > 5) for p in ("expert", "random_walk"))
    assert expert >= 5 / 6 and expert > walk  # measured: 6/6 vs 2/6


def test_goal_protocol_rejects_bad_settings(make):
    env = make(adapter=AdapterSpec(**{**PROTOCOL, "goal_kwargs": {"policy": "teleop"}}), max_episode_steps=5)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="policy"):
        env.get_wrapper_attr("render_goal")()
    env.reset(seed=None)
    with pytest.raises(ValueError, match="seed"):
        env.get_wrapper_attr("render_goal")()
    plain = make(adapter=AdapterSpec(expert="envs.pusht:replay_expert"), max_episode_steps=5)
    plain.reset(seed=0)
    with pytest.raises(ValueError, match="rollout_goal"):
        plain.get_wrapper_attr("expert_action")()


def test_plan_eval_baselines_on_the_protocol_replay_succeeds_random_rarely(tmp_path):
    """ivnext-plan-eval's baselines need no world model: the replayed expert meets every goal from the
    moved start state; uniform random targets almost never do."""
    from ivnext_world.config import load_config
    from ivnext_world.planning.evaluate import run_plan_eval

    cfg = load_config("plan_eval", [
        f"env.id={ID}", f"image_size={SIZE}", "episodes=4", "max_episode_steps=30", "methods=[expert,random]",
        "env.adapter.goal=envs.pusht:rollout_goal", "env.adapter.success=envs.pusht:goal_state_reached",
        "env.adapter.distance=envs.pusht:goal_state_distance", "env.adapter.expert=envs.pusht:replay_expert",
        "env.adapter.goal_kwargs={steps:25,policy:expert,warmup:15}", f"out={tmp_path}"])
    res = run_plan_eval(OmegaConf.to_object(cfg))["methods"]
    assert res["expert"]["successes"] == 4 and all(r["steps"] <= 25 for r in res["expert"]["episodes_detail"])
    assert res["random"]["successes"] <= 1
    detail = res["random"]["episodes_detail"][0]["final_info"]
    assert {"goal_block_pos_error", "goal_block_angle_error", "coverage"} <= set(detail)
