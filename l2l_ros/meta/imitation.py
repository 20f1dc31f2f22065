"""Meta-training by imitation of a teacher (DAgger), as an alternative outer loop to PPO.

Why: where a good policy for the whole task family is known, PPO has to rediscover
it from a noisy return, while imitation tells the network at every step what the
teacher would do *given the history the network itself made*: a dense signal.
Teachers: the finite-horizon Gittins index policy for bandits (how RL² and this
project score a bandit policy), a scripted map-knowing searcher for the I-maze
(``tasks.imaze_expert``), or any saved policy (distillation). The network still
learns to learn: its inputs are those of PPO training (the teacher's state, e.g. the
counts per arm or the alcoves already searched, is never an input), its weights are
frozen inside a task, and it must keep that state in its recurrent (spiking) state.
This is meta-learning by imitation (Ortega et al. 2019, "Meta-learning of
sequential strategies"; DAgger: Ross, Gordon & Bagnell 2011). What it gave on this
project's tasks, including where it did worse than PPO: the README's I-maze and
bandit sections.

One update (``imitation_update``, plugged into ``train.train`` when
``TrainConfig.teacher`` is set, so seeds, checkpoints, resume and logs are the same):

1. **Collect** one whole task per env. At every step the teacher gives its action
   set of equally good actions (its tied best arms; the lenient searcher's actions
   that keep to its route), as a uniform distribution, for the history so far; the
   executed action is the teacher's with probability ``beta`` (falling linearly from
   1 to 0 over ``teacher_mix_updates`` updates) and the policy's most likely action
   otherwise, so the policy learns on the states its own mistakes lead to (DAgger).
   Not a sample from the policy: a first run that executed samples collapsed. Once the
   teacher stopped driving, the near-uniform samples of a half-trained network made
   histories with nothing to learn from, and the cross-entropy rose back to uniform
   (k = 5: 1.6 nats, agreement with the teacher 0.95 -> 0.30 at n = 500). With
   ``teacher_soft`` (a saved policy's whole action distribution, or the tempered
   Gittins policy's, as the target) the policy's samples are executed instead:
   distilling a trained policy that is scored by its samples, from a network that
   already plays (the bundled bandit models' stage 2).
2. **Learn**: ``epochs`` passes over minibatches of whole tasks, full BPTT from the
   task start, minimising ``losses.teacher_nll``: minus the log of the probability the
   policy gives to the teacher's set (the cross-entropy when the set has one action;
   before this loss, runs minimised the cross-entropy to the uniform distribution on
   the set, which also pushed a student to spread over tied arms); with
   ``teacher_soft``, ``losses.teacher_cross_entropy`` to the teacher's distribution; with
   ``teacher_index_tau`` (Gittins only), ``losses.index_logit_loss`` to the index gaps read
   as logits, the policy's samples driving (the bundled k = 10 spiking model's last
   stages). The value head is not trained (nothing here uses it).
"""
from __future__ import annotations

import functools
import json
from typing import Protocol

import gymnasium as gym
import numpy as np
import torch

from l2l_ros.meta.distributed import sync_and_clip
from l2l_ros.meta.losses import INDEX_LOGIT_FLOOR, imitation_loss, masked_mean, teacher_targets
from l2l_ros.meta.rollout import collect_tasks
from l2l_ros.policy_base import RecurrentPolicy
from l2l_ros.tasks.encoding import (IMAZE_ACTIONS, IMAZE_MIRRORED_ACTIONS, IMAZE_OBS_DIM, encode_imaze,
                                    mirror_imaze_sensors)

__all__ = ["TEACHERS", "Teacher", "GittinsTeacher", "IMazeSearchTeacher", "PolicyTeacher", "ArmOracleTeacher",
           "make_teacher",
           "teacher_share", "imitation_update"]

TEACHERS = ("gittins", "searcher", "searcher-lenient", "arm-oracle")


