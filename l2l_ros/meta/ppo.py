"""PPO with BPTT over whole tasks (CleanRL-style, read top to bottom).

One update:

1. **Collect** one full task (one gymnasium episode of the meta-wrapped env) from
   each of ``num_envs`` envs. The recurrent state starts at ``initial_state`` at the
   task start and is carried across the task's trials.
2. **GAE** over each task. The end of the episode is the end of the task, so it is
   treated as terminal (nothing after it belongs to the task).
3. **Optimise** for ``epochs`` epochs over minibatches of whole env-sequences: each
   minibatch re-runs ``forward_sequence`` from the initial state over the whole task
   (full BPTT through the surrogate gradient), with the clipped surrogate objective,
   a (clipped) value loss, an entropy bonus, grad-norm clipping and Adam.

Determinism and resume: the task seeds and the torch RNG of update ``u`` are
derived from ``(seed, u)`` alone, so a run resumed from a checkpoint makes the
same updates as one that was never stopped. ``out_dir`` holds:

* ``train_log.jsonl``: one JSON line per update,
* ``policy.safetensors`` + ``policy.json``: the deployable checkpoint,
* ``trainer_state.safetensors``: weights + Adam state + update counter + config in
  one file (safetensors metadata), written atomically; ``train`` resumes from it.
"""
from __future__ import annotations

import json
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn
from tqdm.auto import tqdm

from l2l_ros.meta.checkpoint import (CheckpointError, atomic_write_bytes, git_commit, git_source_modified,
                                     load_checkpoint, remove_stale_temporaries, repair_checkpoint,
                                     save_checkpoint)
from l2l_ros.meta.policies import DictConfig, RecurrentPolicy, action_spec_from_space, build_policy
from l2l_ros.tasks.meta_wrapper import MetaWrapper

__all__ = ["TrainConfig", "train", "evaluate", "make_env", "make_vector_env", "collect_tasks",
           "compute_gae", "memory_loss", "first_time_actions", "TRAINER_STATE", "TRAIN_LOG"]

TRAINER_STATE = "trainer_state.safetensors"
TRAIN_LOG = "train_log.jsonl"


@dataclass
class TrainConfig(DictConfig):
    env_id: str = "l2l_ros/Bandit-v0"
    env_kwargs: dict = field(default_factory=lambda: {"k": 2, "n": 10})
    policy: str = "lsnn"                 # "lsnn" | "lstm"
    policy_config: dict = field(default_factory=dict)
    num_envs: int = 16                   # tasks per update
    updates: int = 200
    lr: float = 1e-3
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_coef: float = 0.2
    epochs: int = 4
    minibatches: int = 4                 # of whole env-sequences
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    seed: int = 0
    checkpoint_every: int = 10
    clip_vloss: bool = True
    norm_adv: bool = True
    async_envs: bool = False
    max_task_steps: int = 100_000        # guard against an env that never ends
    # Task variants: each update draws one of these reset options (from the update
    # seed) for all its envs, e.g. [{"n": 10}, {"n": 100}, {"n": 500}] bandit
    # horizons; one horizon per update keeps the batch free of padding.
    reset_options: list | None = None
    reward_scale: float = 1.0            # rewards seen by the value/advantage (not the policy's input)
    # From this update on, the learning rate decays linearly to zero at the last update
    # (CleanRL's anneal_lr, started late so a run can be extended); None: constant.
    anneal_lr_after: int | None = None
    # Start a fresh run from the weights of a saved policy (fine-tuning; a fresh
    # optimizer). The policy must match this config; its weights' sha256 goes into
    # the trainer state and policy.json (init_sha256).
    init_from: str | None = None
    # Imitation instead of PPO (l2l_ros.meta.imitation): the policy learns the actions
    # of this teacher ("gittins" for bandits) on the states it visits itself (DAgger).
    # For the first ``teacher_mix_updates`` updates the executed action comes from the
    # teacher with a probability falling linearly from 1 to 0.
    teacher: str | None = None
    teacher_mix_updates: int = 0
    # PPO guided by the teacher instead of replaced by it: with ``teacher`` set and this
    # above 0, the update is PPO's (the policy's own samples are executed) and its loss
    # adds ``imitation_coef`` times the imitation loss (``teacher_nll``) on every
    # visited step, so the reward keeps shaping the driving while the teacher shapes
    # the search (the plain imitation of the I-maze LSNNs collapsed, README).
    imitation_coef: float = 0.0
    # With ``imitation_coef``: the imitation term counts only on the steps after the
    # task's first goal entry (the returns, ``goal_known`` of ``collect_tasks``), so the
    # reward alone shapes the search and the teacher only the way back to a found goal.
    imitation_after_goal: bool = False
    # Plain imitation only: also learn, each update, from the labelled tasks of one of
    # the last ``teacher_replay`` updates (DAgger's aggregated dataset, bounded). 0: off.
    teacher_replay: int = 0
    # With a saved policy as the teacher: its whole action distribution is the target
    # (the imitation loss is the cross-entropy to it, i.e. the KL divergence up to a
    # constant) instead of its greedy action, and plain imitation executes the
    # student's samples. Why: a policy scored by its samples is matched where it is
    # unsure too, and near-tied actions cost the student little. With the gittins
    # teacher: the tempered index policy, softmax(index / 0.01), is the target.
    teacher_soft: bool = False
    # With the gittins teacher: > 0 makes the Gittins index itself the target, read as
    # logits: each arm's index minus the best arm's, over this temperature, floored at
    # -INDEX_LOGIT_FLOOR, learnt by squared error on the policy's logits taken relative
    # to the teacher's best arm (``index_logit_loss``); the policy's samples drive. Why:
    # a linear probe on the features of the k = 10 networks trained by PPO and
    # distillation explained 0.3 to 0.5 of the index variance, so their memory does
    # not hold what Gittins plays on;
    # matching the action distribution gave a network one number per step to learn that
    # from and the networks hedged towards uniform play, while the index gives every arm
    # a target at every step and costs little where arms are nearly tied. 0: off.
    teacher_index_tau: float = 0.0
    # Auxiliary memory loss (PPO only): a linear probe on the policy's features learns
    # the task's goal (the env's ``info["goal"]``, I-maze alcove) on every step after
    # the first goal entry of the task, and ``memory_aux_coef`` times its cross-entropy
    # joins PPO's loss, so BPTT is told to keep what the first trial found (UNREAL-style
    # auxiliary task, Jaderberg et al. 2017). The probe is a training-only head, kept in
    # the trainer state, not in the policy. 0: off.
    memory_aux_coef: float = 0.0
    # Exploration bonus for training only (discrete actions, PPO): each step whose action
    # was not yet taken in the task adds this much to the reward that PPO's advantages
    # and value targets see. The policy's input and the logged returns keep the env's
    # reward. For the bandits' exploration deficit (README): a count-based bonus in the
    # spirit of Strehl & Littman 2008, but per task, so the meta-learner is paid to try
    # arms it has not tried. 0: off.
    novelty_bonus: float = 0.0
    # Rewards for PPO's advantages and value targets (training only): the mean reward of
    # the action taken minus the task's mean over actions (``info["p"] - info["p_mean"]``,
    # the bandits) instead of the sampled reward. Neither change moves the expected
    # policy gradient: E[r | history, a] = p_a (Rao-Blackwellisation, so the Bernoulli
    # draw's noise leaves the returns), and the task's mean does not depend on the
    # actions (a baseline the critic cannot know early in a task). The policy's input
    # and the logged returns keep the sampled reward. False: off.
    expected_reward: bool = False
    # Asymmetric actor-critic (Pinto et al. 2018), training only: PPO's value comes from a
    # critic that reads the network's features *and* the task itself (the env's reset
    # ``info["privileged"]``: a bandit's arm probabilities, the I-maze's goal alcove), so
    # the advantages credit what the network cannot yet know (finding the best arm,
    # heading for the true goal). The actor sees only its observations, as before. The
    # critic is a training-only head kept in the trainer state, not in the policy. False: off.
    privileged_critic: bool = False
    # Goal hint, a curriculum for learning to return to a found goal (PPO, I-maze,
    # LSNN; training only). On the steps after a task's first goal entry, which is when
    # the policy has seen where the goal is, a training-only head adds the task's goal
    # (one-hot, through learned weights) to the network's input currents, at a strength
    # that falls linearly from 1 at the first update to 0 at this update. PPO first
    # learns the returns with the goal given, then has to carry it in the network's own
    # state as the hint fades (hint annealing; the evaluated and deployed policy never
    # has it). 0: off.
    goal_hint_updates: int = 0


