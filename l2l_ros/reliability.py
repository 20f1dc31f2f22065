"""`l2l bench reliability`: the nodes under bad input, as real processes over DDS on loopback.

Each check starts the node under test with ``l2l_ros.runner`` (as ``l2l run`` does) and
plays its peers from a probe node in this process:

* **fuzz**: malformed messages on every input topic of spiking_policy (both modes) and
  of both simulators (non-finite and huge values, ragged arrays, absurd stamps, junk
  checkpoint paths), mixed with valid ones. Counted: crashes, non-finite or
  out-of-limit commands; then a valid task start and valid ticks, whose commands must
  be exactly those of an offline PolicyRuntime fed the same inputs (the policy) or
  move the robot as commanded (the simulators).
* **checkpoints**: malformed checkpoint files offered on l2l/checkpoint while ticks
  flow: all refused with a log line, and no tick waits longer than one control period
  (timed from the first offer; the first ticks of the new graph are timed apart).
* **stale sensors**: ticks stop (lockstep: after a command; free-running: on a 5 Hz
  clock); the time until the policy commands a stop must be at most 2 control periods.
* **trainer kills**: see ``l2l_ros.meta.kill_test`` (SIGKILL at random moments).

Traffic stays on loopback (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``, set by the
runner's environment), bounded in count and time.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

#: The I-maze control period (s): 5 Hz.
CONTROL_PERIOD = 0.2
#: Ticks sent before the first malformed checkpoint is offered (timed apart).
WARMUP_TICKS = 5


@dataclass(frozen=True)
class Scale:
    messages_per_topic: int
    checkpoint_files: int
    stale_trials: int
    trainer_kills: int


SCALES = {"small": Scale(200, 30, 2, 3), "full": Scale(10_000, 30, 10, 20)}


# ----------------------------------------------------------------------------- junk values
JUNK_FLOATS = (math.nan, math.inf, -math.inf, 1e300, -1e300, 3.5e38, -3.5e38, 1e30, 0.0, -0.0, -1.0,
               5e-324, 1e9)


class Junk:
    """Random malformed field values (seeded)."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def float(self) -> float:
        if self.rng.random() < 0.7:
            return float(JUNK_FLOATS[self.rng.integers(len(JUNK_FLOATS))])
        return float(self.rng.normal(0, 10.0 ** self.rng.integers(0, 40)))

    def maybe(self, valid: float) -> float:
        return self.float() if self.rng.random() < 0.5 else valid

    def floats(self, valid_len: int) -> list[float]:
        n = int(self.rng.choice([0, 1, valid_len - 1, valid_len, valid_len + 1, 2 * valid_len, 5000]))
        n = max(0, n)
        return [self.maybe(1.0) for _ in range(min(n, 64))] + [self.float()] * max(0, n - 64)

    def stamp(self, valid: float):
        from builtin_interfaces.msg import Time

        kind = self.rng.integers(6)
        if kind == 0:
            return Time(sec=-int(self.rng.integers(1, 2**31 - 1)), nanosec=0)
        if kind == 1:
            return Time(sec=2**31 - 1, nanosec=999_999_999)
        if kind == 2:
            return Time(sec=int(self.rng.integers(0, 2**31 - 1)), nanosec=int(self.rng.integers(0, 10**9)))
        sec, nsec = divmod(int(round(valid * 1e9)), 10**9)
        return Time(sec=sec, nanosec=nsec)

    def text(self) -> str:
        options = ["", "/", "/dev/zero", "/proc/self/mem", "x" * 5000, "\x00bad", "../../etc/passwd",
                   "/nonexistent/policy.json", "policy.json\n", "\u00ff\u1234", "models", "/tmp"]
        return options[int(self.rng.integers(len(options)))]


