"""Classical reaching controllers for the arm family: the baselines and the oracle.

All of them act on what a policy sees (the encoded ``joint_states`` and ``target``,
``encoding.encode_manipulator``) and return an action in [-1, 1]^3, so they run
through the same evaluation loop as the networks. They know the arm's kinematics (the
URDF, as any classical controller does):

* ``ResolvedRateController``: joint velocities = pinv(J(q)) (K e + Ki * integral of e),
  e the tool-to-target error (a P or PI law in task space), clipped to the joint limits.
  It assumes the nominal arm: calibration 1, no latency, no payload.
* the same with ``oracle=True`` is given the task (``ArmTask``): it divides by the
  calibration (sign and scale), adds the servo's steady-state error under the payload's
  weight and the joint damping as feed-forward, and predicts the joints over the
  command latency from the commands still in flight. It is the reference a policy that
  identifies the arm should approach; it is not a proven bound (the gain is tuned, not
  optimal), so tables call it a reference, not an optimum.
* with ``identify=True`` as well, the oracle uses a joint's calibration only once the
  arm has shown it: once the commands on that joint that have taken effect add up, with
  their signs, to ``IDENTIFIED`` (in action units), i.e. once they have turned the joint
  one way long enough to see which way; before, it drives the joint as if nominal (sign
  +1, scale 1). Everything it does is then what a policy could infer from its history:
  the teacher of the networks (it probes by acting, as the student must).

No ROS and no torch here.
"""
from __future__ import annotations

import collections

import numpy as np

from l2l_ros.tasks import robots
from l2l_ros.tasks.encoding import ARM_JOINTS, ARM_MAX_JOINT_VELOCITY

N = len(ARM_JOINTS)
GRAVITY = 9.81
#: |Sum of the actions| on a joint, already in effect, after which its response has shown
#: the calibration (one full-speed step turns a joint at least 0.5 rad/s, ten times the
#: largest joint velocity noise of the family). Signed: exploration noise cancels out and
#: shows nothing through a latency the student does not know; persistent motion shows it.
#: (A first version summed |action|: the students' noise "identified" every joint within
#: a few steps, the teacher then asked for actions no history predicted, and the
#: imitation loss of the LSNN and the LSTM stayed at 2.2 to 2.6 for 80 updates.)
IDENTIFIED = 1.0


