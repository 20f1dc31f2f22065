"""One PPO update with BPTT over whole tasks (CleanRL-style, read top to bottom).

1. **Collect** one full task (one gymnasium episode of the meta-wrapped env) from
   each of ``num_envs`` envs. The recurrent state starts at ``initial_state`` at the
   task start and is carried across the task's trials.
2. **GAE** over each task. The end of the episode is the end of the task, so it is
   treated as terminal (nothing after it belongs to the task).
3. **Optimise** for ``epochs`` epochs over minibatches of whole env-sequences: each
   minibatch re-runs ``forward_sequence`` from the initial state over the whole task
   (full BPTT through the surrogate gradient), with the clipped surrogate objective,
   a (clipped) value loss, an entropy bonus, grad-norm clipping and Adam. With a
   teacher and ``imitation_coef``, the imitation loss on every visited step joins it.
"""
from __future__ import annotations

import gymnasium as gym
import torch

from l2l_ros.meta.config import TrainConfig
from l2l_ros.meta.distributed import sync_and_clip
from l2l_ros.meta.imitation import make_teacher_cached
from l2l_ros.meta.losses import imitation_loss, masked_mean, teacher_targets
from l2l_ros.meta.rollout import IMazeStepsToGoal, collect_tasks, compute_gae, potential_shaping
from l2l_ros.policy_base import RecurrentPolicy

__all__ = ["ppo_update"]


def ppo_update(config: TrainConfig, envs: gym.vector.VectorEnv, policy: RecurrentPolicy,
               optimizer: torch.optim.Optimizer, task_seeds: list[int], options: dict | None,
               update: int) -> tuple[dict[str, list[float]], dict]:
    """One PPO update: collect a task per env, GAE, clipped-surrogate epochs. Returns
    the per-minibatch statistics and the rollout."""
    n_tasks = envs.num_envs  # this rank's share of config.num_envs
    mb_size = max(1, n_tasks // max(1, config.minibatches))
    # 1. Collect one whole task per env (hidden state reset at task start).
    policy.eval()
    teacher = None
    if config.teacher:
        teacher = make_teacher_cached(config)
        target_kind = teacher_targets(config, teacher)
    roll = collect_tasks(envs, policy, task_seeds, max_steps=config.max_task_steps, options=options,
                         teacher=teacher, expected_rewards=config.expected_reward,
                         potential=IMazeStepsToGoal() if config.potential_shaping else None)
    obs, actions, old_logp = roll["obs"], roll["actions"], roll["logprobs"]
    values, rewards, valid = roll["values"], roll["rewards"], roll["valid"]

    # 2. Advantages (on the env's reward, or its centred expectation), shaped by a potential.
    shaped = roll["expected_rewards"] if config.expected_reward else rewards
    if config.potential_shaping:
        shaped = shaped + potential_shaping(roll["potentials"], valid, config.potential_shaping, config.gamma,
                                            roll["goal_entered"])
    adv, returns = compute_gae(shaped * config.reward_scale, values, valid, config.gamma,
                               config.gae_lambda)

    # 3. PPO epochs over minibatches of whole sequences, full BPTT from the task start.
    policy.train()
    stats = {"policy_loss": [], "value_loss": [], "entropy": [], "approx_kl": [], "clipfrac": []}
    if teacher is not None:
        stats["imitation_loss"] = []
    params_to_clip = [p for g in optimizer.param_groups for p in g["params"]]
    for _ in range(config.epochs):
        perm = torch.randperm(n_tasks)
        for start in range(0, n_tasks, mb_size):
            mb = perm[start:start + mb_size]
            m = valid[:, mb]
            params, new_values, _ = policy.forward_sequence(obs[:, mb], policy.initial_state(len(mb)))
            dist = policy.distribution(params)
            new_logp = policy.log_prob(dist, actions[:, mb])
            entropy = policy.entropy(dist)
            logratio = new_logp - old_logp[:, mb]
            ratio = logratio.exp()
            with torch.no_grad():
                approx_kl = masked_mean((ratio - 1) - logratio, m)
                clipfrac = masked_mean(((ratio - 1.0).abs() > config.clip_coef).float(), m)
            mb_adv = adv[:, mb]
            if config.norm_adv:
                sel = mb_adv[m]
                mb_adv = (mb_adv - sel.mean()) / (sel.std(unbiased=False) + 1e-8)
            pg_loss = masked_mean(torch.max(
                -mb_adv * ratio,
                -mb_adv * torch.clamp(ratio, 1 - config.clip_coef, 1 + config.clip_coef)), m)
            if config.clip_vloss:
                v_clipped = values[:, mb] + torch.clamp(new_values - values[:, mb],
                                                        -config.clip_coef, config.clip_coef)
                v_loss = 0.5 * masked_mean(torch.max((new_values - returns[:, mb]) ** 2,
                                                      (v_clipped - returns[:, mb]) ** 2), m)
            else:
                v_loss = 0.5 * masked_mean((new_values - returns[:, mb]) ** 2, m)
            ent = masked_mean(entropy, m)
            loss = pg_loss - config.ent_coef * ent + config.vf_coef * v_loss
            if teacher is not None:
                ce = masked_mean(imitation_loss(params, roll["targets"][:, mb], target_kind), m)
                loss = loss + config.imitation_coef * ce
                stats["imitation_loss"].append(float(ce.detach()))

            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            sync_and_clip(params_to_clip, config.max_grad_norm)
            optimizer.step()
            for k, v in (("policy_loss", pg_loss), ("value_loss", v_loss), ("entropy", ent),
                         ("approx_kl", approx_kl), ("clipfrac", clipfrac)):
                stats[k].append(float(v.detach()))
    if teacher is not None:
        stats["teacher_agreement"] = [float(masked_mean(roll["agree"].float(), valid))]
    return stats, roll
