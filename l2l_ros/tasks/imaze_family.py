"""The I-maze as a Sim2Real-style task family: per-task geometry, sensing and actuation.

A task of the family is a maze (stem and crossbar half-lengths, corridor width, alcove
depth), a lidar (range noise, beam dropouts that read +inf as a real LaserScan does),
wheel odometry that drifts (scale errors and a gyro bias integrated over the trial), a
robot (wheel friction, mass) and a command latency of whole control steps. Each range
is uniform unless said otherwise; a range whose ends are equal switches that
randomization off and draws nothing, so ``fixed`` is the single maze with perfect
sensors that the first bundled model was trained on.

No ROS here: ``IMazeEnv(family=...)`` samples a task at each reset, and the
``imaze_sim`` node runs that env. The maze's dimensions (:class:`IMazeGeometry`) live here
too, below the MuJoCo env (``tasks.imaze``) and the oracle (``tasks.imaze_oracle``) that
both build on them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from l2l_ros.tasks.family_spec import family_from_spec

__all__ = ["IMazeGeometry", "IMazeFamily", "IMazeTask", "Odometer"]

_GEOMETRY_FIELDS = ("stem_half_length", "crossbar_half_length", "corridor_width", "alcove_depth")


@dataclass(frozen=True)
class IMazeGeometry:
    """Dimensions of the I-maze (metres).

    corridor_width: free width of every corridor (stem, crossbars, alcoves). 0.5 m
        leaves ~0.12 m each side of a TurtleBot3 Burger (footprint radius ~0.124 m
        about the wheel axle centre).
    stem_half_length: distance from the origin to each crossbar's centreline.
    crossbar_half_length: distance from the stem centreline (x = 0) to each
        crossbar end's centreline (x = +-crossbar_half_length), where the alcoves are.
    alcove_depth: how far each alcove extends outward (in y) past the crossbar's
        outer wall. The alcove is the goal region.
    wall_thickness, wall_height: wall boxes; walls are taller than the lidar plane
        (0.182 m) so every beam inside the maze returns.
    """

    corridor_width: float = 0.5
    stem_half_length: float = 0.6
    crossbar_half_length: float = 0.6
    alcove_depth: float = 0.3
    wall_thickness: float = 0.05
    wall_height: float = 0.3

    def goal_region(self, goal: int) -> tuple[float, float, float, float]:
        """(xmin, xmax, ymin, ymax) of alcove ``goal``; reached when the base origin is inside."""
        sx, sy = self.goal_signs(goal)
        w, s, h, d = self.corridor_width, self.stem_half_length, self.crossbar_half_length, \
            self.alcove_depth
        x0, x1 = sx * h - w / 2, sx * h + w / 2
        y_in, y_out = s + w / 2, s + w / 2 + d
        y0, y1 = (y_in, y_out) if sy > 0 else (-y_out, -y_in)
        return (x0, x1, y0, y1)

    def goal_regions(self) -> list[tuple[float, float, float, float]]:
        return [self.goal_region(g) for g in range(4)]

    @staticmethod
    def goal_signs(goal: int) -> tuple[int, int]:
        if not 0 <= int(goal) < 4:
            raise ValueError(f"goal {goal} outside 0..3")
        return ((1, 1), (-1, 1), (-1, -1), (1, -1))[int(goal)]

    def in_goal(self, goal: int, x: float, y: float) -> bool:
        x0, x1, y0, y1 = self.goal_region(goal)
        return x0 <= x <= x1 and y0 <= y <= y1

    def centreline_point(self, rng: np.random.Generator) -> tuple[float, float]:
        """A uniform point on the stem and crossbar centrelines (alcoves excluded)."""
        s, h = self.stem_half_length, self.crossbar_half_length
        u = float(rng.uniform(0.0, 2 * s + 4 * h))
        if u < 2 * s:
            return 0.0, u - s
        u -= 2 * s
        return u % (2 * h) - h, (s if u < 2 * h else -s)

    def free_rectangles(self) -> list[tuple[float, float, float, float]]:
        """The free space as a union of (xmin, xmax, ymin, ymax) rectangles."""
        w, s, h = self.corridor_width, self.stem_half_length, self.crossbar_half_length
        rects = [(-w / 2, w / 2, -s, s)]
        for sy in (1, -1):
            rects.append((-h - w / 2, h + w / 2, sy * s - w / 2, sy * s + w / 2))
        rects += self.goal_regions()
        return rects

    def wall_boxes(self) -> list[tuple[tuple[float, float], tuple[float, float]]]:
        """Wall boxes as ((centre x, centre y), (half x, half y)), outside the free space."""
        w, s, h, d, t = (self.corridor_width, self.stem_half_length, self.crossbar_half_length,
                         self.alcove_depth, self.wall_thickness)
        # Segments of the +x,+y quadrant: (x0, y0, x1, y1, outward normal, extend start,
        # extend end); walls are extended by t at convex corners to close them.
        quadrant = [
            (w / 2, 0.0, w / 2, s - w / 2, (1, 0), False, False),  # stem side wall
            (w / 2, s - w / 2, h + w / 2, s - w / 2, (0, -1), False, True),  # crossbar inner
            (h + w / 2, s - w / 2, h + w / 2, s + w / 2 + d, (1, 0), True, True),  # end wall
            (h - w / 2, s + w / 2 + d, h + w / 2, s + w / 2 + d, (0, 1), True, True),  # cap
            (h - w / 2, s + w / 2, h - w / 2, s + w / 2 + d, (-1, 0), False, True),  # alcove
            (0.0, s + w / 2, h - w / 2, s + w / 2, (0, 1), False, False),  # crossbar outer
        ]
        boxes = []
        for x0, y0, x1, y1, (nx, ny), e0, e1 in quadrant:
            if x0 == x1:  # vertical segment
                lo, hi = y0 - (t if e0 else 0.0), y1 + (t if e1 else 0.0)
                cx, cy, hx, hy = x0 + nx * t / 2, (lo + hi) / 2, t / 2, (hi - lo) / 2
            else:
                lo, hi = x0 - (t if e0 else 0.0), x1 + (t if e1 else 0.0)
                cx, cy, hx, hy = (lo + hi) / 2, y0 + ny * t / 2, (hi - lo) / 2, t / 2
            for mx, my in ((1, 1), (-1, 1), (-1, -1), (1, -1)):
                boxes.append(((mx * cx, my * cy), (hx, hy)))
        return boxes


@dataclass(frozen=True)
class IMazeFamily:
    """The ranges one task is drawn from: ``(low, high)``, uniform, both ends included."""

    #: Metres from the centre to each crossbar's centreline.
    stem_half_length: tuple[float, float] = (0.6, 0.6)
    #: Metres from the stem's centreline to each crossbar end (where the alcoves are).
    crossbar_half_length: tuple[float, float] = (0.6, 0.6)
    #: Free width of every corridor, m. The robot's footprint radius is 0.124 m.
    corridor_width: tuple[float, float] = (0.5, 0.5)
    #: Depth of each alcove (the goal region) past the crossbar's wall, m.
    alcove_depth: tuple[float, float] = (0.3, 0.3)
    #: Std of Gaussian lidar range noise, m (the task draws its std from this range).
    lidar_noise: tuple[float, float] = (0.0, 0.0)
    #: Probability that a beam returns nothing (+inf) on a scan.
    beam_dropout: tuple[float, float] = (0.0, 0.0)
    #: Relative error of the odometry's distance and of its turn angle (sign drawn per task).
    odom_scale_error: tuple[float, float] = (0.0, 0.0)
    #: Gyro bias integrated into the odometry's heading, rad/s (sign drawn per task).
    gyro_bias: tuple[float, float] = (0.0, 0.0)
    #: Multiplier on the wheels' and floor's friction.
    friction: tuple[float, float] = (1.0, 1.0)
    #: Multiplier on the base's mass and inertia.
    mass: tuple[float, float] = (1.0, 1.0)
    #: Control periods between a command and its effect (whole numbers).
    latency: tuple[int, int] = (0, 0)

    PRESETS = ("fixed", "sim2real", "noise_x2", "large_mazes")

    def __post_init__(self):
        for name in self.__dataclass_fields__:
            lo, hi = getattr(self, name)
            if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo <= hi):
                raise ValueError(f"I-maze family {name} range must be 0 <= low <= high, got {(lo, hi)}")
        if self.corridor_width[0] < 0.4 or self.corridor_width[1] > 1.0:
            raise ValueError(f"corridor_width must lie in [0.4, 1.0] m (the robot is 0.25 m wide), "
                             f"got {self.corridor_width}")
        for name in ("stem_half_length", "crossbar_half_length", "alcove_depth"):
            lo, hi = getattr(self, name)
            if lo < 0.2 or hi > 3.0:
                raise ValueError(f"{name} must lie in [0.2, 3.0] m, got {(lo, hi)}")
        if self.stem_half_length[0] < self.corridor_width[1] / 2 + 0.05 or \
                self.crossbar_half_length[0] < self.corridor_width[1] / 2 + 0.05:
            raise ValueError("stem and crossbar half-lengths must exceed half the widest corridor + 0.05 m")
        if self.beam_dropout[1] > 1.0 or self.lidar_noise[1] > 0.5 or self.odom_scale_error[1] > 0.5 \
                or self.gyro_bias[1] > 1.0:
            raise ValueError("I-maze family sensing ranges too large: beam_dropout <= 1, lidar_noise <= 0.5 m, "
                             "odom_scale_error <= 0.5, gyro_bias <= 1 rad/s")
        if self.friction[0] <= 0 or self.mass[0] <= 0:
            raise ValueError(f"friction and mass multipliers must be positive, got {self.friction}, {self.mass}")
        if any(int(v) != v for v in self.latency) or self.latency[1] > 10:
            raise ValueError(f"latency is 0..10 whole control periods, got {self.latency}")

    @classmethod
    def preset(cls, name: str) -> "IMazeFamily":
        """``fixed``: the default maze, perfect sensors (the family before issue 31);
        ``sim2real``: mazes of many sizes, noisy lidar, drifting odometry, varied robots,
        latency 0-2 (the training family); ``noise_x2``: ``sim2real`` with every sensing and
        actuation range doubled about its nominal value (mass a little more, 0.6-2.2);
        ``large_mazes``: geometry past ``sim2real``'s ranges."""
        if name == "fixed":
            return cls()
        s2r = cls(stem_half_length=(0.45, 0.9), crossbar_half_length=(0.45, 0.9), corridor_width=(0.45, 0.6),
                  alcove_depth=(0.25, 0.4), lidar_noise=(0.0, 0.02), beam_dropout=(0.0, 0.1),
                  odom_scale_error=(0.0, 0.03), gyro_bias=(0.0, 0.005), friction=(0.6, 1.2), mass=(0.8, 1.5),
                  latency=(0, 2))
        if name == "sim2real":
            return s2r
        if name == "noise_x2":
            return replace(s2r, lidar_noise=(0.0, 0.04), beam_dropout=(0.0, 0.2), odom_scale_error=(0.0, 0.06),
                           gyro_bias=(0.0, 0.01), friction=(0.2, 1.4), mass=(0.6, 2.2), latency=(0, 4))
        if name == "large_mazes":
            return replace(s2r, stem_half_length=(0.9, 1.2), crossbar_half_length=(0.9, 1.2),
                           corridor_width=(0.6, 0.7))
        raise ValueError(f"unknown I-maze family preset {name!r}; one of {', '.join(cls.PRESETS)}")

    @classmethod
    def from_spec(cls, spec: "str | dict | IMazeFamily | None") -> "IMazeFamily":
        """A preset name, a dict (``{"preset": name, field: [low, high], ...}``: fields
        override the preset, default ``sim2real``), an IMazeFamily, or None (``fixed``)."""
        return family_from_spec(cls, spec, "I-maze family", "sim2real", _range)

    def widest_geometry(self):
        """The largest maze of the family (for a task budget that fits every task)."""
        return IMazeGeometry(**{k: getattr(self, k)[1] for k in _GEOMETRY_FIELDS})