class Teacher(Protocol):
    """What the imitation loop asks of a teacher, one task per env of a vector env."""

    def reset(self, envs: gym.vector.VectorEnv) -> None:
        """New tasks have just started in every env (after ``envs.reset``)."""

    def target(self, obs: np.ndarray, student: np.ndarray | None = None) -> np.ndarray:
        """``[B, A]`` probabilities of the teacher's action at the current step (target
        logits instead for a teacher whose ``logit_targets`` is true), whose
        observations (what the student sees) are ``obs[B, D]``; ``student`` ``[B, A]``:
        the student's own action probabilities there (a teacher may use them to choose
        among actions it values equally)."""

    def observe(self, actions: np.ndarray, rewards: np.ndarray) -> None:
        """The actions executed in every env and the rewards they earned."""


class GittinsTeacher:
    """The finite-horizon Gittins index policy on Beta(1, 1) priors, as a teacher.

    Same index table as the ``gittins`` baseline (``bandit_baselines``); the index of an
    arm depends only on its counts and the pulls left, so one table for the longest
    horizon serves every task. The target is uniform over the arms of highest index
    (the baseline breaks those ties uniformly at random).

    ``soft``: the target is ``softmax(index / temperature)`` instead. Why: matching the
    tied-best set pull by pull asks a network to resolve index differences far smaller
    than what they cost in reward, and set targets made the networks worse (the bandit
    log). At the default temperature, 0.01, the tempered policy itself scored 83.74
    (Gittins: 83.78) on 1000 bandits of (100, 10) and tries more arms (6.6 against 6.1).
    Arms with the same counts are interchangeable (same index, same future), so, given
    the ``student``'s probabilities, the mass of each such group is shared in the
    student's own proportions: the student is taught how much to explore, not to spread
    over arms it cannot tell apart. Neither version helped: the networks drifted towards
    uniform play on their own histories ("Soft Gittins targets" in the bandit log).
    """

    def __init__(self, k: int, max_pulls: int, soft: bool = False, temperature: float = 0.01,
                 index_tau: float = 0.0):
        from l2l_ros.tasks.bandit_baselines import gittins_index_table

        if soft and not temperature > 0:
            raise ValueError(f"a soft Gittins teacher needs a positive temperature, got {temperature}")
        if soft and index_tau:
            raise ValueError("soft targets and index targets are two different targets: choose one")
        self.k = int(k)
        self.soft, self.temperature = bool(soft), float(temperature)
        self.index_tau = float(index_tau)
        self.logit_targets = self.index_tau > 0
        self.table = gittins_index_table(int(max_pulls))

    def reset(self, envs: gym.vector.VectorEnv) -> None:
        horizons = getattr(envs, "n", None)
        if horizons is None:
            raise TypeError("the Gittins teacher needs the native bandit vector env (its per-task horizons)")
        B = envs.num_envs
        self.n = np.asarray(horizons, dtype=np.int64).copy()
        if self.n.max() > self.table.n:
            raise ValueError(f"a task of {self.n.max()} pulls is longer than the teacher's table ({self.table.n})")
        self.t = np.zeros(B, dtype=np.int64)
        self.s = np.zeros((B, self.k), dtype=np.int64)
        self.f = np.zeros((B, self.k), dtype=np.int64)

    def target(self, obs: np.ndarray | None = None, student: np.ndarray | None = None) -> np.ndarray:
        B = self.s.shape[0]
        out = np.full((B, self.k), 0.0 if self.logit_targets else 1.0 / self.k)  # tasks already over: anything
        left = self.n - self.t
        for h in np.unique(left[left >= 1]):
            rows = np.flatnonzero(left == h)
            index = self.table(self.s[rows], self.f[rows], int(h))
            if self.logit_targets:
                out[rows] = np.maximum((index - index.max(axis=1, keepdims=True)) / self.index_tau,
                                       -INDEX_LOGIT_FLOOR)
                continue
            if self.soft:
                z = np.exp((index - index.max(axis=1, keepdims=True)) / self.temperature)
                out[rows] = z / z.sum(axis=1, keepdims=True)
                continue
            best = index >= index.max(axis=1, keepdims=True) - 1e-12
            out[rows] = best / best.sum(axis=1, keepdims=True)
        if self.soft and student is not None:
            out = self._share_like(out, np.asarray(student, dtype=np.float64))
        return out

    def _share_like(self, target: np.ndarray, student: np.ndarray) -> np.ndarray:
        """Within each group of arms with equal counts, the group's target mass split in
        the student's proportions (evenly where the student gives the group nothing)."""
        same = (self.s[:, :, None] == self.s[:, None, :]) & (self.f[:, :, None] == self.f[:, None, :])
        group_mass = np.einsum("bij,bj->bi", same, target)
        student = student + 1e-12
        group_student = np.einsum("bij,bj->bi", same, student)
        return group_mass * student / group_student

    def observe(self, actions: np.ndarray, rewards: np.ndarray) -> None:
        rows = np.arange(self.s.shape[0])
        a = np.asarray(actions, dtype=np.int64)
        r = (np.asarray(rewards) > 0.5).astype(np.int64)
        self.s[rows, a] += r
        self.f[rows, a] += 1 - r
        self.t += 1


