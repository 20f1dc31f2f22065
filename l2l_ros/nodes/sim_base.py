"""What both simulator nodes share: tasks and trials, lockstep stepping, /clock, results.

Lockstep (the default): the simulator publishes one tick of sensors, waits for
the command answering it, then advances physics by one control period. Runs are
then reproducible and as fast as the policy, like a lockstep Gazebo. If commands
stop coming (a crashed policy), a watchdog advances with a zero command after
``cmd_timeout`` seconds so the robot stops instead of the world freezing; before
the first command arrives the current tick is re-published so a late-starting
policy node picks it up. A command sent before the current tick was published
answers an earlier tick (a policy's sensor-timeout stop while the simulator
stalled, an answer that came after the zero-command step): it is dropped, so it
cannot shift every later command by one tick (``drop_stale_commands:=false`` turns
this off where the two nodes' system clocks disagree). With ``lockstep:=false`` physics
advances on a wall-clock timer with the latest command, zeroed when older than
``cmd_timeout``.

When the node that commands the robot goes away (its command publisher was
matched and is gone for ``peer_timeout`` seconds), the simulator logs it and
exits with code 3 instead of waiting forever, so a launch or ``l2l run`` ends.
Topic names are relative (``-r __ns:=/robot1`` moves the whole graph); so is
``clock``, which each graph remaps ``/clock`` to, so two namespaced sims keep
their simulated times apart.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rclpy.node import Node
from rclpy.subscription import MessageInfo
from rosgraph_msgs.msg import Clock
from std_msgs.msg import Float32, Header, String
from diagnostic_msgs.msg import DiagnosticArray

from l2l_ros.nodes.tf import LinkTransforms, TFMessage
from l2l_ros.nodes.common import (DIAG_OK, DIAG_WARN, DIAGNOSTICS_TOPIC, LATCHED_QOS, STEADY_CLOCK,
                                  STREAM_QOS, Param, declare_params, diagnostic_array, to_stamp)

#: Exit code of a simulator whose commanding node went away.
PEER_LOST_EXIT = 3

SIM_PARAMS = (
    Param("seed", 0, "Seed of the task sampler: task i is reset with seed * 100003 + i.", read_only=True,
          low=0, high=2**31 - 1),
    Param("max_tasks", 0, "Exit after this many tasks (0: run forever). Changeable at run time.",
          low=0, high=10**9),
    Param("task_steps", 0, "Control steps per task (0: the env's default).", read_only=True,
          low=0, high=10**7),
    Param("lockstep", True, "Step physics once per received command (reproducible); false: on a "
          "wall-clock timer with the latest command.", read_only=True),
    Param("cmd_timeout", 1.0, "Seconds without a command before the robot is stepped with a zero "
          "command (lockstep) or the last command is dropped (free-running).", low=0.01, high=3600.0),
    Param("peer_timeout", 10.0, "Seconds the simulator waits after its command publisher went away "
          "before it exits with code 3 (0: wait forever).", low=0.0, high=86400.0),
    Param("drop_stale_commands", True, "Drop commands sent before the current tick was published "
          "(they answer an earlier tick).",),
    Param("results_file", "", "JSON-lines file for per-trial results ('': none).", read_only=True),
)


def sent_ns(info: MessageInfo | None) -> int:
    """When a message was published (system clock, ns) per its DDS source timestamp; 0 if unknown."""
    return int(info.get("source_timestamp") or 0) if info else 0


class LockstepSimNode(Node):
    """Subclasses provide the env, publish their sensors and turn messages into commands."""

    #: The robot description (``urdf/<name>``) published on ``robot_description``.
    URDF: str = ""
    #: The prefix of the robot's links among the MuJoCo bodies (see nodes/tf.py).
    TF_PREFIX: str = ""

    def extra_transforms(self, stamp) -> list:
        """Transforms beyond the robot's links (e.g. odom -> base_link)."""
        return []

    def create_io(self) -> None:
        """Create the sensor publishers and the command subscription (``self.command_sub``)."""
        raise NotImplementedError

    def zero_command(self) -> Any:
        """Command applied when none (or a malformed one) is available: stand still."""
        raise NotImplementedError

    def make_env(self, task_steps: int):
        raise NotImplementedError

    def step_env(self, command: Any):
        """One control period with a validated command; returns gymnasium's 5-tuple."""
        raise NotImplementedError

    def publish_sensors(self, stamp) -> None:
        raise NotImplementedError

    def trial_extras(self) -> dict:
        """Per-trial fields for the results file (e.g. the path driven)."""
        return {}

    def on_step(self, info: dict) -> None:
        """Hook after each physics step (e.g. record the trajectory)."""

    def on_world_changed(self, stamp) -> None:
        """Hook after a task started or a trial ended (e.g. re-publish the world's markers)."""

    def __init__(self, name: str):
        self._results = None  # before anything can fail: destroy_node closes it
        super().__init__(name)
        v = declare_params(self, SIM_PARAMS, self._on_param)
        self._seed = int(v["seed"])
        self._max_tasks = int(v["max_tasks"])
        self._lockstep = bool(v["lockstep"])
        self._cmd_timeout = float(v["cmd_timeout"])
        self._peer_timeout = float(v["peer_timeout"])
        self._drop_stale = bool(v["drop_stale_commands"])
        self.env = self.make_env(int(v["task_steps"]))
        self.control_period = float(self.env.sim.control_period)
        results = str(v["results_file"])
        self._results = Path(results).open("a", buffering=1) if results else None

        self._clock_pub = self.create_publisher(Clock, "clock", 10)
        self._reward_pub = self.create_publisher(Float32, "l2l/reward", STREAM_QOS)
        self._task_pub = self.create_publisher(Header, "l2l/task_start", STREAM_QOS)
        self._trial_pub = self.create_publisher(Header, "l2l/trial_start", STREAM_QOS)
        self._diag_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)
        self.command_sub = None
        self.create_io()
        self._tf_pub = self._tf_static_pub = self._links = None
        if self.TF_PREFIX and TFMessage is None:
            self.get_logger().warning("tf2_msgs is not importable: no TF (make setup builds it)")
        elif self.TF_PREFIX:
            self._tf_pub = self.create_publisher(TFMessage, "tf", 100)
            self._tf_static_pub = self.create_publisher(TFMessage, "tf_static", LATCHED_QOS)
        if self.URDF:
            from l2l_ros.resources import share_path

            self._description_pub = self.create_publisher(String, "robot_description", LATCHED_QOS)
            self._description_pub.publish(String(data=share_path("urdf", self.URDF).read_text()))

        self.sim_time = 0.0  # monotonic across tasks, unlike MjData.time
        self.task = -1
        self.tasks_done = 0
        self.steps = 0
        self._latest_command: Any = None
        self._latest_command_wall = 0.0
        self._got_command = False
        self._last_tick_wall = time.monotonic()
        self._tick_sent_ns = 0  # system clock when the current tick was first published
        self._peer_seen_wall: float | None = None  # last time a command publisher was matched
        self.stale_commands = 0
        self._diag_steps, self._diag_wall = 0, time.monotonic()
        self._start_task()
        period = 0.05 if self._lockstep else self.control_period
        self._timer = self.create_timer(period, self._on_timer, clock=STEADY_CLOCK)
        self.create_timer(1.0, self._publish_diagnostics, clock=STEADY_CLOCK)

    def _on_param(self, name: str, value: Any) -> None:
        if name == "max_tasks":
            self._max_tasks = int(value)
        elif name == "cmd_timeout":
            self._cmd_timeout = float(value)
        elif name == "peer_timeout":
            self._peer_timeout = float(value)
        elif name == "drop_stale_commands":
            self._drop_stale = bool(value)
        self.get_logger().info(f"parameter {name} set to {value!r}")

    # --- tasks and trials -------------------------------------------------------------
    def _start_task(self) -> None:
        self.task += 1
        _, info = self.env.reset(seed=self._seed * 100_003 + self.task)
        self.task_info = info
        self.trial = 0
        self.trial_steps = 0
        self.task_return = 0.0
        self._task_start_pending = True
        self._trial_start_pending = True
        self._reward = 0.0
        self.get_logger().info(f"task {self.task} started ({self.describe_task(info)})")
        self.on_world_changed(to_stamp(self.sim_time))
        self._publish_new_tick()

    def describe_task(self, info: dict) -> str:
        raise NotImplementedError

    def _record_trial(self, success: bool) -> None:
        rec = {"task": self.task, "trial": self.trial, "steps": self.trial_steps,
               "success": bool(success), **self.trial_extras()}
        if self._results:
            self._results.write(json.dumps(rec) + "\n")
        self.get_logger().info(
            f"task {self.task} trial {self.trial}: {'reached' if success else 'not reached'} "
            f"after {self.trial_steps} steps")

    def _advance(self, command: Any) -> None:
        _, reward, terminated, truncated, info = self.step_env(command)
        self.sim_time += self.control_period
        self.trial_steps += 1
        self.task_return += float(reward)
        self._reward = float(reward)
        self.steps += 1
        self.on_step(info)
        if info.get("trial_end", False):
            self._record_trial(True)
            self.trial += 1
            self.trial_steps = 0
            self._trial_start_pending = True
            self.on_world_changed(to_stamp(self.sim_time))
        if terminated or truncated:
            if self.trial_steps > 0:
                self._record_trial(False)
            self.tasks_done += 1
            self.get_logger().info(f"task {self.task} done: return {self.task_return:.3f}")
            if self._max_tasks and self.tasks_done >= self._max_tasks:
                self.get_logger().info(f"{self.tasks_done} task(s) done; shutting down")
                raise SystemExit(0)
            self._start_task()
            return
        self._publish_new_tick()

    def _publish_tick(self) -> None:
        stamp = to_stamp(self.sim_time)
        self._clock_pub.publish(Clock(clock=stamp))
        if self._task_start_pending:
            self._task_pub.publish(Header(stamp=stamp, frame_id=f"task {self.task}"))
        if self._trial_start_pending:
            self._trial_pub.publish(Header(stamp=stamp, frame_id=f"task {self.task} trial {self.trial}"))
        self._reward_pub.publish(Float32(data=self._reward))
        self.publish_sensors(stamp)
        self._publish_tf(stamp)
        self._last_tick_wall = time.monotonic()

    def _publish_tf(self, stamp) -> None:
        if self._tf_pub is None:
            return
        sim = self.env.sim
        if self._links is None or self._links.model is not sim.model:  # a new world: static links anew
            self._links = LinkTransforms(sim.model, self.TF_PREFIX)
            self._tf_static_pub.publish(TFMessage(transforms=self._links.transforms(sim.data, stamp, fixed=True)))
        moving = self._links.transforms(sim.data, stamp, fixed=False) + self.extra_transforms(stamp)
        if moving:
            self._tf_pub.publish(TFMessage(transforms=moving))

    def _publish_new_tick(self) -> None:
        # The DDS source timestamp of a command is on the same system clock.
        self._tick_sent_ns = time.time_ns()
        self._publish_tick()

    # --- commands -----------------------------------------------------------------------
    def on_command(self, command: Any, sent_at_ns: int = 0) -> None:
        """Called by subclasses with a validated command (zero_command() for a bad one)
        and its DDS source timestamp (``MessageInfo``; 0 when unknown)."""
        if self._lockstep and self._drop_stale and 0 < sent_at_ns < self._tick_sent_ns:
            self.stale_commands += 1
            self.get_logger().warning(
                f"command sent {(self._tick_sent_ns - sent_at_ns) / 1e6:.1f} ms before the current tick "
                f"dropped: it answers an earlier tick ({self.stale_commands} so far)",
                throttle_duration_sec=5.0)
            return
        self._got_command = True
        if self._lockstep:
            self._task_start_pending = self._trial_start_pending = False
            self._advance(command)
        else:
            self._latest_command = command
            self._latest_command_wall = time.monotonic()

    def _check_peer(self, now: float) -> None:
        """Exit (code 3) once the commanding node has been gone for ``peer_timeout`` s."""
        if self.command_sub is None:
            return
        if self.command_sub.get_publisher_count() > 0:
            self._peer_seen_wall = now
        elif (self._peer_seen_wall is not None and self._peer_timeout > 0
              and now - self._peer_seen_wall > self._peer_timeout):
            self.get_logger().error(
                f"the node commanding the robot is gone (no publisher on {self.command_sub.topic_name} "
                f"for {self._peer_timeout:.0f} s): simulator exits after {self.tasks_done} task(s)")
            raise SystemExit(PEER_LOST_EXIT)

    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        rate = (self.steps - self._diag_steps) / max(now - self._diag_wall, 1e-9)
        self._diag_steps, self._diag_wall = self.steps, now
        waiting = now - self._last_tick_wall
        level, message = DIAG_OK, "running"
        if self._lockstep and waiting > self._cmd_timeout:
            level, message = DIAG_WARN, f"waiting {waiting:.1f} s for a command"
        self._diag_pub.publish(diagnostic_array(self, level, message, {
            "task": self.task, "trial": self.trial, "tasks_done": self.tasks_done,
            "control_steps": self.steps, "control_rate_hz": rate,
            "control_period_s": self.control_period, "sim_time_s": self.sim_time,
            "stale_commands_dropped": self.stale_commands, "lockstep": self._lockstep,
            "command_publishers": self.command_sub.get_publisher_count() if self.command_sub else 0,
        }))

    def _on_timer(self) -> None:
        now = time.monotonic()
        self._check_peer(now)
        if not self._lockstep:
            fresh = now - self._latest_command_wall <= self._cmd_timeout
            self._task_start_pending = self._trial_start_pending = False
            self._advance(self._latest_command if fresh and self._latest_command is not None
                          else self.zero_command())
            return
        idle = now - self._last_tick_wall
        if not self._got_command:
            if idle >= 1.0:  # nobody answered yet: repeat the tick for late joiners
                self._publish_tick()
            return
        if idle >= self._cmd_timeout:
            self.get_logger().warning(
                f"no command for {idle:.1f} s: stepping with a zero command", throttle_duration_sec=5.0)
            self._task_start_pending = self._trial_start_pending = False
            self._advance(self.zero_command())

    def destroy_node(self):
        if self._results:
            self._results.close()
            self._results = None
        return super().destroy_node()
