"""TF from the simulators over DDS: the frames RViz needs, and transforms that agree with MuJoCo."""
from __future__ import annotations

import time

import numpy as np
import pytest
import rclpy
from std_msgs.msg import String
from tf2_msgs.msg import TFMessage

from l2l_ros.nodes.common import LATCHED_QOS


@pytest.fixture()
def ros():
    rclpy.init()
    yield
    rclpy.try_shutdown()


def collect(sim, probe, seconds: float = 3.0):
    dynamic: dict[tuple[str, str], object] = {}
    static: dict[tuple[str, str], object] = {}
    description: list[String] = []
    probe.create_subscription(TFMessage, "/tf", lambda m: dynamic.update(
        {(t.header.frame_id, t.child_frame_id): t for t in m.transforms}), 100)
    probe.create_subscription(TFMessage, "/tf_static", lambda m: static.update(
        {(t.header.frame_id, t.child_frame_id): t for t in m.transforms}), LATCHED_QOS)
    probe.create_subscription(String, "/robot_description", description.append, LATCHED_QOS)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not (dynamic and static and description):
        rclpy.spin_once(sim, timeout_sec=0.02)
        rclpy.spin_once(probe, timeout_sec=0.02)
    return dynamic, static, description


def matrix(t) -> np.ndarray:
    import mujoco

    r, tr = t.transform.rotation, t.transform.translation
    m = np.zeros(9)
    mujoco.mju_quat2Mat(m, np.array([r.w, r.x, r.y, r.z]))
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = m.reshape(3, 3), [tr.x, tr.y, tr.z]
    return out


def test_imaze_sim_publishes_odom_base_link_and_the_lidar_frame(ros):
    from l2l_ros.nodes.imaze_sim import IMazeSimNode

    sim, probe = IMazeSimNode(), rclpy.create_node("tf_probe")
    try:
        dynamic, static, description = collect(sim, probe, 20.0)
    finally:
        sim.destroy_node()
        probe.destroy_node()
    assert ("odom", "base_link") in dynamic
    assert {("base_link", "wheel_left_link"), ("base_link", "wheel_right_link")} <= set(dynamic)
    assert {("base_link", "base_scan"), ("base_link", "caster_back_link")} <= set(static)
    scan = static[("base_link", "base_scan")].transform.translation
    assert (scan.x, scan.y, scan.z) == pytest.approx((-0.032, 0.0, 0.182), abs=1e-6)  # urdf/diff_drive.urdf
    assert "<robot" in description[0].data


def test_manipulator_tf_chain_ends_where_mujoco_puts_the_tool(ros):
    from l2l_ros.nodes.manipulator_sim import ManipulatorSimNode

    sim, probe = ManipulatorSimNode(), rclpy.create_node("tf_probe")
    try:
        dynamic, static, _ = collect(sim, probe, 20.0)
        chain = ["base_link", "shoulder_link", "upper_arm_link", "forearm_link", "tool0"]
        pose = np.eye(4)
        for parent, child in zip(chain, chain[1:]):
            t = dynamic.get((parent, child)) or static.get((parent, child))
            assert t is not None, (parent, child, sorted(dynamic), sorted(static))
            pose = pose @ matrix(t)
        arm = sim.env.sim
        base = arm.model.body("arm/base_link").id
        expected = arm.data.xmat[base].reshape(3, 3).T @ (arm.data.xpos[arm.model.body("arm/tool0").id]
                                                          - arm.data.xpos[base])
    finally:
        sim.destroy_node()
        probe.destroy_node()
    assert pose[:3, 3] == pytest.approx(expected, abs=1e-9)
