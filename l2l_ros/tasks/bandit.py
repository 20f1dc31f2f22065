"""Bernoulli bandits: the fast task family for testing the learning code (RL² Table 1).

One episode = one task = ``n`` pulls of ``k`` arms whose success probabilities
``p_i ~ U[0, 1]`` are drawn at reset. The observation carries no information about
the arms, only time (:func:`time_features`, t = pulls made so far): the fraction of
the task done and left, as Wang et al. give the time step, plus the pulls left on a
log scale, so that a single model can tell a 10-pull task from a 500-pull one at
its first pull and serve every horizon. ``reset(options={"n": N})`` sets the horizon
of one task. The meta wrapper adds the previous action and reward.
``info["goal"]`` is the best arm, ``info["p"]`` the probability of the pulled arm,
``info["p_best"]`` the best probability (for regret) and ``info["p_mean"]`` the mean
over the arms (what a random pull earns on average; the trainer's ``expected_reward``).
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding

from l2l_ros.tasks.meta_wrapper import MetaWrapper, vector_seeds

BANDIT_ENV_ID = "l2l_ros/Bandit-v0"


N_TIME_FEATURES = 3
HORIZON_SCALE = 1000  # pulls left are encoded as log1p(n - t) / log1p(HORIZON_SCALE), capped at 1


def time_features(t, n) -> np.ndarray:
    """``[t / n, (n - t) / n, min(1, log1p(n - t) / log1p(1000))]`` as float32.

    Scalars give shape ``(3,)``; arrays of tasks give ``(B, 3)`` (the vector env,
    the batched evaluation and the single env all use this one function).
    """
    t, n = np.asarray(t), np.asarray(n)
    left = n - t
    return np.stack([t / n, left / n, np.minimum(1.0, np.log1p(left) / np.log1p(HORIZON_SCALE))],
                    axis=-1).astype(np.float32)


def meta_bandit_obs(t, n, k: int, prev_action: np.ndarray | None, prev_reward: np.ndarray,
                    start: np.ndarray) -> np.ndarray:
    """What ``MetaWrapper(BernoulliBanditEnv(k, n))`` observes, for a batch of tasks ``[B, 3 + k + 2]``.

    ``time_features(t, n)`` + ``meta_features(prev_action, prev_reward, start, Discrete(k))``
    row by row: the previous arm one-hot and the previous reward are zero where ``start``
    (the task's first step; a bandit task is one trial). Used by the vector env and by
    the batched evaluation; the tests compare both with the wrapped single env.
    """
    start = np.asarray(start, dtype=bool)
    B = start.shape[0]
    m = N_TIME_FEATURES
    obs = np.zeros((B, m + k + 2), dtype=np.float32)
    obs[:, :m] = time_features(t, n)
    if prev_action is not None:
        rows = np.flatnonzero(~start)
        obs[rows, m + np.asarray(prev_action)[rows]] = 1.0
    obs[:, m + k] = np.where(start, 0.0, prev_reward)
    obs[:, m + k + 1] = start
    return obs


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
                "p_best": float(self.probs.max()), "p_mean": float(self.probs.mean())}
        return self._obs(), reward, False, self.t >= self.n, info


def register_bandit() -> None:
    """Register ``l2l_ros/Bandit-v0`` (kwargs ``k``, ``n``); idempotent."""
    if BANDIT_ENV_ID not in gym.registry:
        gym.register(id=BANDIT_ENV_ID, entry_point=BernoulliBanditEnv)


class MetaBanditVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` copies of ``MetaWrapper(BernoulliBanditEnv(k, n))`` in numpy arrays.

    Why: a bandit step is a comparison; stepping 128 Python envs through
    ``SyncVectorEnv`` and the wrapper cost more than the policy. This class gives the
    same observations, rewards and truncations as that stack for the same seeds
    (each task keeps its own generator, seeded as gymnasium seeds an env), which the
    tests check step by step. Autoreset: next step, as gymnasium's default.
    """

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int, k: int = 5, n: int = 100):
        self.num_envs = int(num_envs)
        self.k, self.default_n = int(k), int(n)
        template = MetaWrapper(BernoulliBanditEnv(k, n))
        self.single_observation_space = template.observation_space
        self.single_action_space = template.action_space
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)
        self.n = np.full(self.num_envs, self.default_n)
        self.t = np.zeros(self.num_envs, dtype=np.int64)
        self.probs = np.full((self.num_envs, self.k), 0.5)
        self.rngs = [seeding.np_random(None)[0] for _ in range(self.num_envs)]
        self._needs_reset = np.zeros(self.num_envs, dtype=bool)

    def _reset_one(self, i: int, seed: int | None, options: dict | None) -> None:
        if seed is not None:
            self.rngs[i] = seeding.np_random(int(seed))[0]
        self.n[i] = int(options["n"]) if options and "n" in options else self.default_n
        if self.n[i] < 1:
            raise ValueError("options['n'] must be >= 1 pulls")
        self.probs[i] = self.rngs[i].uniform(0.0, 1.0, size=self.k)
        self.t[i] = 0

    def _obs(self, prev_action: np.ndarray | None, prev_reward: np.ndarray, start: np.ndarray) -> np.ndarray:
        return meta_bandit_obs(self.t, self.n, self.k, prev_action, prev_reward, start)

    def reset(self, *, seed=None, options: dict | None = None):
        seeds = vector_seeds(seed, self.num_envs)
        for i, s in enumerate(seeds):
            self._reset_one(i, s, options)
        self._needs_reset[:] = False
        start = np.ones(self.num_envs, dtype=bool)
        return self._obs(None, np.zeros(self.num_envs), start), self._infos()

    def _infos(self) -> dict:
        """The single env's ``goal`` (best arm) and ``p_best``, in vector-info form."""
        every = np.ones(self.num_envs, dtype=bool)
        return {"goal": self.probs.argmax(1), "_goal": every,
                "p_best": self.probs.max(1), "_p_best": every}

    def step(self, actions):
        a = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)
        if np.any((a < 0) | (a >= self.k)):
            raise ValueError(f"arms out of range [0, {self.k}): {a}")
        restart = self._needs_reset.copy()
        for i in np.flatnonzero(restart):
            self._reset_one(i, None, None)  # as the single env: no options, its own n
        reward = np.zeros(self.num_envs)
        for i in np.flatnonzero(~restart):  # a restarting task takes no action (and no draw)
            reward[i] = float(self.rngs[i].random() < self.probs[i, a[i]])
        self.t = np.where(restart, 0, self.t + 1)
        truncated = (~restart) & (self.t >= self.n)
        self._needs_reset = truncated.copy()
        obs = self._obs(a, reward, restart)
        infos = self._infos()
        pulled = ~restart  # a restarting task pulled nothing: no ``p`` there, as no single-env step
        infos.update({"p": np.where(pulled, self.probs[np.arange(self.num_envs), a], 0.0), "_p": pulled,
                      "p_mean": self.probs.mean(1), "_p_mean": np.ones(self.num_envs, dtype=bool)})
        return obs, reward, np.zeros(self.num_envs, dtype=bool), truncated, infos
