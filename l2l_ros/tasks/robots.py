"""Load the URDF robots and attach them into the MuJoCo worlds.

The URDF files are the one description of each robot's geometry and inertia.
What URDF cannot express is added here, on the loaded ``mujoco.MjSpec``:

* diff-drive base: a free joint on ``base_link``, a frictionless ball caster
  (condim 1), one velocity actuator per wheel (ctrl = wheel rad/s, ctrlrange from
  the URDF ``<limit velocity>``, force range from ``<limit effort>``), and the 2D
  lidar as ``SCAN_BEAMS`` rangefinder sensors on sites on ``base_scan`` whose +z
  axes point horizontally, evenly spread CCW over 360 degrees from +x;
* arm: one velocity actuator per joint (gain set per task by ``ArmSim``), gravity
  compensation of the arm's own links (the arm controller's feed-forward; the
  payload at ``tool0`` is *not* compensated).

Nothing here imports rclpy.
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import mujoco
import numpy as np

from l2l_ros.resources import share_path
from l2l_ros.tasks.encoding import ARM_JOINTS, SCAN_BEAMS

DIFF_DRIVE_URDF = ("urdf", "diff_drive.urdf")
ARM_URDF = ("urdf", "arm.urdf")

WHEEL_JOINTS = ("wheel_left_joint", "wheel_right_joint")
WHEEL_LINKS = ("wheel_left_link", "wheel_right_link")
BASE_LINK = "base_link"
LIDAR_LINK = "base_scan"
CASTER_LINK = "caster_back_link"
TOOL_LINK = "tool0"

#: Wheel velocity-servo gain, N m per (rad/s).
WHEEL_KV = 0.2
#: Reflected rotor inertia of the geared wheel motors, kg m^2 (URDF has no field for it;
#: it also keeps the light wheels numerically well behaved at a 10 ms timestep).
WHEEL_ARMATURE = 0.005
#: Nominal arm joint velocity-servo gain, N m per (rad/s); ArmSim scales it per task.
ARM_KV = 10.0
#: Reflected rotor inertia of the arm's geared joint motors, kg m^2.
ARM_ARMATURE = 0.05


@dataclass(frozen=True)
class JointLimit:
    lower: float | None
    upper: float | None
    effort: float | None
    velocity: float | None


def urdf_joint_limits(*parts: str) -> dict[str, JointLimit]:
    """``<limit>`` of every joint in a URDF (MuJoCo's URDF import drops ``velocity``)."""
    root = ET.parse(share_path(*parts)).getroot()
    out: dict[str, JointLimit] = {}
    for joint in root.iter("joint"):
        lim = joint.find("limit")

        def get(key: str) -> float | None:
            if lim is None or lim.get(key) is None:
                return None
            return float(lim.get(key))

        out[joint.get("name")] = JointLimit(get("lower"), get("upper"), get("effort"),
                                            get("velocity"))
    return out


def load_urdf(*parts: str) -> mujoco.MjSpec:
    """An MjSpec of a URDF file from the package's share directory."""
    return mujoco.MjSpec.from_file(str(share_path(*parts)))


def _beam_quat(angle: float) -> np.ndarray:
    """Quaternion rotating +z onto the horizontal direction at ``angle`` (CCW from +x)."""
    qy = np.array([math.cos(math.pi / 4), 0.0, math.sin(math.pi / 4), 0.0])  # z -> +x
    qz = np.array([math.cos(angle / 2), 0.0, 0.0, math.sin(angle / 2)])
    out = np.zeros(4)
    mujoco.mju_mulQuat(out, qz, qy)
    return out


def beam_angles(n: int = SCAN_BEAMS) -> np.ndarray:
    """LaserScan angles: angle_min = 0, angle_increment = 2 pi / n, CCW."""
    return 2.0 * math.pi * np.arange(n) / n


def diff_drive_spec(beams: int = SCAN_BEAMS) -> mujoco.MjSpec:
    """The URDF base plus free joint, caster, wheel actuators and lidar rangefinders."""
    spec = load_urdf(*DIFF_DRIVE_URDF)
    limits = urdf_joint_limits(*DIFF_DRIVE_URDF)
    base = spec.body(BASE_LINK)
    base.add_freejoint(name="base_free")
    # Frictionless ball caster. MuJoCo mixes contact parameters by taking the max
    # condim and friction of the two geoms, so the caster needs a higher priority
    # than the floor for its condim 1 (normal force only) to win.
    caster = spec.body(CASTER_LINK)
    for geom in caster.geoms:
        geom.condim = 1
        geom.friction = [0.0, 0.0, 0.0]
        geom.priority = 1
    for jname in WHEEL_JOINTS:
        lim = limits[jname]
        spec.joint(jname).armature = WHEEL_ARMATURE
        act = spec.add_actuator(name=jname.replace("_joint", "_velocity"), target=jname,
                                trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.set_to_velocity(kv=WHEEL_KV)
        act.ctrllimited = True
        act.ctrlrange = [-lim.velocity, lim.velocity]
        if lim.effort is not None:
            act.forcelimited = True
            act.forcerange = [-lim.effort, lim.effort]
    lidar = spec.body(LIDAR_LINK)
    for i, ang in enumerate(beam_angles(beams)):
        site = lidar.add_site(name=f"scan_{i:03d}", pos=[0.0, 0.0, 0.0], quat=_beam_quat(ang),
                              size=[0.002, 0.002, 0.002])
        spec.add_sensor(name=f"scan_{i:03d}", type=mujoco.mjtSensor.mjSENS_RANGEFINDER,
                        objtype=mujoco.mjtObj.mjOBJ_SITE, objname=site.name,
                        intprm=[1, 0, 0])  # data="dist": one value per beam
    return spec


def arm_spec() -> mujoco.MjSpec:
    """The URDF arm plus joint velocity actuators and gravity compensation of its links."""
    spec = load_urdf(*ARM_URDF)
    limits = urdf_joint_limits(*ARM_URDF)
    for body in spec.bodies:
        if body.name not in ("world", TOOL_LINK):
            body.gravcomp = 1.0
    for jname in ARM_JOINTS:
        lim = limits[jname]
        spec.joint(jname).armature = ARM_ARMATURE
        act = spec.add_actuator(name=f"{jname}_velocity", target=jname,
                                trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.set_to_velocity(kv=ARM_KV)
        act.ctrllimited = True
        act.ctrlrange = [-lim.velocity, lim.velocity]
        if lim.effort is not None:
            act.forcelimited = True
            act.forcerange = [-lim.effort, lim.effort]
    return spec


def attach_diff_drive(world: mujoco.MjSpec, prefix: str = "robot/",
                      pos=(0.0, 0.0, 0.0), beams: int = SCAN_BEAMS) -> mujoco.MjSpec:
    """Attach the base into ``world`` at ``pos`` (a frame on the world body).

    ``beams=0`` leaves the lidar out: same bodies, geoms and joints, so the same physics.
    """
    frame = world.worldbody.add_frame(pos=list(pos))
    world.attach(diff_drive_spec(beams), prefix=prefix, frame=frame)
    return world


def attach_arm(world: mujoco.MjSpec, site: str = "arm_mount", prefix: str = "arm/") -> mujoco.MjSpec:
    """Attach the arm's base_link at the world's mounting site (welded, no free joint)."""
    world.attach(arm_spec(), prefix=prefix, site=world.site(site))
    return world


@dataclass(frozen=True)
class DiffDriveModel:
    """Indices into a compiled world with the base attached, and its drive geometry."""

    base_body: int
    free_qpos: int  # qpos address of the free joint (x y z qw qx qy qz)
    free_dof: int  # dof address (vx vy vz in world, wx wy wz in body frame)
    wheel_actuators: tuple[int, int]  # left, right
    scan_sensor_adr: int  # sensordata address of beam 0 (beams are consecutive)
    beams: int
    wheel_radius: float
    wheel_separation: float
    max_wheel_velocity: float
    robot_geoms: np.ndarray
    robot_radius: float  # farthest collision point from the base origin in the xy plane

    @classmethod
    def from_model(cls, model: mujoco.MjModel, prefix: str = "robot/") -> "DiffDriveModel":
        base = model.body(prefix + BASE_LINK).id
        jnt = model.joint(prefix + "base_free").id
        left = model.body(prefix + WHEEL_LINKS[0]).id
        right = model.body(prefix + WHEEL_LINKS[1]).id
        wheel_geom = [g for g in range(model.ngeom) if model.geom_bodyid[g] == left][0]
        radius = float(model.geom_size[wheel_geom][0])
        separation = float(np.linalg.norm(model.body_pos[left] - model.body_pos[right]))
        acts = tuple(model.actuator(prefix + j.replace("_joint", "_velocity")).id for j in WHEEL_JOINTS)
        vmax = float(min(model.actuator_ctrlrange[a][1] for a in acts))
        sensors = [model.sensor(f"{prefix}scan_{i:03d}") for i in range(SCAN_BEAMS)]
        adr = int(sensors[0].adr[0])
        if [int(s.adr[0]) for s in sensors] != list(range(adr, adr + SCAN_BEAMS)):
            raise RuntimeError("lidar rangefinders are not consecutive in sensordata")
        bodies = {base} | {b for b in range(model.nbody) if model.body_rootid[b] == base}
        geoms = np.array([g for g in range(model.ngeom) if model.geom_bodyid[g] in bodies])
        # Footprint radius from the geoms' bounding boxes in the base frame.
        data = mujoco.MjData(model)
        mujoco.mj_kinematics(model, data)
        origin = data.xpos[base]
        rmax = 0.0
        for g in geoms:
            half = model.geom_aabb[g][3:]
            centre = data.geom_xpos[g] + data.geom_xmat[g].reshape(3, 3) @ model.geom_aabb[g][:3]
            corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
            pts = centre + (corners * half) @ data.geom_xmat[g].reshape(3, 3).T
            rmax = max(rmax, float(np.max(np.linalg.norm(pts[:, :2] - origin[:2], axis=1))))
        return cls(base, int(model.jnt_qposadr[jnt]), int(model.jnt_dofadr[jnt]), acts, adr,
                   SCAN_BEAMS, radius, separation, vmax, geoms, rmax)


@dataclass(frozen=True)
class ArmModel:
    """Indices into a compiled world with the arm attached."""

    base_body: int
    tool_body: int
    qpos_adr: np.ndarray
    dof_adr: np.ndarray
    actuators: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    max_velocity: np.ndarray

    @classmethod
    def from_model(cls, model: mujoco.MjModel, prefix: str = "arm/") -> "ArmModel":
        jids = [model.joint(prefix + j).id for j in ARM_JOINTS]
        acts = [model.actuator(f"{prefix}{j}_velocity").id for j in ARM_JOINTS]
        return cls(model.body(prefix + BASE_LINK).id, model.body(prefix + TOOL_LINK).id,
                   np.array([model.jnt_qposadr[j] for j in jids]),
                   np.array([model.jnt_dofadr[j] for j in jids]),
                   np.array(acts),
                   np.array([model.jnt_range[j][0] for j in jids]),
                   np.array([model.jnt_range[j][1] for j in jids]),
                   np.array([model.actuator_ctrlrange[a][1] for a in acts]))