def _range(name: str, value) -> tuple:
    """A JSON ``[low, high]`` as a family field (latency stays whole numbers, checked later)."""
    if not (isinstance(value, (list, tuple)) and len(value) == 2):
        raise ValueError(f"I-maze family {name} is a [low, high] range, got {value!r}")
    return tuple(value) if name == "latency" else tuple(float(x) for x in value)


def _uniform(rng: np.random.Generator, lo_hi) -> float:
    lo, hi = lo_hi
    return float(lo) if lo == hi else float(rng.uniform(lo, hi))


def _signed(rng: np.random.Generator, lo_hi) -> float:
    """A magnitude from the range with a random sign (no draw at all when the range is 0)."""
    if lo_hi == (0.0, 0.0) or lo_hi == (0, 0):
        return 0.0
    return _uniform(rng, lo_hi) * (1.0 if rng.random() < 0.5 else -1.0)


@dataclass(frozen=True)
class IMazeTask:
    """One task's world, sensors and robot, drawn from an :class:`IMazeFamily`."""

    geometry: IMazeGeometry
    lidar_noise: float = 0.0
    beam_dropout: float = 0.0
    odom_scale: float = 0.0  # relative error of odometry distances
    odom_turn_scale: float = 0.0  # relative error of odometry turn angles
    gyro_bias: float = 0.0  # rad/s
    friction: float = 1.0
    mass: float = 1.0
    latency: int = 0

    @classmethod
    def sample(cls, rng: np.random.Generator, family: IMazeFamily) -> "IMazeTask":
        geometry = IMazeGeometry(**{k: _uniform(rng, getattr(family, k)) for k in _GEOMETRY_FIELDS})
        lat_lo, lat_hi = (int(v) for v in family.latency)
        return cls(geometry=geometry,
                   lidar_noise=_uniform(rng, family.lidar_noise),
                   beam_dropout=_uniform(rng, family.beam_dropout),
                   odom_scale=_signed(rng, family.odom_scale_error),
                   odom_turn_scale=_signed(rng, family.odom_scale_error),
                   gyro_bias=_signed(rng, family.gyro_bias),
                   friction=_uniform(rng, family.friction),
                   mass=_uniform(rng, family.mass),
                   latency=int(rng.integers(lat_lo, lat_hi + 1)) if lat_hi > lat_lo else lat_lo)

    def describe(self) -> dict:
        g = self.geometry
        return {"stem_half_length": round(g.stem_half_length, 3),
                "crossbar_half_length": round(g.crossbar_half_length, 3),
                "corridor_width": round(g.corridor_width, 3), "alcove_depth": round(g.alcove_depth, 3),
                "lidar_noise": round(self.lidar_noise, 4), "beam_dropout": round(self.beam_dropout, 3),
                "odom_scale": round(self.odom_scale, 4), "odom_turn_scale": round(self.odom_turn_scale, 4),
                "gyro_bias": round(self.gyro_bias, 4), "friction": round(self.friction, 3),
                "mass": round(self.mass, 3), "latency": self.latency}


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