def decode_observation(obs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(q, qd, target) back from ``encode_manipulator``'s vector (the first 12 entries)."""
    o = np.asarray(obs, dtype=np.float64)
    q = np.arctan2(o[N:2 * N], o[:N])
    return q, o[2 * N:3 * N] * ARM_MAX_JOINT_VELOCITY, o[3 * N:3 * N + 3]


class ResolvedRateController:
    """A task-space P/PI reaching law through the arm's Jacobian (see the module docstring).

    ``gain`` K (1/s) on the tool-to-target error, ``integral_gain`` Ki (1/s^2; 0: a P
    law), ``damping`` lambda of the damped least-squares inverse near singularities.
    ``oracle=True``: ``reset(task=...)`` must give the task's ``ArmTask``.
    """

    privileged = False

    def __init__(self, gain: float = 6.0, integral_gain: float = 0.0, oracle: bool = False,
                 control_period: float = 0.05, damping: float = 0.02, identify: bool = False):
        from l2l_ros.tasks.manipulator import ArmSim

        if identify and not oracle:
            raise ValueError("identify is a mode of the oracle controller")
        self.gain, self.integral_gain = float(gain), float(integral_gain)
        self.oracle = self.privileged = bool(oracle)
        self.identify = bool(identify)
        self.dt = float(control_period)
        self.damping = float(damping)
        self.kin = ArmSim(control_period)  # kinematics only: forward_kinematics on a scratch state
        m, a = self.kin.model, self.kin.arm
        self.kv0 = m.actuator_gainprm[a.actuators, 0].copy()
        self.vmax = a.max_velocity.copy()
        mujoco_base = self.kin.data.xmat[a.base_body].reshape(3, 3)
        self.gravity_base = mujoco_base.T @ np.array([0.0, 0.0, -GRAVITY])
        self.task = None
        self._integral = np.zeros(3)
        self._in_flight: collections.deque = collections.deque()

    def reset(self, task=None) -> None:
        if self.oracle and task is None:
            raise ValueError("the oracle controller needs the task (reset(task=...))")
        self.task = task
        self._integral[:] = 0.0
        latency = task.latency if (self.oracle and task is not None) else 0
        self._in_flight = collections.deque([np.zeros(N)] * latency, maxlen=max(latency, 1))
        self._sent: list[np.ndarray] = []  # every executed action of the task
        self._evidence = np.zeros(N)  # sum of the actions per joint already in effect and observed
        self._known = np.zeros(N, bool)

    def jacobian(self, q: np.ndarray, eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
        """(tool position, d position / d q) at ``q`` in the base frame, by finite differences."""
        p0 = self.kin.forward_kinematics(q)
        jac = np.empty((3, N))
        for i in range(N):
            dq = q.copy()
            dq[i] += eps
            jac[:, i] = (self.kin.forward_kinematics(dq) - p0) / eps
        return p0, jac

    def _motor_velocity(self, commands) -> np.ndarray:
        return np.clip(self.calibration * commands, -self.vmax, self.vmax)

    def step(self, encoded_obs, prev_reward, trial_start, deterministic=True) -> np.ndarray:
        """The action (in [-1, 1]^3) for this observation; it is taken to be executed."""
        action = self.action(encoded_obs, prev_reward, trial_start)
        self.executed(action)
        return action

    def executed(self, action) -> None:
        """The action the arm was actually sent (the oracle predicts over the latency with it)."""
        action = np.clip(np.asarray(action, float), -1.0, 1.0)
        if self.oracle and self.task.latency:
            self._in_flight.append(action * ARM_MAX_JOINT_VELOCITY)
        if self.identify:
            self._sent.append(action)
            seen = len(self._sent) - 1 - self.task.latency  # sent at step k, seen after step k + latency
            if seen >= 0:
                self._evidence += self._sent[seen]

    @property
    def identified(self) -> np.ndarray:
        """Per joint: has the arm shown its calibration? (``identify``; once True it stays.)"""
        self._known |= np.abs(self._evidence) >= IDENTIFIED
        return self._known

    @property
    def calibration(self) -> np.ndarray:
        """The calibration the oracle acts on: the task's, or with ``identify`` nominal for the
        joints whose response has not been seen yet."""
        if self.identify:
            return np.where(self.identified, self.task.calibration, 1.0)
        return self.task.calibration

    def action(self, encoded_obs, prev_reward: float = 0.0, trial_start: bool = False) -> np.ndarray:
        """What the controller would send now, in [-1, 1]^3 (``executed`` not called)."""
        q, _, target = decode_observation(encoded_obs)
        if trial_start:
            self._integral[:] = 0.0
        if self.oracle and self.task.latency:
            # Where the joints will be when this command takes effect.
            q = q + self.dt * sum(self._motor_velocity(c) for c in self._in_flight)
        tool, jac = self.jacobian(q)
        error = target - tool
        self._integral += error * self.dt
        v = self.gain * error + self.integral_gain * self._integral
        jjt = jac @ jac.T + self.damping ** 2 * np.eye(3)
        qd = jac.T @ np.linalg.solve(jjt, v)
        qd = np.clip(qd, -self.vmax, self.vmax)
        if self.oracle:
            t = self.task
            kv = self.kv0 * t.gain
            payload_torque = jac.T @ (t.payload * self.gravity_base)  # generalized gravity force
            setpoint = qd * (1.0 + np.asarray(t.damping) / kv) - payload_torque / kv
            command = setpoint / self.calibration
        else:
            command = qd
        command = np.clip(command, -ARM_MAX_JOINT_VELOCITY, ARM_MAX_JOINT_VELOCITY)
        return (command / ARM_MAX_JOINT_VELOCITY).astype(np.float32)


class SpotSearcher:
    """The hidden-goal variant's scripted searcher: a reaching controller driven to the
    marked spots (``manipulator.SPOT_CONFIGS``), nearest unvisited spot first, until a
    reach is rewarded; from then on straight to that spot. With the oracle controller it
    is the reference for trial 1 (a search) and for later trials (a direct reach)."""

    def __init__(self, controller: ResolvedRateController, tolerance: float = 0.03):
        self.controller = controller
        self.privileged = controller.privileged
        self.tolerance = float(tolerance)
        self.spots = controller.kin.spots
        self.reset_search()

    def reset_search(self) -> None:
        self.visited: set[int] = set()
        self.goal: int | None = None
        self.current: int | None = None

    def reset(self, task=None) -> None:
        self.controller.reset(task=task) if self.privileged else self.controller.reset()
        self.reset_search()

    def step(self, encoded_obs, prev_reward, trial_start, deterministic=True) -> np.ndarray:
        action = self.action(encoded_obs, prev_reward, trial_start)
        self.controller.executed(action)
        return action

    def executed(self, action) -> None:
        self.controller.executed(action)

    def action(self, encoded_obs, prev_reward: float = 0.0, trial_start: bool = False) -> np.ndarray:
        """The action for this step (the search advances; ``executed`` not called)."""
        q, _, _ = decode_observation(encoded_obs)
        if trial_start and prev_reward > 0.5 and self.current is not None:
            self.goal = self.current
        tool = self.controller.kin.forward_kinematics(q)
        if self.goal is None:
            if self.current is not None and np.linalg.norm(tool - self.spots[self.current]) < self.tolerance:
                self.visited.add(self.current)  # there, no reward: not this one
                self.current = None
            if self.current is None:
                left = [i for i in range(len(self.spots)) if i not in self.visited] or list(range(len(self.spots)))
                self.current = min(left, key=lambda i: np.linalg.norm(tool - self.spots[i]))
        else:
            self.current = self.goal
        obs = np.asarray(encoded_obs, dtype=np.float64).copy()
        obs[3 * N:3 * N + 3] = self.spots[self.current]
        return self.controller.action(obs, prev_reward, trial_start)


#: Gains (K, Ki) of the controllers: the best of a grid on 100 tasks of seed 7 of the
#: sim2real family (a tuning seed, never an evaluation seed), re-run by ``l2l eval
#: manipulator --tune-gains`` (``evaluation.tune_arm_gains``). Resolved rate: K in
#: {2, 3, 4, 6, 8, 12}; PI: K in {4, 6, 8} x Ki in {2, 5, 10}; oracle: K in {4, ..., 20}.
ARM_GAINS = {"resolved_rate": (12.0, 0.0), "pi": (8.0, 10.0), "oracle": (20.0, 0.0)}
ARM_GAIN_GRID = {"resolved_rate": [(k, 0.0) for k in (2, 3, 4, 6, 8, 12)],
                 "pi": [(k, ki) for k in (4, 6, 8) for ki in (2, 5, 10)],
                 "oracle": [(k, 0.0) for k in (4, 6, 8, 10, 14, 20)]}


#: The arm's controllers in the evaluation table: the classical baselines, the oracle, and
#: the oracle that finds each joint's calibration by acting (the teacher of the networks).
ARM_CONTROLLERS = ("resolved_rate", "pi", "oracle", "oracle_identify")


def arm_controller(name: str, gains: tuple[float, float] | None = None, hidden_goal: bool = False):
    """An arm controller by name (``ARM_CONTROLLERS``); with a hidden goal wrapped in the
    spot searcher."""
    if name not in ARM_CONTROLLERS:
        raise ValueError(f"unknown arm controller {name!r}; one of {', '.join(ARM_CONTROLLERS)}")
    oracle = name.startswith("oracle")
    gain, integral = gains or ARM_GAINS["oracle" if oracle else name]
    controller = ResolvedRateController(gain, integral, oracle=oracle, identify=name == "oracle_identify")
    return SpotSearcher(controller) if hidden_goal else controller
