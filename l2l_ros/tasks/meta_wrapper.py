"""RL² inputs: the observation plus previous action, previous reward and a trial-start flag.

With these the recurrent policy can learn inside a task with its weights frozen
(Duan et al. 2016; Wang et al. 2016). ``meta_features`` is also what the
``spiking_policy`` node calls, so env and robot build the same input vector.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


def action_feature_dim(action_space: gym.Space) -> int:
    if isinstance(action_space, gym.spaces.Discrete):
        return int(action_space.n)
    if isinstance(action_space, gym.spaces.Box):
        return int(np.prod(action_space.shape))
    raise TypeError(f"unsupported action space {action_space}")


def vector_seeds(seed, num_envs: int) -> list[int | None]:
    """Per-env seeds as ``SyncVectorEnv.reset`` derives them: None, ``seed + i``, or a
    list of ``num_envs`` seeds (for the native vector envs, which must match it)."""
    if seed is None or isinstance(seed, int):
        return [None if seed is None else seed + i for i in range(num_envs)]
    seeds = list(seed)
    if len(seeds) != num_envs:
        raise ValueError(f"need {num_envs} seeds, got {len(seeds)}")
    return seeds


def meta_features(prev_action: Any, prev_reward: float, trial_start: bool,
                  action_space: gym.Space) -> np.ndarray:
    """[one-hot or raw previous action, previous reward, trial-start flag] as float32.

    ``prev_action=None`` (the first step of a task) encodes as all zeros.
    """
    act = np.zeros(action_feature_dim(action_space), dtype=np.float32)
    if prev_action is not None:
        if isinstance(action_space, gym.spaces.Discrete):
            act[int(prev_action) - int(action_space.start)] = 1.0
        else:
            act[:] = np.clip(np.asarray(prev_action, dtype=np.float32).ravel(),
                             action_space.low.ravel(), action_space.high.ravel())
    reward = float(prev_reward) if np.isfinite(prev_reward) else 0.0
    return np.concatenate([act, [reward, float(bool(trial_start))]]).astype(np.float32)


class MetaWrapper(gym.Wrapper):
    """Appends ``meta_features`` to a Box observation.

    One gymnasium episode of the wrapped env is one *task* of several trials; the
    env reports the end of a trial with ``info["trial_end"] = True`` (the robot was
    put back at the start), which becomes the trial-start flag of the next step.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        base = env.observation_space
        if not isinstance(base, gym.spaces.Box) or len(base.shape) != 1:
            raise TypeError("MetaWrapper needs a flat Box observation space")
        extra = action_feature_dim(env.action_space) + 2
        low = np.concatenate([base.low, np.full(extra, -np.inf, dtype=np.float32)])
        high = np.concatenate([base.high, np.full(extra, np.inf, dtype=np.float32)])
        self.observation_space = gym.spaces.Box(low.astype(np.float32), high.astype(np.float32),
                                                dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        feats = meta_features(None, 0.0, True, self.env.action_space)
        return np.concatenate([obs, feats]).astype(np.float32), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        feats = meta_features(action, reward, bool(info.get("trial_end", False)),
                              self.env.action_space)
        return np.concatenate([obs, feats]).astype(np.float32), reward, terminated, truncated, info
