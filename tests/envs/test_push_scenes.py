"""PushEnv's scenes: the default front view stays as it was, and the top-down view (PushT's lesson:
the object carries the image) has the same layouts, a camera straight down and only the fingertip
of the arm in view."""

import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from _env_helpers import backproject, project


def _blue(rgb: np.ndarray) -> np.ndarray:  # the puck's pixels (rgba 0.15 0.3 0.9)
    rgb = rgb.astype(int)
    return (rgb[..., 2] > 150) & (rgb[..., 0] < 90) & (rgb[..., 1] < 130)


def test_topdown_passes_gymnasiums_checker(make_env):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*infinity.*")
        check_env(make_env("push", scene="topdown", render_mode="rgb_array").unwrapped)


def test_front_is_the_default_and_both_scenes_draw_the_same_layouts(make_env):
    default, front, top = make_env("push"), make_env("push", scene="front"), make_env("push", scene="topdown")
    for seed in (0, 7):
        (o_d, i_d), (o_f, i_f), (o_t, i_t) = (e.reset(seed=seed) for e in (default, front, top))
        np.testing.assert_array_equal(o_d["rgb"], o_f["rgb"])  # the old scene, pixel for pixel
        for key in ("ee_pos", "goal_pos", "object_pos"):
            np.testing.assert_allclose(i_f[key][:2], i_t[key][:2], atol=1e-9)
        assert not np.array_equal(o_f["rgb"], o_t["rgb"])


def test_topdown_camera_looks_straight_down_and_the_puck_is_where_it_projects(make_env):
    env = make_env("push", scene="topdown", width=128, height=128)
    obs, info = env.reset(seed=3)
    # straight down from 0.9 m: the table (z = 0) is at depth 0.9 everywhere it shows
    pts = backproject(obs["depth"], obs["intrinsics"], obs["extrinsics"])
    assert np.mean(np.abs(pts[..., 2]) < 3e-3) > 0.8
    assert np.ptp(obs["depth"][obs["depth"] > 0.899]) < 2e-3
    uv = project(info["object_pos"][None] + [0, 0, 0.02], obs["intrinsics"], obs["extrinsics"])[0]
    rows, cols = np.nonzero(_blue(obs["rgb"]))
    np.testing.assert_allclose([cols.mean(), rows.mean()], uv, atol=1.5)


def test_in_the_topdown_scene_the_puck_carries_more_of_the_image_and_the_arm_less(make_env):
    """Moving only the fingertip (away from the puck) changes few pixels from above, many from the
    front, where the whole gantry moves; the puck covers several times more pixels from above."""
    changed, puck = {}, {}
    for scene in ("front", "topdown"):
        env = make_env("push", scene=scene, width=64, height=64)
        obs, info = env.reset(seed=3)
        away = np.sign(info["ee_pos"][:2] - info["object_pos"][:2]).astype(np.float32)
        after = obs
        for _ in range(3):
            after, *_ = env.step(away * 0.5)  # 3 cm away from the puck, no contact
        changed[scene] = np.mean(np.abs(after["rgb"].astype(int) - obs["rgb"].astype(int)).sum(-1) > 30)
        puck[scene] = _blue(obs["rgb"]).mean()
    assert changed["topdown"] < 0.5 * changed["front"]
    assert puck["topdown"] > 3 * puck["front"]


def test_the_scripted_pusher_solves_the_topdown_scene(make_env):
    env = make_env("push", scene="topdown")
    solved = 0
    for seed in range(4):
        env.reset(seed=seed)
        for _ in range(120):
            _, _, _, _, info = env.step(env.unwrapped.expert_action())
            if info["is_success"]:
                solved += 1
                break
    assert solved >= 3


def test_unknown_scene_is_refused_with_the_choices(make_env):
    with pytest.raises(ValueError, match=r"unknown push scene 'side'.*front.*topdown"):
        make_env("push", scene="side")
