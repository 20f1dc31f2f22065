"""The spiking_policy node under bad input, over real DDS (issue 32's regressions).

The node runs in this process beside a probe node that plays the simulator: it
publishes ticks (odom + scan with one stamp), rewards and task starts, and records
every cmd_vel. Each test names the defect it guards against.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import rclpy
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rcl_interfaces.srv import SetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import LaserScan
from std_msgs.msg import Float32, Header, String

from l2l_ros.nodes.common import LATCHED_QOS, STREAM_QOS, to_stamp
from l2l_ros.tasks.encoding import DRIVE_LIMITS, SCAN_BEAMS, SCAN_RANGE_MAX


class Harness:
    """spiking_policy (in process) and a probe node that plays the simulator."""

    def __init__(self, **params):
        """``params``: node parameters. The sensor watchdog is off (60 s) unless a test sets
        it, so that "no answer" means the tick was not answered, not a watchdog stop."""
        from l2l_ros.nodes.spiking_policy import SpikingPolicyNode

        params.setdefault("sensor_timeout", 60.0)
        configured = params.get("autostart", True)
        overrides = [f"{k}:={str(v).lower() if isinstance(v, bool) else v}" for k, v in params.items()]
        args = ["--ros-args", *sum((["-p", o] for o in overrides), [])] if overrides else None
        rclpy.init(args=args)
        self.policy = SpikingPolicyNode()
        self.probe = rclpy.create_node("hardening_probe")
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.policy)
        self.executor.add_node(self.probe)
        self.cmds: list[tuple[float, Twist]] = []
        self.probe.create_subscription(Twist, "cmd_vel", lambda m: self.cmds.append((time.monotonic(), m)),
                                       STREAM_QOS)
        self.odom = self.probe.create_publisher(Odometry, "odom", STREAM_QOS)
        self.scan = self.probe.create_publisher(LaserScan, "scan", STREAM_QOS)
        self.reward = self.probe.create_publisher(Float32, "l2l/reward", STREAM_QOS)
        self.task = self.probe.create_publisher(Header, "l2l/task_start", STREAM_QOS)
        self.checkpoint = self.probe.create_publisher(String, "l2l/checkpoint", LATCHED_QOS)
        assert not configured or self.spin_until(lambda: self.odom.get_subscription_count() and self.scan.get_subscription_count()
                               and self.task.get_subscription_count() and self.reward.get_subscription_count(),
                               20.0), "the policy never subscribed"

    def spin_until(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)
            if predicate():
                return True
        return bool(predicate())

    def spin_for(self, seconds: float) -> None:
        self.spin_until(lambda: False, seconds)

    def tick(self, t: float, *, x: float = 0.0, range_max: float = SCAN_RANGE_MAX, task_start: bool = False,
             reward: float | None = None, ranges: list[float] | None = None) -> Twist | None:
        """Publish one tick stamped ``t``; return the command answering it (None: no answer)."""
        stamp = to_stamp(t) if t >= 0 else to_stamp(0.0)
        if t < 0:
            stamp.sec = int(t)
        if reward is not None:
            self.reward.publish(Float32(data=reward))
        if task_start:
            self.task.publish(Header(stamp=stamp, frame_id="task"))
        odom = Odometry()
        odom.header.stamp = stamp
        odom.pose.pose.position.x = x
        odom.pose.pose.orientation.w = 1.0
        scan = LaserScan()
        scan.header.stamp = stamp
        scan.range_max = range_max
        scan.ranges = ranges if ranges is not None else [1.0] * SCAN_BEAMS
        n = len(self.cmds)
        self.odom.publish(odom)
        self.scan.publish(scan)
        if self.spin_until(lambda: len(self.cmds) > n, 2.0):
            return self.cmds[n][1]
        return None

    def close(self):
        self.policy.destroy_node()
        self.probe.destroy_node()
        rclpy.try_shutdown()


@pytest.fixture()
def harness():
    h = Harness()
    yield h
    h.close()


def is_stop(cmd: Twist) -> bool:
    return cmd.linear.x == 0.0 and cmd.angular.z == 0.0


def within_limits(cmd: Twist) -> bool:
    v, w = cmd.linear.x, cmd.angular.z
    return (math.isfinite(v) and math.isfinite(w) and abs(v) <= DRIVE_LIMITS.max_linear
            and abs(w) <= DRIVE_LIMITS.max_angular)


def test_implausible_sensors_and_rewards_stop_the_robot_and_never_reach_the_state(harness):
    """Defect 2: range_max 0 or NaN, odometry x = 1e300, a reward of 1e30 made the hidden
    state NaN for the rest of the task, silently."""
    h = harness
    assert h.tick(0.0, task_start=True) is not None
    t = 0.2
    for bad in ({"range_max": 0.0}, {"range_max": float("nan")}, {"x": 1e300}, {"x": float("inf")},
                {"ranges": [1.0] * 5}, {"ranges": [float("nan")] * SCAN_BEAMS, "range_max": -1.0}):
        cmd = h.tick(t, **bad)
        t += 0.2
        assert cmd is not None and is_stop(cmd), f"{bad}: {cmd}"
        assert h.policy.runtime.state_is_finite(), bad
    cmd = h.tick(t, reward=1e30)
    t += 0.2
    assert cmd is not None and within_limits(cmd)
    assert h.policy.runtime.state_is_finite() and h.policy._reward == 0.0
    assert h.policy.bad_inputs == 7
    # It drives on: valid ticks get the network's actions (not all stops) from a finite state.
    answers = [h.tick(t + 0.2 * i) for i in range(10)]
    assert all(c is not None and within_limits(c) for c in answers)
    assert not all(is_stop(c) for c in answers)


def test_a_non_finite_hidden_state_is_reset_and_the_robot_stopped(harness):
    """Defect 2, last line of defence: a state that became NaN anyway."""
    import torch

    h = harness
    assert h.tick(0.0, task_start=True) is not None
    h.policy.runtime.state = type(h.policy.runtime.state)(*[s.fill_(float("nan")) for s in h.policy.runtime.state])
    # The NaN state must not drive: the step's action comes from a NaN state, so it stops instead.
    cmd = h.tick(0.2)
    assert cmd is not None and is_stop(cmd)
    assert h.policy.state_resets == 1
    assert all(bool(torch.isfinite(s).all()) for s in h.policy.runtime.state)
    assert h.tick(0.4) is not None and h.policy.runtime.state_is_finite()


def test_a_tick_from_the_future_or_a_restarted_simulation_does_not_silence_the_policy(harness):
    """Defect 3: one tick stamped in the future, or a simulator restart, made the policy
    ignore every later tick forever."""
    h = harness
    assert h.tick(0.0, task_start=True) is not None
    assert h.tick(0.2) is not None
    assert h.tick(0.2) is None  # a repeated tick (the simulator re-publishing it) is answered once
    assert h.tick(1e9) is not None  # absurd future stamp
    assert h.tick(0.4) is not None  # ...does not block the real clock
    assert h.tick(0.6) is not None
    # The simulator restarts: its clock is back at 0, with a task start.
    assert h.tick(0.0, task_start=True) is not None
    assert h.tick(0.2) is not None
    # Stamps that are no clock reading are ignored, with a log line, and nothing breaks.
    assert h.tick(-5.0) is None
    assert h.tick(2e12) is None
    assert h.tick(0.4) is not None


def _bad_checkpoints(tmp_path: Path) -> dict[str, Path]:
    from l2l_ros.graphs import default_model_path

    good = json.loads(Path(default_model_path()).read_text())
    weights = Path(default_model_path()).with_suffix(".safetensors")
    files = {}

    def variant(name: str, text: str) -> None:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "policy.safetensors").write_bytes(weights.read_bytes())
        (folder / "policy.json").write_text(text)
        files[name] = folder / "policy.json"

    variant("obs_dim_infinity", json.dumps({**good, "obs_dim": 1}).replace('"obs_dim": 1', '"obs_dim": Infinity'))
    variant("obs_dim_negative", json.dumps({**good, "obs_dim": -1}))
    variant("n_lif_negative", json.dumps({**good, "policy_config": {**good["policy_config"], "n_lif": -1}}))
    variant("ticks_per_step_20000", json.dumps({**good, "policy_config": {**good["policy_config"],
                                                                         "ticks_per_step": 20000}}))
    variant("nested_100000", "[" * 100_000 + "]" * 100_000)
    variant("two_mib", json.dumps({**good, "padding": "x" * (2 << 20)}))
    variant("not_json", "{not json")
    return files


def test_every_crafted_checkpoint_is_refused_and_the_node_keeps_its_weights(harness, tmp_path):
    """Defects 1 and 4: crafted JSON files killed the node (OverflowError, RuntimeError,
    RecursionError), and ticks_per_step 20000 was accepted."""
    h = harness
    assert h.tick(0.0, task_start=True) is not None
    weights = h.policy.runtime
    bad = _bad_checkpoints(tmp_path)
    t = 0.2
    for name, path in bad.items():
        refused = h.policy.refused_checkpoints
        h.checkpoint.publish(String(data=str(path)))
        # The control loop keeps answering ticks while the file is checked off its path.
        assert h.tick(t) is not None, name
        t += 0.2
        assert h.spin_until(lambda: h.policy.refused_checkpoints == refused + 1, 30.0), name
    assert h.tick(t, task_start=True) is not None  # a task start: a pending model would take over here
    assert h.policy.runtime is weights and h.policy._pending_runtime is None


def test_a_valid_checkpoint_loads_off_the_control_path_and_takes_over_at_the_next_task(harness):
    """Defect 4: loading ran in the control callback."""
    from l2l_ros.graphs import default_model_path

    h = harness
    assert h.tick(0.0, task_start=True) is not None
    start = time.perf_counter()
    h.policy._request_checkpoint(default_model_path())
    assert time.perf_counter() - start < 0.05, "loading blocked the caller"
    assert h.spin_until(lambda: h.policy._pending_runtime is not None, 30.0)
    old = h.policy.runtime
    assert h.tick(0.2) is not None and h.policy.runtime is old  # not in the middle of a task
    assert h.tick(0.4, task_start=True) is not None and h.policy.runtime is not old


def test_stale_sensors_stop_the_robot_within_two_control_periods():
    """Reliability figure: a zero command within 2 control periods (0.4 s) of the last tick,
    with the default sensor_timeout."""
    from l2l_ros.nodes.spiking_policy import POLICY_PARAMS

    h = Harness(sensor_timeout=next(p.default for p in POLICY_PARAMS if p.name == "sensor_timeout"))
    try:
        for attempt in range(3):
            assert h.tick(0.0 + attempt, task_start=True) is not None
            assert h.tick(0.2 + attempt) is not None
            t_last = h.cmds[-1][0]
            assert h.spin_until(lambda: h.cmds[-1][0] > t_last, 2.0)
            assert is_stop(h.cmds[-1][1]) and h.cmds[-1][0] - t_last <= 0.4, h.cmds[-1][0] - t_last
    finally:
        h.close()


def test_under_sim_time_a_waiting_lockstep_simulator_is_not_stopped_but_a_running_one_is():
    """A lockstep simulator stops its clock while it waits for the command; a stop sent
    then would be taken as the tick's command (seen in CI: two graphs under load went off
    the offline trajectory). With use_sim_time the watchdog measures simulated time."""
    from rosgraph_msgs.msg import Clock

    h = Harness(sensor_timeout=0.25, use_sim_time=True)
    clock = h.probe.create_publisher(Clock, "/clock", STREAM_QOS)
    try:
        assert h.spin_until(lambda: clock.get_subscription_count() > 0, 10.0)
        clock.publish(Clock(clock=to_stamp(10.0)))
        assert h.tick(10.0, task_start=True) is not None
        n = len(h.cmds)
        h.spin_for(1.0)  # wall time passes, the simulated clock stands still
        assert len(h.cmds) == n, "stopped while the simulator waited"
        for i in range(1, 6):  # the clock runs on, no sensor tick: stop
            clock.publish(Clock(clock=to_stamp(10.0 + 0.1 * i)))
            h.spin_for(0.12)
        assert h.spin_until(lambda: len(h.cmds) > n, 1.0) and is_stop(h.cmds[-1][1])
    finally:
        h.close()


def _set(h: Harness, node: str, **values) -> list:
    """Set parameters through the node's parameter service, as `ros2 param set` does."""
    client = h.probe.create_client(SetParameters, f"/{node}/set_parameters")
    assert client.wait_for_service(timeout_sec=10.0)
    future = client.call_async(SetParameters.Request(
        parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]))
    assert h.spin_until(future.done, 10.0)
    return future.result().results


