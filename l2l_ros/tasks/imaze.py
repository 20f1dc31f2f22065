"""The I-maze navigation task family: MuJoCo physics core and gymnasium env.

Maze (all in the maze/odom frame, metres, z up)::

      G1 +-+          +-+ G0        alcoves (goal regions) at the four crossbar
         | |          | |           ends, opening outward (+y at the top, -y at
         | +----------+ |           the bottom)
         |   crossbar   |  y = +s
         +-----+  +-----+
               |  |
               |  |  stem along y through the origin (robot starts at (0, 0))
               |  |
         +-----+  +-----+
         |   crossbar   |  y = -s
         | +----------+ |
         | |          | |
      G2 +-+          +-+ G3

Goal indices go CCW by quadrant: 0 = (+x, +y), 1 = (-x, +y), 2 = (-x, -y), 3 = (+x, -y).
The geometry lives only in :class:`IMazeGeometry`; the walls are built from it with
``mujoco.MjSpec`` on top of ``sim/imaze.xml`` (floor, lights, options), and the
robot is attached from ``urdf/diff_drive.urdf`` by :mod:`l2l_ros.tasks.robots`.
"""
from __future__ import annotations

import collections
import itertools
import math
from dataclasses import dataclass

import gymnasium as gym
import mujoco
import numpy as np

from l2l_ros.resources import share_path
from l2l_ros.tasks import robots
from l2l_ros.tasks.imaze_family import IMazeFamily, IMazeGeometry, IMazeTask, Odometer
from l2l_ros.tasks.encoding import (IMAZE_ACTIONS, IMAZE_OBS_DIM, SCAN_RANGE_MAX, SCAN_RANGE_MIN, clamp_twist, encode_imaze,
                                    imaze_action_to_twist)

ROBOT_PREFIX = "robot/"


@dataclass
class IMazeStep:
    reached_goal: bool
    collided: bool


def _yaw_quat(yaw: float) -> np.ndarray:
    return np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])


