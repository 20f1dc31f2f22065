"""Many I-maze tasks per process, their physics advanced together in C.

``MetaIMazeVectorEnv`` gives what ``SyncVectorEnv([MetaWrapper(IMazeEnv())] * N)``
gives (same observations, rewards, truncations and infos for the same seeds and
actions), but each step runs the physics of every env as one ``mujoco.rollout``
call over a persistent thread pool: the 20 substeps of each control period, with
the per-substep wall-contact sensor read back for the collision flag, never return
to Python. The rest of a step (scan, encoder, rewards) is the env's own code.

One numerical difference: ``mujoco.rollout`` cannot hand back the constraint
solver's warm start, so each control period starts the solver cold (on the sequential
env it is warm from the previous substep). Solutions agree to the solver tolerance;
the tests bound the difference.
"""
from __future__ import annotations

import os

import gymnasium as gym
import mujoco
import mujoco.rollout
import numpy as np

from l2l_ros.tasks.encoding import imaze_action_to_twist
from l2l_ros.tasks.imaze import IMazeEnv
from l2l_ros.tasks.meta_wrapper import MetaWrapper, meta_features, vector_seeds

__all__ = ["MetaIMazeVectorEnv"]

_STATE = mujoco.mjtState.mjSTATE_FULLPHYSICS


class MetaIMazeVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` meta-wrapped I-maze envs with batched physics (see module doc).

    ``nthread``: physics threads (default: one per CPU, at most ``num_envs``).
    Autoreset: next step, as gymnasium's default.
    """

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int, nthread: int | None = None, **env_kwargs):
        self.num_envs = int(num_envs)
        if self.num_envs < 1:
            raise ValueError("num_envs must be >= 1")
        self.envs = [MetaWrapper(IMazeEnv(**env_kwargs)) for _ in range(self.num_envs)]
        self._tasks: list[IMazeEnv] = [e.unwrapped for e in self.envs]
        self.single_observation_space = self.envs[0].observation_space
        self.single_action_space = self.envs[0].action_space
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)
        self.nthread = max(1, min(int(nthread or os.cpu_count() or 1), self.num_envs))
        model = self._tasks[0].sim.model
        self._pool = mujoco.rollout.Rollout(nthread=self.nthread)
        self._thread_data = [mujoco.MjData(model) for _ in range(self.nthread)]
        self._nstate = mujoco.mj_stateSize(model, _STATE)
        self._needs_reset = np.zeros(self.num_envs, dtype=bool)

    @property
    def sims(self) -> list:
        """The envs' ``IMazeSim`` (the imitation teacher reads poses and trials from them)."""
        return [task.sim for task in self._tasks]

    def reset(self, *, seed=None, options: dict | None = None):
        seeds = vector_seeds(seed, self.num_envs)
        obs, infos = [], {}
        for i, (env, s) in enumerate(zip(self.envs, seeds)):
            o, info = env.reset(seed=s, options=options)
            obs.append(o)
            infos = self._add_info(infos, info, i)
        self._needs_reset[:] = False
        return np.stack(obs), infos

    def _advance_physics(self, idx: np.ndarray) -> np.ndarray:
        """One control period of physics for envs ``idx`` (commands already set);
        returns whether each touched a wall during it."""
        sims = [self._tasks[i].sim for i in idx]
        init = np.empty((len(sims), self._nstate))
        for j, sim in enumerate(sims):
            mujoco.mj_getState(sim.model, sim.data, init[j], _STATE)
        ctrl = np.stack([sim.data.ctrl for sim in sims])[:, None, :]
        warm = np.zeros((len(sims), sims[0].model.nv))  # deterministic whatever the thread
        state, sensordata = self._pool.rollout([sim.model for sim in sims], self._thread_data, init, ctrl,
                                               nstep=sims[0].substeps, initial_warmstart=warm)
        for j, sim in enumerate(sims):
            mujoco.mj_setState(sim.model, sim.data, state[j, -1], _STATE)
        return sensordata.reshape(len(sims), -1).any(axis=1)

    def step(self, actions):
        a = np.asarray(actions).reshape(self.num_envs)
        if not np.all((a >= 0) & (a < self.single_action_space.n)):
            raise ValueError(f"actions out of range [0, {self.single_action_space.n}): {a}")
        restart = self._needs_reset.copy()
        moving = np.flatnonzero(~restart)
        for i in moving:
            task = self._tasks[i]
            task.sim.set_command(*task.delayed(*imaze_action_to_twist(int(a[i]))))
        collided = np.zeros(self.num_envs, dtype=bool)
        if moving.size:
            collided[moving] = self._advance_physics(moving)
        obs = np.empty((self.num_envs, *self.single_observation_space.shape), dtype=np.float32)
        reward = np.zeros(self.num_envs)
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        infos: dict = {}
        for i, (env, task) in enumerate(zip(self.envs, self._tasks)):
            if restart[i]:  # a finished task restarts and takes no action
                obs[i], info = env.reset()
            else:
                o, r, terminated[i], truncated[i], info = task.conclude_step(task.sim.finish_step(collided[i]))
                feats = meta_features(int(a[i]), r, bool(info.get("trial_end", False)), task.action_space)
                obs[i], reward[i] = np.concatenate([o, feats]), r
            infos = self._add_info(infos, info, i)
        self._needs_reset = terminated | truncated
        return obs, reward, terminated, truncated, infos

    def close_extras(self, **kwargs) -> None:
        self._pool.close()
        for env in self.envs:
            env.close()
