"""A scripted I-maze searcher that knows the map: the teacher for imitation.

It plays what the oracle figures assume: search the alcoves nearest first (which,
from the centre, is the oracle's best order: both alcoves of the crossbar it faces,
then the other crossbar), and once a trial has ended at the goal, drive straight
back to that alcove. It sees the true pose and the map, never the goal before it
has been found, so everything it does can be learned from what the policy sees
(odometry, scan, previous reward).

Driving uses the three ``IMAZE_ACTIONS``: turn towards the next waypoint of the
corridor path when the heading error exceeds ``HEADING_TOLERANCE``, else forward.
Waypoints lie ``LOOKAHEAD`` ahead on the centreline of the corridor the robot is in
(pure pursuit) on the way stem -> crossbar end -> alcove.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from l2l_ros.tasks.encoding import IMAZE_ACTIONS
from l2l_ros.tasks.imaze import IMazeGeometry

__all__ = ["IMazeExpert", "FORWARD", "LEFT", "RIGHT"]

FORWARD, LEFT, RIGHT = 0, 1, 2  # indices of IMAZE_ACTIONS
HEADING_TOLERANCE = 0.2   # rad; one turn action turns ~0.3 rad
CENTRE_TOLERANCE = 0.06   # m from a centreline crossing before turning into the next corridor
LOOKAHEAD = 0.2           # m along the centreline (pure pursuit)
# Heading errors (rad) where a turn becomes acceptable and where forward stops being
# acceptable, for the lenient teacher's sets of actions (``IMazeExpert.actions``).
LENIENT_BAND = (0.1, 0.5)
# Metres of corridor that one radian of turning costs in time: forward speed / turn rate.
TURN_COST = IMAZE_ACTIONS[FORWARD][0] / abs(IMAZE_ACTIONS[LEFT][1])


def _towards(a: float, b: float) -> float:
    """``LOOKAHEAD`` from ``a`` towards ``b`` along one axis, not past ``b``."""
    return b if abs(b - a) <= LOOKAHEAD else a + math.copysign(LOOKAHEAD, b - a)


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


@dataclass
class IMazeExpert:
    """Per-task state (alcoves seen, goal once found) and the action for a pose."""

    geometry: IMazeGeometry = field(default_factory=IMazeGeometry)
    visited: set[int] = field(default_factory=set)
    goal: int | None = None

    def reset(self) -> None:
        self.visited, self.goal = set(), None

    # -- map ---------------------------------------------------------------------------
    def _alcove_of(self, x: float, y: float) -> int | None:
        return next((g for g in range(4) if self.geometry.in_goal(g, x, y)), None)

    def _in_crossbar(self, y: float) -> bool:
        g = self.geometry
        return abs(y) > g.stem_half_length - CENTRE_TOLERANCE

    def _distance(self, x: float, y: float, yaw: float, goal: int) -> float:
        """Corridor path length to alcove ``goal`` plus the first turn, in metres.

        Inside an alcove the way out is the same whatever the target, so the length is
        measured from that alcove's crossbar end.
        """
        g = self.geometry
        s, h = g.stem_half_length, g.crossbar_half_length
        sx, sy = IMazeGeometry.goal_signs(goal)
        inside = self._alcove_of(x, y) is not None
        if inside:
            x, y = math.copysign(h, x), math.copysign(s, y)
        if self._in_crossbar(y) and math.copysign(1, y) == sy:
            length = abs(sx * h - x)
        elif self._in_crossbar(y):
            length = abs(x) + 2 * s + h
        else:
            length = abs(sy * s - y) + h
        if inside:
            return length
        wx, wy = self.waypoint(x, y, goal)
        return length + TURN_COST * abs(_wrap(math.atan2(wy - y, wx - x) - yaw))

    def waypoint(self, x: float, y: float, goal: int) -> tuple[float, float]:
        """Next point to drive at on the way to alcove ``goal``: a point ``LOOKAHEAD``
        ahead on the centreline of the corridor the robot is in (pure pursuit, so an
        off-centre robot steers back to the middle instead of grazing a wall)."""
        g = self.geometry
        s, h = g.stem_half_length, g.crossbar_half_length
        sx, sy = IMazeGeometry.goal_signs(goal)
        inside = sy * (s + g.corridor_width / 2 + g.alcove_depth / 2)
        here = self._alcove_of(x, y)
        if here == goal:
            return sx * h, inside
        if here is not None:  # back out along this alcove's centreline
            return math.copysign(h, x), _towards(y, math.copysign(s, y))
        if self._in_crossbar(y):
            cy = math.copysign(s, y)
            if cy == sy * s:
                if abs(x - sx * h) < CENTRE_TOLERANCE:
                    return sx * h, _towards(y, inside)
                return _towards(x, sx * h), cy
            if abs(x) >= CENTRE_TOLERANCE:
                return _towards(x, 0.0), cy  # along this crossbar to the stem
        return 0.0, _towards(y, sy * s)  # along the stem to the goal's crossbar

    # -- policy ------------------------------------------------------------------------
    def target(self, x: float, y: float, yaw: float) -> int:
        """The alcove to drive to: the found goal, else the nearest unvisited one."""
        here = self._alcove_of(x, y)
        if here is not None:
            self.visited.add(here)
        if self.goal is not None:
            return self.goal
        left = [g for g in range(4) if g not in self.visited] or list(range(4))
        return min(left, key=lambda g: self._distance(x, y, yaw, g))

    def heading_error(self, x: float, y: float, yaw: float) -> float:
        """Radians to turn (left positive) to face the next waypoint."""
        wx, wy = self.waypoint(x, y, self.target(x, y, yaw))
        return _wrap(math.atan2(wy - y, wx - x) - yaw)

    def action(self, x: float, y: float, yaw: float) -> int:
        err = self.heading_error(x, y, yaw)
        if abs(err) <= HEADING_TOLERANCE:
            return FORWARD
        return LEFT if err > 0 else RIGHT

    def actions(self, x: float, y: float, yaw: float, band: tuple[float, float] = LENIENT_BAND) -> list[int]:
        """Every action that keeps to the search: forward while the heading error is at
        most ``band[1]``, the turn towards the waypoint once it exceeds ``band[0]``,
        never the turn away. Why: a student that need not copy the exact switching of
        pure pursuit can drive its own way along the same route (the lenient teacher)."""
        err = self.heading_error(x, y, yaw)
        out = [FORWARD] if abs(err) <= band[1] else []
        if abs(err) > band[0]:
            out.append(LEFT if err > 0 else RIGHT)
        return out

    def goal_found(self, goal: int) -> None:
        """A trial has ended in alcove ``goal``: from now on drive straight there."""
        self.goal = int(goal)
        self.visited.add(int(goal))