# ----------------------------------------------------------------------------- envs
def _ensure_registered(env_id: str) -> None:
    if env_id in gym.registry:
        return
    try:  # the tasks package registers its envs on import
        import l2l_ros.tasks  # noqa: F401
    except ImportError:
        pass
    from l2l_ros.tasks.bandit import register_bandit

    register_bandit()


def make_env(env_id: str, env_kwargs: dict | None = None) -> gym.Env:
    _ensure_registered(env_id)
    return MetaWrapper(gym.make(env_id, **(env_kwargs or {})))


def _meta_vector_envs() -> dict:
    """Envs with a native vector version that already includes the meta features."""
    from l2l_ros.tasks import IMAZE_ID
    from l2l_ros.tasks.bandit import BANDIT_ENV_ID, MetaBanditVectorEnv
    from l2l_ros.tasks.imaze_vector import MetaIMazeVectorEnv

    return {BANDIT_ENV_ID: MetaBanditVectorEnv, IMAZE_ID: MetaIMazeVectorEnv}


def make_vector_env(env_id: str, env_kwargs: dict | None, num_envs: int,
                    asynchronous: bool = False) -> gym.vector.VectorEnv:
    """``num_envs`` meta-wrapped envs: the native vector version when there is one
    (same observations and rewards as the wrapped envs), else Sync/AsyncVectorEnv."""
    native = _meta_vector_envs().get(env_id)
    if native is not None and not asynchronous:
        return native(num_envs, **(env_kwargs or {}))
    fns = [lambda: make_env(env_id, env_kwargs) for _ in range(num_envs)]
    if asynchronous:
        return gym.vector.AsyncVectorEnv(fns)
    return gym.vector.SyncVectorEnv(fns)


def _info_column(infos: dict, key: str, i: int):
    """Entry ``i`` of a vector-env info field, or None when env ``i`` did not set it."""
    if key not in infos or not infos.get("_" + key, np.ones(i + 1, bool))[i]:
        return None
    v = infos[key][i]
    return v.tolist() if hasattr(v, "tolist") else v


def _num_goals(envs: gym.vector.VectorEnv, option: str = "memory_aux_coef") -> int:
    """How many goals the envs' tasks have (``num_goals`` of the unwrapped env)."""
    first = envs.envs[0].unwrapped if hasattr(envs, "envs") else None
    n = getattr(first, "num_goals", None)
    if n is None:
        raise ValueError(f"{option} needs an env with goals to remember (num_goals and info['goal']: "
                         "the I-maze)")
    return int(n)


