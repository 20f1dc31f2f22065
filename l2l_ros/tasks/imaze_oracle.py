"""Lower bounds on I-maze trial times: the honest oracle every navigation figure is divided by.

Why: a yardstick that the policy beats says nothing. The earlier "oracle path" (a
centreline route with right-angle turns) was beaten by the policy itself by a third.
These bounds are computed for the robot the policies drive (the three
``IMAZE_ACTIONS`` primitives, one per 0.2 s control period) in the task's own maze:

* a *relaxed* robot moves along exact unicycle arcs at the primitives' speeds times
  ``SPEED_MARGIN`` and turn rates times ``TURN_MARGIN`` (the real one accelerates from
  rest, slips and lags), with instant velocity changes and, as footprint, its chassis
  box and wheels shrunk by ``CHASSIS_SHRINK`` against contact softness (the caster and
  lidar are left out): every configuration the real robot can reach, the relaxed one can;
* a breadth-first search over a (x, y, heading) lattice (``CELL`` m, ``HEADINGS``
  bins) runs the relaxed robot backwards from the goal alcove, one control period
  per layer, so each lattice state knows the fewest control periods to the goal; the
  goal counts when the base origin is inside the alcove at the end of a period, as in
  the env;
* a trial's bound is the smallest value in the lattice neighbourhood of its start
  (one cell and one heading bin around), which covers the lattice's rounding.

The maze is mirror-symmetric, so one search (alcove 0) serves all four alcoves. The
search bound (the first trial, goal unknown) bounds the expected first-trial time: the
same search, phase by phase along a visiting order, the best of the orders
(``_search_fields``).
The bounds are checked against real trials in the tests (no trial of the scripted
searcher, the bundled models or a random policy is ever faster).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

from l2l_ros.tasks.encoding import IMAZE_ACTIONS
from l2l_ros.tasks.imaze_family import IMazeGeometry

__all__ = ["IMazeOracle", "oracle_for", "centre_bounds", "trial_bound", "search_bound"]

CELL = 0.02  # m, lattice spacing in x and y
HEADINGS = 72  # lattice heading bins (5 degrees)
RASTER = 0.005  # m, resolution of the free-space image the footprint is checked on
#: The relaxed robot's speed over the primitives': forward 0.0439 m per period is measured
#: at full speed (0.044 nominal); collisions can spin the base up to ~16% past a turn.
SPEED_MARGIN = 1.02
TURN_MARGIN = 1.2
CHASSIS_SHRINK = 0.005  # m taken off each side of the collision boxes (soft contacts give)
#: The chassis collision box in the base frame (urdf/diff_drive.urdf): x from, x to, half width.
CHASSIS = (-0.032 - 0.070, -0.032 + 0.070, 0.070)
CONTROL_PERIOD = 0.2


def _box_points(x0: float, x1: float, h: float) -> np.ndarray:
    """Corners and edge midpoints of a box in the base frame, [8, 2]."""
    xm = (x0 + x1) / 2
    return np.array([[x0, -h], [x0, h], [x1, -h], [x1, h], [xm, -h], [xm, h], [x0, 0.0], [x1, 0.0]])


#: The wheels' footprint in the base frame (radius 0.033 m, 0.018 m wide, 0.16 m apart):
#: x from, x to, y from, y to (the left wheel; the right one mirrored).
WHEEL = (-0.033, 0.033, 0.071, 0.089)


def _footprint_points() -> np.ndarray:
    """The chassis box and the wheels, each shrunk by ``CHASSIS_SHRINK``: parts of the
    robot that collide with the walls, so no larger than the robot (for the bound)."""
    c = CHASSIS_SHRINK
    x0, x1, y0, y1 = WHEEL[0] + c, WHEEL[1] - c, WHEEL[2] + c, WHEEL[3] - c
    wheels = np.array([[x, sy * y] for x in (x0, x1) for y in (y0, y1) for sy in (1, -1)])
    return np.vstack([_box_points(CHASSIS[0] + c, CHASSIS[1] - c, CHASSIS[2] - c), wheels])


def _arc(x, y, th, v, w, t):
    """Pose after driving twist (v, w) for t seconds from (x, y, th) (arrays)."""
    if w == 0.0:
        return x + v * t * np.cos(th), y + v * t * np.sin(th), th
    th1 = th + w * t
    return x + v / w * (np.sin(th1) - np.sin(th)), y - v / w * (np.cos(th1) - np.cos(th)), th1


class IMazeOracle:
    """Fewest control periods to each alcove for the relaxed robot, on one maze."""

    def __init__(self, geometry: IMazeGeometry, control_period: float = CONTROL_PERIOD,
                 cell: float = CELL, headings: int = HEADINGS):
        self.geometry = geometry
        self.control_period = float(control_period)
        self.cell, self.headings = float(cell), int(headings)
        rects = np.array(geometry.free_rectangles())
        self._lo = np.array([rects[:, 0].min(), rects[:, 2].min()]) - self.cell
        hi = np.array([rects[:, 1].max(), rects[:, 3].max()]) + self.cell
        self._shape = tuple(int(n) for n in np.ceil((hi - self._lo) / self.cell)) + (self.headings,)
        self._free_image, self._image_lo = self._raster(rects)
        self.pose_free = self._pose_free()
        self.steps = self._search(goal=0)

    # --- lattice ----------------------------------------------------------------------
    def _raster(self, rects: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lo = self._lo - 0.2
        n = np.ceil((self._lo + np.array(self._shape[:2]) * self.cell + 0.2 - lo) / RASTER).astype(int)
        xs = lo[0] + (np.arange(n[0]) + 0.5) * RASTER
        ys = lo[1] + (np.arange(n[1]) + 0.5) * RASTER
        img = np.zeros((n[0], n[1]), dtype=bool)
        for x0, x1, y0, y1 in rects:
            img[np.ix_((xs >= x0) & (xs <= x1), (ys >= y0) & (ys <= y1))] = True
        return img, lo

    def _points_free(self, px: np.ndarray, py: np.ndarray) -> np.ndarray:
        ix = np.floor((px - self._image_lo[0]) / RASTER).astype(int)
        iy = np.floor((py - self._image_lo[1]) / RASTER).astype(int)
        ok = (ix >= 0) & (iy >= 0) & (ix < self._free_image.shape[0]) & (iy < self._free_image.shape[1])
        out = np.zeros(px.shape, dtype=bool)
        out[ok] = self._free_image[ix[ok], iy[ok]]
        return out

    def _pose_free(self) -> np.ndarray:
        """[nx, ny, nh] True where the shrunk chassis at the cell's centre pose is in free
        space, then grown by one cell and one heading bin (a state anywhere in a cell counts)."""
        nx, ny, nh = self._shape
        cx, cy = self._centres()
        X, Y = np.meshgrid(cx, cy, indexing="ij")
        inside = self._points_free(X, Y)
        free = np.zeros(self._shape, dtype=bool)
        pts = _footprint_points()
        xs, ys = X[inside], Y[inside]
        for h in range(nh):
            th = (h + 0.5) * 2 * math.pi / nh
            c, s = math.cos(th), math.sin(th)
            ok = np.ones(xs.shape, dtype=bool)
            for px, py in pts:
                ok &= self._points_free(xs + c * px - s * py, ys + s * px + c * py)
            layer = np.zeros((nx, ny), dtype=bool)
            layer[inside] = ok
            free[:, :, h] = layer
        grown = free.copy()
        for dx, dy, dh in itertools.product((-1, 0, 1), repeat=3):
            grown |= np.roll(np.roll(np.roll(free, dx, 0), dy, 1), dh, 2)
        return grown

    def _centres(self) -> tuple[np.ndarray, np.ndarray]:
        """x and y of the lattice cells' centres."""
        nx, ny, _ = self._shape
        return self._lo[0] + (np.arange(nx) + 0.5) * self.cell, self._lo[1] + (np.arange(ny) + 0.5) * self.cell

    def _cells(self, x, y, th) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ix = np.floor((x - self._lo[0]) / self.cell).astype(int)
        iy = np.floor((y - self._lo[1]) / self.cell).astype(int)
        ih = np.floor(np.mod(th, 2 * math.pi) / (2 * math.pi / self.headings)).astype(int) % self.headings
        return ix, iy, ih

    def _region_states(self, goal: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every free lattice state (cell centre, heading bin centre) in alcove ``goal``."""
        nh = self._shape[2]
        x0, x1, y0, y1 = self.geometry.goal_region(goal)
        cx, cy = self._centres()
        gx, gy = cx[(cx >= x0) & (cx <= x1)], cy[(cy >= y0) & (cy <= y1)]
        X, Y, H = np.meshgrid(gx, gy, (np.arange(nh) + 0.5) * 2 * math.pi / nh, indexing="ij")
        x, y, th = X.ravel(), Y.ravel(), H.ravel()
        ix, iy, ih = self._cells(x, y, th)
        keep = self.pose_free[ix, iy, ih]
        return x[keep], y[keep], th[keep]

    def _search(self, goal: int, offsets: np.ndarray | None = None) -> np.ndarray:
        """Backward breadth-first search into alcove ``goal``: [nx, ny, nh] fewest control
        periods (inf: none). ``offsets`` (a field): a state of the alcove enters the search
        at ``floor`` of its value there instead of at 0 (the cost still to come after it)."""
        sx, sy, sth = self._region_states(goal)
        start = np.zeros(sx.shape) if offsets is None else np.floor(offsets[self._cells(sx, sy, sth)])
        ok = np.isfinite(start)
        sx, sy, sth, start = sx[ok], sy[ok], sth[ok], start[ok].astype(int)
        steps = np.full(self._shape, np.inf)
        nx, ny, _ = self._shape
        twists = [(v * SPEED_MARGIN, w * TURN_MARGIN) for v, w in IMAZE_ACTIONS]
        x, y, th = sx[:0], sy[:0], sth[:0]
        last = int(start.max()) if start.size else -1
        k = 0
        while True:
            cand = [(sx[start == k], sy[start == k], sth[start == k])]  # alcove states entering now
            if k > 0:
                cand += [_arc(x, y, th, -v, -w, self.control_period) for v, w in twists]  # predecessors
            x = np.concatenate([c[0] for c in cand])
            y = np.concatenate([c[1] for c in cand])
            th = np.concatenate([c[2] for c in cand])
            ix, iy, ih = self._cells(x, y, th)
            ok = (ix >= 0) & (iy >= 0) & (ix < nx) & (iy < ny)
            x, y, th, ix, iy, ih = x[ok], y[ok], th[ok], ix[ok], iy[ok], ih[ok]
            new = self.pose_free[ix, iy, ih] & np.isinf(steps[ix, iy, ih])
            x, y, th, ix, iy, ih = x[new], y[new], th[new], ix[new], iy[new], ih[new]
            flat = np.ravel_multi_index((ix, iy, ih), self._shape)
            _, first = np.unique(flat, return_index=True)  # one representative per cell
            x, y, th = x[first], y[first], th[first]
            steps[ix[first], iy[first], ih[first]] = k
            if not x.size and k >= last:
                return steps
            k += 1

    # --- queries ----------------------------------------------------------------------
    @staticmethod
    def _mirror(goal: int, x: float, y: float, yaw: float) -> tuple[float, float, float]:
        """The pose that stands to alcove 0 as (x, y, yaw) stands to ``goal``."""
        sx, sy = IMazeGeometry.goal_signs(goal)
        if sx < 0:
            x, yaw = -x, math.pi - yaw
        if sy < 0:
            y, yaw = -y, -yaw
        return x, y, yaw

    def _lookup(self, x: float, y: float, yaw: float, field: np.ndarray | None = None, reach: int = 1) -> float:
        """The smallest value of ``field`` (default: steps to alcove 0) within ``reach`` cells
        and heading bins of the pose (one: the bound for a state anywhere near a lattice
        state); inf where the window holds no free state."""
        field = self.steps if field is None else field
        ix, iy, ih = (int(v) for v in self._cells(np.array(x), np.array(y), np.array(yaw)))
        nx, ny, _ = self._shape
        window = field[max(ix - reach, 0):max(min(ix + reach + 1, nx), 0),
                       max(iy - reach, 0):max(min(iy + reach + 1, ny), 0)]
        window = np.take(window, np.arange(ih - reach, ih + reach + 1), axis=2, mode="wrap")
        return float(window.min()) if window.size else math.inf

    @staticmethod
    def _near(field: np.ndarray) -> np.ndarray:
        """``field``'s smallest value within one cell and one heading bin, everywhere."""
        out = field.copy()
        for dx, dy, dh in itertools.product((-1, 0, 1), repeat=3):
            np.minimum(out, np.roll(np.roll(np.roll(field, dx, 0), dy, 1), dh, 2), out=out)
        return out

    def steps_to_goal(self, goal: int, x: float, y: float, yaw: float) -> int:
        """At least this many control periods from pose (x, y, yaw) into alcove ``goal``."""
        best = self._lookup(*self._mirror(goal, x, y, yaw))
        return int(best) if math.isfinite(best) else 0

    def nearest_steps_to_goal(self, goal: int, x: float, y: float, yaw: float, reach: int = 6) -> float:
        """``steps_to_goal``, except for a pose whose neighbourhood holds no free lattice
        state (a robot pressed into a wall, which the shrunk footprint cannot be): the
        smallest value within ``reach`` cells and heading bins; NaN beyond that. A
        potential for shaping rewards, not a bound (the bound of such a pose is 0)."""
        pose = self._mirror(goal, x, y, yaw)
        for r in range(1, reach + 1):
            best = self._lookup(*pose, reach=r)
            if math.isfinite(best):
                return best
        return math.nan

    @cached_property
    def _search_fields(self) -> dict[tuple[int, ...], np.ndarray]:
        """For each visiting order that starts at alcove 0: a lower bound, per state, on the
        mean over the four alcoves of the time to first enter each (the expected time to
        find a uniform unknown goal when searching in that order).

        The mean arrival time counts each step once per alcove not yet entered: 4/4 on the
        way to the first alcove, 3/4 to the second, and so on. So it is a shortest path
        whose steps weigh 4, 3, 2, 1 in the four phases (in quarters). Searched backwards
        phase by phase: an alcove state enters the previous phase's search at its cost
        still to come (floored, with the lattice neighbourhood's minimum: both only lower
        it)."""
        to = {g: self.steps if g == 0 else self._search(g) for g in range(4)}
        fields = {}
        for rest in itertools.permutations((1, 2, 3)):
            order = (0, *rest)
            value = to[order[3]]  # the last phase, weight 1
            for phase, weight in ((2, 2), (1, 3), (0, 4)):
                value = weight * self._search(order[phase], offsets=self._near(value) / weight)
            fields[order] = value / 4
        return fields

    def search_steps(self, x: float, y: float, yaw: float) -> float:
        """At least this many control periods, in expectation over a uniform goal that is
        not known, before the first trial from (x, y, yaw) enters the goal: the best
        visiting order (the maze's mirror images map every order to one that starts at
        alcove 0)."""
        signs = ((1, 1), (-1, 1), (-1, -1), (1, -1))
        best = math.inf
        for order in itertools.permutations(range(4)):
            mx, my = signs[order[0]]
            mirrored = tuple(signs.index((signs[a][0] * mx, signs[a][1] * my)) for a in order)
            best = min(best, self._lookup(*self._mirror(order[0], x, y, yaw), self._search_fields[mirrored]))
        return best


#: The search bound's lattice: coarser, 10 times faster (0.7 s a maze), 2 to 3 steps lower
#: (looser) than on the trial bound's lattice.
SEARCH_CELL, SEARCH_HEADINGS = 0.04, 36


@lru_cache(maxsize=8)
def oracle_for(geometry: IMazeGeometry, search: bool = False) -> IMazeOracle:
    """The oracle of a maze (``search``: on the search bound's lattice)."""
    if search:
        return IMazeOracle(geometry, cell=SEARCH_CELL, headings=SEARCH_HEADINGS)
    return IMazeOracle(geometry)


@dataclass(frozen=True)
class CentreBounds:
    """A maze's bounds for starts at its centre, one per heading bin (every evaluation trial
    starts there): small enough to keep for thousands of sampled mazes."""

    trial: np.ndarray  # [4, HEADINGS] steps into each alcove
    search: np.ndarray  # [SEARCH_HEADINGS] expected steps of a first trial


def _bins(headings: int) -> np.ndarray:
    return (np.arange(headings) + 0.5) * 2 * math.pi / headings


@lru_cache(maxsize=4096)
def centre_bounds(geometry: IMazeGeometry) -> CentreBounds:
    fine, coarse = IMazeOracle(geometry), IMazeOracle(geometry, cell=SEARCH_CELL, headings=SEARCH_HEADINGS)
    trial = np.array([[fine.steps_to_goal(g, 0.0, 0.0, th) for th in _bins(HEADINGS)] for g in range(4)])
    return CentreBounds(trial, np.array([coarse.search_steps(0.0, 0.0, th) for th in _bins(SEARCH_HEADINGS)]))


def _bin(yaw: float, headings: int) -> int:
    return int(math.floor((yaw % (2 * math.pi)) / (2 * math.pi / headings))) % headings


def trial_bound(geometry: IMazeGeometry, goal: int, x: float, y: float, yaw: float) -> int:
    """At least this many control periods from (x, y, yaw) into alcove ``goal`` of this maze."""
    if x == 0.0 and y == 0.0:
        return int(centre_bounds(geometry).trial[int(goal), _bin(yaw, HEADINGS)])
    return oracle_for(geometry).steps_to_goal(goal, x, y, yaw)


def search_bound(geometry: IMazeGeometry, x: float, y: float, yaw: float) -> float:
    """At least this many control periods, in expectation over a uniform unknown goal,
    before a first trial from (x, y, yaw) enters the goal."""
    if x == 0.0 and y == 0.0:
        return float(centre_bounds(geometry).search[_bin(yaw, SEARCH_HEADINGS)])
    return oracle_for(geometry, search=True).search_steps(x, y, yaw)