class IMazeSim:
    """MuJoCo I-maze with a TurtleBot3-like base: no gymnasium, no ROS.

    Used by :class:`IMazeEnv` and by the ROS sim node. One ``step(v, w)`` is one
    control period: the twist is clamped with ``encoding.clamp_twist``, turned into
    wheel speeds with the wheel radius/separation read from the compiled URDF model
    (wheel speeds over the URDF velocity limit are scaled down together, keeping the
    path curvature), and physics runs ``control_period / physics_timestep`` steps.

    Two compiled models share the state layout: ``model`` (physics: no lidar, one
    contact sensor per wall that counts the robot's contacts with it, cheap to
    evaluate every substep) steps the world; ``lidar_model`` (the same bodies plus
    the rangefinders) evaluates the scan once per control step on the current pose,
    so the scan is exact for the pose ``odometry()`` reports. Rangefinders never
    run inside the substeps, and the collision check is one sensor read in C.
    """

    def __init__(self, geometry: IMazeGeometry = IMazeGeometry(), control_period: float = 0.2,
                 physics_timestep: float = 0.01):
        self.control_period = float(control_period)
        self.substeps = max(1, int(round(self.control_period / physics_timestep)))
        self._build(geometry)
        self._goal = 0
        self.trial = 0
        self.new_task(0, np.random.default_rng(0))

    def _build(self, geometry: IMazeGeometry) -> None:
        """Compile the physics and lidar models of a maze (a few ms)."""
        self.geometry = geometry
        time = float(self.data.time) if hasattr(self, "data") else 0.0
        self.lidar_model = self._compile(lidar=True)
        self.model = self._compile(lidar=False)
        self.data = mujoco.MjData(self.model)
        self.data.time = time
        self._lidar_data = mujoco.MjData(self.lidar_model)
        self.drive = robots.DiffDriveModel.from_model(self.lidar_model, ROBOT_PREFIX)
        twin = self.model
        if (twin.nq, twin.nv, twin.nu, twin.ngeom) != (self.lidar_model.nq, self.lidar_model.nv,
                                                        self.lidar_model.nu, self.lidar_model.ngeom):
            raise RuntimeError("physics and lidar models differ in their state layout")
        self.lidar_model.opt.disableflags |= int(mujoco.mjtDisableBit.mjDSBL_SENSOR)
        q, dof = self.drive.free_qpos, self.drive.free_dof
        self._qpos = self.data.qpos[q:q + 7]
        self._qvel = self.data.qvel[dof:dof + 6]
        self._scan_cache: np.ndarray | None = None
        base = self.drive.base_body
        self._nominal = (float(self.model.body_mass[base]), self.model.body_inertia[base].copy(),
                         self.model.geom_friction[:, 0].copy())
        self.friction, self.mass = 1.0, 1.0

    def set_world(self, geometry: IMazeGeometry, friction: float = 1.0, mass: float = 1.0) -> None:
        """A task's maze and robot: rebuilt only when the geometry changes; ``friction``
        multiplies the wheels' and the floor's sliding friction (MuJoCo takes the larger of
        the two), ``mass`` the base's mass and inertia. Call ``new_task`` next."""
        if geometry != self.geometry:
            self._build(geometry)
        if (friction, mass) != (self.friction, self.mass):
            base = self.drive.base_body
            mass0, inertia0, friction0 = self._nominal
            self.model.body_mass[base] = mass0 * mass
            self.model.body_inertia[base] = inertia0 * mass
            slide = [mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_GEOM, name) for name in
                     ("floor", ROBOT_PREFIX + "wheel_left", ROBOT_PREFIX + "wheel_right")]
            self.model.geom_friction[slide, 0] = friction0[slide] * friction
            mujoco.mj_setConst(self.model, self.data)  # the constants derived from masses
            self.friction, self.mass = float(friction), float(mass)

    def _compile(self, lidar: bool) -> mujoco.MjModel:
        spec = mujoco.MjSpec.from_file(str(share_path("sim", "imaze.xml")))
        spec.option.timestep = self.control_period / self.substeps
        self._add_walls(spec)
        robots.attach_diff_drive(spec, prefix=ROBOT_PREFIX, beams=robots.SCAN_BEAMS if lidar else 0)
        if not lidar:
            root = ROBOT_PREFIX + robots.BASE_LINK
            for i in range(self._n_walls):
                spec.add_sensor(name=f"hit_wall_{i:02d}", type=mujoco.mjtSensor.mjSENS_CONTACT,
                                objtype=mujoco.mjtObj.mjOBJ_XBODY, objname=root,
                                reftype=mujoco.mjtObj.mjOBJ_GEOM, refname=f"wall_{i:02d}",
                                intprm=[1, 0, 1])  # data="found", reduce none, num 1
        return spec.compile()

    # --- construction ---------------------------------------------------------------
    def _add_walls(self, spec: mujoco.MjSpec) -> None:
        g = self.geometry
        boxes = g.wall_boxes()
        self._n_walls = len(boxes)
        for i, ((cx, cy), (hx, hy)) in enumerate(boxes):
            spec.worldbody.add_geom(name=f"wall_{i:02d}", type=mujoco.mjtGeom.mjGEOM_BOX,
                                    pos=[cx, cy, g.wall_height / 2],
                                    size=[hx, hy, g.wall_height / 2], material="wall")
        for k, (x0, x1, y0, y1) in enumerate(g.goal_regions()):
            # Visual marker only (sites never collide and rangefinders ignore them).
            spec.worldbody.add_site(name=f"goal_{k}", type=mujoco.mjtGeom.mjGEOM_BOX,
                                    pos=[(x0 + x1) / 2, (y0 + y1) / 2, 0.001],
                                    size=[(x1 - x0) / 2, (y1 - y0) / 2, 0.001], material="goal")

    # --- task / trial -----------------------------------------------------------------
    @property
    def goal(self) -> int:
        return self._goal

    @property
    def time(self) -> float:
        return float(self.data.time)

    def new_task(self, goal: int, rng: np.random.Generator, heading: float | None = None,
                 position: tuple[float, float] = (0.0, 0.0)) -> None:
        """Start a task with goal alcove ``goal`` (0..3); robot at ``position`` (the centre)."""
        IMazeGeometry.goal_signs(goal)  # validates
        self._goal = int(goal)
        self.trial = 0
        self._place(rng, heading, position)

    def restart_trial(self, rng: np.random.Generator, heading: float | None = None,
                      position: tuple[float, float] = (0.0, 0.0)) -> None:
        """Robot back to ``position`` (the centre) with a random (or given) heading; goal unchanged."""
        self.trial += 1
        self._place(rng, heading, position)

    def _place(self, rng: np.random.Generator, heading: float | None, position: tuple[float, float]) -> None:
        x, y = (float(v) for v in position)
        if not any(x0 <= x <= x1 and y0 <= y <= y1 for x0, x1, y0, y1 in self.geometry.free_rectangles()):
            raise ValueError(f"start position {position} is outside the maze's free space")
        yaw = float(rng.uniform(-math.pi, math.pi)) if heading is None else float(heading)
        d = self.data
        t = d.time  # sim time stays monotonic across trials and tasks (/clock)
        mujoco.mj_resetData(self.model, d)
        d.time = t
        self._qpos[:3] = (x, y, 0.0)
        self._qpos[3:] = _yaw_quat(yaw)
        mujoco.mj_forward(self.model, d)
        self._scan_cache = None

    # --- stepping ---------------------------------------------------------------------
    def wheel_speeds(self, v: float, w: float) -> tuple[float, float]:
        """Clamped twist -> (left, right) wheel rad/s within the wheel velocity limit."""
        v, w = clamp_twist(v, w)
        r, sep = self.drive.wheel_radius, self.drive.wheel_separation
        left, right = (v - w * sep / 2) / r, (v + w * sep / 2) / r
        peak = max(abs(left), abs(right))
        if peak > self.drive.max_wheel_velocity:
            scale = self.drive.max_wheel_velocity / peak
            left, right = left * scale, right * scale
        return left, right

    def set_command(self, v: float, w: float) -> None:
        """Wheel controls for the next control period (``step`` or a batched rollout)."""
        self.data.ctrl[list(self.drive.wheel_actuators)] = self.wheel_speeds(v, w)

    def step(self, v: float, w: float) -> IMazeStep:
        self.set_command(v, w)
        m, d = self.model, self.data
        collided = False
        for _ in range(self.substeps):
            mujoco.mj_step(m, d)
            collided = collided or bool(d.sensordata.any())
        return self.finish_step(collided)

    def finish_step(self, collided: bool) -> IMazeStep:
        """Outcome of a control period whose physics has run (here or batched)."""
        self._scan_cache = None
        x, y = float(self._qpos[0]), float(self._qpos[1])
        return IMazeStep(reached_goal=self.geometry.in_goal(self._goal, x, y), collided=bool(collided))

    # --- sensing ----------------------------------------------------------------------
    def odometry(self) -> tuple[float, float, float, float, float]:
        """(x, y, yaw, v, w): base_link pose in the maze frame, forward speed and yaw rate."""
        qw, qx, qy, qz = self._qpos[3:7]
        yaw = math.atan2(2.0 * (qw * qz + qx * qy), 1.0 - 2.0 * (qy * qy + qz * qz))
        vx, vy = float(self._qvel[0]), float(self._qvel[1])  # world frame
        v = vx * math.cos(yaw) + vy * math.sin(yaw)
        # Free-joint angular velocity is in the body frame; rotate to world, take z.
        xmat = np.empty(9)
        mujoco.mju_quat2Mat(xmat, np.array([qw, qx, qy, qz]))
        w = float(xmat.reshape(3, 3)[2] @ self._qvel[3:6])
        return float(self._qpos[0]), float(self._qpos[1]), yaw, v, w

    def scan(self) -> np.ndarray:
        """SCAN_BEAMS lidar ranges (m), CCW from +x of base_scan.

        LaserScan semantics: no return or beyond SCAN_RANGE_MAX -> +inf; a hit closer
        than SCAN_RANGE_MIN reads SCAN_RANGE_MIN (the obstacle is there, just too near
        to measure; it must never look like free space).
        """
        if self._scan_cache is None:
            m, d = self.lidar_model, self._lidar_data
            d.qpos[:] = self.data.qpos
            m.opt.disableflags &= ~int(mujoco.mjtDisableBit.mjDSBL_SENSOR)
            try:
                mujoco.mj_kinematics(m, d)
                mujoco.mj_sensorPos(m, d)
            finally:
                m.opt.disableflags |= int(mujoco.mjtDisableBit.mjDSBL_SENSOR)
            adr = self.drive.scan_sensor_adr
            raw = np.array(d.sensordata[adr:adr + self.drive.beams], dtype=np.float64)
            out = np.where((raw < 0.0) | (raw > SCAN_RANGE_MAX), np.inf, raw)
            self._scan_cache = np.where(np.isfinite(out), np.maximum(out, SCAN_RANGE_MIN), out)
        return self._scan_cache.copy()

    def pose(self) -> tuple[float, float, float]:
        x, y, yaw, _, _ = self.odometry()
        return x, y, yaw

    # --- centreline route ------------------------------------------------------------
    # The time of a plain route: straight runs along corridor centrelines at the forward
    # primitive's speed, turns at the turn primitives' rate, no corner cutting, the first
    # turn pi/2 in expectation. NOT a lower bound (the policies cut corners and beat it);
    # it sizes the task budget and the cut-trial rule. The honest bounds every figure is
    # divided by are in ``tasks.imaze_oracle``.
    def _rates(self) -> tuple[float, float]:
        v = max(a[0] for a in IMAZE_ACTIONS)
        w = max(abs(a[1]) for a in IMAZE_ACTIONS if a[1] != 0.0)
        return v, w

    def _cost_s(self, dist: float, turn: float) -> float:
        v, w = self._rates()
        return dist / v + turn / w

    def _centre_to_goal_s(self) -> float:
        g = self.geometry
        dist = g.stem_half_length + g.crossbar_half_length + g.corridor_width / 2
        return self._cost_s(dist, math.pi / 2 + math.pi)  # expected initial turn + 2 corners

    def _alcove_to_alcove_s(self, a: int, b: int) -> float:
        g = self.geometry
        w, s, h = g.corridor_width, g.stem_half_length, g.crossbar_half_length
        if IMazeGeometry.goal_signs(a)[1] == IMazeGeometry.goal_signs(b)[1]:  # same crossbar
            return self._cost_s(w / 2 + 2 * h + w / 2, math.pi + math.pi)
        return self._cost_s(w / 2 + h + 2 * s + h + w / 2, math.pi + 2 * math.pi)

    def route_steps(self, goal: int) -> int:
        """Control steps of the centreline route from the centre into alcove ``goal``."""
        IMazeGeometry.goal_signs(goal)
        return int(math.ceil(self._centre_to_goal_s() / self.control_period))

    def route_search_steps(self) -> float:
        """Expected steps of the centreline routes to an unknown (uniform) goal, best visiting order."""
        best = math.inf
        for order in itertools.permutations(range(4)):
            t, total = self._centre_to_goal_s(), 0.0
            total += t
            for a, b in zip(order, order[1:]):
                t += self._alcove_to_alcove_s(a, b)
                total += t
            best = min(best, total / 4)
        return best / self.control_period


