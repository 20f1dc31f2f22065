"""One graph definition serves `ros2 launch` and `l2l run`: check it against the nodes and launch files."""
import importlib
import re
from pathlib import Path

import pytest

from l2l_ros.graphs import GRAPHS
from l2l_ros.runner import node_command

ROOT = Path(__file__).resolve().parent.parent


def declared_parameters(module_name: str) -> set[str]:
    """Names passed to declare_parameter in a node module and the sim base class."""
    names = set()
    for mod in (module_name, "l2l_ros.nodes.sim_base"):
        source = Path(importlib.import_module(mod).__file__).read_text()
        names |= set(re.findall(r'(?:declare_parameter|Param)\("(\w+)"', source))
    return names | {"use_sim_time"}


@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_every_graph_parameter_is_declared_by_its_node(graph):
    for spec in GRAPHS[graph].nodes():
        module = f"l2l_ros.nodes.{spec.executable}"
        assert callable(importlib.import_module(module).main)
        undeclared = set(spec.parameters) - declared_parameters(module)
        assert not undeclared, f"{graph}/{spec.name} passes undeclared parameters {undeclared}"


def test_launch_files_use_the_shared_graphs():
    files = sorted((ROOT / "launch").glob("*.launch.py"))
    assert len(files) == 3
    for f in files:
        names = re.findall(r'graph_launch_description\("(\w+)"\)', f.read_text())
        assert names and names[0] in GRAPHS, f


def test_unknown_graph_argument_is_an_error():
    with pytest.raises(KeyError, match="no argument"):
        GRAPHS["navigation"].nodes({"task": "3"})


def test_node_command_passes_parameters_as_ros_args():
    spec = GRAPHS["navigation"].nodes({"tasks": "2", "results_file": ""})[0]
    cmd = node_command(spec)
    assert cmd[1:3] == ["-m", "l2l_ros.nodes.imaze_sim"]
    assert "max_tasks:=2" in cmd and "results_file:=''" in cmd
    assert cmd[cmd.index("-r") + 1] == "__node:=imaze_sim"


def test_setup_py_installs_every_data_file_and_the_console_scripts():
    setup = (ROOT / "setup.py").read_text()
    for script in ("imaze_sim", "manipulator_sim", "spiking_policy", "trainer", "l2l"):
        assert re.search(rf'"{script} = l2l_ros\.', setup), script
    package = (ROOT / "package.xml").read_text()
    assert 'format="3"' in package and "<build_type>ament_python</build_type>" in package


@pytest.mark.parametrize("node", ["imaze_sim", "manipulator_sim", "spiking_policy", "trainer"])
def test_config_yaml_names_only_declared_parameters(node):
    import yaml

    doc = yaml.safe_load((ROOT / "config" / f"{node}.yaml").read_text())
    params = doc[node]["ros__parameters"]
    assert set(params) <= declared_parameters(f"l2l_ros.nodes.{node}")


@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_each_graph_has_exactly_one_node_that_ends_it(graph):
    assert sum(spec.ends_graph for spec in GRAPHS[graph].nodes()) == 1