# ----------------------------------------------------------------------------- rollout
@torch.no_grad()
def collect_tasks(envs: gym.vector.VectorEnv, policy: RecurrentPolicy, seeds: list[int],
                  deterministic: bool = False, max_steps: int = 100_000,
                  record_infos: bool = False, options: dict | None = None,
                  teacher=None, teacher_share: float = 0.0, rng: np.random.Generator | None = None,
                  goal_labels: bool = False, expected_rewards: bool = False,
                  privileged: bool = False, goal_hint: tuple[GoalHint, float] | None = None) -> dict:
    """Run one whole task in every env. Returns ``[T, B]`` tensors ``obs``
    (``[T,B,D]``), ``actions`` (raw samples), ``logprobs``, ``values``, ``rewards``,
    ``valid`` (False after an env's task ended), ``trial_ends[B]`` and, with
    ``record_infos``, per-env lists of ``trial_end`` / ``goal`` info values per step.
    Envs with goals and trial ends (the I-maze) also give ``task_goals[B]``, each task's
    reset ``info["goal"]``, for the log's ``trial_ends_by_goal``.

    With a ``teacher`` (``l2l_ros.meta.imitation.Teacher``, discrete actions) every step
    also records the teacher's ``targets`` ``[T, B, A]`` and ``agree`` (the policy's
    action is one of the teacher's), and the executed action is a draw from the
    teacher's target with probability ``teacher_share`` (random numbers from ``rng``,
    needed only when the share is above 0), else the policy's own.

    With ``goal_labels`` it also returns ``goal`` ``[B]`` (each task's ``info["goal"]`` at
    reset) and ``goal_known`` ``[T, B]`` (a goal entry happened earlier in the task, so the
    policy has seen its reward), for the auxiliary memory loss.

    With ``expected_rewards`` it also returns ``expected_rewards`` ``[T, B]``: the mean
    reward of the action taken minus the task's mean over actions (``info["p"] -
    info["p_mean"]``, which the bandits report), for ``TrainConfig.expected_reward``.

    With ``privileged`` it also returns ``privileged`` ``[B, P]``: each task's reset
    ``info["privileged"]``, for ``TrainConfig.privileged_critic``.

    With ``goal_hint`` (the head and its strength, ``TrainConfig.goal_hint_updates``) the
    network also gets the task's goal as input currents once the goal is known; this
    implies ``goal_labels``, which the hint is recomputed from in the update."""
    goal_labels = goal_labels or goal_hint is not None
    B = envs.num_envs
    obs, reset_infos = envs.reset(seed=[int(s) for s in seeds], options=options)
    if goal_labels and "goal" not in reset_infos:
        raise ValueError("goal labels need an env whose info names the task's goal (info['goal'])")
    task_goal = torch.as_tensor(np.asarray(reset_infos["goal"], dtype=np.int64)) if goal_labels else None
    if privileged and "privileged" not in reset_infos:
        raise ValueError("a privileged critic needs an env whose reset info describes the task (info['privileged'])")
    state = policy.initial_state(B)
    done = np.zeros(B, dtype=bool)
    keys = ("obs", "actions", "logprobs", "values", "rewards", "valid") + (("targets", "agree") if teacher else ())
    buf: dict[str, list] = {k: [] for k in keys}
    if teacher is not None:
        teacher.reset(envs)
    trial_ends = np.zeros(B, dtype=np.int64)
    infos_out = [{"trial_end": [], "goal": []} for _ in range(B)]
    goal_known = np.zeros(B, dtype=bool)
    reports_trial_ends = False
    if goal_labels:
        buf["goal_known"] = []
    if expected_rewards:
        buf["expected_rewards"] = []
    for _ in range(max_steps):
        obs_t = torch.as_tensor(obs, dtype=torch.float32)
        if goal_hint is not None:
            head, strength = goal_hint
            hint = head(task_goal, torch.as_tensor(goal_known)[None], strength)
            feats, state = policy.features_sequence(obs_t[None], state, input_hint=hint)
            params, value = policy.heads(feats)
        else:
            params, value, state = policy.forward_sequence(obs_t[None], state)
        dist = policy.distribution(params[0])
        raw = policy.deterministic_action(params[0]) if deterministic else dist.sample()
        if teacher is not None:
            target = teacher.target(obs, student=dist.probs.double().numpy())
            own = raw.numpy()
            buf["targets"].append(torch.as_tensor(target, dtype=torch.float32))
            # the policy's action is one of the teacher's most likely (its set, for set targets)
            buf["agree"].append(torch.as_tensor(target[np.arange(B), own] >= target.max(axis=1) - 1e-6))
            if teacher_share > 0:
                probs = _softmax(target) if getattr(teacher, "logit_targets", False) else target
                taught = np.minimum((probs.cumsum(axis=1) < rng.random((B, 1))).sum(axis=1), target.shape[1] - 1)
                raw = torch.as_tensor(np.where(rng.random(B) < teacher_share, taught, own))
        logprob = policy.log_prob(dist, raw)
        next_obs, reward, terminated, truncated, infos = envs.step(policy.env_action(raw).cpu().numpy())
        if teacher is not None:
            teacher.observe(raw.numpy(), reward)
        valid = ~done
        buf["obs"].append(obs_t)
        buf["actions"].append(raw)
        buf["logprobs"].append(logprob)
        buf["values"].append(value[0])
        buf["rewards"].append(torch.as_tensor(reward, dtype=torch.float32) * torch.as_tensor(valid))
        buf["valid"].append(torch.as_tensor(valid))
        if expected_rewards:
            if "p" not in infos or "p_mean" not in infos:
                raise ValueError("expected rewards need an env whose step info gives the mean reward of the "
                                 "action taken and of the task (info['p'], info['p_mean']: the bandits)")
            centred = np.asarray(infos["p"]) - np.asarray(infos["p_mean"])
            buf["expected_rewards"].append(torch.as_tensor(centred, dtype=torch.float32) * torch.as_tensor(valid))
        te = infos.get("trial_end")
        entered = np.zeros(B, dtype=bool)  # a goal entry ended this step's trial
        if te is not None:
            reports_trial_ends = True
            entered = np.asarray(te, dtype=bool) & np.asarray(infos.get("_trial_end", valid)) & valid
            trial_ends += entered
        if goal_labels:
            buf["goal_known"].append(torch.as_tensor(goal_known & valid))
            goal_known |= entered  # from the next step on, the policy has seen the reward
        if record_infos:
            for i in np.flatnonzero(valid):
                infos_out[i]["trial_end"].append(bool(_info_column(infos, "trial_end", i) or False))
                infos_out[i]["goal"].append(_info_column(infos, "goal", i))
        done |= np.asarray(terminated) | np.asarray(truncated)
        obs = next_obs
        if done.all():
            break
    else:
        raise RuntimeError(f"tasks did not end within {max_steps} steps")
    out = {k: torch.stack(v) for k, v in buf.items()}
    out["trial_ends"] = trial_ends
    if "goal" in reset_infos and reports_trial_ends:  # goal entries to count (not the bandits)
        out["task_goals"] = np.asarray(reset_infos["goal"], dtype=np.int64)
    if goal_labels:
        out["goal"] = task_goal
    if privileged:
        out["privileged"] = torch.as_tensor(np.asarray(reset_infos["privileged"], dtype=np.float32).reshape(B, -1))
    if record_infos:
        out["infos"] = infos_out
    return out


