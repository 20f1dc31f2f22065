"""The node graphs, defined once for both `ros2 launch` and `l2l run`.

A full ROS 2 install launches them with ``launch/*.launch.py``; a pip-only
install (no ``launch``/``launch_ros`` on PyPI) starts the very same nodes with
the very same parameters through ``l2l run GRAPH``. Parameter values are
whatever the caller passes for the launch arguments: strings for ``l2l run``,
``LaunchConfiguration`` substitutions for ``ros2 launch``. ROS parses both as
YAML, so ``"3"`` becomes an integer parameter either way.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

BUNDLED_IMAZE_MODEL = "models/imaze_lsnn/policy.json"
BUNDLED_ARM_MODEL = "models/arm_lsnn/policy.json"
#: The arm's LSTM: what runs where an install has no spiking arm model (it reaches more targets;
#: docs/arm.md).
BUNDLED_ARM_FALLBACK = "models/arm_lstm/policy.json"


@dataclass(frozen=True)
class LaunchArgument:
    name: str
    default: str
    description: str


@dataclass(frozen=True)
class NodeSpec:
    """One node of a graph: ``executable`` is both the console script and ``l2l_ros.nodes.<executable>``."""

    executable: str
    name: str
    parameters: dict[str, Any] = field(default_factory=dict)
    #: When this node exits (a simulator done with its tasks, a trainer done), the graph ends.
    #: (Any other node exiting ends it too, as an error: ``ros2 launch`` shuts down.)
    ends_graph: bool = False
    #: The node's namespace ('' : the root); every topic of the package's nodes is relative.
    namespace: str = ""
    #: Topic remappings (from, to), e.g. the simulator's clock into the graph's namespace.
    remappings: tuple[tuple[str, str], ...] = ()
    #: Seconds between SIGINT and SIGTERM (then as long again before SIGKILL) when the
    #: graph stops: the trainer finishes its update and writes a checkpoint.
    stop_timeout: float = 10.0


@dataclass(frozen=True)
class Graph:
    name: str
    description: str
    arguments: tuple[LaunchArgument, ...]
    build: Callable[[Mapping[str, Any]], list[NodeSpec]]

    def defaults(self) -> dict[str, str]:
        return {a.name: a.default for a in self.arguments}

    def nodes(self, values: Mapping[str, Any] | None = None) -> list[NodeSpec]:
        """Node specs for the given argument values (missing ones take their defaults)."""
        merged: dict[str, Any] = self.defaults()
        unknown = set(values or {}) - set(merged)
        if unknown:
            raise KeyError(f"graph {self.name!r} has no argument(s) {sorted(unknown)}; "
                           f"known: {sorted(merged)}")
        merged.update(values or {})
        return self.build(merged)


def default_arm_model() -> str:
    """The bundled spiking arm policy, else the bundled arm LSTM, or '' where the install has neither."""
    from l2l_ros.resources import share_path

    for model in (BUNDLED_ARM_MODEL, BUNDLED_ARM_FALLBACK):
        path = share_path(*model.split("/"))
        if path.exists():
            return str(path)
    return ""


def default_model_path() -> str:
    """The bundled I-maze policy, from the install share/ or the source tree."""
    from l2l_ros.resources import share_path

    return str(share_path(*BUNDLED_IMAZE_MODEL.split("/")))


def bundled_model(mode: str) -> str:
    """What the policy node runs in ``mode`` (imaze, manipulator) without a checkpoint:
    the bundled model's path, or '' where the install has none for that mode."""
    return default_model_path() if mode == "imaze" else default_arm_model()


_COMMON = (
    LaunchArgument("use_sim_time", "true", "Nodes follow the simulator's clock (<namespace>/clock)."),
    LaunchArgument("seed", "0", "Seed of the task sampler (and of stochastic actions)."),
    LaunchArgument("namespace", "", "Namespace of every node and topic (e.g. robot1); '' : the root."),
)

#: The sims publish a relative ``clock``; rclpy's time source reads ``/clock``: remapping it
#: into the graph's namespace keeps two namespaced robots' simulated times apart.
CLOCK_REMAP = (("/clock", "clock"),)


def _sim_and_policy(sim: str, mode: str) -> Callable[[Mapping[str, Any]], list[NodeSpec]]:
    """A simulator node and the spiking_policy node driving it in ``mode``."""

    def build(a: Mapping[str, Any]) -> list[NodeSpec]:
        stamped = {"twist_stamped": a["twist_stamped"]} if mode == "imaze" else {}
        arm = {"hidden_goal": a["hidden_goal"]} if mode == "manipulator" else {}
        world = {k: a[k] for k in ARM_WORLD_ARGS} if mode == "manipulator" else {"family": a["family"]}
        return [
            NodeSpec(sim, sim, {
                "use_sim_time": a["use_sim_time"],
                "seed": a["seed"],
                "max_tasks": a["tasks"],
                "lockstep": a["lockstep"],
                "results_file": a["results_file"],
                **stamped, **arm, **world,
            }, ends_graph=True, namespace=a["namespace"], remappings=CLOCK_REMAP),
            NodeSpec("spiking_policy", "spiking_policy", {
                "use_sim_time": a["use_sim_time"],
                "mode": mode,
                "checkpoint": a["checkpoint"],
                "deterministic": a["deterministic"],
                "seed": a["seed"],
                # The sims publish a reward with every tick: wait for it (DDS may deliver it
                # after the tick's sensors), so a lockstep run is the offline evaluation.
                "reward_wait": "0.5",
                **stamped, **arm,
            }, namespace=a["namespace"], remappings=CLOCK_REMAP),
        ]

    return build


