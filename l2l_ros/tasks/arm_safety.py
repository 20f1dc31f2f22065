"""The arm's joint-limit stop, shared by the env and the ``spiking_policy`` node.

Whatever a network outputs, a joint within ``LIMIT_MARGIN`` of a URDF position limit
that is moving towards that limit gets a zero command (the velocity servo stops it).
The stop acts on the motion seen, not on the command's sign alone: a controller cannot
know which command direction moves a joint away from a limit (the calibration, sign
included, is unknown to it). So it learns it: the sign of the last command sent to a
joint it had to stop is blocked for that joint while the joint stays near that limit;
the other sign passes, and a joint at rest near a limit may be moved away.
Velocity limits are the command decoder's (``encoding.manipulator_action_to_command``,
within the URDF's).
"""
from __future__ import annotations

import functools

import numpy as np

from l2l_ros.tasks.encoding import ARM_JOINTS

#: rad from a position limit within which a joint moving towards it is stopped (a joint
#: at 2 rad/s covers 0.1 rad per control period: the margin leaves one period of latency).
LIMIT_MARGIN = 0.2
#: rad/s: slower than this counts as at rest.
AT_REST = 0.05


@functools.lru_cache(maxsize=1)
def arm_position_limits() -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) of ARM_JOINTS from urdf/arm.urdf, rad."""
    from l2l_ros.tasks.robots import ARM_URDF, urdf_joint_limits

    limits = urdf_joint_limits(*ARM_URDF)
    return (np.array([limits[j].lower for j in ARM_JOINTS]), np.array([limits[j].upper for j in ARM_JOINTS]))


class JointLimitStop:
    """The stop for one arm; ``reset`` at every task start (the calibration may change)."""

    def __init__(self):
        self.lower, self.upper = arm_position_limits()
        self.reset()

    def reset(self) -> None:
        self.blocked = np.zeros(len(ARM_JOINTS))  # per joint: the command sign that drives it out, or 0
        self.last_sign = np.zeros(len(ARM_JOINTS))

    def __call__(self, command: np.ndarray, q: np.ndarray, qd: np.ndarray) -> np.ndarray:
        """``command`` (rad/s) with the joints near a limit and moving towards it stopped."""
        q, qd = np.asarray(q, float), np.asarray(qd, float)
        command = np.asarray(command, float).copy()
        near = (q > self.upper - LIMIT_MARGIN) | (q < self.lower + LIMIT_MARGIN)
        towards = ((q > self.upper - LIMIT_MARGIN) & (qd > AT_REST)) | ((q < self.lower + LIMIT_MARGIN) & (qd < -AT_REST))
        self.blocked = np.where(towards & (self.last_sign != 0), self.last_sign, np.where(near, self.blocked, 0.0))
        stop = towards | ((self.blocked != 0) & (np.sign(command) == self.blocked))
        command[stop] = 0.0
        self.last_sign = np.where(command != 0, np.sign(command), self.last_sign)
        return command
