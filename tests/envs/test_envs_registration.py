"""`import envs` registers the ids cheaply and sets the headless GL default."""

import subprocess
import sys

import gymnasium

import envs


def test_all_tasks_registered():
    assert set(envs.TASKS) == {"reach", "push", "reacher", "pusher"}
    for env_id in envs.TASKS.values():
        assert env_id in gymnasium.registry
    assert gymnasium.spec(envs.TASKS["reach"]).max_episode_steps == 50
    assert gymnasium.spec(envs.TASKS["push"]).max_episode_steps == 120


def test_import_is_cheap_and_sets_mujoco_gl():
    code = (
        "import os, sys; os.environ.pop('MUJOCO_GL', None); os.environ.pop('PYOPENGL_PLATFORM', None);"
        "import envs; assert 'mujoco' not in sys.modules, 'import envs imported mujoco';"
        "print(os.environ['MUJOCO_GL'], os.environ['PYOPENGL_PLATFORM'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["egl", "egl"]


def test_lazy_attributes():
    assert envs.ExpertPolicy is envs.experts.ExpertPolicy
    assert envs.CameraRig.__name__ == "CameraRig"