# ----------------------------------------------------------------------------- the probe
class Probe:
    """A probe node in this process, spun by hand; rclpy is initialised by the caller."""

    def __init__(self, name: str):
        import rclpy

        self.rclpy = rclpy
        self.node = rclpy.create_node(name)
        self.publish_retries = 0

    def spin_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.rclpy.spin_once(self.node, timeout_sec=0.005)
            if predicate():
                return True
        return bool(predicate())

    def publish(self, publisher, msg, attempts: int = 50) -> None:
        """``publisher.publish(msg)``, waiting for DDS back-pressure to clear. A reliable
        Fast DDS writer that outruns its reader refuses a sample ("cannot publish data")
        once its history is full of unacknowledged ones (ros2/rmw#209), which a fuzzer
        flooding a node on a busy machine meets. Each refusal spins the probe 20 ms
        (``publish_retries`` counts them); after ``attempts`` the error is raised."""
        from rclpy._rclpy_pybind11 import RCLError

        for attempt in range(attempts):
            try:
                publisher.publish(msg)
                return
            except RCLError:
                if attempt == attempts - 1:
                    raise
                self.publish_retries += 1
                self.spin_until(lambda: False, 0.02)

    def close(self) -> None:
        self.node.destroy_node()


def _start(node: str, log_dir: Path, params: dict[str, Any]):
    """One node of the package as a process (the runner's command line)."""
    import subprocess

    from l2l_ros.graphs import NodeSpec
    from l2l_ros.runner import node_command, ros_environment

    log_dir.mkdir(parents=True, exist_ok=True)
    log = (log_dir / f"{node}.log").open("w")  # noqa: SIM115 - the child writes it
    return subprocess.Popen(node_command(NodeSpec(node, node, params)), env=ros_environment(),
                            stdout=log, stderr=subprocess.STDOUT)


def _stop(proc) -> int | None:
    """SIGINT, then SIGKILL after 20 s; the exit code, or None if it had to be killed."""
    import signal
    import subprocess

    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


# ----------------------------------------------------------------------------- policy fuzz
def _odom(stamp, x=0.5, y=0.0, yaw=0.0, v=0.0, w=0.0):
    from nav_msgs.msg import Odometry

    from l2l_ros.nodes.common import yaw_to_quaternion

    m = Odometry()
    m.header.stamp = stamp
    m.pose.pose.position.x, m.pose.pose.position.y = float(x), float(y)
    o = m.pose.pose.orientation
    o.x, o.y, o.z, o.w = yaw_to_quaternion(yaw)
    m.twist.twist.linear.x, m.twist.twist.angular.z = float(v), float(w)
    return m


def _scan(stamp, ranges):
    from sensor_msgs.msg import LaserScan

    from l2l_ros.tasks.encoding import SCAN_RANGE_MAX, SCAN_RANGE_MIN

    m = LaserScan()
    m.header.stamp = stamp
    m.range_min, m.range_max = SCAN_RANGE_MIN, SCAN_RANGE_MAX
    m.ranges = [float(r) for r in ranges]
    return m


def _joints(stamp, q, qd):
    from sensor_msgs.msg import JointState

    from l2l_ros.tasks.encoding import ARM_JOINTS

    m = JointState()
    m.header.stamp = stamp
    m.name = list(ARM_JOINTS)
    m.position, m.velocity = [float(v) for v in q], [float(v) for v in qd]
    return m


def _target(stamp, p):
    from geometry_msgs.msg import PointStamped

    m = PointStamped()
    m.header.stamp = stamp
    m.point.x, m.point.y, m.point.z = (float(v) for v in p)
    return m


