"""ROS 2 node: the MuJoCo I-maze with a differential-drive robot.

Subscribes cmd_vel (geometry_msgs/Twist, or TwistStamped with
``twist_stamped:=true``); publishes odom (odom -> base_link, REP-105; with a task family
it drifts as wheel odometry does), scan (with the family's noise and dropouts),
l2l/reward, l2l/task_start and l2l/trial_start (std_msgs/Header: the stamp of
the first tick of the task or trial), clock, robot_description, /diagnostics,
markers (visualization_msgs/MarkerArray, latched: walls, alcoves, the goal once found), and
tf/tf_static (odom -> base_link -> base_scan and the wheels). Names are relative to
the node's namespace.
The episode logic (goal, trials, reward) is the gymnasium env's, not a copy.
"""
from __future__ import annotations

import json
import math

import numpy as np
from geometry_msgs.msg import Twist, TwistStamped
from nav_msgs.msg import Odometry
from rclpy.subscription import MessageInfo
from sensor_msgs.msg import LaserScan

from visualization_msgs.msg import MarkerArray

from l2l_ros.nodes.common import LATCHED_QOS, STREAM_QOS, Param, declare_params, run_node, yaw_to_quaternion
from l2l_ros.nodes.markers import imaze_markers
from l2l_ros.nodes.sim_base import LockstepSimNode, sent_ns
from l2l_ros.tasks.encoding import SCAN_BEAMS, SCAN_RANGE_MAX, SCAN_RANGE_MIN, clamp_twist

from geometry_msgs.msg import TransformStamped


#: Odometry covariances (row-major 6x6, x y z roll pitch yaw): variances of a millimetre
#: and a milliradian squared (exact in the fixed family; with a family's drift the error
#: grows over a trial, which the policy is meant to cope with, not be told); z, roll and
#: pitch are fixed by the plane.
POSE_COVARIANCE = [0.0] * 36
TWIST_COVARIANCE = [0.0] * 36
for _i, _var in enumerate((1e-6, 1e-6, 1e-9, 1e-9, 1e-9, 1e-6)):
    POSE_COVARIANCE[7 * _i] = TWIST_COVARIANCE[7 * _i] = _var


class IMazeSimNode(LockstepSimNode):
    URDF = "diff_drive.urdf"
    TF_PREFIX = "robot/"

    def __init__(self):
        super().__init__("imaze_sim")

    def create_io(self) -> None:
        self.path: list[list[float]] = []  # of the current trial
        stamped = bool(declare_params(self, (
            Param("twist_stamped", False, "Subscribe cmd_vel as geometry_msgs/TwistStamped.",
                  read_only=True),))["twist_stamped"])
        self._odom_pub = self.create_publisher(Odometry, "odom", STREAM_QOS)
        self._scan_pub = self.create_publisher(LaserScan, "scan", STREAM_QOS)
        self._marker_pub = self.create_publisher(MarkerArray, "markers", LATCHED_QOS)
        self.command_sub = self.create_subscription(TwistStamped if stamped else Twist, "cmd_vel",
                                                    self._on_cmd_vel, STREAM_QOS)

    def make_env(self, task_steps: int):
        from l2l_ros.tasks.imaze import IMazeEnv
        from l2l_ros.tasks.imaze_family import IMazeFamily

        family = str(declare_params(self, (
            Param("family", "fixed", f"The task family: an IMazeFamily preset ({', '.join(IMazeFamily.PRESETS)}) "
                  "or a JSON object of ranges over one (docs/imaze_family.md). fixed: the default maze with "
                  "perfect sensors; sim2real: mazes of many sizes, lidar noise and dropouts, drifting "
                  "odometry, friction, mass, latency.", read_only=True),))["family"])
        try:
            spec = json.loads(family) if family.strip().startswith("{") else family
            IMazeFamily.from_spec(spec)
        except (ValueError, TypeError) as err:
            raise ValueError(f"parameter family: {err}") from None
        kwargs = {} if spec == "fixed" else {"family": spec}
        return IMazeEnv(task_steps=task_steps, **kwargs) if task_steps > 0 else IMazeEnv(**kwargs)

    def describe_task(self, info: dict) -> str:
        world = f", world {info['task']}" if "task" in info else ""
        return f"goal alcove {info['goal']}{world}"

    def zero_command(self):
        return (0.0, 0.0)

    def step_env(self, command):
        return self.env.step_twist(*command)

    def _on_cmd_vel(self, msg, info: MessageInfo) -> None:
        twist = msg.twist if isinstance(msg, TwistStamped) else msg
        v, w = twist.linear.x, twist.angular.z
        if not (math.isfinite(v) and math.isfinite(w)):
            self.get_logger().error(f"non-finite cmd_vel ({v}, {w}) refused: robot stops",
                                    throttle_duration_sec=1.0)
        self.on_command(clamp_twist(v, w), sent_ns(info))

    # --- trials ---------------------------------------------------------------------
    def on_world_changed(self, stamp) -> None:
        """The maze, its alcoves, and the goal once a trial has reached it."""
        found = int(self.task_info["goal"]) if self.trial > 0 else None
        self._marker_pub.publish(imaze_markers(self.env.sim.geometry, found, stamp))
        self._trial_start = self.env.sim.pose()

    def on_step(self, info: dict) -> None:
        x, y, _ = info["pose"]
        self.path.append([round(float(x), 4), round(float(y), 4)])

    def trial_extras(self) -> dict:
        from l2l_ros.tasks.imaze_oracle import search_bound, trial_bound

        goal, maze = int(self.task_info["goal"]), self.env.sim.geometry
        extras = {"goal": goal, "path": self.path, "oracle_steps": trial_bound(maze, goal, *self._trial_start),
                  "route_steps": int(self.env.sim.route_steps(goal))}
        if self.trial == 0:
            extras["oracle_search_steps"] = search_bound(maze, *self._trial_start)
        self.path = []
        return extras

    # --- sensors --------------------------------------------------------------------
    def extra_transforms(self, stamp) -> list:
        """odom -> base_link, as the odometry reports it (REP-105)."""
        return [self._odom_tf]

    def publish_sensors(self, stamp) -> None:
        (x, y, yaw, v, w), scan_ranges = self.env.sensed()  # what the observation encodes: drift, noise
        qx, qy, qz, qw = yaw_to_quaternion(yaw)
        odom = Odometry()
        odom.header.stamp = stamp
        odom.header.frame_id = "odom"
        odom.child_frame_id = "base_link"
        odom.pose.pose.position.x, odom.pose.pose.position.y = float(x), float(y)
        o = odom.pose.pose.orientation
        o.x, o.y, o.z, o.w = qx, qy, qz, qw
        odom.twist.twist.linear.x, odom.twist.twist.angular.z = float(v), float(w)
        odom.pose.covariance, odom.twist.covariance = POSE_COVARIANCE, TWIST_COVARIANCE
        self._odom_pub.publish(odom)
        self._odom_tf = TransformStamped()
        self._odom_tf.header = odom.header
        self._odom_tf.child_frame_id = "base_link"
        self._odom_tf.transform.translation.x, self._odom_tf.transform.translation.y = float(x), float(y)
        self._odom_tf.transform.rotation = odom.pose.pose.orientation

        ranges = np.asarray(scan_ranges, dtype=np.float32)
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
    return run_node(IMazeSimNode, args, "imaze_sim")


if __name__ == "__main__":
    raise SystemExit(main())