def test_parameters_are_described_read_only_or_applied_and_range_checked(harness):
    """Defect 9: `ros2 param set` reported success and the node ignored the value."""
    h = harness
    [mode] = _set(h, "spiking_policy", mode="manipulator")
    assert not mode.successful and h.policy.mode == "imaze"
    [timeout] = _set(h, "spiking_policy", sensor_timeout=-5.0)
    assert not timeout.successful and h.policy.sensor_timeout == 60.0
    [timeout] = _set(h, "spiking_policy", sensor_timeout=0.5)
    assert timeout.successful and h.policy.sensor_timeout == 0.5
    [det] = _set(h, "spiking_policy", deterministic=False)
    assert det.successful and h.policy.deterministic is False
    [wait] = _set(h, "spiking_policy", reward_wait=-1.0)
    assert not wait.successful and h.policy.reward_wait == 0.0
    for name in ("mode", "checkpoint", "deterministic", "seed", "twist_stamped", "sensor_timeout", "reward_wait",
                 "autostart"):
        assert h.policy.describe_parameter(name).description, name


def _command_for(runtime, reward: float, task_start: bool) -> tuple[float, float]:
    """The offline command for the harness's default tick (x = 0, ranges 1 m)."""
    from l2l_ros.tasks.encoding import clamp_twist, encode_imaze, imaze_action_to_twist

    obs = encode_imaze(0.0, 0.0, 0.0, 0.0, 0.0, [1.0] * SCAN_BEAMS, SCAN_RANGE_MAX)
    return clamp_twist(*imaze_action_to_twist(int(runtime.step(obs, reward, task_start, True))))


