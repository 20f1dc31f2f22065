"""The URDF robots compile in MuJoCo and carry the limits and inertias the sims rely on."""
import math
import xml.etree.ElementTree as ET

import mujoco
import numpy as np
import pytest

from l2l_ros.resources import share_path
from l2l_ros.tasks import robots
from l2l_ros.tasks.encoding import ARM_JOINTS, DRIVE_LIMITS, SCAN_BEAMS

URDFS = [("urdf", "diff_drive.urdf"), ("urdf", "arm.urdf")]


@pytest.mark.parametrize("parts", URDFS)
def test_urdf_compiles_with_positive_inertia_and_primitive_collisions(parts):
    model = mujoco.MjSpec.from_file(str(share_path(*parts))).compile()
    assert model.nbody >= 5
    for b in range(1, model.nbody):  # skip world
        assert model.body_mass[b] > 0, model.body(b).name
        assert (model.body_inertia[b] > 0).all(), model.body(b).name
    root = ET.parse(share_path(*parts)).getroot()
    for coll in root.iter("collision"):
        geom = coll.find("geometry")
        assert geom.find("mesh") is None
        assert len(list(geom)) == 1 and list(geom)[0].tag in ("box", "cylinder", "sphere")
    for link in root.iter("link"):
        assert link.find("inertial") is not None, link.get("name")


def test_arm_joints_and_limits():
    model = mujoco.MjSpec.from_file(str(share_path("urdf", "arm.urdf"))).compile()
    names = [model.joint(j).name for j in range(model.njnt)]
    assert names == list(ARM_JOINTS)
    limits = robots.urdf_joint_limits("urdf", "arm.urdf")
    for j in ARM_JOINTS:
        jid = model.joint(j).id
        assert model.jnt_limited[jid]
        lo, hi = model.jnt_range[jid]
        assert lo < 0 < hi and (lo, hi) == pytest.approx((limits[j].lower, limits[j].upper))
        assert model.jnt_actfrclimited[jid] and model.jnt_actfrcrange[jid][1] == limits[j].effort > 0
        assert limits[j].velocity > 0
    assert "tool0" in [model.body(b).name for b in range(model.nbody)]


def test_diff_drive_links_joints_and_wheel_limits():
    model = mujoco.MjSpec.from_file(str(share_path("urdf", "diff_drive.urdf"))).compile()
    bodies = {model.body(b).name for b in range(model.nbody)}
    assert {"base_link", "wheel_left_link", "wheel_right_link", "caster_back_link",
            "base_scan"} <= bodies
    limits = robots.urdf_joint_limits("urdf", "diff_drive.urdf")
    for j in robots.WHEEL_JOINTS:
        assert limits[j].velocity > 0 and limits[j].effort > 0
    root = ET.parse(share_path("urdf", "diff_drive.urdf")).getroot()
    types = {j.get("name"): j.get("type") for j in root.iter("joint")}
    assert types["wheel_left_joint"] == types["wheel_right_joint"] == "continuous"
    # The wheels can reach the forward speed limit.
    radius = float(root.find("link[@name='wheel_left_link']/collision/geometry/cylinder").get("radius"))
    assert limits["wheel_left_joint"].velocity * radius >= DRIVE_LIMITS.max_linear


def test_imaze_sim_takes_drive_geometry_from_the_urdf_model():
    from l2l_ros.tasks.imaze import IMazeSim
    sim = IMazeSim()
    root = ET.parse(share_path("urdf", "diff_drive.urdf")).getroot()
    radius = float(root.find("link[@name='wheel_left_link']/collision/geometry/cylinder").get("radius"))
    ys = [float(j.find("origin").get("xyz").split()[1]) for j in root.iter("joint")
          if j.get("name") in robots.WHEEL_JOINTS]
    assert sim.drive.wheel_radius == pytest.approx(radius)
    assert sim.drive.wheel_separation == pytest.approx(abs(ys[0] - ys[1]))
    assert sim.drive.max_wheel_velocity == pytest.approx(
        robots.urdf_joint_limits("urdf", "diff_drive.urdf")["wheel_left_joint"].velocity)
    left, right = sim.wheel_speeds(0.1, 0.0)
    assert left == right == pytest.approx(0.1 / radius)
    left, right = sim.wheel_speeds(0.0, 1.0)
    assert right == -left == pytest.approx(0.5 * sim.drive.wheel_separation / radius)
    # Physics steps a twin without the lidar: only wall-contact sensors run in the substeps.
    types = [sim.model.sensor_type[i] for i in range(sim.model.nsensor)]
    assert types and all(t == mujoco.mjtSensor.mjSENS_CONTACT for t in types)
    # Lidar: SCAN_BEAMS rangefinders on base_scan, CCW from +x.
    m = sim.lidar_model
    assert sum(m.sensor_type[i] == mujoco.mjtSensor.mjSENS_RANGEFINDER for i in range(m.nsensor)) \
        == SCAN_BEAMS
    scan_body = m.body("robot/base_scan").id
    site = m.site("robot/scan_009")
    assert site.bodyid[0] == scan_body
    mat = np.zeros(9)
    mujoco.mju_quat2Mat(mat, m.site_quat[site.id])
    beam_dir = mat.reshape(3, 3)[:, 2]
    ang = 2 * math.pi * 9 / SCAN_BEAMS
    assert beam_dir == pytest.approx([math.cos(ang), math.sin(ang), 0.0], abs=1e-9)
