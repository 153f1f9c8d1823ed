"""CameraRig on hand-made MuJoCo scenes whose geometry is known exactly."""

import numpy as np
import pytest

import envs  # noqa: F401  (sets MUJOCO_GL before mujoco is imported)
import mujoco
from _env_helpers import backproject, project
from envs.camera import CameraRig, FreeCamera

# A white floor at z = 0 and a small green ball; cameras straight down and tilted.
SCENE = """
<mujoco>
  <visual><global offwidth="200" offheight="200"/></visual>
  <worldbody>
    <light pos="0 0 3" dir="0 0 -1"/>
    <geom name="floor" type="plane" size="3 3 0.1" rgba="0.8 0.8 0.8 1"/>
    <geom name="ball" type="sphere" pos="0.05 0.1 0.01" size="0.01" rgba="0 1 0 1"/>
    <camera name="down" pos="0 0 1" fovy="40"/>
    <camera name="tilted" pos="0.1 -0.6 0.7" xyaxes="1 0 0 0 0.8 0.6" fovy="55"/>
    <camera name="shifted" pos="0 0 1" resolution="100 80" sensorsize="0.01 0.008"
            focal="0.008 0.008" principal="0.001 0.0005"/>
  </worldbody>
</mujoco>
"""
BALL = np.array([[0.05, 0.1, 0.01]])


@pytest.fixture(scope="module")
def sim():
    model = mujoco.MjModel.from_xml_string(SCENE)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    return model, data


def test_depth_of_a_plane_facing_the_camera_is_its_distance(sim):
    model, data = sim
    with CameraRig(model, "down", width=48, height=40) as rig:
        _, depth = rig.render(data)
    assert depth.dtype == np.float32 and depth.shape == (40, 48)
    # Every pixel that sees the floor (all but the ball's) is 1 m deep: z-depth, not ray length,
    # which would grow to 1 / cos(20 deg) = 1.06 m in the corners.
    np.testing.assert_allclose(np.median(depth), 1.0, atol=1e-4)
    assert np.mean(np.abs(depth - 1.0) < 1e-3) > 0.97


@pytest.mark.parametrize("camera", ["down", "tilted", FreeCamera((0.0, 0.0, 0.0), 1.2, 60.0, -40.0)])
def test_backprojected_floor_lands_on_the_floor(sim, camera):
    model, data = sim
    with CameraRig(model, camera, width=64, height=48) as rig:
        _, depth = rig.render(data)
        points = backproject(depth, rig.intrinsics, rig.extrinsics(data))
    on_floor = np.abs(points[..., 2]) < 2e-3  # metres
    assert on_floor.mean() > 0.97  # all but the ball's few pixels


@pytest.mark.parametrize("camera,size", [("down", (48, 40)), ("tilted", (64, 64)), ("shifted", (100, 80))])
def test_projection_hits_the_ball(sim, camera, size):
    """K and T put the ball centre on the centroid of its green pixels (sub-pixel)."""
    model, data = sim
    with CameraRig(model, camera, width=size[0], height=size[1]) as rig:
        rgb, _ = rig.render(data)
        uv = project(BALL, rig.intrinsics, rig.extrinsics(data))[0]
    rgb = rgb.astype(int)
    rows, cols = np.nonzero((rgb[..., 1] > rgb[..., 0] + 60) & (rgb[..., 1] > rgb[..., 2] + 60))
    assert len(rows) > 0
    np.testing.assert_allclose([cols.mean(), rows.mean()], uv, atol=1.0)


def test_intrinsics_convention_for_fovy_cameras(sim):
    model, _ = sim
    with CameraRig(model, "down", width=48, height=40) as rig:
        k = rig.intrinsics
    f = 0.5 * 40 / np.tan(np.radians(40) / 2)
    np.testing.assert_allclose(k, [[f, 0, 23.5], [0, f, 19.5], [0, 0, 1]], rtol=1e-5)
    assert k.dtype == np.float32


def test_extrinsics_are_a_rigid_opencv_transform(sim):
    model, data = sim
    with CameraRig(model, "tilted", width=32, height=32) as rig:
        t = rig.extrinsics(data)
    assert t.dtype == np.float32 and t.shape == (4, 4)
    np.testing.assert_allclose(t[:3, :3] @ t[:3, :3].T, np.eye(3), atol=1e-6)
    np.testing.assert_allclose(t[3], [0, 0, 0, 1])
    # The camera centre maps to the origin; a point below the camera's "up" is at +y (down).
    centre = data.cam_xpos[model.camera("tilted").id]
    np.testing.assert_allclose(t[:3, :3] @ centre + t[:3, 3], 0, atol=1e-6)
    assert (t @ [0.1, 0.0, 0.0, 1.0])[2] > 0  # the floor ahead of the camera has positive z


def test_bad_camera_and_close(sim):
    model, data = sim
    with pytest.raises(ValueError, match="not in the model"):
        CameraRig(model, "nope")
    with pytest.raises(ValueError, match="out of range"):
        CameraRig(model, 7)
    rig = CameraRig(model, "down", width=16, height=16)
    rig.close()
    rig.close()  # idempotent
    with pytest.raises(RuntimeError, match="after close"):
        rig.render(data)


def test_an_env_made_before_torch_trains_does_not_crash_the_process():
    """Triton's native library (torch loads it lazily, e.g. on the first optimizer) segfaulted when
    it came after an OpenGL context; importing envs loads it first. A fresh process, as a user's script."""
    import subprocess
    import sys

    script = (
        "import gymnasium, envs\n"
        "env = gymnasium.make('ivnext/Push-v0', width=32, height=32); env.reset(seed=0)\n"
        "import torch\n"
        "p = torch.nn.Parameter(torch.zeros(3)); opt = torch.optim.Adam([p])\n"
        "p.sum().backward(); opt.step(); print('trained', float(p[0]))\n"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "trained" in r.stdout