class IMazeSearchTeacher:
    """The scripted map-knowing searcher (``tasks.imaze_expert``) as the I-maze teacher:
    nearest unvisited alcove first, straight to the goal once a trial has ended there.

    ``lenient``: the target is the set of actions that keep to the searcher's route
    (``IMazeExpert.actions``) instead of its one pure-pursuit action.
    """

    def __init__(self, lenient: bool = False):
        self.lenient = bool(lenient)

    def reset(self, envs: gym.vector.VectorEnv) -> None:
        from l2l_ros.tasks.imaze_expert import IMazeExpert

        sims = getattr(envs, "sims", None)
        if sims is None:
            raise TypeError("the searcher teacher needs the native I-maze vector env (its simulators)")
        self.sims = sims
        self.experts = [IMazeExpert(sim.geometry) for sim in sims]

    def target(self, obs: np.ndarray | None = None, student: np.ndarray | None = None) -> np.ndarray:
        out = np.zeros((len(self.sims), len(IMAZE_ACTIONS)))
        for i, (sim, expert) in enumerate(zip(self.sims, self.experts)):
            expert.geometry = sim.geometry  # with a task family, each task has its own maze
            if sim.trial > 0 and expert.goal is None:  # a trial ended at the goal: now it is known
                expert.goal_found(sim.goal)
            if self.lenient:
                ok = expert.actions(*sim.pose())
                out[i, ok] = 1.0 / len(ok)
            else:
                out[i, expert.action(*sim.pose())] = 1.0
        return out

    def observe(self, actions: np.ndarray, rewards: np.ndarray) -> None:
        pass  # the simulators carry the outcome


class PolicyTeacher:
    """A saved recurrent policy as the teacher (policy distillation, Rusu et al. 2016):
    it reads the student's observation stream with its own recurrent state, and its
    greedy action is the target, or with ``soft`` its whole action distribution (for a
    policy that is deployed and scored by its samples, as the bandit models are); a
    continuous policy's mean action (the arm: an LSTM teaching a spiking network)."""

    def __init__(self, path: str, soft: bool = False):
        from l2l_ros.meta.checkpoint import load_checkpoint

        self.policy, self.doc = load_checkpoint(path)
        self.policy.eval()
        self.soft = bool(soft)
        # A continuous policy teaches its mean action (``losses.teacher_action_error``).
        self.continuous = not self.policy.discrete
        if self.continuous and self.soft:
            raise ValueError(f"teacher {path} has a continuous action space: its mean is the target, not a "
                             "distribution (no teacher_soft)")

    def reset(self, envs: gym.vector.VectorEnv) -> None:
        self.state = self.policy.initial_state(envs.num_envs)

    @torch.no_grad()
    def target(self, obs: np.ndarray, student: np.ndarray | None = None) -> np.ndarray:
        params, _, self.state = self.policy.forward_sequence(torch.as_tensor(obs, dtype=torch.float32)[None],
                                                             self.state)
        return self._target_of(params[0])

    def _target_of(self, params: torch.Tensor) -> np.ndarray:
        """``[B, A]`` target from the policy's action parameters at one step."""
        if self.continuous:
            return params.double().numpy()
        if self.soft:
            return torch.softmax(params, dim=-1).double().numpy()
        best = params.argmax(-1).numpy()
        out = np.zeros((best.shape[0], self.policy.action_dim))
        out[np.arange(best.shape[0]), best] = 1.0
        return out

    def observe(self, actions: np.ndarray, rewards: np.ndarray) -> None:
        pass  # the next observation carries them