def compute_gae(rewards: torch.Tensor, values: torch.Tensor, valid: torch.Tensor,
                gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and returns ``[T, B]``; the last valid step of each task is terminal."""
    T = rewards.shape[0]
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[0])
    validf = valid.float()
    for t in reversed(range(T)):
        if t == T - 1:
            next_nonterminal = torch.zeros_like(last)
            next_value = torch.zeros_like(last)
        else:
            next_nonterminal = validf[t + 1]
            next_value = values[t + 1]
        delta = rewards[t] + gamma * next_value * next_nonterminal - values[t]
        last = (delta + gamma * lam * next_nonterminal * last) * validf[t]
        adv[t] = last
    return adv, adv + values * validf


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def teacher_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy from the teacher's action distribution ``targets`` (soft targets) to
    the policy's: the KL divergence between them plus the teacher's entropy."""
    return -(targets * torch.log_softmax(logits, dim=-1)).sum(-1)


def teacher_targets(config: TrainConfig) -> str:
    """What a run's teacher targets are: ``"index"`` (index gaps as logits,
    ``teacher_index_tau``), ``"soft"`` (an action distribution, ``teacher_soft``) or
    ``"set"`` (the teacher's equally good actions). The first two are learnt on the
    policy's own samples, a set on its most likely actions."""
    if config.teacher_index_tau > 0:
        return "index"
    return "soft" if config.teacher_soft else "set"


def imitation_loss(logits: torch.Tensor, targets: torch.Tensor, kind: str) -> torch.Tensor:
    """The loss for targets of ``kind`` (``teacher_targets``): ``index_logit_loss``,
    ``teacher_cross_entropy`` or ``teacher_nll``."""
    losses = {"index": index_logit_loss, "soft": teacher_cross_entropy, "set": teacher_nll}
    if kind not in losses:
        raise ValueError(f"unknown kind of teacher targets {kind!r} (expected one of {sorted(losses)})")
    return losses[kind](logits, targets)


INDEX_LOGIT_FLOOR = 8.0


def index_logit_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over actions of the squared error between the policy's logits and the
    teacher's target logits ``targets`` (0 for its best action, negative for the others,
    floored at ``-INDEX_LOGIT_FLOOR``), both relative to the teacher's best action.
    An action at the floor only has to stay at or below it: any action that much worse
    is as good as never taken, however much worse the teacher thinks it is."""
    best = targets.argmax(-1, keepdim=True)
    rel = logits - logits.gather(-1, best)
    floored = targets <= -INDEX_LOGIT_FLOOR + 1e-6
    err = torch.where(floored, torch.relu(rel + INDEX_LOGIT_FLOOR), rel - targets)
    return (err ** 2).mean(-1)


def teacher_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Minus the log of the probability the policy gives to the teacher's set of actions
    (those with ``targets > 0``): any of the teacher's equally good actions is right.
    Equal to the cross-entropy when the teacher names one action."""
    logp = torch.log_softmax(logits, dim=-1)
    return -torch.logsumexp(logp.masked_fill(targets <= 0, float("-inf")), dim=-1)


def first_time_actions(actions: torch.Tensor, n_actions: int) -> torch.Tensor:
    """``[T, B]`` bool: the discrete action at step t was not taken earlier in its task."""
    onehot = F.one_hot(actions.long(), n_actions)
    seen_before = (onehot.cumsum(0) - onehot) > 0
    return (onehot.bool() & ~seen_before).any(-1)


class PrivilegedCritic(nn.Module):
    """The value of a step from the policy's features and the task's privileged vector."""

    def __init__(self, n_features: int, n_privileged: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_features + n_privileged, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, feats: torch.Tensor, privileged: torch.Tensor) -> torch.Tensor:
        """``feats [T, B, F]``, ``privileged [B, P]`` -> values ``[T, B]``."""
        task = privileged.to(feats.dtype).unsqueeze(0).expand(feats.shape[0], -1, -1)
        return self.net(torch.cat([feats, task], dim=-1)).squeeze(-1)


class GoalHint(nn.Module):
    """The task's goal as input currents (``TrainConfig.goal_hint_updates``)."""

    def __init__(self, n_goals: int, hint_size: int):
        super().__init__()
        self.n_goals = int(n_goals)
        self.weight = nn.Parameter(torch.randn(self.n_goals, int(hint_size)))

    def forward(self, goal: torch.Tensor, known: torch.Tensor, strength: float) -> torch.Tensor:
        """``goal [B]``, ``known [T, B]`` (the goal was found earlier in the task) ->
        currents ``[T, B, hint_size]``, zero where the goal is not yet known."""
        rows = self.weight[goal.long()]
        return (strength * known.to(rows.dtype)).unsqueeze(-1) * rows.unsqueeze(0)


def goal_hint_strength(config: TrainConfig, update: int) -> float:
    """The goal hint's strength in update ``update`` (0-based): 1 -> 0 over ``goal_hint_updates``."""
    if not config.goal_hint_updates:
        return 0.0
    return max(0.0, 1.0 - update / config.goal_hint_updates)


def _privileged_size(envs: gym.vector.VectorEnv) -> int:
    """The length of the envs' ``info["privileged"]`` task vector (one reset)."""
    _, infos = envs.reset(seed=0)
    if "privileged" not in infos:
        raise ValueError("privileged_critic needs an env whose reset info describes the task "
                         "(info['privileged']: the bandits' arm probabilities, the I-maze's goal)")
    return int(np.asarray(infos["privileged"]).reshape(envs.num_envs, -1).shape[1])


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp(min=1.0)


