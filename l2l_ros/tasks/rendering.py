"""Offscreen pictures of the MuJoCo worlds (gymnasium's ``render_mode="rgb_array"``).

MuJoCo's own renderer draws the scene; markers that are not part of the physics (the
I-maze's goal alcove, the arm's target) are added to its scene as visual-only geoms.
Without a display, MuJoCo renders through EGL, which Mesa's software rasteriser
(Debian's ``libegl-mesa0`` and ``libgl1-mesa-dri``) provides on a machine without a GPU:
``l2l_ros`` sets ``MUJOCO_GL=egl`` when no display is set and the variable is unset.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import mujoco
import numpy as np

__all__ = ["Box", "Sphere", "SceneRenderer"]


@dataclass(frozen=True)
class Box:
    centre: tuple[float, float, float]
    half_size: tuple[float, float, float]
    rgba: tuple[float, float, float, float]


@dataclass(frozen=True)
class Sphere:
    centre: tuple[float, float, float]
    radius: float
    rgba: tuple[float, float, float, float]


@dataclass
class SceneRenderer:
    """A fixed free camera looking at ``lookat`` from ``distance`` (m), elevation and
    azimuth in degrees (elevation -90: straight down)."""

    model: mujoco.MjModel
    width: int = 480
    height: int = 480
    lookat: tuple[float, float, float] = (0.0, 0.0, 0.0)
    distance: float = 3.0
    elevation: float = -90.0
    azimuth: float = 90.0
    _renderer: mujoco.Renderer | None = field(default=None, init=False, repr=False)

    def render(self, data: mujoco.MjData, extras: list[Box | Sphere] = ()) -> np.ndarray:
        """``[height, width, 3]`` uint8 of ``data``'s scene with ``extras`` drawn in."""
        if self._renderer is None:
            try:
                self._renderer = mujoco.Renderer(self.model, self.height, self.width)
            except Exception as exc:  # noqa: BLE001 - a missing GL stack, said in one line
                raise RuntimeError(f"MuJoCo cannot render offscreen ({' '.join(str(exc).split())}); "
                                   "without a display set MUJOCO_GL=egl (Debian: libegl-mesa0, "
                                   "libgl1-mesa-dri)") from exc
        cam = mujoco.MjvCamera()
        cam.type = mujoco.mjtCamera.mjCAMERA_FREE
        cam.lookat[:] = self.lookat
        cam.distance, cam.elevation, cam.azimuth = self.distance, self.elevation, self.azimuth
        self._renderer.update_scene(data, camera=cam)
        scene = self._renderer.scene
        for extra in extras:
            if scene.ngeom >= scene.maxgeom:
                break
            geom = scene.geoms[scene.ngeom]
            if isinstance(extra, Box):
                mujoco.mjv_initGeom(geom, mujoco.mjtGeom.mjGEOM_BOX, np.asarray(extra.half_size, float),
                                    np.asarray(extra.centre, float), np.eye(3).reshape(-1),
                                    np.asarray(extra.rgba, np.float32))
            else:
                mujoco.mjv_initGeom(geom, mujoco.mjtGeom.mjGEOM_SPHERE, np.array([extra.radius, 0, 0], float),
                                    np.asarray(extra.centre, float), np.eye(3).reshape(-1),
                                    np.asarray(extra.rgba, np.float32))
            scene.ngeom += 1
        return self._renderer.render().copy()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