class PolicyPlayer:
    """Plays the simulator for a spiking_policy process: ticks out, commands in."""

    def __init__(self, probe: Probe, mode: str):
        from geometry_msgs.msg import Twist
        from std_msgs.msg import Float32, Float64MultiArray, Header, String

        from l2l_ros.nodes.common import LATCHED_QOS, STREAM_QOS

        n = probe.node
        self.probe, self.mode = probe, mode
        self.commands: list[tuple[float, Any]] = []
        record = lambda m: self.commands.append((time.monotonic(), m))  # noqa: E731
        if mode == "imaze":
            self.streams = {"odom": n.create_publisher(type(_odom(None)), "odom", STREAM_QOS),
                            "scan": n.create_publisher(type(_scan(None, [])), "scan", STREAM_QOS)}
            n.create_subscription(Twist, "cmd_vel", record, STREAM_QOS)
        else:
            self.streams = {"joint_states": n.create_publisher(type(_joints(None, [], [])), "joint_states",
                                                               STREAM_QOS),
                            "target": n.create_publisher(type(_target(None, [0, 0, 0])), "target", STREAM_QOS)}
            n.create_subscription(Float64MultiArray, "arm_controller/commands", record, STREAM_QOS)
        self.reward = n.create_publisher(Float32, "l2l/reward", STREAM_QOS)
        self.task_start = n.create_publisher(Header, "l2l/task_start", STREAM_QOS)
        self.trial_start = n.create_publisher(Header, "l2l/trial_start", STREAM_QOS)
        self.checkpoint = n.create_publisher(String, "l2l/checkpoint", LATCHED_QOS)
        self.t = 0.0

    def connected(self, timeout: float = 120.0) -> bool:
        pubs = [*self.streams.values(), self.reward, self.task_start, self.trial_start]
        return self.probe.spin_until(lambda: all(p.get_subscription_count() > 0 for p in pubs), timeout)

    def valid_messages(self, rng: np.random.Generator, stamp) -> list:
        if self.mode == "imaze":
            from l2l_ros.tasks.encoding import SCAN_BEAMS

            return [_odom(stamp, *rng.uniform([-1, -1, -3, -0.2, -2], [1, 1, 3, 0.2, 2])),
                    _scan(stamp, rng.uniform(0.15, 3.5, SCAN_BEAMS))]
        return [_joints(stamp, rng.uniform(-2, 2, 3), rng.uniform(-1.5, 1.5, 3)),
                _target(stamp, rng.uniform(-0.4, 0.4, 3))]

    def next_stamp(self):
        from l2l_ros.nodes.common import to_stamp

        self.t += CONTROL_PERIOD
        return to_stamp(self.t)

    def tick(self, msgs: list, wait: float = 2.0) -> Any | None:
        """Publish a tick; the command answering it (None if none came within ``wait``)."""
        n = len(self.commands)
        for pub, msg in zip(self.streams.values(), msgs):
            self.probe.publish(pub, msg)
        if wait and self.probe.spin_until(lambda: len(self.commands) > n, wait):
            return self.commands[n][1]
        return None


def command_ok(mode: str, msg) -> bool:
    """Finite and within the robot's limits."""
    from l2l_ros.tasks.encoding import ARM_JOINTS, ARM_MAX_JOINT_VELOCITY, DRIVE_LIMITS

    if mode == "imaze":
        v, w = msg.linear.x, msg.angular.z
        return (math.isfinite(v) and math.isfinite(w) and abs(v) <= DRIVE_LIMITS.max_linear
                and abs(w) <= DRIVE_LIMITS.max_angular and msg.linear.y == msg.linear.z == 0.0)
    return (len(msg.data) == len(ARM_JOINTS)
            and all(math.isfinite(v) and abs(v) <= ARM_MAX_JOINT_VELOCITY for v in msg.data))


def _malformed(junk: Junk, player: PolicyPlayer, topic: str, stamp):
    """One malformed message for ``topic`` (a sensor one keeps the tick's stamp half the time)."""
    from std_msgs.msg import Float32, Header, String

    s = junk.stamp(player.t) if junk.rng.random() < 0.5 else stamp
    if topic == "odom":
        m = _odom(s, junk.maybe(0.5), junk.maybe(0.0), 0.0, junk.maybe(0.1), junk.maybe(0.0))
        q = m.pose.pose.orientation
        q.x, q.y, q.z, q.w = (junk.maybe(v) for v in (q.x, q.y, q.z, q.w))
        return m
    if topic == "scan":
        from l2l_ros.tasks.encoding import SCAN_BEAMS

        m = _scan(s, junk.floats(SCAN_BEAMS))
        m.range_max, m.range_min = junk.maybe(m.range_max), junk.maybe(m.range_min)
        m.angle_increment = junk.maybe(m.angle_increment)
        return m
    if topic == "joint_states":
        m = _joints(s, junk.floats(3), junk.floats(3))
        if junk.rng.random() < 0.3:
            m.name = ["shoulder_pan", "", "elbow"][: int(junk.rng.integers(0, 4))]
        return m
    if topic == "target":
        return _target(s, [junk.maybe(0.2), junk.maybe(0.0), junk.maybe(0.3)])
    if topic == "l2l/reward":
        return Float32(data=float(np.float32(np.clip(junk.float(), -3.4e38, 3.4e38))) if junk.rng.random() < 0.5
                       else junk.float())
    if topic in ("l2l/task_start", "l2l/trial_start"):
        return Header(stamp=s, frame_id=junk.text())
    return String(data=junk.text())


