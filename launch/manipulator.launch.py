"""`ros2 launch l2l_ros manipulator.launch.py`: the 'manipulator' graph, defined once in l2l_ros/graphs.py (also `l2l run manipulator`)."""
from l2l_ros.launch_description import graph_launch_description


def generate_launch_description():
    return graph_launch_description("manipulator")