class MirroredPolicyTeacher(PolicyTeacher):
    """A saved I-maze policy that teaches the turn at the junction as it would take it in
    the task's mirror image. It reads two streams with two recurrent states: the
    student's observations, and their mirror image across the stem
    (``encoding.mirror_imaze_sensors``: alcoves 0 <-> 1, 2 <-> 3, left <-> right turns).
    The target is the direct stream's action distribution, except where a later trial of
    a task whose goal is in ``mirror_goals`` nears the goal's crossbar (the true pose within
    half a corridor of the stem's axis, past one corridor width before the crossbar's
    centreline): there it is the mirror stream's, turns swapped back. Why: the bundled
    network returns to alcoves 1 and 3 in about 1.5x the bound and to 0 and 2 in 4-6x,
    because at the junction it turns towards 1 or 3 by habit; its mirror image takes the
    right turn there. Mirroring every step of those trials instead (tried first) asked
    the student for a different driving style in every corridor depending on a goal it
    cannot see there, and it drove worse everywhere, even with a mirror stream that
    remembered its own search of the mirror task (docs/imaze_family.md). Privileged (it
    knows the goal and the pose), as every teacher here."""

    def __init__(self, path: str, mirror_goals: list[int], soft: bool = False):
        super().__init__(path, soft=soft)
        if self.continuous:
            raise ValueError(f"teacher {path}: the mirror teacher is for the I-maze's discrete actions")
        self.mirror_goals = np.array(sorted({int(g) for g in mirror_goals}))
        if not np.all((self.mirror_goals >= 0) & (self.mirror_goals < 4)):
            raise ValueError(f"mirror goals must be alcoves 0..3, got {list(mirror_goals)}")

    def reset(self, envs: gym.vector.VectorEnv) -> None:
        members = getattr(envs, "envs", None)
        if members is None:
            raise TypeError("the mirror teacher needs an I-maze vector env that holds its envs (it reads their sensors)")
        self.tasks = [m.unwrapped for m in members]
        self.state = self.policy.initial_state(envs.num_envs)
        self.mirror_state = self.policy.initial_state(envs.num_envs)

    def _mirrored(self, obs: np.ndarray) -> np.ndarray:
        out = np.array(obs, dtype=np.float32, copy=True)
        for i, task in enumerate(self.tasks):
            if task._sensed is None:  # reading fresh sensors would draw this task's noise
                raise RuntimeError("the mirror teacher reads the sensors of the observation just made; none is held")
            (x, y, yaw, v, w), scan = task.sensed()
            odometry, mirror_scan = mirror_imaze_sensors(x, y, yaw, v, w, scan)
            out[i, :IMAZE_OBS_DIM] = encode_imaze(*odometry, mirror_scan)
        prev = IMAZE_OBS_DIM + np.arange(len(IMAZE_MIRRORED_ACTIONS))  # the previous action, one-hot
        out[:, prev] = out[:, IMAZE_OBS_DIM + np.array(IMAZE_MIRRORED_ACTIONS)]
        return out

    @torch.no_grad()
    def target(self, obs: np.ndarray, student: np.ndarray | None = None) -> np.ndarray:
        direct = super().target(obs, student)
        mirror_obs = torch.as_tensor(self._mirrored(obs))[None]
        params, _, self.mirror_state = self.policy.forward_sequence(mirror_obs, self.mirror_state)
        mirrored = self._target_of(params[0])[:, list(IMAZE_MIRRORED_ACTIONS)]
        use = np.array([t.sim.trial > 0 and t.sim.goal in self.mirror_goals and self._nears_crossbar(t)
                        for t in self.tasks])
        return np.where(use[:, None], mirrored, direct)

    @staticmethod
    def _nears_crossbar(task) -> bool:
        """The true pose within half a corridor of the stem's axis, past one corridor width
        before the goal's crossbar's centreline (the goal 0, 1 crossbar is at +y)."""
        x, y, _ = task.sim.pose()
        g = task.sim.geometry
        side = 1.0 if task.sim.goal in (0, 1) else -1.0
        return abs(x) < g.corridor_width / 2 and side * y > g.stem_half_length - g.corridor_width


