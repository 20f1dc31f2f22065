"""ROS 2 node: the outer loop (PPO over a task family) with progress and checkpoints on topics.

Publishes /l2l/training (diagnostic_msgs/DiagnosticArray, one status per update)
and /l2l/checkpoint (std_msgs/String, transient-local: the newest checkpoint
path, which spiking_policy nodes swap in at their next task start). Training
runs in a worker thread; the node resumes from ``out_dir`` if a previous run was
killed, and stops cleanly (checkpoint written) on shutdown.
"""
from __future__ import annotations

import shlex
import sys
import threading

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from std_msgs.msg import String

from l2l_ros.nodes.common import LATCHED_QOS, run_node


class TrainerNode(Node):
    def __init__(self):
        super().__init__("trainer")
        self.declare_parameter("family", "imaze")
        self.declare_parameter("policy", "lsnn")
        self.declare_parameter("updates", 100)
        self.declare_parameter("num_envs", 16)
        self.declare_parameter("out_dir", "runs/trainer")
        self.declare_parameter("seed", 0)
        self.declare_parameter("exit_when_done", True)
        self.declare_parameter("arms", 5)          # bandit family only
        # bandit family only; "" = 10,100,500. Dynamically typed: `horizons:=10` arrives as an int.
        self.declare_parameter("horizons", "", ParameterDescriptor(dynamic_typing=True))
        p = lambda name: self.get_parameter(name).value  # noqa: E731
        from l2l_ros.cli import train_config

        self.config = train_config(str(p("family")), str(p("policy")), int(p("updates")),
                                   int(p("num_envs")), int(p("seed")), arms=int(p("arms")),
                                   horizons=str(p("horizons") or ""))
        self.out_dir = str(p("out_dir"))
        self.exit_when_done = bool(p("exit_when_done"))
        self._diag_pub = self.create_publisher(DiagnosticArray, "/l2l/training", 10)
        self._ckpt_pub = self.create_publisher(String, "/l2l/checkpoint", LATCHED_QOS)
        self._stop = threading.Event()
        self.result: str | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._train, name="outer-loop", daemon=True)
        self._thread.start()
        self._poll = self.create_timer(0.5, self._check_done)
        self.get_logger().info(f"training {self.config.policy} on {self.config.env_id} "
                               f"for {self.config.updates} updates into {self.out_dir}")

    def _train(self) -> None:
        from l2l_ros.meta.ppo import train

        command = "ros2 run l2l_ros trainer " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        try:
            self.result = str(train(self.config, self.out_dir, progress=self._on_progress,
                                    should_stop=self._stop.is_set, command=command))
            self._publish_checkpoint(self.result)
        except BaseException as exc:  # reported by the node thread, which owns the logger
            self.error = exc

    def _on_progress(self, stats: dict) -> None:
        status = DiagnosticStatus(level=DiagnosticStatus.OK, name="l2l_ros/trainer",
                                  message=f"update {stats['update']}/{stats['updates']}",
                                  hardware_id=self.config.env_id)
        status.values = [KeyValue(key=k, value=f"{v:.6g}" if isinstance(v, float) else str(v))
                         for k, v in stats.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(msg)
        if "checkpoint" in stats:
            self._publish_checkpoint(stats["checkpoint"])

    def _publish_checkpoint(self, path: str) -> None:
        self._ckpt_pub.publish(String(data=path))

    def _check_done(self) -> None:
        if self._thread.is_alive():
            return
        if self.error is not None:
            self.get_logger().error(f"training failed: {self.error!r}")
            raise SystemExit(1)
        self.get_logger().info(f"training finished: {self.result}")
        if self.exit_when_done:
            raise SystemExit(0)
        self._poll.cancel()

    def destroy_node(self):
        self._stop.set()  # the worker finishes its update and writes a checkpoint
        self._thread.join(timeout=120.0)
        return super().destroy_node()


def main(args=None) -> int:
    return run_node(TrainerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