def memory_loss(probe: nn.Module, feats: torch.Tensor, goal: torch.Tensor,
                known: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The probe's cross-entropy for each task's goal (``goal[B]``) on the steps where
    it is ``known`` (``[T, B]``; 0 when none is), and its accuracy there."""
    logits = probe(feats)
    goal = goal.expand_as(known)
    ce = F.cross_entropy(logits.flatten(0, 1), goal.flatten(), reduction="none").view_as(goal)
    with torch.no_grad():
        accuracy = float(_masked_mean((logits.argmax(-1) == goal).float(), known))
    return _masked_mean(ce, known), accuracy


def trial_ends_by_goal(roll: dict) -> dict:
    """Goals reached per task for each goal the update's tasks had (the I-maze's alcoves).

    The mean over all tasks hides a policy that searches only some alcoves; this shows it.
    """
    goals = roll.get("task_goals")
    if goals is None:
        return {}
    ends = np.asarray(roll["trial_ends"])
    return {"trial_ends_by_goal": {str(g): float(ends[goals == g].mean()) for g in np.unique(goals)}}


# ----------------------------------------------------------------------------- resume state
def _update_seeds(seed: int, update: int, n: int) -> tuple[list[int], int]:
    """Task seeds and a torch seed for update ``update``, from (seed, update) alone."""
    ss = np.random.SeedSequence([int(seed), int(update)])
    words = ss.generate_state(n + 1, dtype=np.uint32)
    return [int(w) for w in words[:n]], int(words[n])


def learning_rate(config: TrainConfig, update: int) -> float:
    """The learning rate of update ``update`` (0-based) under ``anneal_lr_after``."""
    start = config.anneal_lr_after
    if start is None or update < start or config.updates <= start:
        return config.lr
    return config.lr * (1.0 - (update - start) / (config.updates - start))


def _update_options(config: TrainConfig, update: int) -> dict | None:
    """The reset options of update ``update`` (drawn from (seed, update) alone)."""
    if not config.reset_options:
        return None
    rng = np.random.default_rng([int(config.seed), int(update), 1])
    return dict(config.reset_options[int(rng.integers(len(config.reset_options)))])


# The training-only heads a trainer state may hold, and the option that makes each.
TRAINING_HEADS = {"memory_probe": "memory_aux_coef", "critic": "privileged_critic",
                  "goal_hint": "goal_hint_updates"}


def _save_trainer_state(path: Path, policy: RecurrentPolicy, optimizer: torch.optim.Optimizer,
                        update: int, env_steps: int, config: TrainConfig, init_sha256: str | None,
                        heads: dict[str, nn.Module] | None = None) -> None:
    """``heads``: the training-only modules (``memory_probe``, ``critic``), saved by name."""
    tensors = {f"policy.{k}": v.detach().cpu().contiguous() for k, v in policy.state_dict().items()}
    for name, head in (heads or {}).items():
        tensors.update({f"{name}.{k}": v.detach().cpu().contiguous() for k, v in head.state_dict().items()})
    osd = optimizer.state_dict()
    for idx, st in osd["state"].items():
        for key, val in st.items():
            t = val if torch.is_tensor(val) else torch.tensor(val)
            tensors[f"optim.{idx}.{key}"] = t.detach().cpu().contiguous()
    meta = {"format": "l2l_ros-trainer-1", "update": str(update), "env_steps": str(env_steps),
            "config": json.dumps(config.to_dict()), "param_groups": json.dumps(osd["param_groups"])}
    if init_sha256:
        meta["init_sha256"] = init_sha256
    atomic_write_bytes(path, st_save(tensors, metadata=meta))


def _load_trainer_state(path: Path, policy: RecurrentPolicy, optimizer: torch.optim.Optimizer,
                        config: TrainConfig,
                        heads: dict[str, nn.Module] | None = None) -> tuple[int, int, str | None]:
    from safetensors import safe_open

    blob = path.read_bytes()
    try:
        tensors = st_load(blob)
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except Exception as e:
        raise ValueError(f"cannot resume: {path} is corrupt ({type(e).__name__}: {e})") from e
    if meta.get("format") != "l2l_ros-trainer-1":
        raise ValueError(f"cannot resume: {path} is not an l2l_ros trainer state")
    saved = json.loads(meta["config"])
    for key in ("env_id", "env_kwargs", "policy", "policy_config", "num_envs"):
        if saved.get(key) != config.to_dict()[key]:
            raise ValueError(f"cannot resume from {path}: {key} was {saved.get(key)!r}, now "
                             f"{config.to_dict()[key]!r} (use a fresh out_dir)")
    heads = heads or {}
    for name, option in TRAINING_HEADS.items():
        saved_head = {k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")}
        if bool(saved_head) != (name in heads):
            was = saved.get(option, getattr(TrainConfig, option))
            raise ValueError(f"cannot resume from {path}: {option} was {was!r}, "
                             f"now {getattr(config, option)!r}; the {name.replace('_', ' ')} is there in one and "
                             "not the other (use a fresh out_dir)")
        if saved_head:
            heads[name].load_state_dict(saved_head)
    policy.load_state_dict({k[len("policy."):]: v for k, v in tensors.items() if k.startswith("policy.")})
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, key = k.split(".", 2)
            state.setdefault(int(idx), {})[key] = v
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    return int(meta["update"]), int(meta["env_steps"]), meta.get("init_sha256")


def _policy_pair_current(stem: Path, policy: RecurrentPolicy, update: int) -> bool:
    """Whether ``stem``'s pair loads and holds ``policy`` at ``update`` (the trainer
    state's). A save killed between the weights and the JSON is repaired first."""
    try:
        repair_checkpoint(stem)
    except CheckpointError:
        pass  # no weights, or format-1 weights: the load below tells
    try:
        saved, doc = load_checkpoint(stem)
    except CheckpointError:
        return False
    if (doc.get("evaluation") or {}).get("updates") != update or saved.describe() != policy.describe():
        return False
    mine = policy.state_dict()
    return all(torch.equal(t, mine[k].cpu()) for k, t in saved.state_dict().items())


def _logged_update(log_path: Path, update: int) -> dict | None:
    """The train-log line of ``update`` (for the figures a rewritten checkpoint carries)."""
    if not log_path.exists():
        return None
    for line in log_path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and row.get("update") == update:
            return row
    return None


def _init_weights(policy: RecurrentPolicy, path: str) -> str:
    """Fill ``policy`` from the saved policy at ``path``, which must describe the same
    network; returns the sha256 of those weights (the path may later hold others)."""
    source, doc = load_checkpoint(path)
    if source.describe() != policy.describe():
        raise CheckpointError(f"cannot start from {path}: it holds {source.describe()}, "
                              f"this run trains {policy.describe()}")
    policy.load_state_dict(source.state_dict(), strict=True)
    return str(doc["weights_sha256"])


def _truncate_log(log_path: Path, last_update: int) -> None:
    """Drop log lines of updates after the checkpoint (they will be redone)."""
    if not log_path.exists():
        return
    keep = []
    for line in log_path.read_text().splitlines():
        try:
            if json.loads(line)["update"] <= last_update:
                keep.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    atomic_write_bytes(log_path, ("\n".join(keep) + "\n").encode() if keep else b"")


