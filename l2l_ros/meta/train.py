"""The outer loop, read top to bottom: seeds, envs, policy and optimizer; resume; then
per update: collect and learn (``ppo.ppo_update``, or ``imitation.imitation_update``
when a teacher replaces PPO), log, checkpoint.

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
import math
import os
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from tqdm.auto import tqdm

from l2l_ros.meta.checkpoint import (CheckpointError, atomic_write_bytes, git_commit, git_source_modified,
                                     load_checkpoint, remove_stale_temporaries, repair_checkpoint,
                                     save_checkpoint)
from l2l_ros.meta.config import TrainConfig
from l2l_ros.meta.distributed import (all_mean, all_sum, any_rank, barrier, broadcast_parameters, setup,
                                      training_device)
from l2l_ros.meta.imitation import imitation_update, make_teacher_cached
from l2l_ros.meta.policies import build_policy
from l2l_ros.meta.ppo import ppo_update
from l2l_ros.meta.rollout import collect_tasks, make_vector_env, trial_ends_by_goal
from l2l_ros.policy_base import RecurrentPolicy, action_spec_from_space

__all__ = ["TrainConfig", "train", "evaluate", "TRAINER_STATE", "TRAIN_LOG"]

TRAINER_STATE = "trainer_state.safetensors"
TRAIN_LOG = "train_log.jsonl"


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


def _save_trainer_state(path: Path, policy: RecurrentPolicy, optimizer: torch.optim.Optimizer,
                        update: int, env_steps: int, config: TrainConfig, init_sha256: str | None) -> None:
    """Weights, Adam state, counters and config in one atomically written file."""
    tensors = {f"policy.{k}": v.detach().cpu().contiguous() for k, v in policy.state_dict().items()}
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
                        config: TrainConfig) -> tuple[int, int, str | None]:
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
    extra = sorted({k.split(".", 1)[0] for k in tensors} - {"policy", "optim"})
    if extra:
        raise ValueError(f"cannot resume from {path}: it holds training-only heads {extra} of options this "
                         "trainer no longer has (use a fresh out_dir)")
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
    network (or one it grows from: ``load_start_weights``); returns the sha256 of those
    weights (the path may later hold others)."""
    source, doc = load_checkpoint(path)
    try:
        policy.load_start_weights(source)
    except ValueError as e:
        raise CheckpointError(f"cannot start from {path}: {e}") from None
    return str(doc["weights_sha256"])


def _teacher_sha256(config: TrainConfig) -> str | None:
    """The sha256 of a saved-policy teacher's weights (the path may later hold others, as
    a model card's ``models/...`` path does when a model is replaced), from the teacher the
    updates use (loaded once per run, its weights checked); None for the built-in teachers
    (``gittins``, ``searcher``, ``arm-oracle``) and without a teacher."""
    if not config.teacher:
        return None
    doc = getattr(make_teacher_cached(config), "doc", None)
    return str(doc["weights_sha256"]) if doc else None


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
def _reports_expected_reward(envs: gym.vector.VectorEnv) -> bool:
    """Whether a step's info carries ``p`` and ``p_mean`` (one probe step; every update
    resets the envs with its own seeds, so it changes no training)."""
    envs.reset(seed=0)
    _, _, _, _, infos = envs.step(envs.action_space.sample())
    return "p" in infos and "p_mean" in infos



def _fix_action_std(policy, std: float) -> None:
    """A continuous policy's exploration std set to ``std`` and frozen (``TrainConfig.action_std``)."""
    if policy.discrete:
        raise ValueError("action_std is the exploration noise of a continuous policy; this one is discrete")
    with torch.no_grad():
        policy.log_std.fill_(math.log(std))
    policy.log_std.requires_grad_(False)