def _goal_probs(weights) -> np.ndarray | None:
    """Normalised goal probabilities from relative weights; None stays None (uniform)."""
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (4,) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"goal_weights must be 4 finite weights >= 0, not all 0; got {weights!r}")
    return w / w.sum()


class IMazeEnv(gym.Env):
    """Meta-RL I-maze: one episode is one task (a hidden goal alcove) of many trials.

    Actions: ``Discrete(len(IMAZE_ACTIONS))`` decoded by ``encoding.imaze_action_to_twist``.
    Observation: ``encoding.encode_imaze(*sim.odometry(), sim.scan())`` (float32,
    IMAZE_OBS_DIM), the same function the ROS policy node calls.

    Reward per control step:
      * +1 when the base origin enters the goal alcove; the robot is then put back at
        the centre with a random heading (a new trial) and ``info["trial_end"]`` is True;
      * -``collision_penalty`` (default 0.005) if the robot touched a wall during the step;
      * -``step_cost`` (default 0) every step;
      * +``explore_bonus`` (default 0.05) the first time in a task the base enters a
        ``explore_cell`` x ``explore_cell`` m grid cell (default 0.15 m). It names no
        goal, so it leaks nothing the policy must discover, and it stops paying once the
        maze is known: exploiting a found goal beats wandering. Without it a random
        policy never reaches an alcove (0 goals in 30 tasks) and PPO has nothing to learn from;
      * -``revisit_penalty`` (default 0) each time the base enters an alcove that is not
        the goal and that it already entered earlier in the task (training shaping
        against searching the same alcoves over and over). It names no goal either:
        which alcoves were searched in vain is in the policy's own history.

    ``goal_weights`` (default None: uniform, the task family of every evaluation) draws
    the goal alcove with these relative weights instead, for training curricula
    (``(0, 0, 1, 1)``: southern goals only).

    ``random_start`` (default 0) is the probability that a trial starts at a uniform
    point of the stem and crossbar centrelines instead of the centre, so that training
    sees every corridor whatever the policy's habits.

    ``family`` (default None: the one default maze with perfect sensors, drawing nothing)
    samples each task's maze, lidar noise and dropouts, drifting odometry, friction, mass
    and command latency from an :class:`~l2l_ros.tasks.imaze_family.IMazeFamily` (a
    preset name, a dict of ranges or a family). ``info["task"]`` then describes the draw.
    The observation is what the robot's sensors report (``sensed()``: the ROS sim node
    publishes the same); ``info["pose"]`` stays the true pose.

    The episode never terminates; it is truncated after ``task_steps`` control steps
    (default 2 x the centreline search time of the family's widest maze, rounded: one
    search plus a few direct runs). ``reset(options={"goal": g,
    "heading": yaw})`` fixes the goal and/or the initial heading.
    info: goal, trial (index of the trial the step belonged to, from 0), reached_goal,
    collided, pose (x, y, yaw; where the step ended, before any restart), trial_end.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 5}
    num_goals = 4  # the alcoves; info["goal"] is one of 0..3 (the trainer's memory loss reads it)

    def __init__(self, geometry: IMazeGeometry | None = None, task_steps: int | None = None,
                 control_period: float = 0.2, physics_timestep: float = 0.01,
                 collision_penalty: float = 0.005, step_cost: float = 0.0,
                 explore_bonus: float = 0.05, explore_cell: float = 0.15,
                 goal_weights: tuple[float, float, float, float] | None = None,
                 random_start: float = 0.0, revisit_penalty: float = 0.0,
                 family: "str | dict | IMazeFamily | None" = None,
                 render_mode: str | None = None):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"IMazeEnv renders rgb_array only, not {render_mode!r}")
        if family is not None and geometry is not None:
            raise ValueError("give a geometry or a family, not both (a family draws each task's maze)")
        self.family = IMazeFamily.from_spec(family) if family is not None else None
        self.sim = IMazeSim(geometry or IMazeGeometry(), control_period, physics_timestep)
        if task_steps is None:
            widest = self.sim if self.family is None else \
                IMazeSim(self.family.widest_geometry(), control_period, physics_timestep)
            task_steps = int(round(2.0 * widest.route_search_steps()))
        self.task_steps = int(task_steps)
        self.task = IMazeTask(self.sim.geometry)
        self._odometer = Odometer(self.task)
        self._noise_rng: np.random.Generator | None = None
        self._commands: collections.deque = collections.deque()
        self._sensed: tuple | None = None
        self.collision_penalty = float(collision_penalty)
        self.step_cost = float(step_cost)
        self.explore_bonus = float(explore_bonus)
        self.explore_cell = float(explore_cell)
        self.goal_probs = _goal_probs(goal_weights)
        if not 0.0 <= float(random_start) <= 1.0:
            raise ValueError(f"random_start is a probability in [0, 1], got {random_start!r}")
        self.random_start = float(random_start)
        if not (math.isfinite(float(revisit_penalty)) and float(revisit_penalty) >= 0.0):
            raise ValueError(f"revisit_penalty must be finite and >= 0, got {revisit_penalty!r}")
        self.revisit_penalty = float(revisit_penalty)
        self._visited: set[tuple[int, int]] = set()
        self._searched: set[int] = set()  # non-goal alcoves entered in this task
        self._alcove: int | None = None  # the alcove the base is in now
        self.render_mode = render_mode
        self._renderer = None
        self.action_space = gym.spaces.Discrete(len(IMAZE_ACTIONS))
        inf = np.inf
        low = np.array([-inf, -inf, -1, -1, -inf, -inf] + [0.0] * (IMAZE_OBS_DIM - 6), np.float32)
        high = np.array([inf, inf, 1, 1, inf, inf] + [1.0] * (IMAZE_OBS_DIM - 6), np.float32)
        self.observation_space = gym.spaces.Box(low, high, dtype=np.float32)
        self._steps = 0

    def _visit(self, x: float, y: float) -> bool:
        """Mark the grid cell at (x, y) visited in this task; True if it was new."""
        cell = (math.floor(x / self.explore_cell), math.floor(y / self.explore_cell))
        new = cell not in self._visited
        self._visited.add(cell)
        return new

    def _enter_alcove(self, x: float, y: float) -> bool:
        """Track alcove entries; True if this step entered a non-goal alcove searched before."""
        geometry = self.sim.geometry
        alcove = next((a for a in range(self.num_goals) if geometry.in_goal(a, x, y)), None)
        entered = alcove is not None and alcove != self._alcove and alcove != self.sim.goal
        self._alcove = alcove
        if not entered:
            return False
        repeated = alcove in self._searched
        self._searched.add(alcove)
        return repeated

    def _start(self) -> tuple[float, float]:
        # No draw at random_start == 0, so the default family's seeds keep their tasks.
        if self.random_start > 0.0 and self.np_random.uniform() < self.random_start:
            return self.sim.geometry.centreline_point(self.np_random)
        return (0.0, 0.0)

    def sensed(self) -> tuple[tuple[float, float, float, float, float], np.ndarray]:
        """What the robot's sensors report now: odometry (x, y, yaw, v, w) and the lidar
        ranges, with this task's drift, noise and dropouts (the same values until the
        next step, so the ROS node publishes what the observation encoded)."""
        if self._sensed is None:
            _, _, _, v, w = self.sim.odometry()
            x, y, yaw = self._odometer.pose
            scan = self.sim.scan()
            t, rng = self.task, self._noise_rng
            if rng is not None and t.lidar_noise > 0.0:
                hit = np.isfinite(scan)
                scan[hit] = np.maximum(scan[hit] + rng.normal(0.0, t.lidar_noise, int(hit.sum())), SCAN_RANGE_MIN)
                scan[scan > SCAN_RANGE_MAX] = np.inf
            if rng is not None and t.beam_dropout > 0.0:
                scan[rng.random(scan.size) < t.beam_dropout] = np.inf
            self._sensed = ((x, y, yaw, *self._odometer.twist(v, w)), scan)
        odometry, scan = self._sensed
        return odometry, scan.copy()

    def _obs(self) -> np.ndarray:
        odometry, scan = self.sensed()
        return encode_imaze(*odometry, scan)

    def delayed(self, v: float, w: float) -> tuple[float, float]:
        """The command that acts now: this one, or the one ``task.latency`` periods ago."""
        if self.task.latency == 0:
            return v, w
        self._commands.append((v, w))
        return self._commands.popleft()

    def _new_trial_sensors(self) -> None:
        self._odometer.anchor(*self.sim.pose())
        self._sensed = None

    def _info(self, reached: bool, collided: bool, trial_end: bool) -> dict:
        info = {"goal": self.sim.goal, "trial": self.sim.trial, "reached_goal": reached,
                "collided": collided, "pose": self.sim.pose(), "trial_end": trial_end}
        if self.family is not None:
            info["task"] = self.task.describe()
        return info

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = options or {}
        goal = options.get("goal")
        if goal is None:
            # integers(4) for the uniform family keeps every seed's task as it always was.
            goal = int(self.np_random.integers(4) if self.goal_probs is None
                       else self.np_random.choice(4, p=self.goal_probs))
        if self.family is not None:  # draws nothing for ranges that are off ("fixed")
            self.task = IMazeTask.sample(self.np_random, self.family)
            self.sim.set_world(self.task.geometry, self.task.friction, self.task.mass)
            noisy = self.task.lidar_noise > 0.0 or self.task.beam_dropout > 0.0
            self._noise_rng = np.random.default_rng(int(self.np_random.integers(2**63))) if noisy else None
            self._odometer = Odometer(self.task)
            self._commands = collections.deque([(0.0, 0.0)] * self.task.latency)
        self.sim.new_task(goal, self.np_random, heading=options.get("heading"), position=self._start())
        self._new_trial_sensors()
        self._visited = set()
        self._visit(*self.sim.pose()[:2])
        self._searched, self._alcove = set(), None
        self._steps = 0
        return self._obs(), self._info(False, False, False)

    def step(self, action):
        return self.step_twist(*imaze_action_to_twist(int(action)))

    def render(self):
        """Top view (``render_mode="rgb_array"``): the maze, the robot (a red dot, its heading
        in black) and the goal alcove in yellow."""
        if self.render_mode != "rgb_array":
            return None
        from l2l_ros.tasks.rendering import Box, SceneRenderer, Sphere

        g = self.sim.geometry
        if self._renderer is None:
            reach = max(g.stem_half_length + g.corridor_width / 2 + g.alcove_depth,
                        g.crossbar_half_length + g.corridor_width / 2) + g.wall_thickness
            self._renderer = SceneRenderer(self.sim.model, distance=3.6 * reach)
        x0, x1, y0, y1 = g.goal_region(self.sim.goal)
        goal = Box(((x0 + x1) / 2, (y0 + y1) / 2, 0.01), ((x1 - x0) / 2, (y1 - y0) / 2, 0.003),
                   (1.0, 0.85, 0.0, 1.0))
        x, y, yaw = self.sim.pose()
        robot = Sphere((x, y, 0.25), 0.06, (0.85, 0.1, 0.1, 1.0))  # the robot is small from above
        heading = Sphere((x + 0.08 * math.cos(yaw), y + 0.08 * math.sin(yaw), 0.25), 0.03, (0.1, 0.1, 0.1, 1.0))
        return self._renderer.render(self.sim.data, [goal, robot, heading])

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def step_twist(self, v: float, w: float):
        """One control period with a velocity command: the ROS sim node's entry point.

        Same episode logic as ``step``; the command is clamped to the drive limits.
        ``info["pose"]`` is where the step ended, before a reached goal sends the
        robot back to the centre.
        """
        return self.conclude_step(self.sim.step(*self.delayed(v, w)))

    def conclude_step(self, res: IMazeStep):
        """Rewards, trial restart and truncation of a control period whose physics has
        run: here in ``step_twist``, or batched for many envs by ``MetaIMazeVectorEnv``."""
        reward = -self.step_cost - (self.collision_penalty if res.collided else 0.0)
        trial = self.sim.trial
        pose = self.sim.pose()
        self._odometer.advance(*pose, self.sim.control_period)
        self._sensed = None
        if self._visit(pose[0], pose[1]):
            reward += self.explore_bonus
        if self.revisit_penalty and self._enter_alcove(pose[0], pose[1]):  # off by default: no work per step
            reward -= self.revisit_penalty
        if res.reached_goal:
            reward += 1.0
            self.sim.restart_trial(self.np_random, position=self._start())
            self._new_trial_sensors()
            self._alcove = None
        self._steps += 1
        truncated = self._steps >= self.task_steps
        info = self._info(res.reached_goal, res.collided, res.reached_goal)
        info["trial"] = trial  # the trial this step belonged to
        info["pose"] = pose
        return self._obs(), float(reward), False, truncated, info