class ArmOracleTeacher:
    """The arm's oracle controller (``tasks.arm_controllers``, given each task's payload,
    damping, servo gain and latency, and each joint's calibration once the arm has shown
    it: ``identify``) as a teacher of continuous actions: its action in [-1, 1]^3 is the
    target of the policy's mean (``losses.teacher_action_error``). Privileged: the student
    never sees the task and must infer from its history what the teacher is told (the
    teacher-student scheme of Lee et al. 2020 and RMA, Kumar et al. 2021, with a
    controller as the teacher). Why ``identify``: a teacher that knows every sign from the
    first step asks for actions no history predicts (with signs flipped half the time, a
    student's best guess is 0: it never moves and never finds out); this one drives
    an unidentified joint as if nominal, the probe a student can copy. With a hidden goal
    the oracle is driven by the spot searcher (``SpotSearcher``: nearest unvisited spot
    first, then straight to the rewarded one), which reads the reward and trial start
    from the RL² inputs as a student does. Used with PPO (``imitation_coef``) or alone with
    a fixed ``action_std`` (what each gave: docs/arm.md)."""

    continuous = True

    def __init__(self):
        self.controllers: list = []

    def reset(self, envs: gym.vector.VectorEnv) -> None:
        from l2l_ros.tasks.arm_controllers import ARM_GAINS, ResolvedRateController, SpotSearcher
        from l2l_ros.tasks.encoding import ARM_OBS_DIM

        members = getattr(envs, "envs", None)
        if members is None:
            raise TypeError("the arm oracle teacher needs a synchronous vector env (it reads each task)")

        hidden = members[0].unwrapped.hidden_goal
        while len(self.controllers) < len(members):
            oracle = ResolvedRateController(*ARM_GAINS["oracle"], oracle=True, identify=True)
            self.controllers.append(SpotSearcher(oracle) if hidden else oracle)
        for controller, env in zip(self.controllers, members):
            controller.reset(task=env.unwrapped.sim.task)
        # the RL² inputs after the observation: previous action (3), previous reward, trial start
        self._reward_at, self._start_at = ARM_OBS_DIM + 3, ARM_OBS_DIM + 4

    def target(self, obs: np.ndarray, student: np.ndarray | None = None) -> np.ndarray:
        obs = np.asarray(obs)
        return np.stack([c.action(o, o[self._reward_at], o[self._start_at] > 0.5)
                         for c, o in zip(self.controllers, obs)])

    def observe(self, actions: np.ndarray, rewards: np.ndarray) -> None:
        for c, a in zip(self.controllers, np.asarray(actions)):
            c.executed(a)


def make_teacher(name: str, env_id: str, env_kwargs: dict, soft: bool = False, index_tau: float = 0.0,
                 mirror_goals: tuple = ()) -> Teacher:
    """``"gittins"`` (bandits), ``"searcher"`` or ``"searcher-lenient"`` (I-maze), or the path of
    a saved policy for the same env (``soft``: its action distribution, or the tempered
    Gittins policy's, is the target; ``mirror_goals``: an I-maze policy that teaches the
    returns to these alcoves from the maze's mirror image)."""
    from pathlib import Path

    from l2l_ros.tasks import IMAZE_ID
    from l2l_ros.tasks.bandit import BANDIT_ENV_ID

    if mirror_goals and name in TEACHERS:
        raise ValueError(f"mirror goals mirror a saved policy's play, not the {name!r} teacher's")
    if soft and name in ("searcher", "searcher-lenient", "arm-oracle"):
        raise ValueError(f"soft targets need a saved policy or gittins as the teacher, not {name!r}")
    if name == "arm-oracle":
        from l2l_ros.tasks import MANIPULATOR_ID

        if env_id != MANIPULATOR_ID:
            raise ValueError(f"the arm-oracle teacher plays the manipulator family, not {env_id}")
        return ArmOracleTeacher()
    if name == "gittins":
        if env_id != BANDIT_ENV_ID:
            raise ValueError(f"the gittins teacher plays the bandit family, not {env_id}")
        return GittinsTeacher(int(env_kwargs.get("k", 5)), int(env_kwargs.get("n", 100)), soft=soft,
                              index_tau=index_tau)
    if name in ("searcher", "searcher-lenient"):
        if env_id != IMAZE_ID:
            raise ValueError(f"the searcher teacher plays the I-maze family, not {env_id}")
        return IMazeSearchTeacher(lenient=name == "searcher-lenient")
    if Path(name).exists():
        if mirror_goals and env_id != IMAZE_ID:
            raise ValueError(f"a mirror teacher plays the I-maze family, not {env_id}")
        teacher = MirroredPolicyTeacher(name, mirror_goals, soft) if mirror_goals else PolicyTeacher(name, soft=soft)
        if teacher.doc.get("env_id") != env_id:
            raise ValueError(f"teacher {name} was trained on {teacher.doc.get('env_id')}, not {env_id}")
        return teacher
    raise ValueError(f"unknown teacher {name!r} (expected one of {TEACHERS} or a saved policy's path)")


