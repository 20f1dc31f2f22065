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
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rclpy.node import Node
from rclpy.subscription import MessageInfo
from rosgraph_msgs.msg import Clock
from std_msgs.msg import Float32, Header

from l2l_ros.nodes.common import STEADY_CLOCK, STREAM_QOS, to_stamp


def sent_ns(info: MessageInfo | None) -> int:
    """When a message was published (system clock, ns) per its DDS source timestamp; 0 if unknown."""
    return int(info.get("source_timestamp") or 0) if info else 0


class LockstepSimNode(Node):
    """Subclasses provide the env, publish their sensors and turn messages into commands."""

    def create_io(self) -> None:
        """Create the sensor publishers and the command subscription."""
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

    def __init__(self, name: str):
        super().__init__(name)
        self.declare_parameter("seed", 0)
        self.declare_parameter("max_tasks", 0)
        self.declare_parameter("task_steps", 0)
        self.declare_parameter("lockstep", True)
        self.declare_parameter("cmd_timeout", 1.0)
        self.declare_parameter("drop_stale_commands", True)
        self.declare_parameter("results_file", "")
        p = self.get_parameter
        self._seed = int(p("seed").value)
        self._max_tasks = int(p("max_tasks").value)
        self._lockstep = bool(p("lockstep").value)
        self._cmd_timeout = float(p("cmd_timeout").value)
        self._drop_stale = bool(p("drop_stale_commands").value)
        results = str(p("results_file").value)
        self._results = Path(results).open("a", buffering=1) if results else None

        self.env = self.make_env(int(p("task_steps").value))
        self.control_period = float(self.env.sim.control_period)

        self._clock_pub = self.create_publisher(Clock, "/clock", 10)
        self._reward_pub = self.create_publisher(Float32, "/l2l/reward", STREAM_QOS)
        self._task_pub = self.create_publisher(Header, "/l2l/task_start", STREAM_QOS)
        self._trial_pub = self.create_publisher(Header, "/l2l/trial_start", STREAM_QOS)
        self.create_io()

        self.sim_time = 0.0  # monotonic across tasks, unlike MjData.time
        self.task = -1
        self.tasks_done = 0
        self._latest_command: Any = None
        self._latest_command_wall = 0.0
        self._got_command = False
        self._last_tick_wall = time.monotonic()
        self._tick_sent_ns = 0  # system clock when the current tick was first published
        self.stale_commands = 0
        self._start_task()
        period = 0.05 if self._lockstep else self.control_period
        self._timer = self.create_timer(period, self._on_timer, clock=STEADY_CLOCK)

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
        self.on_step(info)
        if info.get("trial_end", False):
            self._record_trial(True)
            self.trial += 1
            self.trial_steps = 0
            self._trial_start_pending = True
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
        self._last_tick_wall = time.monotonic()

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

    def _on_timer(self) -> None:
        now = time.monotonic()
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
        return super().destroy_node()
