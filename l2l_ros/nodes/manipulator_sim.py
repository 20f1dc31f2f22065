"""ROS 2 node: a 3-joint arm on a table in MuJoCo, with per-task dynamics and targets.

Subscribes arm_controller/commands (std_msgs/Float64MultiArray of joint
velocities in rad/s, the forward_command_controller convention); publishes
joint_states (the noisy state the env observed), target (geometry_msgs/PointStamped
in the arm's base frame; not with hidden_goal), l2l/reward, l2l/task_start,
l2l/trial_start, clock, robot_description, /diagnostics, markers
(visualization_msgs/MarkerArray, latched: the target), and tf/tf_static
(base_link -> ... -> tool0). Names are relative to the node's namespace. Parameters
beyond the simulators' common ones: the task family, the hidden goal and a reality gap
(integrator, physics step, control-rate jitter, extra noise); see docs/ros.md.
"""
from __future__ import annotations

import numpy as np
from geometry_msgs.msg import PointStamped
from rclpy.subscription import MessageInfo
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray

from visualization_msgs.msg import MarkerArray

from l2l_ros.nodes.common import LATCHED_QOS, STREAM_QOS, Param, declare_params, run_node
from l2l_ros.nodes.markers import target_markers
from l2l_ros.nodes.sim_base import LockstepSimNode, sent_ns
from l2l_ros.tasks.encoding import ARM_JOINTS, ARM_MAX_JOINT_VELOCITY


class ManipulatorSimNode(LockstepSimNode):
    URDF = "arm.urdf"
    TF_PREFIX = "arm/"

    def __init__(self):
        super().__init__("manipulator_sim")

    def create_io(self) -> None:
        self._joint_pub = self.create_publisher(JointState, "joint_states", STREAM_QOS)
        # hidden goal: no target topic (the goal is what the policy must find)
        self._target_pub = None if self.hidden_goal else self.create_publisher(PointStamped, "target", STREAM_QOS)
        self._marker_pub = self.create_publisher(MarkerArray, "markers", LATCHED_QOS)
        self.command_sub = self.create_subscription(Float64MultiArray, "arm_controller/commands",
                                                    self._on_command, STREAM_QOS)

    def make_env(self, task_steps: int):
        from l2l_ros.tasks.manipulator import ArmFamily, ManipulatorEnv

        v = declare_params(self, (
            Param("family", "sim2real", f"Ranges of the per-task dynamics (ArmFamily presets: "
                  f"{', '.join(ArmFamily.PRESETS)}).", read_only=True),
            Param("hidden_goal", False, "The hidden-goal variant: the goal is one of four marked spots, "
                  "never published on target; only the reward says when the tool is there.", read_only=True),
            Param("integrator", "implicitfast", "MuJoCo integrator (euler, rk4, implicit, implicitfast): "
                  "with the next three, a reality gap for a policy trained with the defaults.", read_only=True),
            Param("physics_timestep", 0.005, "Physics step, s (the control period stays 0.05 s).",
                  read_only=True, low=0.0005, high=0.05),
            Param("substep_jitter", 0, "Control-rate jitter: each control period lasts up to this many "
                  "physics steps more or less than nominal.", read_only=True, low=0, high=100),
            Param("extra_q_noise", 0.0, "Joint position noise (std, rad) added to the task's.", read_only=True,
                  low=0.0, high=0.5),
            Param("extra_qd_noise", 0.0, "Joint velocity noise (std, rad/s) added to the task's.",
                  read_only=True, low=0.0, high=5.0),
        ))
        self.hidden_goal = bool(v["hidden_goal"])
        kwargs = {"family": str(v["family"]), "hidden_goal": self.hidden_goal, "integrator": str(v["integrator"]),
                  "physics_timestep": float(v["physics_timestep"]), "substep_jitter": int(v["substep_jitter"]),
                  "extra_q_noise": float(v["extra_q_noise"]), "extra_qd_noise": float(v["extra_qd_noise"])}
        return ManipulatorEnv(task_steps=task_steps, **kwargs) if task_steps > 0 else ManipulatorEnv(**kwargs)

    def on_world_changed(self, stamp) -> None:
        """The target as a sphere (a new one may come with each task or trial)."""
        self._marker_pub.publish(target_markers(self.env.sim.target, stamp))

    def describe_task(self, info: dict) -> str:
        target = ", ".join(f"{v:.3f}" for v in info["target"])
        return f"target ({target}) m, {info['task']}"

    def zero_command(self):
        return np.zeros(len(ARM_JOINTS))

    def step_env(self, command):
        return self.env.step_joint_velocities(command)

    def _on_command(self, msg: Float64MultiArray, info: MessageInfo) -> None:
        cmd = np.asarray(msg.data, dtype=np.float64)
        if cmd.size != len(ARM_JOINTS):
            self.get_logger().error(
                f"arm_controller/commands has {cmd.size} values, expected {len(ARM_JOINTS)} "
                f"({', '.join(ARM_JOINTS)}): arm holds still", throttle_duration_sec=1.0)
            cmd = self.zero_command()
        elif not np.isfinite(cmd).all():
            self.get_logger().error(f"non-finite joint command {cmd.tolist()} refused: arm holds still",
                                    throttle_duration_sec=1.0)
            cmd = self.zero_command()
        self.on_command(np.clip(cmd, -ARM_MAX_JOINT_VELOCITY, ARM_MAX_JOINT_VELOCITY), sent_ns(info))

    def trial_extras(self) -> dict:
        sim = self.env.sim
        return {"distance": float(np.linalg.norm(sim.ee_position() - sim.target))}

    def publish_sensors(self, stamp) -> None:
        sim = self.env.sim
        q, qd = self.env.seen_joint_state  # what the env's observation holds: ROS and offline see the same noise
        js = JointState()
        js.header.stamp = stamp
        js.name = list(ARM_JOINTS)
        js.position = [float(v) for v in q]
        js.velocity = [float(v) for v in qd]
        self._joint_pub.publish(js)
        if self._target_pub is None:
            return
        target = PointStamped()
        target.header.stamp = stamp
        target.header.frame_id = "base_link"
        target.point.x, target.point.y, target.point.z = (float(v) for v in sim.target)
        self._target_pub.publish(target)


def main(args=None) -> int:
    return run_node(ManipulatorSimNode, args, "manipulator_sim")


if __name__ == "__main__":
    raise SystemExit(main())
