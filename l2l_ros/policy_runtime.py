"""A policy as a robot runs it: one network step per tick, hidden state kept between ticks.

No ROS in here, so the spiking_policy node stays a thin adapter and this part is
tested without DDS. The input vector is exactly what the training envs produce:
the shared encoder's output followed by ``meta_features`` (RL² inputs).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from l2l_ros.meta.policies import action_spec_from_space, normalize_action_spec
from l2l_ros.tasks.encoding import ARM_OBS_DIM, IMAZE_ACTIONS, IMAZE_OBS_DIM
from l2l_ros.tasks.meta_wrapper import action_feature_dim, meta_features

#: What each deployment mode feeds the network and expects back.
MODE_SPACES: dict[str, tuple[int, gym.Space]] = {
    "imaze": (IMAZE_OBS_DIM, gym.spaces.Discrete(len(IMAZE_ACTIONS))),
    "manipulator": (ARM_OBS_DIM, gym.spaces.Box(-1.0, 1.0, (3,), dtype=np.float32)),
}


@dataclass
class PolicyRuntime:
    policy: torch.nn.Module
    metadata: dict
    mode: str
    state: Any = None
    prev_action: Any = None
    steps: int = 0  # network steps since count_spikes() (or since loading)
    action_space: gym.Space = field(init=False)

    def __post_init__(self):
        sensor_dim, self.action_space = MODE_SPACES[self.mode]
        expected = sensor_dim + action_feature_dim(self.action_space) + 2
        got = int(self.metadata.get("obs_dim", -1))
        if got != expected:
            raise ValueError(f"checkpoint expects {got} inputs but mode {self.mode!r} provides "
                             f"{expected}: it was not trained for this task family")
        expected_space = action_spec_from_space(self.action_space)
        if normalize_action_spec(self.metadata.get("action_space", {})) != expected_space:
            raise ValueError(f"checkpoint action space {self.metadata.get('action_space')} does not "
                             f"match mode {self.mode!r} ({expected_space})")
        self.policy.eval()
        self.reset()

    def reset(self) -> None:
        """New task: forget everything learned inside the previous one."""
        self.state = self.policy.initial_state(1)
        self.prev_action = None

    def state_is_finite(self) -> bool:
        """False once any hidden-state value is NaN or infinite (the network then repeats
        one action forever: the caller must stop the robot and reset)."""
        return all(bool(torch.isfinite(s).all()) for s in self.state)

    def neuron_count(self) -> int:
        z = getattr(self.state, "z", None)
        return int(z.shape[-1]) if z is not None else 0

    def ticks_per_step(self) -> int:
        return int(getattr(getattr(self.policy, "config", None), "ticks_per_step", 1))

    def count_spikes(self) -> None:
        """Count every tick's spikes per neuron from now on (an LSNN; else nothing to count)."""
        if hasattr(self.policy, "count_spikes"):
            self.policy.count_spikes(batch=1)
        self.steps = 0

    def cost(self) -> dict:
        """Spikes, synaptic operations or MACs, and energy per control step (l2l_ros.cost);
        for an LSNN, over the steps since ``count_spikes()``."""
        from l2l_ros.cost import policy_cost

        return policy_cost(self.policy, self.steps)

    @torch.no_grad()
    def step(self, encoded_obs: np.ndarray, prev_reward: float, trial_start: bool,
             deterministic: bool = True):
        x = np.concatenate([encoded_obs, meta_features(self.prev_action, prev_reward, trial_start,
                                                       self.action_space)])
        if not np.isfinite(x).all():  # the encoder checks sensors; this guards every input
            raise ValueError(f"non-finite network input {x.tolist()}")
        obs = torch.as_tensor(x, dtype=torch.float32).unsqueeze(0)
        if deterministic:
            action, self.state = self.policy.act_greedy(obs, self.state)
        else:
            action, _, _, self.state = self.policy.act(obs, self.state, deterministic=False)
        self.steps += 1
        a = action[0].cpu().numpy()
        self.prev_action = int(a) if isinstance(self.action_space, gym.spaces.Discrete) else a
        return self.prev_action

    def describe(self) -> str:
        m = self.metadata
        return (f"{m.get('policy_kind', '?')} policy for {m.get('env_id', '?')} "
                f"from {m.get('source', 'an untrained init')}")


def load_runtime(path: str, mode: str) -> PolicyRuntime:
    """Load a checkpoint for a mode; any problem raises ValueError (CheckpointError) or OSError."""
    from l2l_ros.meta.checkpoint import load_checkpoint

    policy, metadata = load_checkpoint(path)
    metadata = {**metadata, "source": str(path)}
    return PolicyRuntime(policy, metadata, mode)


def untrained_runtime(mode: str, kind: str = "lsnn") -> PolicyRuntime:
    from l2l_ros.meta.policies import build_policy

    sensor_dim, space = MODE_SPACES[mode]
    obs_dim = sensor_dim + action_feature_dim(space) + 2
    spec = action_spec_from_space(space)
    policy = build_policy(kind, obs_dim, spec, None)
    return PolicyRuntime(policy, {"obs_dim": obs_dim, "action_space": spec, "policy_kind": kind}, mode)