def test_a_tick_whose_reward_comes_after_its_sensors_is_answered_with_that_reward():
    """CI failure: DDS delivered a tick's l2l/reward after its odom and scan (Fast DDS sends a
    Float32 by data-sharing, the sensors by its transport); the policy answered with the
    previous reward and the lockstep run left the offline evaluation. With reward_wait the
    tick waits for its reward; with none coming, it is answered after reward_wait."""
    from l2l_ros.graphs import default_model_path
    from l2l_ros.policy_runtime import load_runtime

    h = Harness(reward_wait=5.0)
    try:
        assert h.tick(0.0, task_start=True, reward=0.0) is not None  # a reward came: answered at once
        odom, scan = Odometry(), LaserScan()
        for m in (odom, scan):
            m.header.stamp = to_stamp(0.1)
        odom.pose.pose.orientation.w = 1.0
        scan.range_max, scan.ranges = SCAN_RANGE_MAX, [1.0] * SCAN_BEAMS
        n = len(h.cmds)
        h.odom.publish(odom)
        h.scan.publish(scan)
        assert not h.spin_until(lambda: len(h.cmds) > n, 1.0), "answered before its reward came"
        h.reward.publish(Float32(data=1.0))
        assert h.spin_until(lambda: len(h.cmds) > n, 2.0), "the reward came and the tick stayed unanswered"
        runtime = load_runtime(default_model_path(), "imaze")
        runtime.reset()
        _command_for(runtime, 0.0, True)
        expected = _command_for(runtime, 1.0, False)
        got = h.cmds[n][1]
        assert (got.linear.x, got.angular.z) == pytest.approx(expected)
        assert h.policy.late_rewards == 0
        # No reward at all: answered once reward_wait has passed, and counted.
        h.policy.reward_wait = 0.3
        start = time.monotonic()
        assert h.tick(0.2) is not None
        assert 0.3 <= time.monotonic() - start < 1.5
        assert h.policy.late_rewards == 1
    finally:
        h.close()