# ----------------------------------------------------------------------------- training
def ppo_update(config: TrainConfig, envs: gym.vector.VectorEnv, policy: RecurrentPolicy,
               optimizer: torch.optim.Optimizer, task_seeds: list[int], options: dict | None,
               update: int, memory_probe: nn.Module | None = None,
               critic: PrivilegedCritic | None = None,
               goal_hint: GoalHint | None = None) -> tuple[dict[str, list[float]], dict]:
    """One PPO update: collect a task per env, GAE, clipped-surrogate epochs. Returns
    the per-minibatch statistics and the rollout. ``memory_probe``: the linear goal
    probe of ``config.memory_aux_coef``; ``critic``: the privileged critic of
    ``config.privileged_critic``; ``goal_hint``: the head of
    ``config.goal_hint_updates`` (all trained here with the policy)."""
    mb_size = max(1, config.num_envs // max(1, config.minibatches))
    # 1. Collect one whole task per env (hidden state reset at task start).
    policy.eval()
    teacher = None
    if config.teacher:
        from l2l_ros.meta.imitation import _teacher  # imitation imports this module
        teacher = _teacher(config.teacher, config.env_id, config.env_kwargs, soft=config.teacher_soft,
                           index_tau=config.teacher_index_tau)
        target_kind = teacher_targets(config)
    strength = goal_hint_strength(config, update) if goal_hint is not None else 0.0
    hinted = strength > 0
    roll = collect_tasks(envs, policy, task_seeds, max_steps=config.max_task_steps,
                         options=options, teacher=teacher,
                         goal_labels=memory_probe is not None or config.imitation_after_goal,
                         expected_rewards=config.expected_reward, privileged=critic is not None,
                         goal_hint=(goal_hint, strength) if hinted else None)
    obs, actions, old_logp = roll["obs"], roll["actions"], roll["logprobs"]
    values, rewards, valid = roll["values"], roll["rewards"], roll["valid"]

    def features(mb) -> torch.Tensor:
        """The features of the rollout's tasks ``mb`` (replayed from each task's start)."""
        kwargs = {"input_hint": goal_hint(roll["goal"][mb], roll["goal_known"][:, mb], strength)} if hinted else {}
        return policy.features_sequence(obs[:, mb], policy.initial_state(len(mb)), **kwargs)[0]

    if critic is not None:  # the critic's values replace the policy's own value head's
        with torch.no_grad():
            feats = features(torch.arange(obs.shape[1]))
            values = critic(feats, roll["privileged"]) * valid
        roll["values"] = values

    # 2. Advantages (on the env's reward, or its centred expectation, plus the
    # training-only novelty bonus).
    shaped, novel = (roll["expected_rewards"] if config.expected_reward else rewards), None
    if config.novelty_bonus:
        novel = first_time_actions(actions, policy.action_dim) & valid
        shaped = shaped + config.novelty_bonus * novel.float()
    adv, returns = compute_gae(shaped * config.reward_scale, values, valid, config.gamma,
                               config.gae_lambda)

    # 3. PPO epochs over minibatches of whole sequences, full BPTT from the task start.
    policy.train()
    stats = {"policy_loss": [], "value_loss": [], "entropy": [], "approx_kl": [], "clipfrac": []}
    if hinted:
        stats["goal_hint_strength"] = [strength]
    if teacher is not None:
        stats["imitation_loss"] = []
    if memory_probe is not None:
        stats["memory_loss"], stats["memory_accuracy"] = [], []
    if novel is not None:
        stats["mean_actions_tried"] = [float(novel.sum(0).float().mean())]
    params_to_clip = [p for g in optimizer.param_groups for p in g["params"]]
    for _ in range(config.epochs):
        perm = torch.randperm(config.num_envs)
        for start in range(0, config.num_envs, mb_size):
            mb = perm[start:start + mb_size]
            m = valid[:, mb]
            feats = features(mb)
            params, new_values = policy.heads(feats)
            if critic is not None:
                new_values = critic(feats, roll["privileged"][mb])
            dist = policy.distribution(params)
            new_logp = policy.log_prob(dist, actions[:, mb])
            entropy = policy.entropy(dist)
            logratio = new_logp - old_logp[:, mb]
            ratio = logratio.exp()
            with torch.no_grad():
                approx_kl = _masked_mean((ratio - 1) - logratio, m)
                clipfrac = _masked_mean(((ratio - 1.0).abs() > config.clip_coef).float(), m)
            mb_adv = adv[:, mb]
            if config.norm_adv:
                sel = mb_adv[m]
                mb_adv = (mb_adv - sel.mean()) / (sel.std(unbiased=False) + 1e-8)
            pg_loss = _masked_mean(torch.max(
                -mb_adv * ratio,
                -mb_adv * torch.clamp(ratio, 1 - config.clip_coef, 1 + config.clip_coef)), m)
            if config.clip_vloss:
                v_clipped = values[:, mb] + torch.clamp(new_values - values[:, mb],
                                                        -config.clip_coef, config.clip_coef)
                v_loss = 0.5 * _masked_mean(torch.max((new_values - returns[:, mb]) ** 2,
                                                      (v_clipped - returns[:, mb]) ** 2), m)
            else:
                v_loss = 0.5 * _masked_mean((new_values - returns[:, mb]) ** 2, m)
            ent = _masked_mean(entropy, m)
            loss = pg_loss - config.ent_coef * ent + config.vf_coef * v_loss
            if teacher is not None:
                taught = m & roll["goal_known"][:, mb] if config.imitation_after_goal else m
                ce = _masked_mean(imitation_loss(params, roll["targets"][:, mb], target_kind), taught)
                loss = loss + config.imitation_coef * ce
                stats["imitation_loss"].append(float(ce.detach()))
            if memory_probe is not None:
                known = roll["goal_known"][:, mb] & m
                mem, accuracy = memory_loss(memory_probe, feats, roll["goal"][mb], known)
                loss = loss + config.memory_aux_coef * mem
                if bool(known.any()):
                    stats["memory_loss"].append(float(mem.detach()))
                    stats["memory_accuracy"].append(accuracy)

            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params_to_clip, config.max_grad_norm)
            optimizer.step()
            for k, v in (("policy_loss", pg_loss), ("value_loss", v_loss), ("entropy", ent),
                         ("approx_kl", approx_kl), ("clipfrac", clipfrac)):
                stats[k].append(float(v.detach()))
    if teacher is not None:
        stats["teacher_agreement"] = [float(_masked_mean(roll["agree"].float(), valid))]
        if "goal_known" in roll and bool(roll["goal_known"].any()):
            stats["teacher_agreement_after_goal"] = [float(_masked_mean(roll["agree"].float(),
                                                                        roll["goal_known"]))]
    return stats, roll