def train(config: TrainConfig, out_dir: str | os.PathLike,
          progress: Callable[[dict], None] | None = None,
          should_stop: Callable[[], bool] | None = None,
          command: str | None = None, device: str = "cpu") -> Path:
    """Train (or resume) a policy; returns the path of ``policy.safetensors``.

    Under ``torchrun`` (``l2l_ros.meta.distributed``) each of the N ranks collects
    ``num_envs / N`` of every update's tasks (the same total batch), gradients are
    averaged, and rank 0 alone writes ``out_dir``, which the other ranks read to resume.

    ``device``: where the policy, its rollout tensors and the optimizer live (``"cuda"``:
    a GPU; the envs and teachers stay on the CPU). Not part of the config: a run started
    on one device resumes on another, and checkpoints are written from CPU copies."""
    config.validate()
    ranks = setup(device)
    dev = training_device(device, ranks)
    if config.num_envs % ranks.world:
        raise ValueError(f"num_envs ({config.num_envs}) must be a multiple of the number of ranks ({ranks.world})")
    local_envs = config.num_envs // ranks.world
    out = Path(out_dir)
    log_path, state_path = out / TRAIN_LOG, out / TRAINER_STATE

    # Seed everything; build envs, policy, optimizer.
    torch.manual_seed(config.seed)
    np.random.seed(config.seed % 2**32)
    envs = make_vector_env(config.env_id, config.env_kwargs, local_envs)
    obs_dim = int(np.prod(envs.single_observation_space.shape))
    action_spec = action_spec_from_space(envs.single_action_space)
    policy = build_policy(config.policy, obs_dim, action_spec, config.policy_config).to(dev)
    if config.expected_reward and not _reports_expected_reward(envs):
        envs.close()
        raise ValueError("expected_reward needs an env whose step info gives the mean reward of the action "
                         f"taken and of the task (info['p'], info['p_mean']: the bandits); {config.env_id} "
                         "does not")
    if config.potential_shaping and getattr(envs, "sims", None) is None:
        envs.close()
        raise ValueError(f"potential_shaping needs the I-maze's oracle, poses and goals; {config.env_id} has none")
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr, eps=1e-5)
    if ranks.writer:
        out.mkdir(parents=True, exist_ok=True)  # after the checks above, so a refused run leaves nothing
        remove_stale_temporaries(out)  # of a run killed inside atomic_write_bytes
    barrier()

    commit = git_commit()  # the code that trains, not the code present when a checkpoint is saved
    modified = git_source_modified()
    teacher_sha256 = _teacher_sha256(config)
    start_update, env_steps, init_sha256 = 0, 0, None
    if state_path.exists():
        start_update, env_steps, init_sha256 = _load_trainer_state(state_path, policy, optimizer, config)
    elif config.init_from:
        init_sha256 = _init_weights(policy, config.init_from)
    if config.action_std is not None:
        _fix_action_std(policy, config.action_std)
    broadcast_parameters(policy)
    if ranks.writer:
        _truncate_log(log_path, start_update)

    def checkpoint(update: int, last: dict | None) -> Path:
        # Trainer state first: a kill before the policy pair is written leaves a pair
        # older than the state, which the next run's resume rewrites from the state.
        _save_trainer_state(state_path, policy, optimizer, update, env_steps, config, init_sha256)
        return save_policy(update, last)

    def save_policy(update: int, last: dict | None) -> Path:
        evaluation = {"updates": update, "env_steps": env_steps}
        if last:
            evaluation["train_mean_return"] = last["mean_return"]
        weights, _ = save_checkpoint(out / "policy", policy, {
            "env_id": config.env_id, "env_kwargs": config.env_kwargs, "command": command,
            "seed": config.seed, "evaluation": evaluation, "train_config": config.to_dict(),
            "git_commit": commit, **({"git_modified": modified} if modified is not None else {}),
            **({"init_sha256": init_sha256} if init_sha256 else {}),
            **({"teacher_sha256": teacher_sha256} if teacher_sha256 else {})})
        return weights

    if ranks.writer and state_path.exists() and not _policy_pair_current(out / "policy", policy, start_update):
        save_policy(start_update, _logged_update(log_path, start_update))  # even when no update is left

    update_fn = imitation_update if config.plain_imitation else ppo_update
    bar = tqdm(total=config.updates, initial=start_update, desc="imitation" if config.plain_imitation else "ppo",
               disable=None if ranks.writer else True, dynamic_ncols=True)
    recent: deque[float] = deque(maxlen=20)  # reward per step of the last updates, for the bar
    last: dict | None = None
    update = start_update
    t_start = time.perf_counter()
    try:
        while update < config.updates:
            if any_rank(should_stop is not None and should_stop()):
                break
            t0 = time.perf_counter()
            task_seeds, torch_seed = _update_seeds(config.seed, update, config.num_envs)
            task_seeds = task_seeds[ranks.rank * local_envs:(ranks.rank + 1) * local_envs]
            torch.manual_seed(torch_seed + ranks.rank)
            options = _update_options(config, update)
            lr = learning_rate(config, update)
            for g in optimizer.param_groups:
                g["lr"] = lr

            # 1-3. Collect one whole task per env and learn from it: PPO, or imitation of
            # a teacher when config.teacher is set (l2l_ros.meta.imitation).
            stats, roll = update_fn(config, envs, policy, optimizer, task_seeds, options, update)
            rewards, valid = roll["rewards"], roll["valid"]
            # Over every rank's tasks: returns, steps, rewards, trial ends.
            ret_sum, steps, reward_sum, ends_sum = all_sum([
                float(rewards.sum(0).double().sum()), float(valid.sum()), float(rewards.double().sum()),
                float(np.sum(roll["trial_ends"]))])
            env_steps += int(steps)

            update += 1

            # 4. Log, checkpoint, report.
            last = {
                "update": update, "updates": config.updates, "env_steps": env_steps,
                "mean_return": ret_sum / config.num_envs,
                "lr": lr,
                "mean_reward_per_step": reward_sum / max(steps, 1.0),
                **({"reset_options": options} if options else {}),
                "mean_trial_ends": ends_sum / config.num_envs,
                **trial_ends_by_goal(roll),  # rank 0's tasks under torchrun
                "task_steps": int(valid.shape[0]),
                **all_mean({k: float(np.mean(v)) for k, v in stats.items() if v}),
                **({"ranks": ranks.world} if ranks.active else {}),
                "update_seconds": time.perf_counter() - t0,
                "wall_seconds": time.perf_counter() - t_start,
            }
            if ranks.writer:
                with open(log_path, "a") as f:
                    f.write(json.dumps(last) + "\n")
            if ranks.writer and (update % max(1, config.checkpoint_every) == 0 or update == config.updates):
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
    if ranks.writer and (update != start_update or not weights.exists()):
        if not (last and "checkpoint" in last and last["update"] == update):
            checkpoint(update, last)
    barrier()  # the other ranks return once the checkpoint is there
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
