"""ROS 2 node: the outer loop (PPO over a task family) with progress and checkpoints on topics.

Publishes l2l/training (diagnostic_msgs/DiagnosticArray, one status per update),
the same status on /diagnostics (once a second), and l2l/checkpoint (std_msgs/String,
transient-local: the newest checkpoint path, which spiking_policy nodes swap in at
their next task start). Training runs in a worker thread; the node resumes from
``out_dir`` if a previous run was killed, and stops cleanly on SIGINT/SIGTERM: the
update in progress finishes and a checkpoint is written (the graphs give it
``stop_timeout`` seconds for that before escalating to SIGKILL).
"""
from __future__ import annotations

import shlex
import sys
import threading
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from std_msgs.msg import String

from l2l_ros.nodes.common import (DIAG_OK, DIAGNOSTICS_TOPIC, LATCHED_QOS, STEADY_CLOCK, Param,
                                  declare_params, diagnostic_array, run_node)

TRAINER_PARAMS = (
    Param("family", "imaze", "Task family: imaze, manipulator or bandit.", read_only=True),
    Param("policy", "lsnn", "Network: lsnn (spiking) or lstm.", read_only=True),
    Param("updates", 100, "PPO updates (one task per env each).", read_only=True, low=1, high=10**7),
    Param("num_envs", 16, "Parallel tasks per update.", read_only=True, low=1, high=4096),
    Param("out_dir", "runs/trainer", "Where checkpoints and the log go (resumes from it).", read_only=True),
    Param("seed", 0, "Training seed.", read_only=True, low=0, high=2**31 - 1),
    Param("exit_when_done", True, "Exit when the last update is done."),
    Param("arms", 5, "Bandit family only: number of arms k.", read_only=True, low=2, high=1024),
    Param("recipe", "", "A bundled recipe (`l2l train --list-recipes`) or a .toml file: every stage, "
          "teachers included, then its evaluation, into out_dir; family, policy, updates, num_envs, "
          "seed, arms and horizons then come from the recipe.", read_only=True),
    Param("scale", "full", "With recipe: full, or smoke (a few updates per stage, a check).", read_only=True),
    Param("device", "cpu", "Where the network trains: cpu, cuda or cuda:N (the envs stay on the CPU).",
          read_only=True),
)


class TrainerNode(Node):
    def __init__(self):
        super().__init__("trainer")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None  # none yet: a refused parameter ends the node first
        values = declare_params(self, TRAINER_PARAMS, self._on_param)
        # Dynamically typed: `horizons:=10` arrives as an int.
        self.declare_parameter("horizons", "", ParameterDescriptor(
            description="Bandit family only: pulls per task, comma-separated ('': 10,100,500).",
            read_only=True, dynamic_typing=True))
        p = lambda name: values[name] if name in values else self.get_parameter(name).value  # noqa: E731
        from l2l_ros.families import train_config
        from l2l_ros.meta.distributed import Ranks, training_device
        from l2l_ros.recipes import SCALES, load_recipe, stage_config

        self.out_dir = str(p("out_dir"))
        self.device = str(p("device"))
        training_device(self.device, Ranks())  # an unusable device is refused here, before any work
        self.recipe, self.scale = None, str(p("scale"))
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {self.scale!r}")
        if p("recipe"):
            self.recipe = load_recipe(str(p("recipe")))
            first = self.recipe.stage_settings(self.scale)[0]
            self.config = stage_config(self.recipe, first, Path(self.out_dir))
        else:
            self.config = train_config(str(p("family")), str(p("policy")), int(p("updates")),
                                       int(p("num_envs")), int(p("seed")), arms=int(p("arms")),
                                       horizons=str(p("horizons") or ""))
        self.exit_when_done = bool(p("exit_when_done"))
        self._diag_pub = self.create_publisher(DiagnosticArray, "l2l/training", 10)
        self._ros_diag_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)
        self._ckpt_pub = self.create_publisher(String, "l2l/checkpoint", LATCHED_QOS)
        self._last_stats: dict = {}
        self.create_timer(1.0, self._publish_diagnostics, clock=STEADY_CLOCK)
        self.result: str | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._train, name="outer-loop", daemon=True)
        self._thread.start()
        self._poll = self.create_timer(0.5, self._check_done)
        what = (f"recipe {self.recipe.name} ({len(self.recipe.stages)} stages, {self.scale})" if self.recipe
                else f"{self.config.policy} for {self.config.updates} updates")
        self.get_logger().info(f"training {what} on {self.config.env_id} into {self.out_dir}")

    def _train(self) -> None:
        from l2l_ros.meta.train import train

        command = "ros2 run l2l_ros trainer " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        try:
            if self.recipe is not None:
                from l2l_ros.recipes import run_recipe

                summary = run_recipe(self.recipe, self.out_dir, self.scale, should_stop=self._stop.is_set,
                                     progress=self._on_progress, log=self._log_from_worker, command=command,
                                     device=self.device)
                if summary is None:
                    return  # stopped: the same parameters resume
                self.result = summary["checkpoint"]
            else:
                self.result = str(train(self.config, self.out_dir, progress=self._on_progress,
                                        should_stop=self._stop.is_set, command=command, device=self.device))
            self._publish_checkpoint(self.result)
        except BaseException as exc:  # reported by the node thread, which owns the logger
            self.error = exc

    def _log_from_worker(self, line: str) -> None:
        self.get_logger().info(line)

    def _on_progress(self, stats: dict) -> None:
        self._last_stats = dict(stats)
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

    def _on_param(self, name: str, value) -> None:
        if name == "exit_when_done":
            self.exit_when_done = bool(value)

    def _publish_diagnostics(self) -> None:
        stats = dict(self._last_stats)
        message = (f"update {stats['update']}/{stats['updates']}" if stats else "collecting the first update")
        self._ros_diag_pub.publish(diagnostic_array(self, DIAG_OK, message, {
            "env_id": self.config.env_id, "policy": self.config.policy, "out_dir": self.out_dir,
            **{k: v for k, v in stats.items() if isinstance(v, (int, float, str))}}))

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
        if self._thread is not None:
            self._thread.join(timeout=120.0)
        return super().destroy_node()


def main(args=None) -> int:
    return run_node(TrainerNode, args, "trainer")


if __name__ == "__main__":
    raise SystemExit(main())
