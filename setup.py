"""ament_python package: `colcon build` installs the nodes, launch files and data under share/."""
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "l2l_ros"
DATA_DIRS = ("launch", "urdf", "sim", "config", "models", "recipes")


def share_files() -> list[tuple[str, list[str]]]:
    """Every file under DATA_DIRS, keeping its folder, below share/l2l_ros."""
    entries = [
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
    ]
    for top in DATA_DIRS:
        for folder in sorted({p.parent for p in Path(top).rglob("*") if p.is_file()}):
            files = sorted(str(p) for p in folder.iterdir() if p.is_file())
            entries.append((f"share/{PACKAGE}/{folder}", files))
    return entries


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=share_files(),
    install_requires=["setuptools"],
    zip_safe=False,
    extras_require={"test": ["pytest", "hypothesis"]},  # colcon test picks pytest from this
    maintainer="l2l_ros developers",
    maintainer_email="dev@l2l-ros.local",
    description="Meta-trained spiking policies for ROS 2",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "imaze_sim = l2l_ros.nodes.imaze_sim:main",
            "manipulator_sim = l2l_ros.nodes.manipulator_sim:main",
            "spiking_policy = l2l_ros.nodes.spiking_policy:main",
            "trainer = l2l_ros.nodes.trainer:main",
            "l2l = l2l_ros.cli:main",
        ],
    },
)
