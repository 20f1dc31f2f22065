"""ROS 2 node: a meta-trained (spiking) policy, one network step per control tick.

mode:=imaze        /odom + /scan in, /cmd_vel out
mode:=manipulator  /joint_states + /target in, /arm_controller/commands out

A tick is the set of sensor messages sharing one header stamp; it is acted on
once all of them have arrived, with the latest /l2l/reward and the trial-start
flag, encoded by the same functions the gymnasium envs use. The network's
hidden state is reset on /l2l/task_start (and that is when a checkpoint received
on /l2l/checkpoint replaces the weights). A malformed or non-finite input makes
the node log an error and command a stop; it never sends a non-finite or
out-of-limit command.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
from geometry_msgs.msg import PointStamped, Twist, TwistStamped
from nav_msgs.msg import Odometry
from rclpy.node import Node
from sensor_msgs.msg import JointState, LaserScan
from std_msgs.msg import Float32, Float64MultiArray, Header, String

from l2l_ros.nodes.common import (LATCHED_QOS, STEADY_CLOCK, STREAM_QOS, from_stamp,
                                  quaternion_to_yaw, run_node)
from l2l_ros.policy_runtime import PolicyRuntime, load_runtime, untrained_runtime
from l2l_ros.tasks.encoding import (ARM_JOINTS, clamp_twist, encode_imaze, encode_manipulator,
                                    imaze_action_to_twist, manipulator_action_to_command)

MODES = ("imaze", "manipulator")


class SpikingPolicyNode(Node):
    def __init__(self):
        super().__init__("spiking_policy")
        self.declare_parameter("mode", "imaze")
        self.declare_parameter("checkpoint", "")
        self.declare_parameter("deterministic", True)
        self.declare_parameter("seed", 0)
        self.declare_parameter("twist_stamped", False)
        self.declare_parameter("sensor_timeout", 1.0)
        p = self.get_parameter
        self.mode = str(p("mode").value)
        if self.mode not in MODES:
            raise ValueError(f"parameter mode={self.mode!r}: expected one of {MODES}")
        self.deterministic = bool(p("deterministic").value)
        self.sensor_timeout = float(p("sensor_timeout").value)
        torch.manual_seed(int(p("seed").value))
        # Batch-1 steps gain nothing from intra-op threads; spinning OpenMP threads
        # would fight the simulator and DDS for the cores.
        torch.set_num_threads(1)
        self.runtime = self._initial_runtime(str(p("checkpoint").value))
        self._pending_runtime: PolicyRuntime | None = None

        self._sensors: dict[str, dict[float, object]] = {}
        self._task_starts: set[float] = set()
        self._trial_starts: set[float] = set()
        self._last_tick = -math.inf
        self._last_tick_wall = time.monotonic()
        self._stopped = True
        self._reward = 0.0
        self.ticks = 0

        self.create_subscription(Float32, "/l2l/reward", self._on_reward, STREAM_QOS)
        self.create_subscription(Header, "/l2l/task_start", self._on_task_start, STREAM_QOS)
        self.create_subscription(Header, "/l2l/trial_start", self._on_trial_start, STREAM_QOS)
        self.create_subscription(String, "/l2l/checkpoint", self._on_checkpoint, LATCHED_QOS)
        if self.mode == "imaze":
            self._streams = ("odom", "scan")
            stamped = bool(p("twist_stamped").value)
            self._cmd_type = TwistStamped if stamped else Twist
            self._cmd_pub = self.create_publisher(self._cmd_type, "/cmd_vel", STREAM_QOS)
            self.create_subscription(Odometry, "/odom", lambda m: self._on_sensor("odom", m), STREAM_QOS)
            self.create_subscription(LaserScan, "/scan", lambda m: self._on_sensor("scan", m), STREAM_QOS)
        else:
            self._streams = ("joint_states", "target")
            self._cmd_pub = self.create_publisher(Float64MultiArray, "/arm_controller/commands", STREAM_QOS)
            self.create_subscription(JointState, "/joint_states",
                                     lambda m: self._on_sensor("joint_states", m), STREAM_QOS)
            self.create_subscription(PointStamped, "/target", lambda m: self._on_sensor("target", m), STREAM_QOS)
        self.create_timer(0.2, self._watchdog, clock=STEADY_CLOCK)
        self.get_logger().info(f"mode {self.mode}: {self.runtime.describe()}")

    # --- weights ----------------------------------------------------------------------
    def _initial_runtime(self, checkpoint: str) -> PolicyRuntime:
        if checkpoint:
            return load_runtime(checkpoint, self.mode)
        if self.mode == "imaze":
            from l2l_ros.graphs import default_model_path

            return load_runtime(default_model_path(), self.mode)
        self.get_logger().warning("no checkpoint given: running an UNTRAINED network (seeded)")
        return untrained_runtime(self.mode)

    def _on_checkpoint(self, msg: String) -> None:
        try:
            runtime = load_runtime(msg.data, self.mode)
        except (ValueError, OSError) as exc:  # CheckpointError is a ValueError
            self.get_logger().error(f"checkpoint {msg.data!r} refused, keeping current weights: {exc}")
            return
        self._pending_runtime = runtime
        self.get_logger().info(f"checkpoint {msg.data} loaded; active from the next task start")

    # --- inputs -----------------------------------------------------------------------
    def _on_reward(self, msg: Float32) -> None:
        if math.isfinite(msg.data):
            self._reward = float(msg.data)
        else:
            self.get_logger().error(f"non-finite reward {msg.data} ignored (treated as 0)")
            self._reward = 0.0

    def _on_task_start(self, msg: Header) -> None:
        self._task_starts.add(from_stamp(msg.stamp))

    def _on_trial_start(self, msg: Header) -> None:
        self._trial_starts.add(from_stamp(msg.stamp))

    def _on_sensor(self, stream: str, msg) -> None:
        t = from_stamp(msg.header.stamp)
        if t <= self._last_tick:
            return  # a repeated or late tick: already answered
        per_stamp = self._sensors.setdefault(stream, {})
        per_stamp[t] = msg
        if len(per_stamp) > 50:  # the other stream is missing: keep memory bounded
            del per_stamp[min(per_stamp)]
        if all(t in self._sensors.get(s, {}) for s in self._streams):
            self._act(t, [self._sensors[s][t] for s in self._streams])
            for s in self._streams:  # drop this tick and anything older
                self._sensors[s] = {k: v for k, v in self._sensors[s].items() if k > t}

    # --- the control tick -------------------------------------------------------------
    def _act(self, t: float, msgs: list) -> None:
        self._last_tick = t
        self._last_tick_wall = time.monotonic()
        task_start = t in self._task_starts
        trial_start = task_start or t in self._trial_starts
        self._task_starts = {s for s in self._task_starts if s > t}
        self._trial_starts = {s for s in self._trial_starts if s > t}
        if task_start:
            if self._pending_runtime is not None:
                self.runtime, self._pending_runtime = self._pending_runtime, None
                self.get_logger().info(f"new weights active: {self.runtime.describe()}")
            self.runtime.reset()
        try:
            obs = self._encode(msgs)
        except ValueError as exc:
            self.get_logger().error(f"bad sensor input at t={t:.2f}: {exc}; commanding a stop")
            self._publish_stop()
            return
        action = self.runtime.step(obs, self._reward, trial_start, self.deterministic)
        self._publish_action(action)
        self.ticks += 1

    def _encode(self, msgs: list) -> np.ndarray:
        if self.mode == "imaze":
            odom, scan = msgs
            pose, twist = odom.pose.pose, odom.twist.twist
            q = pose.orientation
            yaw = quaternion_to_yaw(q.x, q.y, q.z, q.w)
            return encode_imaze(pose.position.x, pose.position.y, yaw, twist.linear.x,
                                twist.angular.z, np.asarray(scan.ranges), scan.range_max)
        joints, target = msgs
        index = {name: i for i, name in enumerate(joints.name)}
        missing = [j for j in ARM_JOINTS if j not in index]
        if missing or len(joints.position) != len(joints.name) or len(joints.velocity) != len(joints.name):
            raise ValueError(f"/joint_states lacks joints {missing} or has ragged arrays")
        q = [joints.position[index[j]] for j in ARM_JOINTS]
        qd = [joints.velocity[index[j]] for j in ARM_JOINTS]
        p = target.point
        return encode_manipulator(q, qd, [p.x, p.y, p.z])

    def _publish_action(self, action) -> None:
        if self.mode == "imaze":
            self._publish_twist(*clamp_twist(*imaze_action_to_twist(int(action))))
        else:
            cmd = manipulator_action_to_command(np.asarray(action))
            self._cmd_pub.publish(Float64MultiArray(data=[float(v) for v in cmd]))
        self._stopped = False

    def _publish_twist(self, v: float, w: float) -> None:
        twist = Twist()
        twist.linear.x, twist.angular.z = float(v), float(w)
        if self._cmd_type is TwistStamped:
            msg = TwistStamped(twist=twist)
            msg.header.stamp = self.get_clock().now().to_msg()
            msg.header.frame_id = "base_link"
            self._cmd_pub.publish(msg)
        else:
            self._cmd_pub.publish(twist)

    def _publish_stop(self) -> None:
        if self.mode == "imaze":
            self._publish_twist(0.0, 0.0)
        else:
            self._cmd_pub.publish(Float64MultiArray(data=[0.0] * len(ARM_JOINTS)))
        self._stopped = True

    def _watchdog(self) -> None:
        """Sensors went quiet: stop the robot once rather than repeat a stale command."""
        if not self._stopped and time.monotonic() - self._last_tick_wall > self.sensor_timeout:
            self.get_logger().warning(f"no sensor tick for {self.sensor_timeout:.1f} s: stopping the robot")
            self._publish_stop()


def main(args=None) -> int:
    return run_node(SpikingPolicyNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
