"""Integration: the node graphs as real rclpy processes talking over DDS, with MuJoCo physics."""
from __future__ import annotations

import json
import math
import subprocess
import time
from pathlib import Path

import pytest

import rclpy  # noqa: E402
from geometry_msgs.msg import Twist  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Float64MultiArray, String  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

from l2l_ros.nodes.common import LATCHED_QOS, STREAM_QOS  # noqa: E402
from l2l_ros.runner import node_command, ros_environment, start_graph  # noqa: E402
from l2l_ros.graphs import NodeSpec  # noqa: E402


@pytest.fixture()
def probe():
    """A plain rclpy node of the test, spun by hand."""
    rclpy.init()
    node = rclpy.create_node("l2l_test_probe")
    yield node
    node.destroy_node()
    rclpy.try_shutdown()


def spin_until(node, predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
        if predicate():
            return True
    return predicate()


def test_navigation_graph_drives_the_robot(probe, tmp_path):
    cmds: list[Twist] = []
    odoms: list[Odometry] = []
    probe.create_subscription(Twist, "/cmd_vel", cmds.append, STREAM_QOS)
    probe.create_subscription(Odometry, "/odom", odoms.append, STREAM_QOS)
    markers: list[MarkerArray] = []
    probe.create_subscription(MarkerArray, "/markers", markers.append, LATCHED_QOS)
    results = tmp_path / "trials.jsonl"
    # Eight tasks (2512 lockstep steps, about 6 s here): the run must outlast the
    # probe's discovery of the graph's publishers. One task ended first on a loaded
    # machine, and three once in a full test run (the simulator exited after 2.7 s).
    tasks = 8
    graph = start_graph("navigation", {"tasks": str(tasks), "results_file": str(results)}, tmp_path / "logs")
    try:
        assert spin_until(probe, lambda: graph.check_alive() and len(cmds) >= 100 and len(odoms) >= 100, 120.0), \
            f"only {len(cmds)} /cmd_vel and {len(odoms)} /odom messages; logs in {tmp_path / 'logs'}"
        # A corrupt checkpoint offered on /l2l/checkpoint is refused; the policy keeps driving.
        bad = tmp_path / "bad.json"
        bad.write_text("{not json")
        pub = probe.create_publisher(String, "/l2l/checkpoint", LATCHED_QOS)
        pub.publish(String(data=str(bad)))
        n = len(cmds)
        assert spin_until(probe, lambda: graph.check_alive() and len(cmds) >= n + 50, 60.0), "policy stopped after a bad checkpoint"
        assert graph.wait_for("imaze_sim", 300.0) == 0
    finally:
        graph.stop()
    policy_log = (tmp_path / "logs" / "spiking_policy.log").read_text()
    assert "refused, keeping current weights" in policy_log
    for c in cmds:
        assert math.isfinite(c.linear.x) and math.isfinite(c.angular.z)
        assert abs(c.linear.x) <= 0.22 + 1e-9 and abs(c.angular.z) <= 2.0 + 1e-9
    xs = [(o.pose.pose.position.x, o.pose.pose.position.y) for o in odoms]
    travelled = sum(math.dist(a, b) for a, b in zip(xs, xs[1:]))
    assert travelled > 0.2, f"robot moved only {travelled:.3f} m in MuJoCo"
    assert odoms[0].header.frame_id == "odom" and odoms[0].child_frame_id == "base_link"
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert records and {r["task"] for r in records} == set(range(tasks))
    assert sum(r["steps"] for r in records) >= 100
    # Lockstep + the shared encoder: the run through DDS is the offline evaluation, step for step.
    from l2l_ros.evaluation import run_imaze_tasks
    from l2l_ros.graphs import default_model_path
    from l2l_ros.policy_runtime import load_runtime

    offline = run_imaze_tasks(load_runtime(default_model_path(), "imaze"), tasks, seed=0, keep_paths=True)
    assert [(r["trial"], r["steps"], r["success"], r["goal"]) for r in records] == \
        [(r["trial"], r["steps"], r["success"], r["goal"]) for r in offline]
    for ros_rec, off_rec in zip(records, offline):
        assert math.dist(ros_rec["path"][-1], off_rec["path"][-1]) < 1e-3
    # RViz's view of the world: the walls MuJoCo collides with, four alcoves, and the goal
    # once a trial has found it (a green tile inside a goal alcove of the run).
    from l2l_ros.tasks.imaze import IMazeGeometry

    geometry = IMazeGeometry()
    assert markers, "no MarkerArray on /markers"
    goals_shown = []
    for array in markers:
        assert array.markers[0].action == Marker.DELETEALL
        by_ns = {}
        for m in array.markers[1:]:
            by_ns.setdefault(m.ns, []).append(m)
            assert m.header.frame_id == "odom"
        assert len(by_ns["walls"]) == len(geometry.wall_boxes()) and len(by_ns["alcoves"]) == 4
        goals_shown += by_ns.get("goal", [])
    regions = [geometry.goal_region(r["goal"]) for r in records]
    assert goals_shown, "the goal was reached and never shown"
    for m in goals_shown:
        p = m.pose.position
        assert any(x0 < p.x < x1 and y0 < p.y < y1 for x0, x1, y0, y1 in regions)


def test_lockstep_sim_drops_a_command_sent_before_its_tick(probe):
    """A stale answer (e.g. a policy's sensor-timeout stop sent while the simulator
    stalled) must not be taken for the current tick, or every later command lags one tick."""
    from l2l_ros.nodes.imaze_sim import IMazeSimNode

    sim = IMazeSimNode()  # lockstep by default: it has published tick 0
    try:
        pub = probe.create_publisher(Twist, "/cmd_vel", STREAM_QOS)
        assert spin_until(probe, lambda: pub.get_subscription_count() > 0, 20.0), "sim never subscribed"
        steps = lambda: round(sim.sim_time / sim.control_period)  # noqa: E731
        cmd = Twist()
        cmd.linear.x = 0.1
        pub.publish(cmd)  # answers tick 0
        pub.publish(cmd)  # sent before tick 1 was published: answers nothing
        # Without the check the second command advances a second step at once. Wait well
        # under cmd_timeout (1 s), after which the sim steps with a zero command by design.
        spin_until(sim, lambda: steps() >= 2, 0.5)
        assert steps() == 1, f"the stale command was taken: {steps()} steps"
        assert sim.stale_commands == 1
        pub.publish(cmd)  # sent after tick 1: its answer
        assert spin_until(sim, lambda: steps() == 2, 20.0)
        assert sim.stale_commands == 1
    finally:
        sim.destroy_node()


def test_manipulator_graph_moves_the_arm(probe, tmp_path):
    cmds: list[Float64MultiArray] = []
    joints: list[JointState] = []
    probe.create_subscription(Float64MultiArray, "/arm_controller/commands", cmds.append, STREAM_QOS)
    probe.create_subscription(JointState, "/joint_states", joints.append, STREAM_QOS)
    markers: list[MarkerArray] = []
    probe.create_subscription(MarkerArray, "/markers", markers.append, LATCHED_QOS)
    graph = start_graph("manipulator", {"tasks": "0"}, tmp_path / "logs")
    try:
        assert spin_until(probe, lambda: graph.check_alive() and len(cmds) >= 60 and len(joints) >= 60, 120.0), \
            f"only {len(cmds)} commands and {len(joints)} joint states; logs in {tmp_path / 'logs'}"
        # A malformed command (wrong length) and a NaN command are refused: the arm holds still.
        pub = probe.create_publisher(Float64MultiArray, "/arm_controller/commands", STREAM_QOS)
        pub.publish(Float64MultiArray(data=[float("nan")] * 3))
        pub.publish(Float64MultiArray(data=[1.0]))
        spin_until(probe, lambda: False, 1.0)
    finally:
        graph.stop()
    for c in cmds[:60]:
        assert len(c.data) == 3 and all(math.isfinite(v) and abs(v) <= 1.5 for v in c.data)
    q0 = joints[0].position
    moved = max(max(abs(a - b) for a, b in zip(j.position, q0)) for j in joints)
    assert moved > 0.01, f"joints moved at most {moved:.4f} rad"
    sim_log = (tmp_path / "logs" / "manipulator_sim.log").read_text()
    assert "non-finite joint command" in sim_log and "has 1 values, expected 3" in sim_log
    assert markers, "no MarkerArray on /markers"
    [target] = [m for m in markers[-1].markers if m.ns == "target"]
    assert target.type == Marker.SPHERE and target.header.frame_id == "base_link"
    assert 0.0 < math.dist((target.pose.position.x, target.pose.position.y, target.pose.position.z), (0, 0, 0)) < 2.0


def test_navigation_graph_on_the_sim2real_family_is_the_offline_evaluation(tmp_path):
    """Issue 31: with randomized mazes, noisy lidar, drifting odometry, friction, mass and
    latency, the lockstep run through DDS is the offline evaluation of the same seed, trial
    by trial (the node publishes the sensor values the env's observation encoded)."""
    import torch

    from l2l_ros.evaluation import run_imaze_tasks
    from l2l_ros.graphs import default_model_path
    from l2l_ros.policy_runtime import load_runtime

    tasks, results = 3, tmp_path / "trials.jsonl"
    graph = start_graph("navigation", {"tasks": str(tasks), "seed": "5", "family": "sim2real",
                                       "results_file": str(results)}, tmp_path / "logs")
    try:
        assert graph.wait(240.0)[1] == 0, f"logs in {tmp_path / 'logs'}"
    finally:
        graph.stop()
    ros = [json.loads(line) for line in results.read_text().splitlines()]
    torch.set_num_threads(1)
    offline = run_imaze_tasks(load_runtime(default_model_path(), "imaze"), tasks, seed=5, keep_paths=True,
                              env_kwargs={"family": "sim2real"})
    key = ("task", "trial", "steps", "success", "goal", "oracle_steps")
    assert [tuple(r[k] for k in key) for r in ros] == [tuple(r[k] for k in key) for r in offline]
    for ros_rec, off_rec in zip(ros, offline):
        assert math.dist(ros_rec["path"][-1], off_rec["path"][-1]) < 1e-3


def test_manipulator_graph_is_the_offline_evaluation_with_a_reality_gap_and_a_hidden_goal(tmp_path):
    """Issue 30: through DDS, lockstep, the arm run is the offline one of the same seed, step
    for step (the final tool-target distance of every task agrees to 1e-9 m), with the
    sim2real family's noise, a different integrator and a control-rate jitter; and with a
    hidden goal, where the policy gets no target topic. The graph runs its default model,
    the bundled arm network."""
    from l2l_ros.evaluation import run_manipulator_tasks
    from l2l_ros.graphs import default_arm_model
    from l2l_ros.policy_runtime import load_runtime

    assert default_arm_model(), "no bundled arm model"

    tasks = 2
    gap = {"integrator": "rk4", "physics_timestep": "0.0025", "substep_jitter": "2", "extra_qd_noise": "0.05"}
    for name, args in (("gap", gap), ("hidden", {"hidden_goal": "true"})):
        results = tmp_path / f"{name}.jsonl"
        graph = start_graph("manipulator", {"tasks": str(tasks), "seed": "4", "results_file": str(results), **args},
                            tmp_path / f"logs_{name}")
        try:
            assert graph.wait(240.0)[1] == 0, f"logs in {tmp_path / f'logs_{name}'}"
        finally:
            graph.stop()
        ros = [json.loads(line) for line in results.read_text().splitlines()]
        env_kwargs = {k: (v == "true") if v in ("true", "false") else float(v) if "." in v else
                      (int(v) if v.isdigit() else v) for k, v in args.items()}
        offline = run_manipulator_tasks(load_runtime(default_arm_model(), "manipulator"), tasks, seed=4,
                                        env_kwargs=env_kwargs)
        if name == "gap":  # the model reaches targets here: the comparison is not of two idle arms
            assert sum(len(rec["reach_steps"]) for rec in offline) > 0
        for task, rec in enumerate(offline):
            trials = [r for r in ros if r["task"] == task]
            assert [r["steps"] for r in trials if r["success"]] == rec["reach_steps"], (name, task)
            assert trials[-1]["distance"] == pytest.approx(rec["final_distance_m"], abs=1e-9), (name, task)


def test_trainer_node_publishes_progress_and_a_loadable_checkpoint(probe, tmp_path):
    from l2l_ros.meta.checkpoint import load_checkpoint

    diags: list[DiagnosticArray] = []
    ckpts: list[String] = []
    probe.create_subscription(DiagnosticArray, "/l2l/training", diags.append, 10)
    probe.create_subscription(String, "/l2l/checkpoint", ckpts.append, LATCHED_QOS)
    out = tmp_path / "run"
    spec = NodeSpec("trainer", "trainer", {"family": "bandit", "policy": "lsnn", "updates": 3, "horizons": "10",
                                           "num_envs": 4, "out_dir": str(out), "seed": 3})
    log = (tmp_path / "trainer.log").open("w")
    proc = subprocess.Popen(node_command(spec), env=ros_environment(), stdout=log, stderr=subprocess.STDOUT)
    try:
        assert spin_until(probe, lambda: proc.poll() is not None and ckpts, 180.0), \
            (tmp_path / "trainer.log").read_text()[-3000:]
        spin_until(probe, lambda: len(diags) >= 3, 5.0)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == 0, (tmp_path / "trainer.log").read_text()[-3000:]
    assert len(diags) >= 1
    keys = {kv.key for kv in diags[-1].status[0].values}
    assert {"update", "mean_return", "policy_loss"} <= keys
    policy, meta = load_checkpoint(Path(ckpts[-1].data))
    assert meta["env_id"] == "l2l_ros/Bandit-v0"
    assert meta["evaluation"]["updates"] == 3
    assert "trainer" in meta["command"]


def test_trainer_node_runs_a_recipe_and_publishes_its_last_stage(probe, tmp_path):
    ckpts: list[String] = []
    probe.create_subscription(String, "/l2l/checkpoint", ckpts.append, LATCHED_QOS)
    out = tmp_path / "run"
    spec = NodeSpec("trainer", "trainer", {"recipe": "bandit_k5_lsnn", "scale": "smoke", "out_dir": str(out)})
    log = (tmp_path / "trainer.log").open("w")
    proc = subprocess.Popen(node_command(spec), env=ros_environment(), stdout=log, stderr=subprocess.STDOUT)
    try:
        assert spin_until(probe, lambda: proc.poll() is not None and ckpts, 180.0), \
            (tmp_path / "trainer.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == 0, (tmp_path / "trainer.log").read_text()[-3000:]
    summary = json.loads((out / "evaluation.json").read_text())
    assert [s["name"] for s in summary["stages"]] == ["teacher", "ppo", "ppo_distill"]
    assert ckpts[-1].data == summary["checkpoint"] == str(out / "ppo_distill" / "policy.json")
    assert "stage teacher" in (tmp_path / "trainer.log").read_text()


def test_trainer_node_stopped_by_sigint_saves_where_it_was(probe, tmp_path):
    import signal

    from l2l_ros.meta.checkpoint import load_checkpoint

    diags: list[DiagnosticArray] = []
    probe.create_subscription(DiagnosticArray, "/l2l/training", diags.append, 10)
    out = tmp_path / "run"
    spec = NodeSpec("trainer", "trainer", {"family": "bandit", "updates": 10_000, "num_envs": 4, "horizons": "10,100",
                                           "out_dir": str(out), "seed": 5})
    log = (tmp_path / "trainer.log").open("w")
    proc = subprocess.Popen(node_command(spec), env=ros_environment(), stdout=log, stderr=subprocess.STDOUT)
    try:
        assert spin_until(probe, lambda: len(diags) >= 2, 120.0), (tmp_path / "trainer.log").read_text()[-3000:]
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, (tmp_path / "trainer.log").read_text()[-3000:]
    _, meta = load_checkpoint(out / "policy.json")
    assert 2 <= meta["evaluation"]["updates"] < 10_000


def test_trainer_node_refuses_bad_parameters_in_one_line(tmp_path):
    """A device torch cannot use, or an unknown recipe scale, is refused at start-up in
    one log line (no traceback from the half-built node), before any run folder."""
    out = tmp_path / "run"
    for params, message in (({"device": "tpu"}, "device 'tpu'"), ({"scale": "huge"}, "scale must be one of")):
        spec = NodeSpec("trainer", "trainer", {**params, "out_dir": str(out), "updates": 1})
        proc = subprocess.run(node_command(spec), env=ros_environment(), capture_output=True, text=True, timeout=120)
        log = proc.stdout + proc.stderr
        assert proc.returncode != 0 and message in log and "Traceback" not in log, log[-2000:]
        assert not out.exists()
