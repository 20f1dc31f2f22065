"""The one observation encoder and action decoder, shared by the envs and the ROS nodes.

Mismatched preprocessing between simulation and robot is the classic sim-to-real
bug, so the gymnasium envs and the ``spiking_policy`` node both call these
functions and nothing else to turn sensor readings into network inputs and
network outputs into motion commands.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# --- I-maze: differential-drive base -------------------------------------------------

#: Lidar beams the simulated 2D lidar publishes on /scan (full circle, CCW from +x).
SCAN_BEAMS = 36
#: Range limits of the simulated lidar, metres (LaserScan.range_min/max).
SCAN_RANGE_MIN = 0.12
SCAN_RANGE_MAX = 3.5
#: Sectors the scan is pooled into before it reaches the network.
ENCODED_SCAN_SECTORS = 12
#: Position scale: odometry is divided by this so inputs stay O(1) in the maze.
POSITION_SCALE = 1.0
#: Plausibility bounds of sensor values. A reading beyond them (odometry x = 1e300, a
#: lidar with range_max 0) is a broken message, not a state of the robot: the encoder
#: refuses it, so no value that would overflow float32 ever reaches the network.
MAX_ABS_POSITION = 1e4  # m
MAX_ABS_VELOCITY = 1e2  # m/s, rad/s
MAX_SCAN_RANGE = 1e3  # m, for LaserScan.range_max
MAX_SCAN_BEAMS = 4096


@dataclass(frozen=True)
class DriveLimits:
    """TurtleBot3-Burger-like velocity limits (m/s, rad/s)."""

    max_linear: float = 0.22
    max_angular: float = 2.0


DRIVE_LIMITS = DriveLimits()

#: Discrete motion primitives of the navigation policy: (linear m/s, angular rad/s).
IMAZE_ACTIONS: tuple[tuple[float, float], ...] = (
    (DRIVE_LIMITS.max_linear, 0.0),  # 0: forward
    (0.05, 1.5),  # 1: turn left while creeping forward
    (0.05, -1.5),  # 2: turn right while creeping forward
)

IMAZE_OBS_DIM = 6 + ENCODED_SCAN_SECTORS


def pool_scan(ranges: np.ndarray, sectors: int = ENCODED_SCAN_SECTORS,
              range_max: float = SCAN_RANGE_MAX) -> np.ndarray:
    """Min-pool a full-circle scan into ``sectors`` equal sectors.

    The nearest obstacle per sector is what matters for driving; non-finite and
    out-of-range readings (a LaserScan's way of saying "nothing seen") count as
    ``range_max``.
    """
    r = np.asarray(ranges, dtype=np.float64).ravel()
    if r.size == 0 or r.size % sectors != 0 or r.size > MAX_SCAN_BEAMS:
        raise ValueError(f"scan has {r.size} beams; need a positive multiple of {sectors} "
                         f"up to {MAX_SCAN_BEAMS}")
    if not (math.isfinite(range_max) and 0.0 < range_max <= MAX_SCAN_RANGE):
        raise ValueError(f"scan range_max {range_max} outside (0, {MAX_SCAN_RANGE:g}] m")
    r = np.where(np.isfinite(r) & (r > 0.0), r, range_max)
    r = np.clip(r, 0.0, range_max)
    return r.reshape(sectors, -1).min(axis=1)


def encode_imaze(x: float, y: float, yaw: float, v: float, w: float,
                 ranges: np.ndarray, range_max: float = SCAN_RANGE_MAX) -> np.ndarray:
    """Odometry pose and twist plus a pooled scan -> network input (float32, O(1))."""
    values = tuple(float(val) for val in (x, y, yaw, v, w))
    if not all(math.isfinite(val) for val in values):
        raise ValueError(f"non-finite odometry: {values}")
    if max(abs(x), abs(y)) > MAX_ABS_POSITION or max(abs(v), abs(w)) > MAX_ABS_VELOCITY:
        raise ValueError(f"implausible odometry {values}: |position| must be at most "
                         f"{MAX_ABS_POSITION:g} m, |velocity| at most {MAX_ABS_VELOCITY:g}")
    scan = pool_scan(ranges, range_max=range_max) / range_max
    head = np.array([
        x / POSITION_SCALE,
        y / POSITION_SCALE,
        math.cos(yaw),
        math.sin(yaw),
        v / DRIVE_LIMITS.max_linear,
        w / DRIVE_LIMITS.max_angular,
    ])
    return np.concatenate([head, scan]).astype(np.float32)


#: The I-maze's mirror image across the stem (x -> -x) swaps alcoves 0 <-> 1 and 2 <-> 3
#: and the two turns: action i of the robot is action IMAZE_MIRRORED_ACTIONS[i] of its image.
IMAZE_MIRRORED_ACTIONS = (0, 2, 1)


def mirror_imaze_sensors(x: float, y: float, yaw: float, v: float, w: float,
                         ranges: np.ndarray) -> tuple[tuple[float, float, float, float, float], np.ndarray]:
    """What the sensors would report in the maze's mirror image across the stem (x -> -x):
    the mirrored pose and twist, and the scan with each beam at angle a read at -a (the
    scan's beams sit at 0, 360/n, ... degrees, CCW). A privileged teacher reads the world
    this way (``meta.imitation.MirroredPolicyTeacher``); the maze and the robot are
    mirror-symmetric, so the image is a state the robot could be in."""
    r = np.asarray(ranges, dtype=np.float64).ravel()
    return (-x, y, math.pi - yaw, v, -w), np.roll(r[::-1], 1)


def imaze_action_to_twist(action: int) -> tuple[float, float]:
    """Discrete action index -> (linear, angular) velocity, always within DRIVE_LIMITS."""
    a = int(action)
    if not 0 <= a < len(IMAZE_ACTIONS):
        raise ValueError(f"action {a} outside 0..{len(IMAZE_ACTIONS) - 1}")
    return IMAZE_ACTIONS[a]


def clamp_twist(v: float, w: float, limits: DriveLimits = DRIVE_LIMITS) -> tuple[float, float]:
    """Clamp a commanded twist to the limits; non-finite components become 0 (stop)."""
    v = float(v) if math.isfinite(v) else 0.0
    w = float(w) if math.isfinite(w) else 0.0
    return (min(max(v, -limits.max_linear), limits.max_linear),
            min(max(w, -limits.max_angular), limits.max_angular))


# --- Manipulator: 3-joint arm --------------------------------------------------------

ARM_JOINTS: tuple[str, ...] = ("shoulder_pan", "shoulder_lift", "elbow")
#: Joint velocity limit (rad/s) the command decoder never exceeds.
ARM_MAX_JOINT_VELOCITY = 1.5
ARM_OBS_DIM = 3 * len(ARM_JOINTS) + 3
#: Joint angles beyond this (rad) are a broken message (a continuous joint wraps long before).
MAX_ABS_JOINT_POSITION = 1e3

#: Reward messages beyond this magnitude are refused: the tasks' rewards are O(1).
MAX_ABS_REWARD = 1e3


def encode_manipulator(q: np.ndarray, qd: np.ndarray, target_xyz: np.ndarray) -> np.ndarray:
    """Joint positions and velocities plus the target (base frame, m) -> network input."""
    q = np.asarray(q, dtype=np.float64).ravel()
    qd = np.asarray(qd, dtype=np.float64).ravel()
    t = np.asarray(target_xyz, dtype=np.float64).ravel()
    n = len(ARM_JOINTS)
    if q.size != n or qd.size != n or t.size != 3:
        raise ValueError(f"expected {n} positions, {n} velocities and a 3D target; "
                         f"got {q.size}, {qd.size}, {t.size}")
    if not (np.isfinite(q).all() and np.isfinite(qd).all() and np.isfinite(t).all()):
        raise ValueError("non-finite joint state or target")
    if np.abs(q).max() > MAX_ABS_JOINT_POSITION or np.abs(qd).max() > MAX_ABS_VELOCITY \
            or np.abs(t).max() > MAX_ABS_POSITION:
        raise ValueError(f"implausible joint state or target: |q| at most {MAX_ABS_JOINT_POSITION:g} rad, "
                         f"|qd| {MAX_ABS_VELOCITY:g} rad/s, |target| {MAX_ABS_POSITION:g} m")
    return np.concatenate([np.cos(q), np.sin(q), qd / ARM_MAX_JOINT_VELOCITY, t]).astype(np.float32)


def manipulator_action_to_command(action: np.ndarray) -> np.ndarray:
    """Network output in [-1, 1]^n -> joint velocity command (rad/s) within limits."""
    a = np.asarray(action, dtype=np.float64).ravel()
    if a.size != len(ARM_JOINTS):
        raise ValueError(f"expected {len(ARM_JOINTS)} action components, got {a.size}")
    a = np.where(np.isfinite(a), a, 0.0)
    return np.clip(a, -1.0, 1.0) * ARM_MAX_JOINT_VELOCITY
