"""TF from the simulators: every robot link's pose relative to its parent, read from MuJoCo.

The URDF robots are attached into the MuJoCo worlds under a prefix (``robot/``,
``arm/``), so each MuJoCo body below the prefix is a URDF link of the same name and
its parent body the parent link. Links without a joint (the lidar, the caster) go
once on ``tf_static`` (transient local, as tf2_ros' static broadcaster); moving ones
(wheels, arm links) on ``tf`` every tick. Relative names: in a namespace they become
``<ns>/tf``, as Nav2's multi-robot setups use.

``tf2_msgs`` has no PyPI wheel; ``make setup`` builds it (tools/build_tf2_msgs.sh), and
a full ROS install has it. Without it the simulators publish no TF and say so once.
"""
from __future__ import annotations

import mujoco
import numpy as np
from geometry_msgs.msg import TransformStamped

try:
    from tf2_msgs.msg import TFMessage
except ImportError:  # pragma: no cover - depends on the install
    TFMessage = None


class LinkTransforms:
    """The parent -> child transforms of the links of one attached robot."""

    def __init__(self, model: mujoco.MjModel, prefix: str):
        self.model = model
        self.links: list[tuple[int, int, str, str, bool]] = []  # body, parent, child frame, parent frame, fixed
        for body in range(model.nbody):
            name, parent = model.body(body).name, int(model.body_parentid[body])
            parent_name = model.body(parent).name
            if name.startswith(prefix) and parent_name.startswith(prefix):
                fixed = int(model.body_jntnum[body]) == 0
                self.links.append((body, parent, name[len(prefix):], parent_name[len(prefix):], fixed))

    def transforms(self, data: mujoco.MjData, stamp, fixed: bool) -> list[TransformStamped]:
        out = []
        q_inv, q = np.zeros(4), np.zeros(4)
        for body, parent, child_frame, parent_frame, is_fixed in self.links:
            if is_fixed != fixed:
                continue
            rot = data.xmat[parent].reshape(3, 3)
            t = rot.T @ (data.xpos[body] - data.xpos[parent])
            mujoco.mju_negQuat(q_inv, data.xquat[parent])
            mujoco.mju_mulQuat(q, q_inv, data.xquat[body])
            msg = TransformStamped()
            msg.header.stamp = stamp
            msg.header.frame_id = parent_frame
            msg.child_frame_id = child_frame
            tr, r = msg.transform.translation, msg.transform.rotation
            tr.x, tr.y, tr.z = (float(v) for v in t)
            r.w, r.x, r.y, r.z = (float(v) for v in q)
            out.append(msg)
        return out
