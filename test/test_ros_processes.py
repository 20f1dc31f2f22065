"""Nodes as processes, the way `ros2 launch` and `l2l run` run them: signals, bad
parameters, a node that dies, namespaces (issue 32's regressions)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
from std_msgs.msg import String

from l2l_ros.graphs import GRAPHS, NodeSpec
from l2l_ros.nodes.common import LATCHED_QOS, STREAM_QOS
from l2l_ros.runner import node_command, ros_environment, start_graph


def node_process(executable: str, *ros_args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", f"l2l_ros.nodes.{executable}", "--ros-args", *ros_args]
    return subprocess.Popen(cmd, env=ros_environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_ctrl_c_during_startup_exits_quietly():
    """Defect 6: Ctrl-C in the first seconds printed KeyboardInterrupt tracebacks from imports."""
    proc = node_process("spiking_policy")
    time.sleep(0.5)  # still importing torch and rclpy
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out
    assert proc.returncode in (0, 130), (proc.returncode, out)


def test_a_second_ctrl_c_during_shutdown_does_not_kill_the_node():
    """Defect 6: a second SIGINT during shutdown killed the policy with exit code -2."""
    proc = node_process("spiking_policy")
    out = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until it runs
        line = proc.stdout.readline()
        out.append(line)
        if "active: commanding" in line:
            break
    for _ in range(5):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.01)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, (proc.returncode, "".join(out) + rest)
    assert "Traceback" not in rest


def test_a_bad_parameter_is_one_fatal_line_and_a_non_zero_exit():
    """Defect 8: `tasks:=abc` raised a second exception in destroy_node, 16 to 35 lines."""
    for executable, arg in (("imaze_sim", "max_tasks:=abc"), ("imaze_sim", "cmd_timeout:=-1.0"),
                            ("spiking_policy", "mode:=arm"), ("spiking_policy", "checkpoint:=/no/such.json"),
                            ("manipulator_sim", "seed:=-3"), ("imaze_sim", "family:=bogus"),
                            ("imaze_sim", "family:='{\"corridor_width\": [0.1, 0.5]}'")):
        proc = node_process(executable, "-p", arg)
        out, _ = proc.communicate(timeout=60)
        lines = [line for line in out.splitlines() if line.strip()]
        assert proc.returncode == 1, (arg, out)
        assert len(lines) == 1 and lines[0].startswith(f"[FATAL] [{executable}]"), (arg, out)


def test_the_simulator_exits_when_its_policy_is_killed(tmp_path):
    """Defect 7: when spiking_policy died, imaze_sim waited forever."""
    graph = start_graph("navigation", {"tasks": "0"}, tmp_path / "logs")
    sim, policy = graph.processes["imaze_sim"], graph.processes["spiking_policy"]
    try:
        log = tmp_path / "logs" / "imaze_sim.log"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and "trial 0:" not in log.read_text():
            time.sleep(0.2)  # the policy has been driving
        assert "trial 0:" in log.read_text() or "task 0 done" in log.read_text(), log.read_text()[-2000:]
        policy.kill()
        code = sim.wait(timeout=60)  # peer_timeout is 10 s
    finally:
        graph.stop()
    assert code == 3, log.read_text()[-2000:]
    assert "is gone" in log.read_text()


def test_l2l_run_with_a_bad_checkpoint_ends_at_once_with_one_line(tmp_path):
    """Defects 7 and 8: the graph must end when its policy cannot start."""
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "l2l_ros.cli", "run", "navigation", "--out", str(tmp_path),
                           "--set", "checkpoint=/no/such/policy.json", "--timeout", "120"],
                          env=ros_environment(), capture_output=True, text=True, timeout=180)
    assert proc.returncode != 0
    assert time.monotonic() - start < 60
    assert "Traceback" not in proc.stderr, proc.stderr
    policy_log = (tmp_path / "logs" / "spiking_policy.log").read_text()
    assert policy_log.strip().startswith("[FATAL] [spiking_policy]") and len(policy_log.strip().splitlines()) == 1


def test_two_namespaced_navigation_graphs_run_side_by_side(tmp_path):
    """Relative names: two robots in one domain, each its own topics, clock and results,
    each the same as the offline evaluation; /diagnostics from every node."""
    rclpy.init()
    probe = rclpy.create_node("namespace_probe")
    cmds = {ns: [] for ns in ("robot1", "robot2")}
    for ns in cmds:
        probe.create_subscription(Twist, f"/{ns}/cmd_vel", cmds[ns].append, STREAM_QOS)
    root_cmds: list = []
    probe.create_subscription(Twist, "/cmd_vel", root_cmds.append, STREAM_QOS)
    diagnostics: dict[str, dict] = {}

    def on_diag(msg: DiagnosticArray) -> None:
        for status in msg.status:
            diagnostics[status.name] = {kv.key: kv.value for kv in status.values}

    probe.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 50)
    descriptions: list[String] = []
    probe.create_subscription(String, "/robot1/robot_description", descriptions.append, LATCHED_QOS)
    graphs = {}
    try:
        for seed, ns in enumerate(cmds):
            graphs[ns] = start_graph("navigation", {"tasks": "2", "seed": str(seed), "namespace": ns,
                                                    "results_file": str(tmp_path / f"{ns}.jsonl")},
                                     tmp_path / ns)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and any(g.processes["imaze_sim"].poll() is None for g in graphs.values()):
            rclpy.spin_once(probe, timeout_sec=0.05)
            for g in graphs.values():
                g.check_alive() if g.processes["imaze_sim"].poll() is None else None
        codes = {ns: g.processes["imaze_sim"].poll() for ns, g in graphs.items()}
    finally:
        for g in graphs.values():
            g.stop()
        probe.destroy_node()
        rclpy.try_shutdown()
    assert codes == {"robot1": 0, "robot2": 0}, codes
    assert cmds["robot1"] and cmds["robot2"] and not root_cmds
    assert descriptions and "<robot" in descriptions[0].data
    policy = diagnostics.get("l2l_ros:/robot1/spiking_policy", {})
    for key in ("control_rate_hz", "step_latency_p99_ms", "sensor_age_s", "spikes_per_neuron_per_tick",
                "synops_per_step"):
        assert key in policy, (key, sorted(diagnostics))
    assert "control_rate_hz" in diagnostics.get("l2l_ros:/robot2/imaze_sim", {}), sorted(diagnostics)
    from l2l_ros.evaluation import run_imaze_tasks
    from l2l_ros.graphs import default_model_path
    from l2l_ros.policy_runtime import load_runtime

    for seed, ns in enumerate(cmds):
        records = [json.loads(line) for line in (tmp_path / f"{ns}.jsonl").read_text().splitlines()]
        offline = run_imaze_tasks(load_runtime(default_model_path(), "imaze"), 2, seed=seed)
        warnings = [line for log in sorted((tmp_path / ns).glob("*.log"))
                    for line in log.read_text().splitlines() if "[WARN]" in line or "[ERROR]" in line]
        assert [(r["trial"], r["steps"], r["success"]) for r in records] == \
            [(r["trial"], r["steps"], r["success"]) for r in offline], (ns, warnings)


def test_graph_nodes_get_namespace_twist_stamped_use_sim_time_and_stop_timeouts():
    nav = GRAPHS["navigation"].nodes({"namespace": "robot7", "twist_stamped": "true", "use_sim_time": "false"})
    for spec in nav:
        cmd = node_command(spec)
        assert "__ns:=/robot7" in cmd and "/clock:=clock" in cmd
        assert "twist_stamped:=true" in cmd and "use_sim_time:=false" in cmd
    [trainer] = GRAPHS["training"].nodes()
    assert trainer.stop_timeout >= 60  # time to finish an update and save before SIGKILL
    assert isinstance(trainer, NodeSpec)
