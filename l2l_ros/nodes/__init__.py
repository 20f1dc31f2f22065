"""ROS 2 nodes: thin adapters over snn/, tasks/ and meta/.

Importing a node pulls in torch, MuJoCo and rclpy, which takes seconds. A Ctrl-C
in that time would print a KeyboardInterrupt traceback from deep inside an import.
When a node is being started as a program (``python -m l2l_ros.nodes.X`` or its
console script), SIGINT and SIGTERM end the process quietly instead until
``run_node`` installs its own handlers (exit code 128 + signal number, as a shell
reports it). Imported as a library (tests, ``l2l``), nothing changes.
"""
import os as _os
import signal as _signal
import sys as _sys
from pathlib import Path as _Path

EXECUTABLES = ("imaze_sim", "manipulator_sim", "spiking_policy", "trainer")


def _quit_during_startup(signum, frame):
    # os._exit, not SystemExit: the signal can land while Python code runs inside a
    # C++ extension's import (torch's pybind11 callbacks), where an exception aborts
    # the process ("terminate called ... SystemExit: 130", exit -6; seen in a test run).
    # Nothing is open yet that needs cleaning up.
    _sys.stdout.flush()
    _sys.stderr.flush()
    _os._exit(128 + signum)


if _sys.argv and (_sys.argv[0] == "-m" or _Path(_sys.argv[0]).name in EXECUTABLES):
    _signal.signal(_signal.SIGINT, _quit_during_startup)
    _signal.signal(_signal.SIGTERM, _quit_during_startup)