def fuzz_policy(mode: str, messages_per_topic: int, seed: int, log_dir: Path) -> dict:
    """Malformed messages on every input topic of spiking_policy, then a recovery check."""
    import rclpy

    proc = _start("spiking_policy", log_dir, {"mode": mode, "seed": seed})
    rclpy.init()
    probe = Probe(f"fuzz_policy_{mode}")
    player = PolicyPlayer(probe, mode)
    junk = Junk(seed)
    rng = np.random.default_rng(seed + 1)
    topics = [*player.streams, "l2l/reward", "l2l/task_start", "l2l/trial_start", "l2l/checkpoint"]
    publishers = {**player.streams, "l2l/reward": player.reward, "l2l/task_start": player.task_start,
                  "l2l/trial_start": player.trial_start, "l2l/checkpoint": player.checkpoint}
    sent = {t: 0 for t in topics}
    result: dict[str, Any] = {"mode": mode, "messages_per_topic": messages_per_topic}
    try:
        if not player.connected():
            raise RuntimeError(f"spiking_policy ({mode}) never subscribed; see {log_dir}")
        start = time.monotonic()
        for i in range(messages_per_topic):
            stamp = player.next_stamp()
            valid = dict(zip(player.streams, player.valid_messages(rng, stamp)))
            for topic in topics:
                probe.publish(publishers[topic], _malformed(junk, player, topic, stamp))
                sent[topic] += 1
                if topic in valid and junk.rng.random() < 0.5:  # complete the tick: reach the network
                    other = next(s for s in player.streams if s != topic)
                    probe.publish(publishers[other], valid[other])
            if i % 20 == 0:
                probe.spin_until(lambda: False, 0.01)
                if proc.poll() is not None:
                    break
        probe.spin_until(lambda: False, 1.0)
        result["fuzz_seconds"] = round(time.monotonic() - start, 2)
        result["sent"] = sent
        result["publish_retries"] = probe.publish_retries  # DDS back-pressure waits (Probe.publish)
        result["commands_during_fuzz"] = len(player.commands)
        result["bad_commands"] = sum(not command_ok(mode, m) for _, m in player.commands)
        result["crashed"] = proc.poll() is not None
        # Recovery: reward 0, a task start, then valid ticks; the commands must be the offline ones.
        from std_msgs.msg import Float32, Header

        probe.publish(player.reward, Float32(data=0.0))
        probe.spin_until(lambda: False, 0.3)
        stamp = player.next_stamp()
        probe.publish(player.task_start, Header(stamp=stamp, frame_id="recovery"))
        probe.spin_until(lambda: False, 0.3)
        runtime = _node_default_runtime(mode, seed)
        runtime.reset()
        matches, answered = 0, 0
        recovery_ticks = 30
        for k in range(recovery_ticks):
            msgs = player.valid_messages(rng, stamp if k == 0 else player.next_stamp())
            got = player.tick(msgs)
            expected = _offline_command(runtime, mode, msgs, trial_start=(k == 0))
            if got is not None:
                answered += 1
                matches += _same_command(mode, got, expected)
        result["recovery_ticks"] = recovery_ticks
        result["recovery_answered"] = answered
        result["recovery_matches_offline"] = matches
        result["recovered"] = matches == recovery_ticks
        result["crashed"] = result["crashed"] or proc.poll() is not None
    finally:
        probe.close()
        rclpy.try_shutdown()
        result["exit_code"] = _stop(proc)
    return result


def _default() -> str:
    from l2l_ros.graphs import default_model_path

    return default_model_path()


def _node_default_runtime(mode: str, seed: int):
    """The network spiking_policy runs in ``mode`` without a checkpoint: the bundled model,
    or the seeded untrained network where the install has none."""
    import torch

    from l2l_ros.graphs import bundled_model
    from l2l_ros.policy_runtime import load_runtime, untrained_runtime

    bundled = bundled_model(mode)
    if bundled:
        return load_runtime(bundled, mode)
    torch.manual_seed(seed)
    return untrained_runtime(mode)


