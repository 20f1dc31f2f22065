"""visualization_msgs/MarkerArray of the simulated worlds, so RViz shows them: the I-maze's
walls, its four alcoves and the goal once the robot has found it; the arm's target.

Published latched (transient local) on the sims' relative ``markers`` topic and
re-published when the world changes (a new task, a goal found, a new target). Each
array starts with a DELETEALL, so nothing of the previous task stays on screen.
"""
from __future__ import annotations

from visualization_msgs.msg import Marker, MarkerArray

__all__ = ["imaze_markers", "target_markers"]

WALL_RGBA = (0.55, 0.55, 0.6, 1.0)
ALCOVE_RGBA = (0.9, 0.75, 0.2, 0.35)
GOAL_RGBA = (0.1, 0.8, 0.2, 0.8)
TARGET_RGBA = (0.9, 0.1, 0.1, 0.9)


def _marker(ns: str, mid: int, kind: int, frame: str, stamp, pos, size, rgba) -> Marker:
    m = Marker()
    m.header.frame_id, m.header.stamp = frame, stamp
    m.ns, m.id, m.type, m.action = ns, mid, kind, Marker.ADD
    m.pose.position.x, m.pose.position.y, m.pose.position.z = (float(v) for v in pos)
    m.pose.orientation.w = 1.0
    m.scale.x, m.scale.y, m.scale.z = (float(v) for v in size)
    m.color.r, m.color.g, m.color.b, m.color.a = rgba
    return m


def _clear(frame: str, stamp) -> Marker:
    m = Marker()
    m.header.frame_id, m.header.stamp = frame, stamp
    m.action = Marker.DELETEALL
    return m


def imaze_markers(geometry, goal_found: int | None, stamp, frame: str = "odom") -> MarkerArray:
    """Walls (boxes from ``IMazeGeometry.wall_boxes``, the ones MuJoCo collides with),
    the four alcoves as flat tiles, and the goal alcove once found (``goal_found``)."""
    h = geometry.wall_height
    markers = [_clear(frame, stamp)]
    for i, ((cx, cy), (hx, hy)) in enumerate(geometry.wall_boxes()):
        markers.append(_marker("walls", i, Marker.CUBE, frame, stamp, (cx, cy, h / 2), (2 * hx, 2 * hy, h),
                               WALL_RGBA))
    for goal, (x0, x1, y0, y1) in enumerate(geometry.goal_regions()):
        markers.append(_marker("alcoves", goal, Marker.CUBE, frame, stamp, ((x0 + x1) / 2, (y0 + y1) / 2, 0.005),
                               (x1 - x0, y1 - y0, 0.01), ALCOVE_RGBA))
    if goal_found is not None:
        x0, x1, y0, y1 = geometry.goal_region(goal_found)
        markers.append(_marker("goal", 0, Marker.CUBE, frame, stamp, ((x0 + x1) / 2, (y0 + y1) / 2, 0.02),
                               (x1 - x0, y1 - y0, 0.04), GOAL_RGBA))
    return MarkerArray(markers=markers)


def target_markers(target, stamp, frame: str = "base_link", radius: float = 0.03) -> MarkerArray:
    """The arm's current target as a sphere."""
    return MarkerArray(markers=[_clear(frame, stamp), _marker("target", 0, Marker.SPHERE, frame, stamp, target,
                                                              (2 * radius,) * 3, TARGET_RGBA)])
