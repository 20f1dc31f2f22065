"""Bernoulli bandits: the fast task family for testing the learning code (RL² Table 1).

One episode = one task = ``n`` pulls of ``k`` arms whose success probabilities
``p_i ~ U[0, 1]`` are drawn at reset. The observation carries no information about
the arms, only time (:func:`time_features`, t = pulls made so far): the fraction of
the task done and left, as Wang et al. give the time step, plus the pulls left on a
log scale, so that a single model can tell a 10-pull task from a 500-pull one at
its first pull and serve every horizon. ``reset(options={"n": N})`` sets the horizon
of one task. The meta wrapper adds the previous action and reward.
``info["goal"]`` is the best arm, ``info["p"]`` the probability of the pulled arm,
``info["p_best"]`` the best probability (for regret).
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

BANDIT_ENV_ID = "l2l_ros/Bandit-v0"


N_TIME_FEATURES = 3
HORIZON_SCALE = 1000  # pulls left are encoded as log1p(n - t) / log1p(HORIZON_SCALE), capped at 1


def time_features(t: int, n: int) -> np.ndarray:
    """``[t / n, (n - t) / n, min(1, log1p(n - t) / log1p(1000))]`` as float32 (env and eval)."""
    left = n - t
    return np.array([t / n, left / n, min(1.0, np.log1p(left) / np.log1p(HORIZON_SCALE))],
                    dtype=np.float32)


class BernoulliBanditEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, k: int = 5, n: int = 100):
        if k < 1 or n < 1:
            raise ValueError("need k >= 1 arms and n >= 1 pulls")
        self.k, self.n = int(k), int(n)
        self.default_n = self.n
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(3,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(self.k)
        self.probs = np.full(self.k, 0.5)
        self.t = 0

    def _obs(self) -> np.ndarray:
        return time_features(self.t, self.n)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.n = int(options["n"]) if options and "n" in options else self.default_n
        if self.n < 1:
            raise ValueError("options['n'] must be >= 1 pulls")
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
