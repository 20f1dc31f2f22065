"""The manipulator task family: a 3-joint arm on a table whose dynamics change per task.

``ArmSim`` is the physics core (no gymnasium, no ROS), used by ``ManipulatorEnv``
and by the ROS sim node. Per task it samples (``ArmTask``, from the ranges of an
``ArmFamily``): an actuator calibration per joint (a command scale and a sign: a
miswired motor or a mirrored joint convention, the classic sim-to-real bug), a
payload mass at ``tool0`` (not gravity compensated, so it makes the arm sag), viscous
joint damping, the velocity-servo gain (scales how hard the joints track commands
and resist the payload), a command latency in control steps, and observation noise
on the joint state. The calibration is what makes adaptation matter: with a sign
unknown, no fixed controller knows which way to drive a joint.

Targets are sampled from the reachable workspace (forward kinematics of random joint
configurations inside the limits, above the table), or, in the hidden-goal variant,
the goal is one of ``SPOT_CONFIGS``'s marked spots, the same all task long and never
observed: only the reward says when the tool is there.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass

import gymnasium as gym
import mujoco
import numpy as np

from l2l_ros.resources import share_path
from l2l_ros.tasks import robots
from l2l_ros.tasks.family_spec import family_from_spec
from l2l_ros.tasks.encoding import (ARM_JOINTS, ARM_MAX_JOINT_VELOCITY, ARM_OBS_DIM,
                                    encode_manipulator, manipulator_action_to_command)

ARM_PREFIX = "arm/"
#: rad from a URDF position limit at which the simulated driver stops driving a joint towards it.
LIMIT_MARGIN = 0.02
#: Arm pose at the start of every task (rad): elbow bent, tool in front of the base.
HOME_Q = np.array([0.0, 0.4, 1.2])
#: Joint configurations (pan, lift, elbow; rad) of the hidden-goal variant's marked spots
#: on the table, left to right: 12 cm above the table, 0.3 to 0.5 m from the base.
SPOT_CONFIGS = ((-1.0, 1.2, 1.0), (-0.35, 1.2, 1.0), (0.35, 1.2, 1.0), (1.0, 1.2, 1.0))


#: MuJoCo integrators by name (sim/table.xml uses implicitfast).
INTEGRATORS = {"euler": mujoco.mjtIntegrator.mjINT_EULER, "rk4": mujoco.mjtIntegrator.mjINT_RK4,
               "implicit": mujoco.mjtIntegrator.mjINT_IMPLICIT,
               "implicitfast": mujoco.mjtIntegrator.mjINT_IMPLICITFAST}


@dataclass(frozen=True)
class ArmFamily:
    """The ranges one task's dynamics are drawn from (uniform unless said otherwise).

    A range whose ends are equal (or ``flip_prob`` 0) switches that randomization off
    and draws nothing from the task's random stream, so ``ArmFamily.preset("nominal_calibration")``
    reproduces the family before calibration was randomized, task for task.
    """

    #: Command scale per joint, log-uniform: the motor turns ``scale`` times the command.
    scale: tuple[float, float] = (1 / 3, 3.0)
    #: Probability that a joint's command sign is flipped (independent per joint).
    flip_prob: float = 0.5
    #: Payload at tool0, kg. 1.4 kg at full reach holds the weakest servo (gain 0.5) at
    #: 1.5 rad/s of sag, three quarters of the joints' 2 rad/s: near saturation.
    payload: tuple[float, float] = (0.0, 1.4)
    damping: tuple[float, float] = (0.05, 2.0)  # N m s/rad per joint
    gain: tuple[float, float] = (0.5, 1.5)  # multiplier on robots.ARM_KV
    latency: tuple[int, int] = (0, 3)  # control steps, both ends included
    q_noise_max: float = 0.01  # rad, std drawn uniform in [0, max]
    qd_noise_max: float = 0.05  # rad/s

    PRESETS = ("sim2real", "nominal_calibration", "out_of_range")

    def __post_init__(self):
        for name in ("scale", "payload", "damping", "gain", "latency"):
            lo, hi = getattr(self, name)
            if not (np.isfinite(lo) and np.isfinite(hi) and 0 <= lo <= hi):
                raise ValueError(f"arm family {name} range must be 0 <= low <= high, got {(lo, hi)}")
        if self.scale[0] <= 0 or self.gain[0] <= 0:
            raise ValueError(f"arm family scale and gain must be positive, got {self.scale}, {self.gain}")
        if any(int(v) != v for v in self.latency):
            raise ValueError(f"arm family latency is in whole control steps, got {self.latency}")
        if not 0.0 <= self.flip_prob <= 1.0:
            raise ValueError(f"arm family flip_prob must be in [0, 1], got {self.flip_prob}")
        if not (0.0 <= self.q_noise_max < 1.0 and 0.0 <= self.qd_noise_max < 10.0):
            raise ValueError(f"arm family noise out of range: q {self.q_noise_max} rad, qd {self.qd_noise_max} rad/s")

    @classmethod
    def preset(cls, name: str) -> "ArmFamily":
        """``sim2real`` (the default: calibration, payload, dynamics, latency, noise);
        ``nominal_calibration`` (scale 1, no flips, payload up to 0.5 kg: the family before
        issue 30); ``out_of_range`` (every range widened past ``sim2real``'s, for robustness)."""
        if name == "sim2real":
            return cls()
        if name == "nominal_calibration":
            return cls(scale=(1.0, 1.0), flip_prob=0.0, payload=(0.0, 0.5))
        if name == "out_of_range":
            return cls(scale=(1 / 5, 5.0), payload=(0.0, 2.0), damping=(0.05, 4.0), gain=(0.35, 2.0),
                       latency=(0, 5), q_noise_max=0.02, qd_noise_max=0.1)
        raise ValueError(f"unknown arm family preset {name!r}; one of {', '.join(cls.PRESETS)}")

    @classmethod
    def from_spec(cls, spec: "str | dict | ArmFamily | None") -> "ArmFamily":
        """A preset name, a dict (``{"preset": name, field: value, ...}``; fields override the
        preset, default ``sim2real``), an ArmFamily, or None (``sim2real``)."""
        return family_from_spec(cls, spec, "arm family", "sim2real",
                                lambda name, value: tuple(value) if isinstance(value, list) else value)


def _uniform(rng: np.random.Generator, lo_hi, size=None):
    lo, hi = lo_hi
    if lo == hi:
        return np.full(size, float(lo)) if size else float(lo)
    return rng.uniform(lo, hi, size=size)


@dataclass(frozen=True)
class ArmTask:
    """Dynamics of one task."""

    payload: float  # kg at tool0
    damping: tuple[float, float, float]  # N m s/rad per joint
    gain: float  # multiplier on the nominal velocity-servo gain robots.ARM_KV
    latency: int  # control steps between a command and its effect
    q_noise: float  # std of joint position noise, rad
    qd_noise: float  # std of joint velocity noise, rad/s
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)  # motor velocity per commanded velocity
    sign: tuple[int, int, int] = (1, 1, 1)  # -1: that joint's command is reversed

    @classmethod
    def sample(cls, rng: np.random.Generator, family: ArmFamily | None = None) -> "ArmTask":
        f = family or ArmFamily()
        payload = float(_uniform(rng, f.payload))
        damping = tuple(float(x) for x in _uniform(rng, f.damping, 3))
        gain = float(_uniform(rng, f.gain))
        lat_lo, lat_hi = f.latency
        latency = int(rng.integers(lat_lo, lat_hi + 1)) if lat_hi > lat_lo else int(lat_lo)
        q_noise = float(rng.uniform(0.0, f.q_noise_max)) if f.q_noise_max else 0.0
        qd_noise = float(rng.uniform(0.0, f.qd_noise_max)) if f.qd_noise_max else 0.0
        log_scale = _uniform(rng, np.log(f.scale), 3)
        flips = rng.random(3) < f.flip_prob if f.flip_prob > 0 else np.zeros(3, bool)
        return cls(payload, damping, gain, latency, q_noise, qd_noise,
                   scale=tuple(float(x) for x in np.exp(log_scale)),
                   sign=tuple(-1 if flip else 1 for flip in flips))

    @classmethod
    def nominal(cls) -> "ArmTask":
        return cls(0.0, (0.1, 0.1, 0.1), 1.0, 0, 0.0, 0.0)

    @property
    def calibration(self) -> np.ndarray:
        """Motor velocity per commanded velocity, per joint (sign times scale)."""
        return np.asarray(self.sign, float) * np.asarray(self.scale, float)

    @property
    def flips(self) -> int:
        return sum(s < 0 for s in self.sign)