def _offline_command(runtime, mode: str, msgs: list, trial_start: bool):
    """The command the node should send for ``msgs`` (same encoder, same runtime step)."""
    from l2l_ros.nodes.common import quaternion_to_yaw
    from l2l_ros.tasks.encoding import (clamp_twist, encode_imaze, encode_manipulator, imaze_action_to_twist,
                                        manipulator_action_to_command)

    if mode == "imaze":
        odom, scan = msgs
        p, q, t = odom.pose.pose.position, odom.pose.pose.orientation, odom.twist.twist
        obs = encode_imaze(p.x, p.y, quaternion_to_yaw(q.x, q.y, q.z, q.w), t.linear.x, t.angular.z,
                           np.asarray(scan.ranges), scan.range_max)
        return clamp_twist(*imaze_action_to_twist(int(runtime.step(obs, 0.0, trial_start, True))))
    joints, target = msgs
    obs = encode_manipulator(joints.position, joints.velocity, [target.point.x, target.point.y, target.point.z])
    return manipulator_action_to_command(np.asarray(runtime.step(obs, 0.0, trial_start, True)))


def _same_command(mode: str, got, expected) -> bool:
    if mode == "imaze":
        return (got.linear.x, got.angular.z) == tuple(float(v) for v in expected)
    return bool(np.allclose(np.asarray(got.data), expected, atol=1e-6))


# ----------------------------------------------------------------------------- simulator fuzz
def fuzz_sim(sim: str, messages: int, seed: int, log_dir: Path) -> dict:
    """Malformed commands on a simulator's command topic; its sensors must stay finite and
    in range, and valid commands must move the robot afterwards."""
    import rclpy
    from geometry_msgs.msg import Twist
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    from l2l_ros.nodes.common import STREAM_QOS
    from l2l_ros.tasks.encoding import ARM_MAX_JOINT_VELOCITY

    proc = _start(sim, log_dir, {"seed": seed, "peer_timeout": 0.0})
    rclpy.init()
    probe = Probe(f"fuzz_{sim}")
    junk = Junk(seed)
    sensors: list = []
    result: dict[str, Any] = {"sim": sim, "messages": messages}
    if sim == "imaze_sim":
        pub = probe.node.create_publisher(Twist, "cmd_vel", STREAM_QOS)
        probe.node.create_subscription(Odometry, "odom", sensors.append, STREAM_QOS)

        def bad():
            m = Twist()
            m.linear.x, m.angular.z = junk.maybe(0.1), junk.maybe(0.5)
            m.linear.y, m.angular.x = junk.maybe(0.0), junk.maybe(0.0)
            return m

        def good():  # turn while creeping (an I-maze action): moves the pose even at a wall
            m = Twist()
            m.linear.x, m.angular.z = 0.05, 1.5
            return m

        def sane(m) -> bool:
            p, t = m.pose.pose.position, m.twist.twist
            values = (p.x, p.y, t.linear.x, t.angular.z)
            return all(math.isfinite(v) for v in values) and abs(t.linear.x) < 1.0 and abs(t.angular.z) < 10.0

        def position(m):
            q = m.pose.pose.orientation
            return np.array([m.pose.pose.position.x, m.pose.pose.position.y, q.z, q.w])
    else:
        pub = probe.node.create_publisher(Float64MultiArray, "arm_controller/commands", STREAM_QOS)
        probe.node.create_subscription(JointState, "joint_states", sensors.append, STREAM_QOS)

        def bad():
            return Float64MultiArray(data=junk.floats(3))

        def good():
            return Float64MultiArray(data=[0.5, -0.5, 0.5])

        def sane(m) -> bool:
            return (all(math.isfinite(v) for v in (*m.position, *m.velocity))
                    and all(abs(v) <= ARM_MAX_JOINT_VELOCITY * 1.5 for v in m.velocity))

        def position(m):
            return np.asarray(m.position)
    try:
        if not probe.spin_until(lambda: pub.get_subscription_count() > 0 and sensors, 120.0):
            raise RuntimeError(f"{sim} never connected; see {log_dir}")
        start = time.monotonic()
        for i in range(messages):
            probe.publish(pub, bad())
            if i % 20 == 0:
                probe.spin_until(lambda: False, 0.005)
                if proc.poll() is not None:
                    break
        probe.spin_until(lambda: False, 1.0)
        result["fuzz_seconds"] = round(time.monotonic() - start, 2)
        result["sensor_messages"] = len(sensors)
        result["publish_retries"] = probe.publish_retries
        result["insane_sensor_messages"] = sum(not sane(m) for m in sensors)
        before = position(sensors[-1])
        n = len(sensors)
        for _ in range(20):  # lockstep: each valid command is one step
            k = len(sensors)
            probe.publish(pub, good())
            probe.spin_until(lambda: len(sensors) > k, 2.0)
        moved = float(np.linalg.norm(position(sensors[-1]) - before)) if len(sensors) > n else 0.0
        result["moved_after_fuzz"] = round(moved, 4)
        result["recovered"] = moved > 0.01 and all(sane(m) for m in sensors[n:])
        result["crashed"] = proc.poll() is not None
    finally:
        probe.close()
        rclpy.try_shutdown()
        result["exit_code"] = _stop(proc)
    return result


