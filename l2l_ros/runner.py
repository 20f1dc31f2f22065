"""`l2l run GRAPH`: start a graph of l2l_ros.graphs as real rclpy processes on DDS.

This is what a launch file does, for installs without ``launch`` (PyPI has no
wheel for it): one process per node, the same executables and parameters, DDS
kept on loopback. The run ends when the simulator has finished its tasks.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from l2l_ros.graphs import GRAPHS, NodeSpec

REPO_ROOT = Path(__file__).resolve().parent.parent


def ros_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for child nodes: loopback-only discovery, a domain of our own."""
    env = dict(os.environ if base is None else base)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.setdefault("ROS_DOMAIN_ID", str(20 + os.getpid() % 80))
    env["PYTHONUNBUFFERED"] = "1"
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(REPO_ROOT) not in paths and (REPO_ROOT / "l2l_ros").is_dir():
        env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *paths])
    return env


def _param_arg(key: str, value) -> str:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return f"{key}:={text if text != '' else chr(39) * 2}"  # '' is YAML for the empty string


def node_command(spec: NodeSpec) -> list[str]:
    cmd = [sys.executable, "-m", f"l2l_ros.nodes.{spec.executable}", "--ros-args",
           "-r", f"__node:={spec.name}"]
    namespace = str(spec.namespace).strip("/")
    if namespace:
        cmd += ["-r", f"__ns:=/{namespace}"]
    for source, target in spec.remappings:
        cmd += ["-r", f"{source}:={target}"]
    for key, value in spec.parameters.items():
        cmd += ["-p", _param_arg(key, value)]
    return cmd


@dataclass
class RunningGraph:
    processes: dict[str, subprocess.Popen]
    log_dir: Path
    ender: str
    stop_timeouts: dict[str, float] = field(default_factory=dict)

    def check_alive(self) -> bool:
        """True while every node runs; a node that died raises with the tail of its log."""
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                tail = (self.log_dir / f"{name}.log").read_text()[-2000:]
                raise RuntimeError(f"node {name} exited with code {proc.returncode}:\n{tail}")
        return True

    def wait(self, timeout: float) -> tuple[str, int]:
        """Wait for the node whose exit ends the graph; returns (its name, exit code)."""
        return self.ender, self.wait_for(self.ender, timeout)

    def wait_for(self, name: str, timeout: float) -> int:
        """Wait for one node to exit; raise if any other node dies first or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.processes[name].poll()
            if code is not None:
                return code
            for other, proc in self.processes.items():
                if other != name and proc.poll() is not None:
                    raise RuntimeError(f"node {other} exited with code {proc.returncode}; "
                                       f"see {self.log_dir / (other + '.log')}")
            time.sleep(0.1)
        raise TimeoutError(f"{name} did not finish within {timeout:.0f} s; logs in {self.log_dir}")

    def stop(self) -> None:
        """SIGINT every node, then as ``ros2 launch`` escalates: SIGTERM after the node's
        ``stop_timeout``, SIGKILL after as long again."""
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        start = time.monotonic()
        for name, proc in self.processes.items():
            grace = self.stop_timeouts.get(name, 10.0)
            for escalate in (proc.terminate, proc.kill):
                try:
                    proc.wait(timeout=max(0.1, start + grace - time.monotonic()))
                    break
                except subprocess.TimeoutExpired:
                    escalate()
                    start += grace
            proc.wait()


def start_graph(graph_name: str, values: Mapping[str, str], log_dir: Path,
                env: Mapping[str, str] | None = None) -> RunningGraph:
    graph = GRAPHS[graph_name]
    log_dir.mkdir(parents=True, exist_ok=True)
    child_env = ros_environment(env)
    processes: dict[str, subprocess.Popen] = {}
    specs = graph.nodes(values)
    for spec in specs:
        log = (log_dir / f"{spec.name}.log").open("w")  # noqa: SIM115 - the child keeps writing
        processes[spec.name] = subprocess.Popen(node_command(spec), env=child_env, stdout=log,
                                                stderr=subprocess.STDOUT, cwd=os.getcwd())
    ender = next(spec.name for spec in specs if spec.ends_graph)
    return RunningGraph(processes, log_dir, ender, {spec.name: spec.stop_timeout for spec in specs})