class ArmSim:
    """MuJoCo arm on a table with per-task dynamics; one ``step`` is one control period."""

    def __init__(self, control_period: float = 0.05, physics_timestep: float = 0.005,
                 family: "str | dict | ArmFamily | None" = None, hidden_goal: bool = False,
                 integrator: str = "implicitfast", substep_jitter: int = 0,
                 extra_q_noise: float = 0.0, extra_qd_noise: float = 0.0):
        """``integrator``, ``physics_timestep``, ``substep_jitter`` (each control period lasts
        a random number of physics steps within this many of nominal: a control-rate jitter)
        and ``extra_*_noise`` (rad, rad/s, added to the task's) are a reality gap for a
        policy trained with the defaults: the sim-to-sim check of a deployment."""
        if integrator not in INTEGRATORS:
            raise ValueError(f"unknown integrator {integrator!r}; one of {', '.join(INTEGRATORS)}")
        if not (0.0 <= extra_q_noise < 1.0 and 0.0 <= extra_qd_noise < 10.0):
            raise ValueError(f"extra noise out of range: {extra_q_noise} rad, {extra_qd_noise} rad/s")
        self.family = ArmFamily.from_spec(family)
        self.hidden_goal = bool(hidden_goal)
        self.control_period = float(control_period)
        self.substeps = max(1, int(round(self.control_period / physics_timestep)))
        self.substep_jitter = min(max(0, int(substep_jitter)), self.substeps - 1)
        self.extra_noise = (float(extra_q_noise), float(extra_qd_noise))
        self._jitter_rng = np.random.default_rng(0)
        spec = mujoco.MjSpec.from_file(str(share_path("sim", "table.xml")))
        spec.option.timestep = self.control_period / self.substeps
        spec.option.integrator = INTEGRATORS[integrator]
        robots.attach_arm(spec, prefix=ARM_PREFIX)
        self.spec = spec
        self.model = spec.compile()
        self.data = mujoco.MjData(self.model)
        self._scratch = mujoco.MjData(self.model)
        self.arm = robots.ArmModel.from_model(self.model, ARM_PREFIX)
        m = self.model
        self._tool_mass0 = float(m.body_mass[self.arm.tool_body])
        self._tool_inertia0 = m.body_inertia[self.arm.tool_body].copy()
        self._kv0 = m.actuator_gainprm[self.arm.actuators, 0].copy()
        self._target = np.zeros(3)
        self._noise_rng = np.random.default_rng(0)
        self._queue: collections.deque = collections.deque()
        self.task = ArmTask.nominal()
        self.trial = 0
        self.spots = np.array([self.forward_kinematics(np.array(q)) for q in SPOT_CONFIGS])
        self.spot = 0
        self.new_task(np.random.default_rng(0), task=ArmTask.nominal())

    # --- frames ---------------------------------------------------------------------
    def _to_base(self, data: mujoco.MjData, p_world: np.ndarray) -> np.ndarray:
        b = self.arm.base_body
        return data.xmat[b].reshape(3, 3).T @ (p_world - data.xpos[b])

    def ee_position(self) -> np.ndarray:
        """tool0 position in the arm base frame (m), noise free."""
        mujoco.mj_kinematics(self.model, self.data)
        return self._to_base(self.data, self.data.xpos[self.arm.tool_body].copy())

    def forward_kinematics(self, q: np.ndarray) -> np.ndarray:
        d = self._scratch
        d.qpos[self.arm.qpos_adr] = q
        mujoco.mj_kinematics(self.model, d)
        return self._to_base(d, d.xpos[self.arm.tool_body].copy())

    # --- task / trial -----------------------------------------------------------------
    @property
    def target(self) -> np.ndarray:
        return self._target.copy()

    @property
    def time(self) -> float:
        return float(self.data.time)

    def new_task(self, rng: np.random.Generator, task: ArmTask | None = None) -> ArmTask:
        """Sample dynamics (or use ``task``), move to HOME_Q at rest, sample a target
        (hidden goal: the spot of this task)."""
        self.task = ArmTask.sample(rng, self.family) if task is None else task
        m, a = self.model, self.arm
        t = self.task
        m.body_mass[a.tool_body] = self._tool_mass0 + t.payload
        # Payload as a solid sphere of radius 0.04 m about tool0.
        m.body_inertia[a.tool_body] = self._tool_inertia0 + 0.4 * t.payload * 0.04 ** 2
        m.dof_damping[a.dof_adr] = t.damping
        kv = self._kv0 * t.gain
        m.actuator_gainprm[a.actuators, 0] = kv
        m.actuator_biasprm[a.actuators, 2] = -kv
        self._noise_rng = np.random.default_rng(rng.integers(2 ** 63))
        if self.substep_jitter:  # its own stream: the tasks stay those of the jitter-free family
            self._jitter_rng = np.random.default_rng(self._noise_rng.integers(2 ** 63))
        self.trial = 0
        self.go_home()
        if self.hidden_goal:
            self.spot = int(rng.integers(len(self.spots)))
            self._target = self.spots[self.spot].copy()
        else:
            self.new_target(rng)
        return self.task

    def go_home(self) -> None:
        """Put the arm at HOME_Q at rest with no command in flight (sim time keeps running)."""
        m, d = self.model, self.data
        t0 = d.time  # sim time stays monotonic across tasks (/clock)
        mujoco.mj_resetData(m, d)
        d.time = t0
        d.qpos[self.arm.qpos_adr] = HOME_Q
        mujoco.mj_forward(m, d)
        self._queue = collections.deque([np.zeros(3)] * self.task.latency)

    def new_target(self, rng: np.random.Generator) -> np.ndarray:
        """A reachable target in the base frame: FK of a random configuration, above the table."""
        lo, hi = self.arm.lower, self.arm.upper
        for _ in range(1000):
            q = np.array([rng.uniform(-np.pi / 2, np.pi / 2),
                          rng.uniform(max(lo[1], -0.2), min(hi[1], 1.4)),
                          rng.uniform(max(lo[2], 0.2), min(hi[2], 2.2))])
            p = self.forward_kinematics(q)
            if p[2] > 0.08 and np.hypot(p[0], p[1]) > 0.15:
                self._target = p
                return self.target
        raise RuntimeError("could not sample a reachable target")

    def next_trial(self, rng: np.random.Generator) -> np.ndarray:
        """Counts a trial. A new target, the arm stays where it is; hidden goal: the same
        spot, the arm back home (trial 1 is a search, later trials can use memory)."""
        self.trial += 1
        if self.hidden_goal:
            self.go_home()
            return self.target
        return self.new_target(rng)

    # --- stepping / sensing --------------------------------------------------------------
    def step(self, qd_cmd) -> None:
        """Apply joint velocity commands (rad/s, clipped to ARM_MAX_JOINT_VELOCITY, non-finite
        -> 0) after ``task.latency`` control steps, for one control period. The motors turn
        the task's calibration (sign x scale) times the command, within the joints' limits."""
        cmd = manipulator_action_to_command(np.asarray(qd_cmd, dtype=np.float64)
                                            / ARM_MAX_JOINT_VELOCITY)
        self._queue.append(cmd)
        applied = self._queue.popleft()
        motor = np.clip(self.task.calibration * applied, -self.arm.max_velocity, self.arm.max_velocity)
        substeps = self.substeps
        if self.substep_jitter:
            substeps += int(self._jitter_rng.integers(-self.substep_jitter, self.substep_jitter + 1))
        a, ctrl = self.arm, self.data.ctrl
        # The driver's soft limits (as a ros2_control hardware interface has them), in motor
        # space where the direction is known: a joint within LIMIT_MARGIN of a URDF limit is
        # not driven further towards it, whatever it is commanded. Checked every physics
        # step, but only in a period that could bring a joint there (at twice the joints'
        # velocity limit): elsewhere the check costs nothing on the training path.
        q = self.data.qpos[a.qpos_adr]
        reach = LIMIT_MARGIN + 2.0 * a.max_velocity * substeps * self.model.opt.timestep
        guard = bool(((q > a.upper - reach) | (q < a.lower + reach)).any())
        ctrl[a.actuators] = motor
        for _ in range(substeps):
            if guard:
                q = self.data.qpos[a.qpos_adr]
                towards = ((q > a.upper - LIMIT_MARGIN) & (motor > 0)) | ((q < a.lower + LIMIT_MARGIN) & (motor < 0))
                ctrl[a.actuators] = np.where(towards, 0.0, motor)
            mujoco.mj_step(self.model, self.data)

    def joint_state(self, noisy: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(q, qd) of ARM_JOINTS, with the task's observation noise unless ``noisy=False``."""
        q = self.data.qpos[self.arm.qpos_adr].copy()
        qd = self.data.qvel[self.arm.dof_adr].copy()
        if noisy:
            q_std, qd_std = self.task.q_noise + self.extra_noise[0], self.task.qd_noise + self.extra_noise[1]
            q += self._noise_rng.normal(0.0, q_std, 3) if q_std else 0.0
            qd += self._noise_rng.normal(0.0, qd_std, 3) if qd_std else 0.0
        return q, qd

    def distance(self) -> float:
        return float(np.linalg.norm(self.ee_position() - self._target))


class ManipulatorEnv(gym.Env):
    """Meta-RL reaching: one episode is one task (arm dynamics) of many reaching trials.

    Action: ``Box(-1, 1, (3,))`` decoded by ``encoding.manipulator_action_to_command``.
    Observation: ``encoding.encode_manipulator(q, qd, target)`` with the task's noisy q, qd
    (hidden goal: the target reads as zeros, as a node without a ``target`` topic feeds it).
    Reward per control step: ``-distance_scale * |ee - target|`` (m; default scale 1;
    none with a hidden goal, where it would give the goal away), plus ``reach_bonus``
    (default 1) when the tool is within ``tolerance`` (default 0.03 m) of the target;
    that ends the trial and ``info["trial_end"]`` is True: a new target is sampled and
    the arm stays where it is (hidden goal: the same spot, the arm back home). Never
    terminated; truncated after ``task_steps`` (default 200 = 10 s) control steps.
    ``family``: the ranges of the per-task dynamics (``ArmFamily.from_spec``: a preset
    name or a dict; default ``sim2real``). ``integrator``, ``physics_timestep``,
    ``substep_jitter``, ``extra_q_noise``, ``extra_qd_noise``: a reality gap (``ArmSim``).
    info: goal (the target, base frame), target, trial, reached_goal, collided (always
    False: no obstacles), distance, pose (tool0 xyz), trial_end, task (ArmTask).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, task_steps: int = 200, control_period: float = 0.05,
                 physics_timestep: float = 0.005, tolerance: float = 0.03,
                 distance_scale: float = 1.0, reach_bonus: float = 1.0,
                 family: "str | dict | ArmFamily | None" = None, hidden_goal: bool = False,
                 integrator: str = "implicitfast", substep_jitter: int = 0, extra_q_noise: float = 0.0,
                 extra_qd_noise: float = 0.0, render_mode: str | None = None):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"ManipulatorEnv renders rgb_array only, not {render_mode!r}")
        self.sim = ArmSim(control_period, physics_timestep, family=family, hidden_goal=hidden_goal,
                          integrator=integrator, substep_jitter=substep_jitter, extra_q_noise=extra_q_noise,
                          extra_qd_noise=extra_qd_noise)
        self.hidden_goal = self.sim.hidden_goal
        self.task_steps = int(task_steps)
        self.tolerance = float(tolerance)
        self.distance_scale = float(distance_scale)
        self.reach_bonus = float(reach_bonus)
        self.render_mode = render_mode
        self._renderer = None
        self.action_space = gym.spaces.Box(-1.0, 1.0, (len(ARM_JOINTS),), np.float32)
        n = len(ARM_JOINTS)
        low = np.array([-1.0] * 2 * n + [-np.inf] * (ARM_OBS_DIM - 2 * n), np.float32)
        high = np.array([1.0] * 2 * n + [np.inf] * (ARM_OBS_DIM - 2 * n), np.float32)
        self.observation_space = gym.spaces.Box(low, high, dtype=np.float32)
        self._steps = 0
        self.seen_joint_state = self.sim.joint_state(noisy=False)

    def _obs(self) -> np.ndarray:
        q, qd = self.sim.joint_state()
        self.seen_joint_state = (q, qd)  # the observation's noisy state, which the ROS sim node publishes
        return encode_manipulator(q, qd, np.zeros(3) if self.hidden_goal else self.sim.target)

    def _info(self, reached: bool, dist: float, trial_end: bool, trial: int) -> dict:
        t = self.sim.target
        return {"goal": t, "target": t, "trial": trial, "reached_goal": reached,
                "collided": False, "distance": dist, "pose": tuple(self.sim.ee_position()),
                "trial_end": trial_end, "task": self.sim.task}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.sim.new_task(self.np_random, task=(options or {}).get("task"))
        self._steps = 0
        return self._obs(), self._info(False, self.sim.distance(), False, 0)

    def render(self):
        """Oblique view (``render_mode="rgb_array"``) of the arm on its table, the target in red."""
        if self.render_mode != "rgb_array":
            return None
        from l2l_ros.tasks.rendering import SceneRenderer, Sphere

        sim = self.sim
        mujoco.mj_kinematics(sim.model, sim.data)
        b = sim.arm.base_body
        base, rot = sim.data.xpos[b].copy(), sim.data.xmat[b].reshape(3, 3)
        if self._renderer is None:
            self._renderer = SceneRenderer(sim.model, lookat=tuple(base + [0.0, 0.0, 0.2]), distance=1.6,
                                           elevation=-30.0, azimuth=135.0)
        target = Sphere(tuple(base + rot @ sim.target), self.tolerance, (0.9, 0.1, 0.1, 0.8))
        return self._renderer.render(sim.data, [target])

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def step(self, action):
        return self.step_joint_velocities(manipulator_action_to_command(action))

    def step_joint_velocities(self, cmd: np.ndarray):
        """One control period with joint velocity commands (rad/s): the ROS sim node's entry point."""
        self.sim.step(cmd)
        dist = self.sim.distance()
        reward = 0.0 if self.hidden_goal else -self.distance_scale * dist
        trial = self.sim.trial
        reached = dist <= self.tolerance
        if reached:
            reward += self.reach_bonus
            self.sim.next_trial(self.np_random)
        self._steps += 1
        truncated = self._steps >= self.task_steps
        return self._obs(), float(reward), False, truncated, self._info(reached, dist, reached, trial)