def _reports_expected_reward(envs: gym.vector.VectorEnv) -> bool:
    """Whether a step's info carries ``p`` and ``p_mean`` (one probe step; every update
    resets the envs with its own seeds, so it changes no training)."""
    envs.reset(seed=0)
    _, _, _, _, infos = envs.step(envs.action_space.sample())
    return "p" in infos and "p_mean" in infos


def _training_heads(config: TrainConfig, envs: gym.vector.VectorEnv,
                    policy: RecurrentPolicy) -> dict[str, nn.Module]:
    """The options' checks against the envs and the policy (ValueError with a reason),
    and the training-only heads they ask for, by their trainer-state name."""
    if config.novelty_bonus and not policy.discrete:
        raise ValueError("novelty_bonus pays for actions not yet taken in the task: it needs discrete "
                         f"actions, {config.env_id} has {policy.action_spec['type']} ones")
    if config.expected_reward and not _reports_expected_reward(envs):
        raise ValueError("expected_reward needs an env whose step info gives the mean reward of the action "
                         f"taken and of the task (info['p'], info['p_mean']: the bandits); {config.env_id} "
                         "does not")
    n_features = policy.policy_head.in_features
    heads: dict[str, nn.Module] = {}
    if config.memory_aux_coef:
        heads["memory_probe"] = nn.Linear(n_features, _num_goals(envs))
    if config.privileged_critic:
        heads["critic"] = PrivilegedCritic(n_features, _privileged_size(envs))
    if config.goal_hint_updates:
        if not policy.hint_size:
            raise ValueError(f"goal_hint_updates feeds the goal into the network's input currents: the "
                             f"{policy.kind} policy has no such input (use --policy lsnn)")
        heads["goal_hint"] = GoalHint(_num_goals(envs, "goal_hint_updates"), policy.hint_size)
    return heads


