"""Turn a graph of ``l2l_ros.graphs`` into a ``launch`` description (full ROS 2 installs only)."""
from __future__ import annotations

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from l2l_ros.graphs import GRAPHS


def graph_launch_description(graph_name: str) -> LaunchDescription:
    graph = GRAPHS[graph_name]
    actions: list = [
        DeclareLaunchArgument(a.name, default_value=a.default, description=a.description)
        for a in graph.arguments
    ]
    configs = {a.name: LaunchConfiguration(a.name) for a in graph.arguments}
    for spec in graph.nodes(configs):
        # The graph ends with its simulator or trainer, and with any node that dies
        # (a policy with a bad checkpoint must not leave the simulator waiting).
        reason = f"{spec.name} finished" if spec.ends_graph else f"{spec.name} exited"
        actions.append(Node(package="l2l_ros", executable=spec.executable, name=spec.name,
                            namespace=spec.namespace, remappings=list(spec.remappings),
                            parameters=[spec.parameters], output="screen", emulate_tty=True,
                            sigterm_timeout=str(spec.stop_timeout), sigkill_timeout=str(spec.stop_timeout),
                            on_exit=[Shutdown(reason=reason)]))
    return LaunchDescription(actions)
