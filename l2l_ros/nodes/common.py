"""Small pieces every l2l_ros node shares: QoS, time stamps, parameters, diagnostics,
the run-until-shutdown main."""
from __future__ import annotations

import math
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any, Callable

import rclpy
from builtin_interfaces.msg import Time
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
from rclpy.node import Node
from rclpy.parameter import Parameter
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


# --- parameters ---------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    """A node parameter as a ROS user sees it in ``ros2 param describe``.

    ``read_only``: fixed at start (``ros2 param set`` is refused rather than ignored).
    ``low``/``high``: the allowed range, inclusive, for numbers (step 0: any value).
    """

    name: str
    default: Any
    description: str
    read_only: bool = False
    low: float | None = None
    high: float | None = None

    def descriptor(self) -> ParameterDescriptor:
        d = ParameterDescriptor(name=self.name, description=self.description, read_only=self.read_only)
        if self.low is not None and not isinstance(self.default, bool):
            if isinstance(self.default, int):
                d.integer_range = [IntegerRange(from_value=int(self.low), to_value=int(self.high), step=0)]
            elif isinstance(self.default, float):
                d.floating_point_range = [FloatingPointRange(from_value=float(self.low),
                                                             to_value=float(self.high), step=0.0)]
        return d

    def check(self, value: Any) -> str | None:
        """Why ``value`` is not allowed, or None. (rclpy checks ranges only on set, not
        on the overrides a node starts with; this covers both.)"""
        if isinstance(value, float) and not math.isfinite(value):
            return f"{self.name} must be finite, got {value}"
        if self.low is not None and not isinstance(value, bool) and isinstance(value, (int, float)):
            if not self.low <= value <= self.high:
                return f"{self.name} must be within [{self.low:g}, {self.high:g}], got {value}"
        return None


def declare_params(node: Node, params: tuple[Param, ...],
                   on_change: Callable[[str, Any], None] | None = None) -> dict[str, Any]:
    """Declare ``params`` with descriptors and return their values (checked).

    ``on_change(name, value)`` applies a run-time change of a writable parameter;
    it is called only after every new value passed its range check, so a refused
    ``ros2 param set`` changes nothing. A bad start value raises ValueError.
    """
    by_name = {p.name: p for p in params}
    values = {}
    for p in params:
        value = node.declare_parameter(p.name, p.default, p.descriptor()).value
        problem = p.check(value)
        if problem:
            raise ValueError(f"parameter {problem}")
        values[p.name] = value

    def callback(changes: list[Parameter]) -> SetParametersResult:
        for change in changes:
            spec = by_name.get(change.name)
            if spec is None:
                continue  # use_sim_time and other rclpy parameters
            problem = spec.check(change.value)
            if problem:
                return SetParametersResult(successful=False, reason=problem)
        for change in changes:
            if change.name in by_name and on_change is not None:
                on_change(change.name, change.value)
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(callback)
    return values


# --- diagnostics ----------------------------------------------------------------------
#: The diagnostic_aggregator's input topic: absolute by convention (ROS 2 nodes of
#: every robot in a domain report there; the hardware_id tells them apart).
DIAGNOSTICS_TOPIC = "/diagnostics"


def diagnostic_array(node: Node, level: bytes, message: str, values: dict[str, Any]) -> DiagnosticArray:
    """One status named after the node (its full name, so namespaced robots differ)."""
    status = DiagnosticStatus(level=level,
                              name=f"l2l_ros:{node.get_fully_qualified_name()}", message=message,
                              hardware_id=node.get_namespace())
    status.values = [KeyValue(key=k, value=f"{v:.6g}" if isinstance(v, float) else str(v))
                     for k, v in values.items()]
    msg = DiagnosticArray(status=[status])
    msg.header.stamp = node.get_clock().now().to_msg()
    return msg


DIAG_OK, DIAG_WARN, DIAG_ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


# --- main -----------------------------------------------------------------------------
def fatal(name: str, exc: BaseException) -> None:
    """One line on stderr for a node that cannot start (``L2L_TRACEBACK=1``: the whole trace)."""
    if os.environ.get("L2L_TRACEBACK"):
        import traceback

        traceback.print_exception(exc)
    text = " ".join(str(exc).split()) or type(exc).__name__
    print(f"[FATAL] [{name}]: {text}", file=sys.stderr, flush=True)


def run_node(factory: Callable[[], Node], args: list[str] | None = None, name: str = "") -> int:
    """rclpy.init, spin until shutdown or SIGINT/SIGTERM, clean up; returns the exit code.

    rclpy's own SIGINT handling raises KeyboardInterrupt wherever the main thread is,
    including inside a message take or a callback halfway through publishing. Here a
    signal only sets a flag; the loop checks it between callbacks (every node of this
    package has a timer, so spin_once returns regularly) and tears down in order.
    Once teardown starts, further signals are ignored: a second Ctrl-C (``ros2 launch``
    forwards one of its own) must not kill the process halfway through saving.
    A node that cannot start prints one ``[FATAL]`` line and exits with 1.
    """
    name = name or getattr(factory, "__name__", "node")
    stop = []

    def request_stop(signum, frame):
        stop.append(signum)

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    node = None
    code = 0
    try:
        rclpy.init(args=args if args is not None else sys.argv,
                   signal_handler_options=SignalHandlerOptions.NO)
        node = factory()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while not stop and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except ExternalShutdownException:
        pass
    except SystemExit as exc:  # a node that finished its work (e.g. max_tasks reached)
        code = int(exc.code or 0)
    except Exception as exc:  # noqa: BLE001 - a node that cannot start or run says why, once
        fatal(name, exc)
        code = 1
    finally:
        # SIG_IGN, unlike a Python handler, survives interpreter finalization.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if node is not None:
            try:
                node.destroy_node()
            except Exception as exc:  # noqa: BLE001
                fatal(name, exc)
                code = code or 1
        rclpy.try_shutdown()
    return code
