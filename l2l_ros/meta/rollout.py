"""Rollouts: one whole task per env (the recurrent state carried across its trials),
the envs that give them, and GAE over them."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from l2l_ros.policy_base import RecurrentPolicy
from l2l_ros.tasks.meta_wrapper import MetaWrapper

__all__ = ["make_env", "make_vector_env", "collect_tasks", "compute_gae", "trial_ends_by_goal",
           "IMazeStepsToGoal", "potential_shaping"]

#: A continuous policy "agrees" with its teacher when its mean action is within this of
#: the teacher's in every component (actions span [-1, 1]).
CONTINUOUS_AGREEMENT = 0.1


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


@torch.no_grad()
def collect_tasks(envs: gym.vector.VectorEnv, policy: RecurrentPolicy, seeds: list[int],
                  deterministic: bool = False, max_steps: int = 100_000,
                  record_infos: bool = False, options: dict | None = None,
                  teacher=None, teacher_share: float = 0.0, rng: np.random.Generator | None = None,
                  expected_rewards: bool = False, potential=None) -> dict:
    """Run one whole task in every env. Returns ``[T, B]`` tensors ``obs``
    (``[T,B,D]``), ``actions`` (raw samples), ``logprobs``, ``values``, ``rewards``,
    ``valid`` (False after an env's task ended), ``trial_ends[B]`` and, with
    ``record_infos``, per-env lists of ``trial_end`` / ``goal`` info values per step.
    Envs with goals and trial ends (the I-maze) also give ``task_goals[B]``, each task's
    reset ``info["goal"]``, for the log's ``trial_ends_by_goal``.

    With a ``teacher`` (``l2l_ros.meta.imitation.Teacher``; for a continuous policy its
    target is an action and ``agree`` means within ``CONTINUOUS_AGREEMENT``) every step
    also records the teacher's ``targets`` ``[T, B, A]`` and ``agree`` (the policy's
    action is one of the teacher's), and the executed action is a draw from the
    teacher's target with probability ``teacher_share`` (random numbers from ``rng``,
    needed only when the share is above 0), else the policy's own.

    With ``expected_rewards`` it also returns ``expected_rewards`` ``[T, B]``: the mean
    reward of the action taken minus the task's mean over actions (``info["p"] -
    info["p_mean"]``, which the bandits report), for ``TrainConfig.expected_reward``.

    With ``potential`` (``envs -> [B]``, e.g. :class:`IMazeStepsToGoal`) it also returns
    ``potentials`` ``[T + 1, B]``: its value before each step and after the last one, and
    ``goal_entered`` ``[T, B]``: the steps whose goal entry ended a trial (the robot then
    starts the next trial elsewhere, so the potential after such a step is not the goal's)."""
    B = envs.num_envs
    dev = policy._device()  # the envs and the teacher work on the CPU, the policy's tensors here
    obs, reset_infos = envs.reset(seed=[int(s) for s in seeds], options=options)
    state = policy.initial_state(B)
    done = np.zeros(B, dtype=bool)
    keys = ("obs", "actions", "logprobs", "values", "rewards", "valid") + (("targets", "agree") if teacher else ())
    buf: dict[str, list] = {k: [] for k in keys}
    if teacher is not None:
        teacher.reset(envs)
    trial_ends = np.zeros(B, dtype=np.int64)
    infos_out = [{"trial_end": [], "goal": []} for _ in range(B)]
    reports_trial_ends = False
    if expected_rewards:
        buf["expected_rewards"] = []
    if potential is not None:
        buf["potentials"] = [torch.as_tensor(potential(envs), dtype=torch.float32, device=dev).nan_to_num(0.0)]
        buf["goal_entered"] = []
    for _ in range(max_steps):
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=dev)
        params, value, state = policy.forward_sequence(obs_t[None], state)
        dist = policy.distribution(params[0])
        raw = policy.deterministic_action(params[0]) if deterministic else dist.sample()
        if teacher is not None and not policy.discrete:  # a continuous action is the target
            target = teacher.target(obs)
            buf["targets"].append(torch.as_tensor(target, dtype=torch.float32, device=dev))
            mean = policy.deterministic_action(params[0]).cpu().numpy()
            buf["agree"].append(torch.as_tensor(np.abs(mean - target).max(axis=1) <= CONTINUOUS_AGREEMENT,
                                                device=dev))
            if teacher_share > 0:
                taught = torch.as_tensor(target, dtype=raw.dtype, device=dev)
                raw = torch.where(torch.as_tensor(rng.random((B, 1)) < teacher_share, device=dev), taught, raw)
        elif teacher is not None:
            target = teacher.target(obs, student=dist.probs.double().cpu().numpy())
            own = raw.cpu().numpy()
            buf["targets"].append(torch.as_tensor(target, dtype=torch.float32, device=dev))
            # the policy's action is one of the teacher's most likely (its set, for set targets)
            buf["agree"].append(torch.as_tensor(target[np.arange(B), own] >= target.max(axis=1) - 1e-6,
                                                device=dev))
            if teacher_share > 0:
                probs = _softmax(target) if getattr(teacher, "logit_targets", False) else target
                taught = np.minimum((probs.cumsum(axis=1) < rng.random((B, 1))).sum(axis=1), target.shape[1] - 1)
                raw = torch.as_tensor(np.where(rng.random(B) < teacher_share, taught, own), device=dev)
        logprob = policy.log_prob(dist, raw)
        next_obs, reward, terminated, truncated, infos = envs.step(policy.env_action(raw).cpu().numpy())
        if teacher is not None:
            teacher.observe(raw.cpu().numpy(), reward)
        valid = ~done
        buf["obs"].append(obs_t)
        buf["actions"].append(raw)
        buf["logprobs"].append(logprob)
        buf["values"].append(value[0])
        valid_t = torch.as_tensor(valid, device=dev)
        buf["rewards"].append(torch.as_tensor(reward, dtype=torch.float32, device=dev) * valid_t)
        buf["valid"].append(valid_t)
        if expected_rewards:
            if "p" not in infos or "p_mean" not in infos:
                raise ValueError("expected rewards need an env whose step info gives the mean reward of the "
                                 "action taken and of the task (info['p'], info['p_mean']: the bandits)")
            centred = np.asarray(infos["p"]) - np.asarray(infos["p_mean"])
            buf["expected_rewards"].append(torch.as_tensor(centred, dtype=torch.float32, device=dev) * valid_t)
        if potential is not None:  # where it has no value (NaN), the last one holds
            d = torch.as_tensor(potential(envs), dtype=torch.float32, device=dev)
            buf["potentials"].append(torch.where(torch.isnan(d), buf["potentials"][-1], d))
        te = infos.get("trial_end")
        entered = np.zeros(B, dtype=bool)  # a goal entry ended this step's trial
        if te is not None:
            reports_trial_ends = True
            entered = np.asarray(te, dtype=bool) & np.asarray(infos.get("_trial_end", valid)) & valid
            trial_ends += entered
        if potential is not None:
            buf["goal_entered"].append(torch.as_tensor(entered, device=dev))
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


