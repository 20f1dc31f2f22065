"""Bernoulli bandits: the fast task family for testing the learning code (RL² Table 1).

One episode = one task = ``n`` pulls of ``k`` arms whose success probabilities
``p_i ~ U[0, 1]`` are drawn at reset. The observation carries no information about
the arms, only time: ``[t / n, (n - t) / n]`` (t = pulls made so far), so one model
can serve several horizons; the meta wrapper adds the previous action and reward.
``info["goal"]`` is the best arm, ``info["p"]`` the probability of the pulled arm,
``info["p_best"]`` the best probability (for regret).
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

BANDIT_ENV_ID = "l2l_ros/Bandit-v0"


class BernoulliBanditEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, k: int = 5, n: int = 100):
        if k < 1 or n < 1:
            raise ValueError("need k >= 1 arms and n >= 1 pulls")
        self.k, self.n = int(k), int(n)
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(self.k)
        self.probs = np.full(self.k, 0.5)
        self.t = 0

    def _obs(self) -> np.ndarray:
        return np.array([self.t / self.n, (self.n - self.t) / self.n], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if options and "probs" in options:
            probs = np.asarray(options["probs"], dtype=np.float64)
            if probs.shape != (self.k,) or np.any((probs < 0) | (probs > 1)):
                raise ValueError(f"options['probs'] must be {self.k} probabilities")
            self.probs = probs
        else:
            self.probs = self.np_random.uniform(0.0, 1.0, size=self.k)
        self.t = 0
        return self._obs(), {"goal": int(np.argmax(self.probs)), "p_best": float(self.probs.max())}

    def step(self, action):
        a = int(action)
        if not 0 <= a < self.k:
            raise ValueError(f"arm {a} out of range [0, {self.k})")
        reward = float(self.np_random.random() < self.probs[a])
        self.t += 1
        info = {"goal": int(np.argmax(self.probs)), "p": float(self.probs[a]),
                "p_best": float(self.probs.max())}
        return self._obs(), reward, False, self.t >= self.n, info


def register_bandit() -> None:
    """Register ``l2l_ros/Bandit-v0`` (kwargs ``k``, ``n``); idempotent."""
    if BANDIT_ENV_ID not in gym.registry:
        gym.register(id=BANDIT_ENV_ID, entry_point=BernoulliBanditEnv)
