"""Task families as gymnasium envs (no ROS here).

Registers ``l2l_ros/IMaze-v0`` and ``l2l_ros/Manipulator-v0`` with string entry
points, so importing this package does not import MuJoCo; the env classes are
loaded lazily on attribute access (``from l2l_ros.tasks import IMazeEnv``).
"""
from __future__ import annotations

import gymnasium as gym

IMAZE_ID = "l2l_ros/IMaze-v0"
MANIPULATOR_ID = "l2l_ros/Manipulator-v0"

for _id, _entry in ((IMAZE_ID, "l2l_ros.tasks.imaze:IMazeEnv"),
                    (MANIPULATOR_ID, "l2l_ros.tasks.manipulator:ManipulatorEnv")):
    if _id not in gym.registry:
        gym.register(id=_id, entry_point=_entry)

_LAZY = {
    "IMazeEnv": "l2l_ros.tasks.imaze", "IMazeSim": "l2l_ros.tasks.imaze",
    "IMazeGeometry": "l2l_ros.tasks.imaze",
    "ManipulatorEnv": "l2l_ros.tasks.manipulator", "ArmSim": "l2l_ros.tasks.manipulator",
    "ArmTask": "l2l_ros.tasks.manipulator",
}

__all__ = ["IMAZE_ID", "MANIPULATOR_ID", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'l2l_ros.tasks' has no attribute {name!r}")

# Bernoulli bandits (fast task family for the learning code), appended by the meta/ owner.
from l2l_ros.tasks.bandit import register_bandit as _register_bandit  # noqa: E402

_register_bandit()
