"""ROS 2 node: the MuJoCo I-maze with a differential-drive robot.

Subscribes /cmd_vel (geometry_msgs/Twist, or TwistStamped with
``twist_stamped:=true``); publishes /odom (odom -> base_link, REP-105), /scan,
/l2l/reward, /l2l/task_start and /l2l/trial_start (std_msgs/Header: the stamp of
the first tick of the task or trial), /clock, and /tf where tf2_msgs exists.
The episode logic (goal, trials, reward) is the gymnasium env's, not a copy.
"""
from __future__ import annotations

import math

import numpy as np
from geometry_msgs.msg import Twist, TwistStamped
from nav_msgs.msg import Odometry
from rclpy.subscription import MessageInfo
from sensor_msgs.msg import LaserScan

from l2l_ros.nodes.common import STREAM_QOS, run_node, yaw_to_quaternion
from l2l_ros.nodes.sim_base import LockstepSimNode, sent_ns
from l2l_ros.tasks.encoding import SCAN_BEAMS, SCAN_RANGE_MAX, SCAN_RANGE_MIN, clamp_twist

try:  # PyPI has no tf2_msgs wheel; a full ROS install does.
    from geometry_msgs.msg import TransformStamped
    from tf2_msgs.msg import TFMessage
except ImportError:  # pragma: no cover - depends on the install
    TFMessage = None


class IMazeSimNode(LockstepSimNode):
    def __init__(self):
        super().__init__("imaze_sim")

    def create_io(self) -> None:
        self.path: list[list[float]] = []  # of the current trial
        self.declare_parameter("twist_stamped", False)
        stamped = bool(self.get_parameter("twist_stamped").value)
        self._odom_pub = self.create_publisher(Odometry, "/odom", STREAM_QOS)
        self._scan_pub = self.create_publisher(LaserScan, "/scan", STREAM_QOS)
        self._tf_pub = self.create_publisher(TFMessage, "/tf", 10) if TFMessage else None
        self.create_subscription(TwistStamped if stamped else Twist, "/cmd_vel",
                                 self._on_cmd_vel, STREAM_QOS)

    def make_env(self, task_steps: int):
        from l2l_ros.tasks.imaze import IMazeEnv

        return IMazeEnv(task_steps=task_steps) if task_steps > 0 else IMazeEnv()

    def describe_task(self, info: dict) -> str:
        return f"goal alcove {info['goal']}, oracle path {self.env.sim.oracle_path_steps(info['goal'])} steps"

    def zero_command(self):
        return (0.0, 0.0)

    def step_env(self, command):
        return self.env.step_twist(*command)

    def _on_cmd_vel(self, msg, info: MessageInfo) -> None:
        twist = msg.twist if isinstance(msg, TwistStamped) else msg
        v, w = twist.linear.x, twist.angular.z
        if not (math.isfinite(v) and math.isfinite(w)):
            self.get_logger().error(f"non-finite /cmd_vel ({v}, {w}) refused: robot stops")
        self.on_command(clamp_twist(v, w), sent_ns(info))

    # --- trials ---------------------------------------------------------------------
    def on_step(self, info: dict) -> None:
        x, y, _ = info["pose"]
        self.path.append([round(float(x), 4), round(float(y), 4)])

    def trial_extras(self) -> dict:
        goal = int(self.task_info["goal"])
        extras = {"goal": goal, "path": self.path,
                  "oracle_path_steps": int(self.env.sim.oracle_path_steps(goal))}
        self.path = []
        return extras

    # --- sensors --------------------------------------------------------------------
    def publish_sensors(self, stamp) -> None:
        sim = self.env.sim
        x, y, yaw, v, w = sim.odometry()
        qx, qy, qz, qw = yaw_to_quaternion(yaw)
        odom = Odometry()
        odom.header.stamp = stamp
        odom.header.frame_id = "odom"
        odom.child_frame_id = "base_link"
        odom.pose.pose.position.x, odom.pose.pose.position.y = float(x), float(y)
        o = odom.pose.pose.orientation
        o.x, o.y, o.z, o.w = qx, qy, qz, qw
        odom.twist.twist.linear.x, odom.twist.twist.angular.z = float(v), float(w)
        self._odom_pub.publish(odom)
        if self._tf_pub is not None:
            tf = TransformStamped()
            tf.header = odom.header
            tf.child_frame_id = "base_link"
            tf.transform.translation.x, tf.transform.translation.y = float(x), float(y)
            tf.transform.rotation = odom.pose.pose.orientation
            self._tf_pub.publish(TFMessage(transforms=[tf]))

        ranges = np.asarray(sim.scan(), dtype=np.float32)
        scan = LaserScan()
        scan.header.stamp = stamp
        scan.header.frame_id = "base_scan"
        scan.angle_min = 0.0
        scan.angle_increment = 2.0 * math.pi / SCAN_BEAMS
        scan.angle_max = scan.angle_increment * (SCAN_BEAMS - 1)
        scan.time_increment = 0.0
        scan.scan_time = float(self.control_period)
        scan.range_min, scan.range_max = SCAN_RANGE_MIN, SCAN_RANGE_MAX
        scan.ranges = ranges.tolist()
        self._scan_pub.publish(scan)


def main(args=None) -> int:
    return run_node(IMazeSimNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