# ----------------------------------------------------------------------------- checkpoints
def malformed_checkpoints(folder: Path, count: int) -> list[str]:
    """``count`` bad checkpoint paths: corrupt JSON fields, corrupt weights, mismatched
    pairs, oversized files, special files."""
    from l2l_ros.meta.checkpoint import checkpoint_paths

    good_json = Path(_default())
    good_weights = checkpoint_paths(good_json)[0]
    doc = json.loads(good_json.read_text())
    weights = good_weights.read_bytes()
    variants: list[tuple[str, str | None, bytes | None]] = [
        ("obs_dim_inf", json.dumps({**doc, "obs_dim": 1}).replace('"obs_dim": 1', '"obs_dim": Infinity'), weights),
        ("obs_dim_neg", json.dumps({**doc, "obs_dim": -1}), weights),
        ("obs_dim_float", json.dumps({**doc, "obs_dim": 18.5}), weights),
        ("obs_dim_str", json.dumps({**doc, "obs_dim": "18"}), weights),
        ("obs_dim_huge", json.dumps({**doc, "obs_dim": 10**30}), weights),
        ("n_lif_neg", json.dumps({**doc, "policy_config": {**doc["policy_config"], "n_lif": -1}}), weights),
        ("n_alif_huge", json.dumps({**doc, "policy_config": {**doc["policy_config"], "n_alif": 10**9}}), weights),
        ("ticks_20000", json.dumps({**doc, "policy_config": {**doc["policy_config"], "ticks_per_step": 20000}}),
         weights),
        ("tau_nan", json.dumps({**doc, "policy_config": {**doc["policy_config"], "tau_m": 1}}).replace(
            '"tau_m": 1', '"tau_m": NaN'), weights),
        ("beta_str", json.dumps({**doc, "policy_config": {**doc["policy_config"], "beta": "x"}}), weights),
        ("config_list", json.dumps({**doc, "policy_config": [1, 2]}), weights),
        ("kind_unknown", json.dumps({**doc, "policy_kind": "transformer"}), weights),
        ("space_discrete_0", json.dumps({**doc, "action_space": {"type": "discrete", "n": 0}}), weights),
        ("space_box", json.dumps({**doc, "action_space": {"type": "box", "shape": [10**9]}}), weights),
        ("format_99", json.dumps({**doc, "format_version": 99}), weights),
        ("not_object", "[1, 2, 3]", weights),
        ("nested", "[" * 100_000 + "]" * 100_000, weights),
        ("not_json", "{not json", weights),
        ("not_utf8", None, weights),
        ("big_int", '{"obs_dim": ' + "9" * 100_000 + "}", weights),
        ("json_2mib", json.dumps({**doc, "padding": "x" * (2 << 20)}), weights),
        ("weights_truncated", json.dumps(doc), weights[: len(weights) // 2]),
        ("weights_random", json.dumps(doc), os.urandom(len(weights))),
        ("weights_empty", json.dumps(doc), b""),
        ("weights_missing", json.dumps(doc), None),
        ("weights_flipped", json.dumps(doc), weights[:-9] + bytes([weights[-9] ^ 1]) + weights[-8:]),
        ("weights_header_huge", json.dumps(doc), (2**62).to_bytes(8, "little") + weights[8:]),
    ]
    paths: list[str] = []
    for name, text, blob in variants:
        d = folder / name
        d.mkdir(parents=True, exist_ok=True)
        if name == "not_utf8":
            (d / "policy.json").write_bytes(b"\xff\xfe{" + os.urandom(64))
        elif text is not None:
            (d / "policy.json").write_text(text)
        if blob is not None:
            (d / "policy.safetensors").write_bytes(blob)
        paths.append(str(d / "policy.json"))
    big = folder / "weights_1gib"
    big.mkdir(exist_ok=True)
    (big / "policy.json").write_text(json.dumps(doc))
    with open(big / "policy.safetensors", "wb") as f:  # sparse: no disk, no time
        f.truncate(1 << 30)
    paths.append(str(big / "policy.json"))
    fifo = folder / "fifo.json"
    if not fifo.exists():
        os.mkfifo(fifo)
    paths += [str(fifo), "/dev/zero", str(folder), "", "x" * 5000]
    return paths[:count] if count <= len(paths) else paths


def hot_swap(count: int, seed: int, log_dir: Path) -> dict:
    """Malformed checkpoints on l2l/checkpoint while ticks flow as fast as answered."""
    import rclpy
    from std_msgs.msg import String

    proc = _start("spiking_policy", log_dir, {"mode": "imaze", "seed": seed})
    rclpy.init()
    probe = Probe("hot_swap")
    player = PolicyPlayer(probe, "imaze")
    rng = np.random.default_rng(seed)
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="l2l_bad_ckpt_") as tmp:
        paths = malformed_checkpoints(Path(tmp), count)
        try:
            if not player.connected():
                raise RuntimeError(f"spiking_policy never subscribed; see {log_dir}")
            # The first ticks through a new graph are slow (DDS matching, first callbacks:
            # ~0.15 s for the first, measured); they are timed apart, before any file is offered.
            warmup = []
            for _ in range(WARMUP_TICKS):
                sent = time.monotonic()
                if player.tick(player.valid_messages(rng, player.next_stamp()), wait=5.0) is not None:
                    warmup.append(player.commands[-1][0] - sent)
            waits, offered_before, unanswered = [], [], 0
            next_offer = time.monotonic()
            offered = 0
            deadline = time.monotonic() + 60 + 2 * len(paths)
            log = log_dir / "spiking_policy.log"
            while time.monotonic() < deadline:
                if offered < len(paths) and time.monotonic() >= next_offer:
                    probe.publish(player.checkpoint, String(data=paths[offered]))
                    offered += 1
                    next_offer = time.monotonic() + CONTROL_PERIOD
                sent = time.monotonic()
                got = player.tick(player.valid_messages(rng, player.next_stamp()), wait=5.0)
                if got is None:
                    unanswered += 1
                else:
                    waits.append(player.commands[-1][0] - sent)
                    offered_before.append(offered)
                if offered == len(paths) and log.read_text().count("refused, keeping current weights") >= offered:
                    break
            text = log.read_text()
            slow = int(np.argmax(waits)) if waits else None
            slowest = {} if slow is None else {
                "wait_s": round(waits[slow], 4), "tick": slow + 1,
                "last_offered": Path(paths[offered_before[slow] - 1]).parent.name if offered_before[slow] else None}
            result.update(
                files=len(paths), refused=text.count("refused, keeping current weights"),
                loaded=text.count("loaded; active"), ticks=len(waits), unanswered_ticks=unanswered,
                max_tick_wait_s=round(max(waits), 4) if waits else None,
                p99_tick_wait_s=round(float(np.percentile(waits, 99)), 4) if waits else None,
                slowest_tick=slowest, warmup_ticks=len(warmup),
                first_tick_wait_s=round(warmup[0], 4) if warmup else None,
                control_period_s=CONTROL_PERIOD, crashed=proc.poll() is not None,
                publish_retries=probe.publish_retries)
            result["passed"] = (result["refused"] == len(paths) and not result["loaded"] and not unanswered
                                and result["max_tick_wait_s"] is not None
                                and result["max_tick_wait_s"] <= CONTROL_PERIOD and not result["crashed"])
        finally:
            probe.close()
            rclpy.try_shutdown()
            result["exit_code"] = _stop(proc)
    return result


# ----------------------------------------------------------------------------- stale sensors
def stale_sensors(trials: int, seed: int, log_dir: Path) -> dict:
    """Ticks stop; the policy must command a stop within 2 control periods. Lockstep: each
    tick follows the previous command; free-running: ticks on a 5 Hz clock."""
    import rclpy

    proc = _start("spiking_policy", log_dir, {"mode": "imaze", "seed": seed})
    rclpy.init()
    probe = Probe("stale_sensors")
    player = PolicyPlayer(probe, "imaze")
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    try:
        if not player.connected():
            raise RuntimeError(f"spiking_policy never subscribed; see {log_dir}")
        for mode in ("lockstep", "free_running"):
            delays = []
            for _ in range(trials):
                for _ in range(10):
                    t0 = time.monotonic()
                    player.tick(player.valid_messages(rng, player.next_stamp()), wait=1.0)
                    if mode == "free_running":
                        probe.spin_until(lambda: False, max(0.0, CONTROL_PERIOD - (time.monotonic() - t0)))
                last = player.commands[-1][0]
                stopped = probe.spin_until(
                    lambda: player.commands[-1][0] > last and player.commands[-1][1].linear.x == 0.0
                    and player.commands[-1][1].angular.z == 0.0, 5.0)
                delays.append(player.commands[-1][0] - last if stopped else math.inf)
            out[mode] = {"trials": trials, "max_stop_delay_s": round(max(delays), 4),
                         "mean_stop_delay_s": round(float(np.mean(delays)), 4)}
        out["limit_s"] = 2 * CONTROL_PERIOD
        out["passed"] = all(out[m]["max_stop_delay_s"] <= out["limit_s"] for m in ("lockstep", "free_running"))
    finally:
        probe.close()
        rclpy.try_shutdown()
        out["exit_code"] = _stop(proc)
    return out


# ----------------------------------------------------------------------------- all of it
def run_reliability(scale: str, out_dir: Path, seed: int = 0, log_dir: Path | None = None,
                    trainer_kills: Callable[[int, int, Path], dict] | None = None) -> dict:
    """Every check at ``scale``; writes ``out_dir/reliability_<scale>.json``."""
    from l2l_ros.meta.checkpoint import git_commit

    s = SCALES[scale]
    logs = Path(log_dir or tempfile.mkdtemp(prefix="l2l_reliability_"))
    t0 = time.monotonic()
    report: dict[str, Any] = {"scale": scale, "scale_settings": asdict(s), "seed": seed, "commit": git_commit(),
                              "cpu_count": os.cpu_count()}
    report["fuzz"] = [fuzz_policy("imaze", s.messages_per_topic, seed, logs / "policy_imaze"),
                      fuzz_policy("manipulator", s.messages_per_topic, seed, logs / "policy_manipulator"),
                      fuzz_sim("imaze_sim", s.messages_per_topic, seed, logs / "imaze_sim"),
                      fuzz_sim("manipulator_sim", s.messages_per_topic, seed, logs / "manipulator_sim")]
    report["checkpoints"] = hot_swap(s.checkpoint_files, seed, logs / "hot_swap")
    report["stale_sensors"] = stale_sensors(s.stale_trials, seed, logs / "stale")
    if trainer_kills is not None:
        report["trainer_kills"] = trainer_kills(s.trainer_kills, seed, logs / "trainer")
    report["wall_seconds"] = round(time.monotonic() - t0, 1)
    report["passed"] = (all(not f["crashed"] and f["recovered"] and not f.get("bad_commands", 0)
                            and not f.get("insane_sensor_messages", 0) for f in report["fuzz"])
                        and report["checkpoints"]["passed"] and report["stale_sensors"]["passed"]
                        and report.get("trainer_kills", {"passed": True})["passed"])
    report["logs"] = str(logs)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"reliability_{scale}.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
