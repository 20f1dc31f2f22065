"""ROS 2 lifecycle node: a meta-trained (spiking) policy, one network step per control tick.

mode:=imaze        odom + scan in, cmd_vel out
mode:=manipulator  joint_states + target in, arm_controller/commands out

Lifecycle (``ros2 lifecycle set``): configure loads and validates the checkpoint
and creates the topics; activate starts commanding; deactivate commands a stop and
stays silent. ``autostart:=true`` (the default, as Nav2's lifecycle manager does)
configures and activates at start.

A tick is the set of sensor messages sharing one header stamp; it is acted on
once all of them have arrived, with the latest l2l/reward and the trial-start
flag, encoded by the same functions the gymnasium envs use. DDS does not order
messages across topics (a Float32 reward may take Fast DDS's data-sharing path
while the sensors take its transport), so with ``reward_wait`` > 0, for a
simulator that publishes a reward with every tick as ours do, a tick waits until
a reward newer than the previous answer has come, at most ``reward_wait`` s
(then it is answered with the last reward, and a warning counts it). A stamp is answered
once; a task start with an already answered stamp is a restarted simulation
(time went back), which resets the bookkeeping instead of ignoring every later
tick. The network's hidden state is reset on l2l/task_start, and that is when a
checkpoint received on l2l/checkpoint (or set as the ``checkpoint`` parameter)
replaces the weights; it is loaded and validated in a worker thread, off the
control path. A malformed, implausible or non-finite input makes the node log an
error and command a stop; a non-finite hidden state is logged, the robot stopped
and the state reset. The node never sends a non-finite or out-of-limit command (joint velocities within
1.5 rad/s, under the URDF's 2 rad/s). Position limits are the arm driver's to enforce,
where the direction a command turns a joint is known (``manipulator_sim`` does, as a
ros2_control hardware interface's soft limits would): this node cannot know it, since
the arm's calibration, sign included, is what the network must find out.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Point, PointStamped, Twist, TwistStamped
from nav_msgs.msg import Odometry
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import JointState, LaserScan
from std_msgs.msg import Float32, Float64MultiArray, Header, String

from l2l_ros.nodes.common import (DIAG_ERROR, DIAG_OK, DIAG_WARN, DIAGNOSTICS_TOPIC, LATCHED_QOS,
                                  STEADY_CLOCK, STREAM_QOS, Param, declare_params, diagnostic_array,
                                  from_stamp, quaternion_to_yaw, run_node)
from l2l_ros.policy_runtime import PolicyRuntime, load_runtime, untrained_runtime
from l2l_ros.tasks.encoding import (ARM_JOINTS, MAX_ABS_REWARD, clamp_twist, encode_imaze,
                                    encode_manipulator, imaze_action_to_twist,
                                    manipulator_action_to_command)

MODES = ("imaze", "manipulator")
#: Stamps beyond this (s) are not a clock (a year of simulated time is 3.2e7 s).
MAX_STAMP = 1e12
#: Answered stamps remembered (a repeated tick is answered once), and per-stream buffer.
REMEMBERED_TICKS = 64
#: How often the watchdog looks at sensor age (s): the stop follows the timeout within this.
WATCHDOG_PERIOD = 0.05

POLICY_PARAMS = (
    Param("mode", "imaze", "Task family: imaze (odom + scan -> cmd_vel) or manipulator "
          "(joint_states + target -> arm_controller/commands).", read_only=True),
    Param("checkpoint", "", "Policy checkpoint (.json); '': the bundled I-maze model (imaze) or the "
          "bundled arm model (manipulator: the spiking one, else the arm's LSTM, else an untrained network). "
          "Set at run time: "
          "loaded off the control path, active from the next task start."),
    Param("deterministic", True, "Greedy actions instead of sampling."),
    Param("hidden_goal", False, "manipulator: the hidden-goal variant (no target topic; the network "
          "sees a zero target, as in training).", read_only=True),
    Param("seed", 0, "Seed of torch (stochastic actions, the untrained network).", read_only=True,
          low=0, high=2**31 - 1),
    Param("twist_stamped", False, "Publish cmd_vel as geometry_msgs/TwistStamped.", read_only=True),
    Param("sensor_timeout", 0.25, "Seconds without a complete sensor tick before the robot is "
          "commanded to stop, on the node's clock: simulated time under use_sim_time, so a "
          "lockstep simulator waiting for its command is not stopped.", low=0.01, high=3600.0),
    Param("reward_wait", 0.0, "Seconds a complete sensor tick waits for its l2l/reward (one "
          "published with every tick, as the simulators do) before it is answered with the last "
          "reward; 0: answer at once with the latest reward.", low=0.0, high=10.0),
    Param("autostart", True, "Configure and activate at start; false: wait for the lifecycle "
          "transitions (ros2 lifecycle set).", read_only=True),
)


class SpikingPolicyNode(LifecycleNode):
    def __init__(self):
        super().__init__("spiking_policy")
        v = declare_params(self, POLICY_PARAMS, self._on_param)
        self.mode = str(v["mode"])
        self.hidden_goal = bool(v["hidden_goal"])
        if self.mode not in MODES:
            raise ValueError(f"parameter mode={self.mode!r}: expected one of {MODES}")
        self.deterministic = bool(v["deterministic"])
        self.sensor_timeout = float(v["sensor_timeout"])
        self.reward_wait = float(v["reward_wait"])
        self._checkpoint = str(v["checkpoint"])
        self._stamped = bool(v["twist_stamped"])
        torch.manual_seed(int(v["seed"]))
        # Batch-1 steps gain nothing from intra-op threads; spinning OpenMP threads
        # would fight the simulator and DDS for the cores.
        torch.set_num_threads(1)

        self.runtime: PolicyRuntime | None = None
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-loader")
        self._lock = threading.Lock()
        self._pending_runtime: PolicyRuntime | None = None
        self._requested: str | None = None  # the newest checkpoint asked for
        self._io: list = []  # subscriptions and publishers made by configure
        self._cmd_pub = None
        self._active = False
        self._reset_ticks()
        self._stopped = True
        self._stop_due = False
        self._reward = 0.0
        self.ticks = 0
        self.bad_inputs = 0
        self.refused_checkpoints = 0
        self.state_resets = 0
        self.late_rewards = 0  # ticks answered without their reward after waiting reward_wait
        self._latencies: deque[float] = deque(maxlen=500)
        self._diag_ticks, self._diag_wall = 0, time.monotonic()
        self._configure_error = ""

        self._diag_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)
        self.create_timer(WATCHDOG_PERIOD, self._watchdog, clock=STEADY_CLOCK)
        self.create_timer(1.0, self._publish_diagnostics, clock=STEADY_CLOCK)
        self._autostarting = bool(v["autostart"])
        if self._autostarting:
            if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                raise RuntimeError(f"configure failed: {self._configure_error}")
            self.trigger_activate()
            self._autostarting = False

    def _reset_ticks(self) -> None:
        self._sensors: dict[str, dict[float, Any]] = {}
        self._answered: deque[float] = deque(maxlen=REMEMBERED_TICKS)
        self._task_starts: deque[float] = deque(maxlen=REMEMBERED_TICKS)
        self._trial_starts: deque[float] = deque(maxlen=REMEMBERED_TICKS)
        self._last_tick = -math.inf
        self._last_tick_clock_ns = self.get_clock().now().nanoseconds
        self._reward_fresh = False  # a reward came after the last answered tick
        self._waiting: tuple[float, list, float] | None = None  # (stamp, sensors, since): for its reward

    # --- lifecycle --------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._configure_error = ""
        try:
            self.runtime = self._initial_runtime(self._checkpoint)
            self.runtime.count_spikes()
        except Exception as exc:  # noqa: BLE001 - any bad file is a failed configure, not a crash
            self._configure_error = " ".join(str(exc).split())
            if not self._autostarting:  # at autostart, run_node prints it as the [FATAL] line
                self.get_logger().error(f"configure failed: {self._configure_error}")
            return TransitionCallbackReturn.FAILURE
        self._create_io()
        self.get_logger().info(f"mode {self.mode}: {self.runtime.describe()}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = True
        self._last_tick_clock_ns = self.get_clock().now().nanoseconds
        self.get_logger().info("active: commanding the robot")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._publish_stop()
        self._active = False
        self._waiting = None
        self.get_logger().info("inactive: robot commanded to stop")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._destroy_io()
        self.runtime = None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._active:
            self._publish_stop()
        self._active = False
        self._destroy_io()
        return TransitionCallbackReturn.SUCCESS

    def _create_io(self) -> None:
        sub = self.create_subscription
        self._io = [
            sub(Float32, "l2l/reward", self._on_reward, STREAM_QOS),
            sub(Header, "l2l/task_start", self._on_task_start, STREAM_QOS),
            sub(Header, "l2l/trial_start", lambda m: self._on_start(self._trial_starts, m), STREAM_QOS),
            sub(String, "l2l/checkpoint", lambda m: self._request_checkpoint(m.data), LATCHED_QOS),
        ]
        if self.mode == "imaze":
            self._streams = ("odom", "scan")
            self._cmd_pub = self.create_publisher(TwistStamped if self._stamped else Twist, "cmd_vel",
                                                  STREAM_QOS)
            self._io += [sub(Odometry, "odom", lambda m: self._on_sensor("odom", m), STREAM_QOS),
                         sub(LaserScan, "scan", lambda m: self._on_sensor("scan", m), STREAM_QOS)]
        else:
            self._streams = ("joint_states",) if self.hidden_goal else ("joint_states", "target")
            self._cmd_pub = self.create_publisher(Float64MultiArray, "arm_controller/commands", STREAM_QOS)
            self._io.append(sub(JointState, "joint_states", lambda m: self._on_sensor("joint_states", m),
                                STREAM_QOS))
            if not self.hidden_goal:
                self._io.append(sub(PointStamped, "target", lambda m: self._on_sensor("target", m), STREAM_QOS))
        self._io.append(self._cmd_pub)

    def _destroy_io(self) -> None:
        for entity in self._io:
            if hasattr(entity, "publish"):
                self.destroy_publisher(entity)
            else:
                self.destroy_subscription(entity)
        self._io, self._cmd_pub = [], None
        self._reset_ticks()

    # --- parameters -------------------------------------------------------------------
    def _on_param(self, name: str, value: Any) -> None:
        if name == "deterministic":
            self.deterministic = bool(value)
        elif name == "sensor_timeout":
            self.sensor_timeout = float(value)
        elif name == "reward_wait":
            self.reward_wait = float(value)
        elif name == "checkpoint":
            self._checkpoint = str(value)
            if value and self.runtime is not None:
                self._request_checkpoint(str(value))

    # --- weights ----------------------------------------------------------------------
    def _initial_runtime(self, checkpoint: str) -> PolicyRuntime:
        if checkpoint:
            return load_runtime(checkpoint, self.mode)
        from l2l_ros.graphs import bundled_model

        bundled = bundled_model(self.mode)
        if bundled:
            runtime = load_runtime(bundled, self.mode)
            if runtime.policy.kind != "lsnn":
                self.get_logger().info(f"the bundled model {bundled} is not spiking ({runtime.policy.kind})")
            return runtime
        self.get_logger().warning("no checkpoint given and no bundled arm model: running an UNTRAINED network (seeded)")
        return untrained_runtime(self.mode)

    def _request_checkpoint(self, path: str) -> None:
        """Load ``path`` in the worker thread; only the newest request is kept."""
        with self._lock:
            self._requested = path
        self._loader.submit(self._load_checkpoint, path)

    def _load_checkpoint(self, path: str) -> None:
        with self._lock:
            if path != self._requested:
                return  # a newer checkpoint was asked for meanwhile
        shown = path if len(path) <= 200 else path[:200] + "..."
        try:
            runtime = load_runtime(path, self.mode)
        except Exception as exc:  # noqa: BLE001 - every bad file is refused, none kills the node
            self.refused_checkpoints += 1
            self.get_logger().error(f"checkpoint {shown!r} refused, keeping current weights: "
                                    f"{' '.join(str(exc).split())[:500]}")
            return
        with self._lock:
            if path != self._requested:
                return
            self._pending_runtime = runtime
        self.get_logger().info(f"checkpoint {shown} loaded; active from the next task start")

    # --- inputs -----------------------------------------------------------------------
    def _on_reward(self, msg: Float32) -> None:
        r = float(msg.data)
        if math.isfinite(r) and abs(r) <= MAX_ABS_REWARD:
            self._reward = r
        else:
            self.bad_inputs += 1
            self.get_logger().error(f"reward {r} refused (beyond +-{MAX_ABS_REWARD:g}): treated as 0",
                                    throttle_duration_sec=1.0)
            self._reward = 0.0
        self._reward_fresh = True
        if self._waiting is not None:
            t, msgs, _ = self._waiting
            self._waiting = None
            self._act(t, msgs)

    def _stamp(self, msg) -> float | None:
        """The header stamp in seconds, or None (logged) when it is no clock reading."""
        t = from_stamp(msg.header.stamp if hasattr(msg, "header") else msg.stamp)
        if 0.0 <= t <= MAX_STAMP:
            return t
        self.bad_inputs += 1
        self.get_logger().error(f"message stamped {t:.6g} s ignored: not a clock reading",
                                throttle_duration_sec=1.0)
        return None

    def _on_start(self, starts: deque, msg: Header) -> None:
        t = self._stamp(msg)
        if t is not None:
            starts.append(t)

    def _on_task_start(self, msg: Header) -> None:
        t = self._stamp(msg)
        if t is None:
            return
        if t in self._answered or t < self._last_tick:
            # A task starting at a time already past: a new simulation (its clock restarted).
            # Or the simulator repeating a first tick whose answer it never got.
            self.get_logger().warning(f"task start at t={t:.3f} s, not after the last tick "
                                      f"(t={self._last_tick:.3f} s): a restarted simulation; answering anew",
                                      throttle_duration_sec=1.0)
            self._reset_ticks()
        self._task_starts.append(t)

    def _on_sensor(self, stream: str, msg) -> None:
        t = self._stamp(msg)
        if t is None or t in self._answered:
            return  # a repeated tick: already answered
        per_stamp = self._sensors.setdefault(stream, {})
        per_stamp[t] = msg
        if len(per_stamp) > REMEMBERED_TICKS:  # the other stream is missing: keep memory bounded
            del per_stamp[next(iter(per_stamp))]
        if all(t in self._sensors.get(s, {}) for s in self._streams):
            msgs = [self._sensors[s].pop(t) for s in self._streams]
            if t < self._last_tick:
                self.get_logger().warning(f"tick t={t:.3f} s is older than the last (t={self._last_tick:.3f} s):"
                                          " the sensors' clock went back", throttle_duration_sec=5.0)
            self._answered.append(t)
            if self._active:
                self._act_with_reward(t, msgs)

    def _act_with_reward(self, t: float, msgs: list) -> None:
        """Act on a complete tick now, or (``reward_wait`` > 0) once its reward has come."""
        if self._waiting is not None:  # a newer tick came first: the waiting one goes now
            self._answer_without_reward("a newer tick came")
        if self.reward_wait > 0 and not self._reward_fresh:
            self._waiting = (t, msgs, time.monotonic())
            return
        self._act(t, msgs)

    def _answer_without_reward(self, why: str) -> None:
        t, msgs, since = self._waiting
        self._waiting = None
        self.late_rewards += 1
        self.get_logger().warning(
            f"tick t={t:.3f} s answered with the previous reward: none came on l2l/reward within "
            f"{time.monotonic() - since:.3f} s ({why}; {self.late_rewards} so far)", throttle_duration_sec=5.0)
        self._act(t, msgs)

    # --- the control tick -------------------------------------------------------------
    def _act(self, t: float, msgs: list) -> None:
        self._last_tick = t
        self._reward_fresh = False
        task_start = t in self._task_starts
        trial_start = task_start or t in self._trial_starts
        if task_start:
            with self._lock:
                pending, self._pending_runtime = self._pending_runtime, None
            if pending is not None:
                self.runtime = pending
                self.runtime.count_spikes()
                self.get_logger().info(f"new weights active: {self.runtime.describe()}")
            self.runtime.reset()
        try:
            obs = self._encode(msgs)
        except (ValueError, TypeError, OverflowError, IndexError) as exc:
            self.bad_inputs += 1
            self.get_logger().error(f"bad sensor input at t={t:.2f}: {exc}; commanding a stop",
                                    throttle_duration_sec=1.0)
            self._publish_stop()
            return
        start = time.perf_counter()
        try:
            action = self.runtime.step(obs, self._reward, trial_start, self.deterministic)
        except (ValueError, RuntimeError) as exc:
            action = None
            self.get_logger().error(f"network step failed at t={t:.2f}: {exc}")
        self._latencies.append(time.perf_counter() - start)
        if action is None or not self.runtime.state_is_finite():
            self.state_resets += 1
            self.get_logger().error(f"non-finite network state at t={t:.2f}: robot stopped, state reset "
                                    f"({self.state_resets} so far)", throttle_duration_sec=1.0)
            self.runtime.reset()
            self._publish_stop()
            return
        self._last_tick_clock_ns = self.get_clock().now().nanoseconds
        self._publish_action(action)
        self.ticks += 1

    def _encode(self, msgs: list) -> np.ndarray:
        if self.mode == "imaze":
            odom, scan = msgs
            pose, twist = odom.pose.pose, odom.twist.twist
            q = pose.orientation
            yaw = quaternion_to_yaw(q.x, q.y, q.z, q.w)
            return encode_imaze(pose.position.x, pose.position.y, yaw, twist.linear.x,
                                twist.angular.z, np.asarray(scan.ranges), float(scan.range_max))
        joints = msgs[0]
        index = {name: i for i, name in enumerate(joints.name)}
        missing = [j for j in ARM_JOINTS if j not in index]
        if missing or len(joints.position) != len(joints.name) or len(joints.velocity) != len(joints.name):
            raise ValueError(f"joint_states lacks joints {missing} or has ragged arrays")
        q = [joints.position[index[j]] for j in ARM_JOINTS]
        qd = [joints.velocity[index[j]] for j in ARM_JOINTS]
        p = msgs[1].point if len(msgs) > 1 else Point()  # hidden goal: a zero target, as in training
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
        if self._stamped:
            msg = TwistStamped(twist=twist)
            msg.header.stamp = self.get_clock().now().to_msg()
            msg.header.frame_id = "base_link"
            self._cmd_pub.publish(msg)
        else:
            self._cmd_pub.publish(twist)

    def _publish_stop(self) -> None:
        if self._cmd_pub is None:
            return
        if self.mode == "imaze":
            self._publish_twist(0.0, 0.0)
        else:
            self._cmd_pub.publish(Float64MultiArray(data=[0.0] * len(ARM_JOINTS)))
        self._stopped = True

    def _sensor_age(self) -> float:
        """Seconds since the last answered tick on the node's clock (simulated time under
        use_sim_time: a lockstep simulator stops its clock while it waits for the command,
        and a stop sent then would be taken as that command)."""
        now = self.get_clock().now().nanoseconds
        if now < self._last_tick_clock_ns:  # the clock went back: a new simulation
            self._last_tick_clock_ns = now
        return (now - self._last_tick_clock_ns) / 1e9

    def _watchdog(self) -> None:
        """Sensors went quiet: stop the robot once rather than repeat a stale command.

        The stop is sent one watchdog period after the timeout is first seen, if no tick
        came in between: a process that was starved of CPU wakes up with its timer and
        the waiting tick both ready, and the executor runs timers first."""
        if self._waiting is not None and time.monotonic() - self._waiting[2] >= self.reward_wait:
            self._answer_without_reward(f"reward_wait {self.reward_wait:g} s")
        stale = self._active and not self._stopped and self._sensor_age() > self.sensor_timeout
        if not stale:
            self._stop_due = False
        elif not self._stop_due:
            self._stop_due = True
        else:
            self._stop_due = False
            self.get_logger().warning(f"no sensor tick for {self.sensor_timeout:.2f} s: stopping the robot",
                                      throttle_duration_sec=5.0)
            self._publish_stop()

    # --- diagnostics ------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        rate = (self.ticks - self._diag_ticks) / max(now - self._diag_wall, 1e-9)
        self._diag_ticks, self._diag_wall = self.ticks, now
        age = self._sensor_age()
        values: dict[str, Any] = {
            "active": self._active, "control_rate_hz": rate, "control_steps": self.ticks,
            "sensor_age_s": age, "bad_inputs": self.bad_inputs,
            "refused_checkpoints": self.refused_checkpoints, "state_resets": self.state_resets,
            "ticks_answered_without_their_reward": self.late_rewards,
        }
        if self._latencies:
            lat = np.asarray(self._latencies) * 1e3
            values.update(step_latency_p50_ms=float(np.percentile(lat, 50)),
                          step_latency_p99_ms=float(np.percentile(lat, 99)),
                          step_latency_max_ms=float(lat.max()))
        rt = self.runtime
        if rt is not None and rt.neuron_count() and rt.steps:
            # Every tick's spikes since these weights were loaded (l2l_ros.cost; the counter is
            # float64, exact for far longer than a node runs), so a pause keeps the figures.
            cost = rt.cost()
            values.update({k: cost[k] for k in (
                "spikes_per_neuron_per_tick", "silent_fraction", "synops_per_step", "dense_macs_per_step",
                "energy_neuromorphic_nj_per_step", "energy_cpu_nj_per_step")})
        if rt is not None:
            values["policy"] = rt.describe()
        level, message = DIAG_OK, "commanding" if self._active else "inactive"
        if self._active and age > self.sensor_timeout:
            level, message = DIAG_WARN, f"no sensor tick for {age:.1f} s: robot stopped"
        if rt is None:
            level, message = DIAG_ERROR, "unconfigured: no policy loaded"
        self._diag_pub.publish(diagnostic_array(self, level, message, values))

    def destroy_node(self):
        loader = getattr(self, "_loader", None)  # None when __init__ failed early
        if loader is not None:
            loader.shutdown(wait=False, cancel_futures=True)
        return super().destroy_node()


def main(args=None) -> int:
    return run_node(SpikingPolicyNode, args, "spiking_policy")


if __name__ == "__main__":
    raise SystemExit(main())
