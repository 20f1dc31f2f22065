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
        on_exit = [Shutdown(reason=f"{spec.name} finished")] if spec.ends_graph else None
        actions.append(Node(package="l2l_ros", executable=spec.executable, name=spec.name,
                            parameters=[spec.parameters], output="screen", emulate_tty=True,
                            on_exit=on_exit))
    return LaunchDescription(actions)