def train(config: TrainConfig, out_dir: str | os.PathLike,
          progress: Callable[[dict], None] | None = None,
          should_stop: Callable[[], bool] | None = None,
          command: str | None = None) -> Path:
    """Train (or resume) a policy; returns the path of ``policy.safetensors``."""
    plain_imitation = bool(config.teacher) and not config.imitation_coef
    if config.teacher and not plain_imitation and config.teacher_mix_updates:
        raise ValueError("teacher_mix_updates is for plain imitation; PPO with imitation_coef executes "
                         "the policy's own samples")
    if config.memory_aux_coef < 0 or not np.isfinite(config.memory_aux_coef):
        raise ValueError(f"memory_aux_coef must be a finite number >= 0, got {config.memory_aux_coef!r}")
    if config.teacher_soft and not config.teacher:
        raise ValueError("teacher_soft makes a teacher's action distribution the target: it needs teacher")
    if config.teacher_index_tau < 0 or not np.isfinite(config.teacher_index_tau):
        raise ValueError(f"teacher_index_tau must be a finite number >= 0, got {config.teacher_index_tau!r}")
    if config.teacher_index_tau and config.teacher != "gittins":
        raise ValueError("teacher_index_tau makes the Gittins index the target: it needs teacher 'gittins'")
    if config.teacher_index_tau and config.teacher_soft:
        raise ValueError("teacher_index_tau and teacher_soft are two different targets: choose one")
    if config.imitation_after_goal and not (config.teacher and config.imitation_coef):
        raise ValueError("imitation_after_goal restricts the imitation term of PPO: it needs teacher and "
                         "imitation_coef")
    if config.novelty_bonus < 0 or not np.isfinite(config.novelty_bonus):
        raise ValueError(f"novelty_bonus must be a finite number >= 0, got {config.novelty_bonus!r}")
    if config.novelty_bonus and plain_imitation:
        raise ValueError("novelty_bonus shapes PPO's advantages; plain imitation (teacher without "
                         "imitation_coef) has none")
    if config.expected_reward and plain_imitation:
        raise ValueError("expected_reward shapes PPO's advantages; plain imitation (teacher without "
                         "imitation_coef) has none")
    if config.privileged_critic and plain_imitation:
        raise ValueError("privileged_critic gives PPO its values; plain imitation (teacher without "
                         "imitation_coef) has none")
    if not isinstance(config.goal_hint_updates, int) or config.goal_hint_updates < 0:
        raise ValueError(f"goal_hint_updates must be an integer >= 0, got {config.goal_hint_updates!r}")
    if config.goal_hint_updates and plain_imitation:
        raise ValueError("goal_hint_updates is a curriculum for PPO; plain imitation (teacher without "
                         "imitation_coef) has none")
    if config.memory_aux_coef and plain_imitation:
        raise ValueError("memory_aux_coef joins PPO's loss; plain imitation (teacher without imitation_coef) "
                         "has none")
    out = Path(out_dir)
    log_path, state_path = out / TRAIN_LOG, out / TRAINER_STATE

    # Seed everything; build envs, policy, optimizer.
    torch.manual_seed(config.seed)
    np.random.seed(config.seed % 2**32)
    envs = make_vector_env(config.env_id, config.env_kwargs, config.num_envs, config.async_envs)
    obs_dim = int(np.prod(envs.single_observation_space.shape))
    action_spec = action_spec_from_space(envs.single_action_space)
    policy = build_policy(config.policy, obs_dim, action_spec, config.policy_config)
    try:
        heads = _training_heads(config, envs, policy)
    except ValueError:
        envs.close()
        raise
    trained = list(policy.parameters()) + [p for head in heads.values() for p in head.parameters()]
    optimizer = torch.optim.Adam(trained, lr=config.lr, eps=1e-5)
    out.mkdir(parents=True, exist_ok=True)  # after the checks above, so a refused run leaves nothing
    remove_stale_temporaries(out)  # of a run killed inside atomic_write_bytes

    commit = git_commit()  # the code that trains, not the code present when a checkpoint is saved
    modified = git_source_modified()
    start_update, env_steps, init_sha256 = 0, 0, None
    if state_path.exists():
        start_update, env_steps, init_sha256 = _load_trainer_state(state_path, policy, optimizer, config, heads)
    elif config.init_from:
        init_sha256 = _init_weights(policy, config.init_from)
    _truncate_log(log_path, start_update)

    def checkpoint(update: int, last: dict | None) -> Path:
        # Trainer state first: a kill before the policy pair is written leaves a pair
        # older than the state, which the next run's resume rewrites from the state.
        _save_trainer_state(state_path, policy, optimizer, update, env_steps, config, init_sha256, heads)
        return save_policy(update, last)

    def save_policy(update: int, last: dict | None) -> Path:
        evaluation = {"updates": update, "env_steps": env_steps}
        if last:
            evaluation["train_mean_return"] = last["mean_return"]
        weights, _ = save_checkpoint(out / "policy", policy, {
            "env_id": config.env_id, "env_kwargs": config.env_kwargs, "command": command,
            "seed": config.seed, "evaluation": evaluation, "train_config": config.to_dict(),
            "git_commit": commit, **({"git_modified": modified} if modified is not None else {}),
            **({"init_sha256": init_sha256} if init_sha256 else {})})
        return weights

    if state_path.exists() and not _policy_pair_current(out / "policy", policy, start_update):
        save_policy(start_update, _logged_update(log_path, start_update))  # even when no update is left

    update_fn = ppo_update
    if plain_imitation:
        from l2l_ros.meta.imitation import imitation_update as update_fn
    bar = tqdm(total=config.updates, initial=start_update, desc="imitation" if plain_imitation else "ppo",
               disable=None, dynamic_ncols=True)
    recent: deque[float] = deque(maxlen=20)  # reward per step of the last updates, for the bar
    last: dict | None = None
    update = start_update
    t_start = time.perf_counter()
    try:
        while update < config.updates:
            if should_stop is not None and should_stop():
                break
            t0 = time.perf_counter()
            task_seeds, torch_seed = _update_seeds(config.seed, update, config.num_envs)
            torch.manual_seed(torch_seed)
            options = _update_options(config, update)
            lr = learning_rate(config, update)
            for g in optimizer.param_groups:
                g["lr"] = lr

            # 1-3. Collect one whole task per env and learn from it: PPO, or imitation of
            # a teacher when config.teacher is set (l2l_ros.meta.imitation).
            stats, roll = update_fn(config, envs, policy, optimizer, task_seeds, options, update, **heads)
            rewards, valid = roll["rewards"], roll["valid"]
            env_steps += int(valid.sum())

            update += 1

            # 4. Log, checkpoint, report.
            task_returns = rewards.sum(0)
            last = {
                "update": update, "updates": config.updates, "env_steps": env_steps,
                "mean_return": float(task_returns.mean()),
                "lr": lr,
                "mean_reward_per_step": float(rewards.sum() / valid.sum().clamp(min=1)),
                **({"reset_options": options} if options else {}),
                "mean_trial_ends": float(np.mean(roll["trial_ends"])),
                **trial_ends_by_goal(roll),
                "task_steps": int(valid.shape[0]),
                **{k: float(np.mean(v)) for k, v in stats.items() if v},
                "update_seconds": time.perf_counter() - t0,
                "wall_seconds": time.perf_counter() - t_start,
            }
            with open(log_path, "a") as f:
                f.write(json.dumps(last) + "\n")
            if update % max(1, config.checkpoint_every) == 0 or update == config.updates:
                last["checkpoint"] = str(checkpoint(update, last))
            bar.update(1)
            recent.append(last["mean_reward_per_step"])
            bar.set_postfix(ret=f"{last['mean_return']:.2f}",
                            reward_per_step_avg20=f"{np.mean(recent):.3f}",
                            **({"kl": f"{last['approx_kl']:.3f}"} if "approx_kl" in last else
                               {"agree": f"{last['teacher_agreement']:.3f}"}))
            if progress is not None:
                progress(dict(last))
    finally:
        bar.close()
        envs.close()
    weights = out / "policy.safetensors"
    if update != start_update or not weights.exists():
        if not (last and "checkpoint" in last and last["update"] == update):
            checkpoint(update, last)
    return weights


# ----------------------------------------------------------------------------- evaluation
def evaluate(policy: RecurrentPolicy, env_id: str, env_kwargs: dict | None = None,
             tasks: int = 100, seed: int = 0, deterministic: bool = False,
             num_envs: int = 16) -> list[dict]:
    """Run ``tasks`` whole tasks (state carried across trials, reset between tasks).

    Returns one dict per task: ``task``, ``seed``, ``return``, ``steps``,
    ``rewards`` (per step), ``trial_end`` (per-step bools), ``trial_end_steps``
    (indices of steps that ended a trial) and ``goal`` (per-step info values) when
    the env reports one. Task ``i`` uses env seed ``seed + i``.
    """
    was_training = policy.training
    policy.eval()
    n = max(1, min(num_envs, tasks))
    envs = make_vector_env(env_id, env_kwargs, n)
    results: list[dict] = []
    try:
        for first in range(0, tasks, n):
            seeds = [seed + first + i for i in range(n)]
            roll = collect_tasks(envs, policy, seeds, deterministic=deterministic, record_infos=True)
            for i in range(min(n, tasks - first)):
                steps = int(roll["valid"][:, i].sum())
                rew = roll["rewards"][:steps, i].tolist()
                info = roll["infos"][i]
                res: dict[str, Any] = {
                    "task": first + i, "seed": seeds[i], "return": float(sum(rew)), "steps": steps,
                    "rewards": rew, "trial_end": info["trial_end"],
                    "trial_end_steps": [t for t, e in enumerate(info["trial_end"]) if e],
                }
                if any(g is not None for g in info["goal"]):
                    res["goal"] = info["goal"]
                results.append(res)
    finally:
        envs.close()
        policy.train(was_training)
    return results