def test_lifecycle_configure_activate_deactivate():
    """spiking_policy is a lifecycle node: inactive it does not command; deactivate stops the robot."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState, GetState

    h = Harness(autostart=False)
    try:
        assert h.policy.runtime is None and h.policy._cmd_pub is None

        # One client per service, as a lifecycle manager keeps them: a new client per call
        # must be matched anew each time, and in one CI run one took over 10 s.
        change_client = h.probe.create_client(ChangeState, "/spiking_policy/change_state")
        state_client = h.probe.create_client(GetState, "/spiking_policy/get_state")
        assert h.spin_until(lambda: change_client.service_is_ready() and state_client.service_is_ready(), 30.0)

        def change(transition_id: int) -> bool:
            future = change_client.call_async(ChangeState.Request(transition=Transition(id=transition_id)))
            assert h.spin_until(future.done, 30.0)
            return future.result().success

        def state() -> str:
            future = state_client.call_async(GetState.Request())
            assert h.spin_until(future.done, 10.0)
            return future.result().current_state.label

        assert state() == "unconfigured"
        assert change(Transition.TRANSITION_CONFIGURE) and state() == "inactive"
        assert h.spin_until(lambda: h.odom.get_subscription_count() > 0, 10.0)
        assert h.tick(0.0, task_start=True) is None  # inactive: no command
        assert change(Transition.TRANSITION_ACTIVATE) and state() == "active"
        assert h.tick(0.2, task_start=True) is not None
        n = len(h.cmds)
        assert change(Transition.TRANSITION_DEACTIVATE) and state() == "inactive"
        assert h.spin_until(lambda: len(h.cmds) > n, 5.0) and is_stop(h.cmds[-1][1])
        assert h.tick(0.4) is None
    finally:
        h.close()