@functools.lru_cache(maxsize=2)
def _cached_teacher(name: str, env_id: str, env_kwargs_json: str, soft: bool, index_tau: float,
                    mirror_goals: tuple) -> Teacher:
    return make_teacher(name, env_id, json.loads(env_kwargs_json), soft=soft, index_tau=index_tau,
                        mirror_goals=mirror_goals)


def make_teacher_cached(config) -> Teacher:
    """A run's teacher (``TrainConfig.teacher`` and its options), made once per run
    (loading a checkpoint or a Gittins table once)."""
    return _cached_teacher(config.teacher, config.env_id, json.dumps(config.env_kwargs, sort_keys=True),
                           bool(config.teacher_soft), float(config.teacher_index_tau),
                           tuple(config.teacher_mirror_goals))


def teacher_share(mix_updates: int, update: int) -> float:
    """Probability that the teacher's action is executed at update ``update`` (0-based)."""
    if mix_updates <= 0:
        return 0.0
    return max(0.0, 1.0 - update / mix_updates)


def imitation_update(config, envs: gym.vector.VectorEnv, policy: RecurrentPolicy,
                     optimizer: torch.optim.Optimizer, task_seeds: list[int], options: dict | None,
                     update: int) -> tuple[dict[str, list[float]], dict]:
    """One DAgger update (see the module docstring); same contract as ``ppo.ppo_update``."""
    if not policy.discrete and config.action_std is None:
        raise ValueError("plain imitation of continuous actions needs a fixed action_std: the policy's samples "
                         "are executed, and nothing else would keep their spread")
    teacher = make_teacher_cached(config)
    kind = teacher_targets(config, teacher)
    beta = teacher_share(config.teacher_mix_updates, update)
    rng = np.random.default_rng([int(config.seed), int(update), 2])

    # 1. Collect, labelling every step with the teacher's action distribution.
    policy.eval()
    roll = collect_tasks(envs, policy, task_seeds, deterministic=kind == "set",
                         max_steps=config.max_task_steps,
                         options=options, teacher=teacher, teacher_share=beta, rng=rng)
    obs, targets, valid = roll["obs"], roll["targets"], roll["valid"]

    # 2. Minus the log-probability of the teacher's actions, full BPTT from the task start.
    policy.train()
    n_tasks = obs.shape[1]
    mb_size = max(1, n_tasks // max(1, config.minibatches))
    stats: dict[str, list[float]] = {"imitation_loss": [], "entropy": []}
    for _ in range(config.epochs):
        perm = torch.randperm(n_tasks)
        for start in range(0, n_tasks, mb_size):
            mb = perm[start:start + mb_size]
            m = valid[:, mb]
            params, _, _ = policy.forward_sequence(obs[:, mb], policy.initial_state(len(mb)))
            ce = masked_mean(imitation_loss(params, targets[:, mb], kind), m)
            ent = masked_mean(policy.entropy(policy.distribution(params)), m)
            optimizer.zero_grad(set_to_none=True)
            ce.backward()
            sync_and_clip(list(policy.parameters()), config.max_grad_norm)
            optimizer.step()
            for k, v in (("imitation_loss", ce), ("entropy", ent)):
                stats[k].append(float(v.detach()))
    stats["teacher_agreement"] = [float(masked_mean(roll["agree"].float(), roll["valid"]))]
    stats["teacher_share"] = [beta]
    return stats, roll
