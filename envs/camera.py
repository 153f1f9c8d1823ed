"""A calibrated camera on any MuJoCo model: RGB, metric depth, intrinsics and extrinsics.

Conventions (the same for every environment in ``envs``):

* **Images** are row-major, row 0 at the top: ``rgb`` is ``(H, W, 3) uint8`` and ``depth`` is
  ``(H, W) float32``. Depth is the metric z-depth along the optical axis (the distance from the
  camera plane, not along the ray), in metres, as returned by ``mujoco.Renderer`` with depth
  rendering enabled. Pixels that see nothing hold the far clipping distance. (gymnasium's
  ``render_mode="depth_array"`` returns the raw [0, 1] z-buffer instead; we do not use it.)
* **Intrinsics** ``K`` (3x3 float32) use the OpenCV pinhole model with *pixel centres at integer
  coordinates*: pixel ``(u, v)`` (column, row) covers ``[u - 0.5, u + 0.5] x [v - 0.5, v + 0.5]``,
  so the image spans ``[-0.5, W - 0.5]``. For a camera defined by ``fovy``:
  ``fy = fx = 0.5 H / tan(fovy / 2)``, ``cx = (W - 1) / 2``, ``cy = (H - 1) / 2``. With this
  convention the back-projection ``z * K^-1 [u, v, 1]`` of a pixel centre is exact.
* **Extrinsics** ``T`` (4x4 float32) map world to camera coordinates in the OpenCV frame
  (x right, y down, z forward): ``p_cam = T @ [p_world, 1]``. MuJoCo cameras look along their
  own -z with y up, so the camera's y and z axes are flipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

__all__ = ["CameraRig", "FreeCamera"]


@dataclass(frozen=True)
class FreeCamera:
    """A camera that is not in the model (e.g. for gymnasium's Reacher/Pusher, which have none).

    Same parameters as MuJoCo's free camera (``mjCAMERA_FREE``); its field of view is the model's
    ``<visual><global fovy>`` (45 deg unless the model sets it).

    Args:
        lookat: world point the camera looks at, metres.
        distance: distance from ``lookat`` to the camera, metres.
        azimuth: heading of the view direction about world z, degrees (90 looks along +y).
        elevation: pitch of the view direction, degrees (negative looks down).
    """

    lookat: tuple[float, float, float]
    distance: float
    azimuth: float
    elevation: float


class CameraRig:
    """Renders one camera of a MuJoCo model and reports its calibration.

    Args:
        model: any ``mujoco.MjModel``. Its offscreen framebuffer (``<visual><global offwidth
            offheight>``, 640x480 by default) must be at least ``width`` x ``height``.
        camera: the name or id of a camera in the model (fixed or tracking), or a ``FreeCamera``.
        width, height: image size in pixels.

    Shadows and reflections are switched off on the scene because a 4096^2 shadow map makes CPU
    rendering ~15x slower and neither carries information a world model needs. The model itself is
    not modified. Call ``close()`` (or use ``with``) to free the OpenGL context.
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        camera: str | int | FreeCamera = 0,
        width: int = 128,
        height: int = 128,
    ):
        self.model, self.width, self.height = model, int(width), int(height)
        self._camera = self._make_camera(model, camera)
        self._renderer = mujoco.Renderer(model, height=self.height, width=self.width)
        flags = self._renderer.scene.flags
        flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        self._intrinsics = self._compute_intrinsics()

    @staticmethod
    def _make_camera(model: mujoco.MjModel, camera: str | int | FreeCamera) -> mujoco.MjvCamera:
        cam = mujoco.MjvCamera()
        if isinstance(camera, FreeCamera):
            cam.type = mujoco.mjtCamera.mjCAMERA_FREE
            cam.lookat[:] = camera.lookat
            cam.distance, cam.azimuth, cam.elevation = camera.distance, camera.azimuth, camera.elevation
            return cam
        cam_id = camera
        if isinstance(camera, str):
            cam_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
            if cam_id < 0:
                names = [model.camera(i).name for i in range(model.ncam)]
                raise ValueError(f"camera {camera!r} not in the model (it has {names}); pass a FreeCamera")
        if not 0 <= cam_id < model.ncam:
            raise ValueError(f"camera id {cam_id} out of range [0, {model.ncam}); pass a FreeCamera")
        cam.type = mujoco.mjtCamera.mjCAMERA_FIXED
        cam.fixedcamid = cam_id
        return cam

    def _compute_intrinsics(self) -> np.ndarray:
        # Read the frustum from the scene camera that mjr_render draws with (at the near plane:
        # signed bottom/top, horizontal centre and half-width, width 0 meaning "from the aspect
        # ratio"). This covers fovy cameras, free cameras and cameras given by sensorsize/focal/
        # principal alike. The frustum depends on the model only, so a blank MjData will do.
        self._renderer.update_scene(mujoco.MjData(self.model), camera=self._camera)
        cam = self._renderer.scene.camera[0]
        if cam.orthographic:
            raise ValueError("orthographic cameras have no pinhole intrinsics")
        near, bottom, top = cam.frustum_near, cam.frustum_bottom, cam.frustum_top
        fy = self.height * near / (top - bottom)
        cy = self.height * top / (top - bottom) - 0.5  # image row 0 is the top edge
        if cam.frustum_width == 0:
            fx, cx = fy, (self.width - 1) / 2  # square pixels, centred
        else:
            left = cam.frustum_center - cam.frustum_width
            fx = self.width * near / (2 * cam.frustum_width)
            cx = -self.width * left / (2 * cam.frustum_width) - 0.5
        return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float32)

    @property
    def intrinsics(self) -> np.ndarray:
        """3x3 float32 OpenCV camera matrix (a copy); see the module docstring."""
        return self._intrinsics.copy()

    def extrinsics(self, data: mujoco.MjData) -> np.ndarray:
        """4x4 float32 world-to-camera transform in the OpenCV frame, for the current ``data``.

        For a fixed camera this is built from ``data.cam_xpos`` / ``data.cam_xmat`` (through
        ``mjv_cameraFrame``, which also handles free cameras).
        """
        pos, forward, up, right = (np.zeros(3) for _ in range(4))
        mujoco.mjv_cameraFrame(pos, forward, up, right, data, self._camera)
        rot = np.stack([right, -up, forward])  # rows: OpenCV x, y, z axes in world coordinates
        world_to_cam = np.eye(4)
        world_to_cam[:3, :3] = rot
        world_to_cam[:3, 3] = -rot @ pos
        return world_to_cam.astype(np.float32)

    def render(self, data: mujoco.MjData) -> tuple[np.ndarray, np.ndarray]:
        """Renders ``data`` -> ``(rgb (H, W, 3) uint8, depth (H, W) float32 metres)``."""
        if self._renderer is None:
            raise RuntimeError("CameraRig.render called after close()")
        r = self._renderer
        r.update_scene(data, camera=self._camera)
        r.disable_depth_rendering()
        rgb = r.render()
        r.enable_depth_rendering()  # same scene, second pass reads the depth buffer
        depth = r.render()
        return rgb, depth

    def close(self) -> None:
        """Frees the renderer's OpenGL resources; safe to call twice."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self) -> CameraRig:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
