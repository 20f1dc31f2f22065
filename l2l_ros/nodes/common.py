"""Small pieces every l2l_ros node shares: QoS, time stamps, the run-until-shutdown main."""
from __future__ import annotations

import math
import signal
import sys
from typing import Callable

import rclpy
from builtin_interfaces.msg import Time
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

#: Sensor and command streams. Reliable, because in lockstep every message is one
#: simulation tick; a lost tick would stall the loop until the watchdog fires.
STREAM_QOS = QoSProfile(depth=20, history=HistoryPolicy.KEEP_LAST,
                        reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.VOLATILE)
#: Latched topics (last checkpoint path): late joiners get the latest value.
LATCHED_QOS = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                         reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)

#: Wall-clock (steady) timers: simulators own /clock, so their own timers must not
#: wait on simulated time.
STEADY_CLOCK = Clock(clock_type=ClockType.STEADY_TIME)


def to_stamp(seconds: float) -> Time:
    sec, nanosec = divmod(int(round(seconds * 1e9)), 1_000_000_000)
    return Time(sec=sec, nanosec=nanosec)


def from_stamp(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def yaw_to_quaternion(yaw: float) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a rotation about +z (REP-103)."""
    return 0.0, 0.0, math.sin(yaw / 2.0), math.cos(yaw / 2.0)


def quaternion_to_yaw(x: float, y: float, z: float, w: float) -> float:
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def run_node(factory: Callable[[], Node], args: list[str] | None = None) -> int:
    """rclpy.init, spin until shutdown or SIGINT/SIGTERM, clean up; returns the exit code.

    rclpy's own SIGINT handling raises KeyboardInterrupt wherever the main thread is,
    including inside a message take or a callback halfway through publishing. Here a
    signal only sets a flag; the loop checks it between callbacks (every node of this
    package has a timer, so spin_once returns regularly) and tears down in order.
    """
    rclpy.init(args=args if args is not None else sys.argv,
               signal_handler_options=SignalHandlerOptions.NO)
    stop = []

    def request_stop(signum, frame):
        stop.append(signum)

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    node = None
    code = 0
    try:
        node = factory()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while not stop and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except ExternalShutdownException:
        pass
    except SystemExit as exc:  # a node that finished its work (e.g. max_tasks reached)
        code = int(exc.code or 0)
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return code