class Odometer:
    """Wheel odometry that drifts: it integrates the base's true motion in its own frame
    with a scale error on distance and on turn angle and a gyro bias on heading, so the
    pose error grows slowly over a trial (it is not white noise on a perfect pose).

    It is re-anchored to the true pose at each trial start: the robot is put back at a
    known start, as an experimenter would localize it. With no errors it reports the
    true pose exactly.
    """

    def __init__(self, task: IMazeTask):
        self.task = task
        self.pose = (0.0, 0.0, 0.0)
        self._true = (0.0, 0.0, 0.0)
        self.exact = task.odom_scale == 0.0 and task.odom_turn_scale == 0.0 and task.gyro_bias == 0.0

    def anchor(self, x: float, y: float, yaw: float) -> None:
        self.pose = self._true = (float(x), float(y), float(yaw))

    def advance(self, x: float, y: float, yaw: float, dt: float) -> None:
        """The base moved (truly) to (x, y, yaw) over ``dt`` seconds."""
        if self.exact:
            self.pose = self._true = (float(x), float(y), float(yaw))
            return
        tx, ty, tyaw = self._true
        c, s = math.cos(tyaw), math.sin(tyaw)
        dx, dy = x - tx, y - ty
        fwd, side = c * dx + s * dy, -s * dx + c * dy  # the motion in the base's own frame
        dyaw = _wrap(yaw - tyaw)
        ox, oy, oyaw = self.pose
        k = 1.0 + self.task.odom_scale
        c, s = math.cos(oyaw), math.sin(oyaw)
        self.pose = (ox + k * (c * fwd - s * side), oy + k * (s * fwd + c * side),
                     _wrap(oyaw + dyaw * (1.0 + self.task.odom_turn_scale) + self.task.gyro_bias * dt))
        self._true = (float(x), float(y), float(yaw))

    def twist(self, v: float, w: float) -> tuple[float, float]:
        """The odometry's speed and yaw rate for the true ones."""
        if self.exact:
            return v, w
        return v * (1.0 + self.task.odom_scale), w * (1.0 + self.task.odom_turn_scale) + self.task.gyro_bias