def _training(a: Mapping[str, Any]) -> list[NodeSpec]:
    return [
        NodeSpec("trainer", "trainer", {
            "family": a["family"],
            "policy": a["policy"],
            "updates": a["updates"],
            "num_envs": a["num_envs"],
            "out_dir": a["out_dir"],
            "seed": a["seed"],
            "arms": a["arms"],
            "horizons": a["horizons"],
            "recipe": a["recipe"],
            "scale": a["scale"],
        }, ends_graph=True, namespace=a["namespace"], stop_timeout=120.0),
    ]


#: The manipulator_sim parameters that shape its world, passed through as launch arguments.
ARM_WORLD_ARGS = ("family", "integrator", "physics_timestep", "substep_jitter", "extra_q_noise", "extra_qd_noise")

_SIM_ARGS = (
    LaunchArgument("tasks", "0", "Tasks to run before the simulator exits (0: run forever)."),
    LaunchArgument("lockstep", "true",
                   "Step physics once per received command (reproducible); false: real-time timer."),
    LaunchArgument("results_file", "", "JSON-lines file for per-trial results ('' : none)."),
    LaunchArgument("deterministic", "true", "Greedy actions instead of sampling."),
)

GRAPHS: dict[str, Graph] = {
    "navigation": Graph(
        "navigation",
        "MuJoCo I-maze simulator + spiking policy with the bundled meta-trained model.",
        _COMMON + _SIM_ARGS + (
            LaunchArgument("checkpoint", "", "Policy checkpoint (.json); '' : the bundled I-maze model."),
            LaunchArgument("twist_stamped", "false", "cmd_vel as geometry_msgs/TwistStamped (both nodes)."),
            LaunchArgument("family", "fixed",
                           "I-maze task family: fixed (the default maze, perfect sensors), sim2real, noise_x2, "
                           "large_mazes, or a JSON object of ranges (docs/imaze_family.md)."),
        ),
        _sim_and_policy("imaze_sim", "imaze"),
    ),
    "manipulator": Graph(
        "manipulator",
        "MuJoCo arm on a table + spiking policy (joint velocity commands).",
        _COMMON + _SIM_ARGS + (
            LaunchArgument("checkpoint", "",
                           "Policy checkpoint (.json); '' : the bundled spiking arm model (models/arm_lsnn), "
                           "else the arm's LSTM (models/arm_lstm), else an untrained network (seeded)."),
            LaunchArgument("hidden_goal", "false", "The hidden-goal variant (both nodes): the goal is one "
                                                   "of four marked spots, never published."),
            LaunchArgument("family", "sim2real", "Arm task family preset: sim2real, nominal_calibration "
                                                 "or out_of_range."),
            LaunchArgument("integrator", "implicitfast", "Simulator's MuJoCo integrator (reality gap)."),
            LaunchArgument("physics_timestep", "0.005", "Simulator's physics step, s (reality gap)."),
            LaunchArgument("substep_jitter", "0", "Control-rate jitter in physics steps (reality gap)."),
            LaunchArgument("extra_q_noise", "0.0", "Extra joint position noise, rad (reality gap)."),
            LaunchArgument("extra_qd_noise", "0.0", "Extra joint velocity noise, rad/s (reality gap)."),
        ),
        _sim_and_policy("manipulator_sim", "manipulator"),
    ),
    "training": Graph(
        "training",
        "Outer-loop meta-training node; progress on /l2l/training, checkpoints on /l2l/checkpoint.",
        (
            LaunchArgument("seed", "0", "Training seed."),
            LaunchArgument("namespace", "", "Namespace of the trainer and its topics; '' : the root."),
            LaunchArgument("family", "imaze", "Task family: imaze, manipulator or bandit."),
            LaunchArgument("policy", "lsnn", "Network: lsnn (spiking) or lstm."),
            LaunchArgument("updates", "100", "PPO updates (one task per env each)."),
            LaunchArgument("num_envs", "16", "Parallel tasks per update."),
            LaunchArgument("out_dir", "runs/trainer", "Where checkpoints and the log go (resumes)."),
            LaunchArgument("arms", "5", "Bandit family: number of arms k."),
            LaunchArgument("horizons", "", "Bandit family: pulls per task, comma-separated "
                                           "('' : 10,100,500, one drawn per update)."),
            LaunchArgument("recipe", "", "A recipe (l2l train --list-recipes) or .toml file: every stage "
                                         "and its evaluation; the family and training arguments then "
                                         "come from it."),
            LaunchArgument("scale", "full", "With recipe: full, or smoke (a few updates per stage)."),
        ),
        _training,
    ),
}