class IMazeStepsToGoal:
    """``envs -> [B]``: the honest oracle's fewest control periods from each I-maze env's
    pose into its goal alcove (the potential of ``TrainConfig.potential_shaping``; against
    a wall, the nearest free pose's; NaN where none is near). ``envs``: the I-maze's
    batched env (``train`` refuses other envs before it starts).

    One per rollout: it holds the oracle of each maze the batch has (``oracle_for``'s,
    0.3 s to build). That cache keeps the last 8, so the default maze is built once per
    process; with a task family every task has its own maze, more than 8 in a batch, and
    without these references each step would rebuild them."""

    def __init__(self):
        self._oracles: dict = {}

    def __call__(self, envs: gym.vector.VectorEnv) -> np.ndarray:
        from l2l_ros.tasks.imaze_oracle import oracle_for

        out = np.empty(len(envs.sims), dtype=np.float64)
        for i, sim in enumerate(envs.sims):
            oracle = self._oracles.get(sim.geometry)
            if oracle is None:
                oracle = self._oracles[sim.geometry] = oracle_for(sim.geometry)
            out[i] = oracle.nearest_steps_to_goal(sim.goal, *sim.pose())
        return out


def potential_shaping(potentials: torch.Tensor, valid: torch.Tensor, coef: float, gamma: float,
                      goal_entered: torch.Tensor) -> torch.Tensor:
    """``[T, B]`` rewards to add: ``coef * (d_t - gamma * d_{t+1})`` on valid steps.

    Each trial is an episode of the shaping (Ng et al. 1999): ``d_{t+1} = 0`` after a step
    that entered the goal (the robot is there, although the env has already moved it back
    to the centre) and after a task's last valid step. So within a trial the shaping
    telescopes and changes no action's ranking, and each goal entry at step t adds
    ``coef * gamma**(t+1) * d`` (d: from the next trial's start), a bonus on the goal's
    reward. Charging that distance to the entering step instead, as a first version did,
    cut the goal's reward: -2.5 at coef 0.1, against the goal's +1.
    ``potentials``: ``[T + 1, B]`` steps to the goal; ``goal_entered``: ``[T, B]``."""
    validf = valid.float()
    after = torch.cat([validf[1:], torch.zeros_like(validf[:1])])  # 0 after the last valid step
    after = after * (~goal_entered).float()  # and after a goal entry
    return coef * (potentials[:-1] - gamma * potentials[1:] * after) * validf


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)



def trial_ends_by_goal(roll: dict) -> dict:
    """Goals reached per task for each goal the update's tasks had (the I-maze's alcoves).

    The mean over all tasks hides a policy that searches only some alcoves; this shows it.
    """
    goals = roll.get("task_goals")
    if goals is None or np.ndim(goals) != 1:  # the arm's goals are points, not a few labels
        return {}
    ends = np.asarray(roll["trial_ends"])
    return {"trial_ends_by_goal": {str(g): float(ends[goals == g].mean()) for g in np.unique(goals)}}
