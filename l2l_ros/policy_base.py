"""The recurrent policy interface that the LSNN (``snn/``) and the LSTM baseline
(``meta/policies.py``) implement; below both, so neither imports the other.

Every policy maps a sequence of (meta-wrapped) observations to action-distribution
parameters and state values, carrying an explicit recurrent state:

* ``initial_state(batch) -> state``: a tuple of ``[batch, ...]`` tensors (the state at
  the start of a task),
* ``forward_sequence(obs[T,B,D], state, done_mask=None) -> (dist_params[T,B,...],
  values[T,B], state)``; ``done_mask[T,B]`` (bool) marks steps that *start a new
  task*: the state of that batch entry is reset to the initial state before the
  step is processed,
* ``act(obs[B,D], state, deterministic=False) -> (action[B], logprob[B], value[B],
  state)`` under ``no_grad``; ``action`` is ready for the env (Discrete: long
  indices; Box: clipped into ``[low, high]``), ``logprob`` is that of the raw sample.

Readouts (both policies): ``Categorical`` logits for a Discrete action space; for a
Box space a Gaussian whose mean is ``center + half_range * tanh(linear)`` (so the
mean lies inside the box) with a learned, state-independent log-std; samples are
clipped into the box by :meth:`RecurrentPolicy.env_action` (CleanRL convention:
log-probabilities are those of the unclipped samples).

Action space specs are JSON dicts: ``{"type": "discrete", "n": 3}`` or
``{"type": "box", "shape": [3], "low": -1, "high": 1}`` (low/high scalars or lists).
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Normal

__all__ = [
    "RecurrentPolicy", "DictConfig", "action_spec_from_space", "normalize_action_spec",
    "space_from_action_spec", "select_state", "product_pairs", "append_products",
    "check_int", "check_real", "check_bool", "check_index_list", "check_index_pairs",
    "check_parameter_count", "MAX_UNITS", "MAX_PARAMETERS", "MAX_DISCRETE_ACTIONS", "MAX_BOX_SIZE",
]

# Bounds of every configuration value (a checkpoint's JSON is read from disk, so a
# crafted or damaged file must be refused before a tensor is allocated; the bounds are
# generous: the bundled models use at most 256 neurons, 23 inputs and 10 actions).
MAX_UNITS = 4096                 # neurons per population, LSTM units, observation values
MAX_PARAMETERS = 64 * 2**20      # weights of one network (256 MiB of float32)
MAX_DISCRETE_ACTIONS = 1024
MAX_BOX_DIMS = 4                 # len(shape) of a Box action space
MAX_BOX_SIZE = 1024              # prod(shape)
MAX_LIST = 4096                  # entries of ignore_inputs / input_products


# --------------------------------------------------------------------------- value checks
def _show(value: Any) -> str:
    """``repr`` cut to one short line (a crafted value may be megabytes)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_int(name: str, value: Any, lo: int, hi: int) -> int:
    """``value`` as an int in ``[lo, hi]``; bools and floats are refused (``3.0`` is a typo
    or a crafted file, not a count)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {_show(value)}")
    return int(value)


def check_real(name: str, value: Any, lo: float = -math.inf, hi: float = math.inf,
               lo_open: bool = False) -> float:
    """``value`` as a finite float in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``); ints
    are fine, bools and NaN/inf are not."""
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real)
    x = float(value) if ok else math.nan
    if not (math.isfinite(x) and (x > lo if lo_open else x >= lo) and x <= hi):
        left = "(" if lo_open else "["
        raise ValueError(f"{name} must be a finite number in {left}{lo}, {hi}], got {_show(value)}")
    return x


def check_bool(name: str, value: Any) -> bool:
    """``value`` must be a real bool (``"false"`` is truthy)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be true or false, got {_show(value)}")
    return bool(value)


def check_index_list(name: str, value: Any) -> list:
    """A list of at most ``MAX_LIST`` indices in ``[0, MAX_UNITS)`` (the range against the
    observation is checked where the network is built)."""
    if not isinstance(value, (list, tuple)) or len(value) > MAX_LIST:
        raise ValueError(f"{name} must be a list of at most {MAX_LIST} indices, got {_show(value)}")
    return [check_int(f"{name}[{k}]", i, 0, MAX_UNITS - 1) for k, i in enumerate(value)]


def check_index_pairs(name: str, value: Any) -> list:
    """A list of at most ``MAX_LIST`` ``[i, j]`` index pairs."""
    if not isinstance(value, (list, tuple)) or len(value) > MAX_LIST:
        raise ValueError(f"{name} must be a list of at most {MAX_LIST} [i, j] pairs, got {_show(value)}")
    for k, pair in enumerate(value):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ValueError(f"{name}[{k}] must be an [i, j] index pair, got {_show(pair)}")
        check_index_list(f"{name}[{k}]", pair)
    return list(value)


def check_parameter_count(kind: str, count: int) -> None:
    """Refuse a network of more than ``MAX_PARAMETERS`` weights before allocating it
    (bounded fields can still multiply to gigabytes)."""
    if count > MAX_PARAMETERS:
        raise ValueError(f"the {kind} network would have {count} weights, more than {MAX_PARAMETERS}")


# --------------------------------------------------------------------------- specs
def normalize_action_spec(spec: dict) -> dict:
    """Validate an action space spec and return a canonical JSON-able copy.

    Why strict: the spec comes from checkpoint JSON, and its sizes become tensor shapes."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise ValueError(f"action space spec must be a dict with a 'type', got {_show(spec)}")
    kind = spec["type"]
    allowed = {"discrete": {"type", "n"}, "box": {"type", "shape", "low", "high"}}.get(kind)
    if allowed is None:
        raise ValueError(f"unknown action space type {_show(kind)} (expected 'discrete' or 'box')")
    unknown = sorted(str(k) for k in set(spec) - allowed)
    if unknown:
        raise ValueError(f"unknown action_space fields {unknown}")
    if kind == "discrete":
        return {"type": "discrete", "n": check_int("action_space.n", spec.get("n"), 1, MAX_DISCRETE_ACTIONS)}
    shape = spec.get("shape")
    if not isinstance(shape, (list, tuple)) or len(shape) > MAX_BOX_DIMS:
        raise ValueError(f"action_space.shape must be a list of at most {MAX_BOX_DIMS} sizes, got {_show(shape)}")
    shape = [check_int(f"action_space.shape[{k}]", s, 1, MAX_BOX_SIZE) for k, s in enumerate(shape)]
    dim = int(np.prod(shape))
    if dim > MAX_BOX_SIZE:
        raise ValueError(f"action_space.shape {shape} has {dim} values, more than {MAX_BOX_SIZE}")
    low = _box_bound("action_space.low", spec.get("low", -1.0), dim)
    high = _box_bound("action_space.high", spec.get("high", 1.0), dim)
    if not np.all(high > low):
        raise ValueError("box action space needs finite low < high")
    out_low = float(low[0]) if np.all(low == low[0]) else low.tolist()
    out_high = float(high[0]) if np.all(high == high[0]) else high.tolist()
    return {"type": "box", "shape": shape, "low": out_low, "high": out_high}


def _box_bound(name: str, value: Any, dim: int) -> np.ndarray:
    """``low``/``high`` of a Box spec: one finite number, or ``dim`` of them (flat list;
    numpy arrays from a gymnasium space are fine)."""
    if isinstance(value, np.ndarray):
        value = value.ravel().tolist()
    if isinstance(value, (list, tuple)):
        if len(value) not in (1, dim):
            raise ValueError(f"{name} must have 1 or {dim} values, got {len(value)}")
        values = [check_real(f"{name}[{k}]", v) for k, v in enumerate(value)]
    else:
        values = [check_real(name, value)]
    return np.broadcast_to(np.asarray(values, dtype=np.float64), (dim,))


def action_spec_from_space(space) -> dict:
    """gymnasium space -> JSON spec."""
    import gymnasium as gym

    if isinstance(space, gym.spaces.Discrete):
        if int(space.start) != 0:
            raise ValueError("only Discrete spaces starting at 0 are supported")
        return {"type": "discrete", "n": int(space.n)}
    if isinstance(space, gym.spaces.Box):
        return normalize_action_spec({"type": "box", "shape": list(space.shape),
                                      "low": space.low.ravel().tolist(),
                                      "high": space.high.ravel().tolist()})
    raise TypeError(f"unsupported action space {space}")


def space_from_action_spec(spec: dict):
    """JSON spec -> gymnasium space."""
    import gymnasium as gym

    spec = normalize_action_spec(spec)
    if spec["type"] == "discrete":
        return gym.spaces.Discrete(spec["n"])
    shape = tuple(spec["shape"])
    low = np.broadcast_to(np.asarray(spec["low"], np.float32), (int(np.prod(shape)),)).reshape(shape)
    high = np.broadcast_to(np.asarray(spec["high"], np.float32), (int(np.prod(shape)),)).reshape(shape)
    return gym.spaces.Box(low.copy(), high.copy(), dtype=np.float32)


# --------------------------------------------------------------------------- state helpers
State = tuple  # a tuple (or NamedTuple) of [B, ...] tensors


def select_state(state: State, index) -> State:
    """Rows ``index`` of every tensor of a state (keeps the NamedTuple type)."""
    items = [s[index] for s in state]
    return type(state)(*items) if hasattr(state, "_fields") else tuple(items)


def _reset_where(state: State, initial: State, mask: torch.Tensor) -> State:
    """Entries with ``mask[b]`` True get the initial state."""
    items = []
    for s, s0 in zip(state, initial):
        m = mask.view(-1, *([1] * (s.dim() - 1)))
        items.append(torch.where(m, s0, s))
    return type(state)(*items) if hasattr(state, "_fields") else tuple(items)


# --------------------------------------------------------------------------- base class
class RecurrentPolicy(nn.Module):
    """Readouts, distributions and ``act``; subclasses supply the recurrent core
    through :meth:`initial_state` and :meth:`features_sequence`."""

    kind: str = ""

    def __init__(self, obs_dim: int, action_spec: dict, n_features: int, log_std_init: float = -0.5,
                 gain_readout: bool = False):
        super().__init__()
        self.obs_dim = check_int("obs_dim", obs_dim, 1, MAX_UNITS)
        self.action_spec = normalize_action_spec(action_spec)
        self.discrete = self.action_spec["type"] == "discrete"
        if self.discrete:
            self.action_dim = self.action_spec["n"]
        else:
            self.action_dim = int(np.prod(self.action_spec["shape"]))
            low = torch.as_tensor(np.broadcast_to(np.asarray(self.action_spec["low"], np.float32),
                                                  (self.action_dim,)).copy())
            high = torch.as_tensor(np.broadcast_to(np.asarray(self.action_spec["high"], np.float32),
                                                   (self.action_dim,)).copy())
            self.register_buffer("act_low", low, persistent=False)
            self.register_buffer("act_high", high, persistent=False)
            # The box's centre and half-width, once (action_params runs every control tick).
            self.register_buffer("act_center", (high + low) / 2, persistent=False)
            self.register_buffer("act_half", (high - low) / 2, persistent=False)
            self.log_std = nn.Parameter(torch.full((self.action_dim,), float(log_std_init)))
        self.policy_head = nn.Linear(n_features, self.action_dim)
        self.value_head = nn.Linear(n_features, 1)
        nn.init.orthogonal_(self.policy_head.weight, 0.01)
        nn.init.zeros_(self.policy_head.bias)
        nn.init.orthogonal_(self.value_head.weight, 1.0)
        nn.init.zeros_(self.value_head.bias)
        # A second readout that multiplies the first, per action (Box only): the product of
        # a command the network computes with a gain it infers (an arm joint's sign and
        # scale), which a linear readout of spikes cannot form. Starts as a gain of 1.
        self.gain_head: nn.Linear | None = None
        if gain_readout and not self.discrete:
            self.gain_head = nn.Linear(n_features, self.action_dim)
            nn.init.zeros_(self.gain_head.weight)
            nn.init.ones_(self.gain_head.bias)

    # -- to implement
    def initial_state(self, batch: int) -> State:
        raise NotImplementedError

    def features_sequence(self, obs: torch.Tensor, state: State,
                          done_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        """``obs[T,B,D] -> (features[T,B,F], state)``."""
        raise NotImplementedError

    def config_dict(self) -> dict:
        raise NotImplementedError

    # -- shared
    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def forward_sequence(self, obs: torch.Tensor, state: State,
                         done_mask: torch.Tensor | None = None):
        if obs.dim() != 3 or obs.shape[-1] != self.obs_dim:
            raise ValueError(f"obs must be [T, B, {self.obs_dim}], got {tuple(obs.shape)}")
        feats, state = self.features_sequence(obs, state, done_mask)
        params, values = self.heads(feats)
        return params, values, state

    def heads(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Action-distribution parameters and values from features (the trainer's
        auxiliary memory loss reads the same features)."""
        return self.action_params(feats), self.value_head(feats).squeeze(-1)

    def action_params(self, feats: torch.Tensor) -> torch.Tensor:
        """Logits (Discrete) or the mean action inside the box (Box) from features."""
        head = self.policy_head(feats)
        if self.gain_head is not None:
            head = head * self.gain_head(feats)
        if self.discrete:
            return head
        return self.act_center + self.act_half * torch.tanh(head)

    forward = forward_sequence

    def distribution(self, params: torch.Tensor) -> Distribution:
        if self.discrete:
            return Categorical(logits=params, validate_args=False)
        return Normal(params, self.log_std.exp().expand_as(params), validate_args=False)

    def log_prob(self, dist: Distribution, action: torch.Tensor) -> torch.Tensor:
        lp = dist.log_prob(action)
        return lp if self.discrete else lp.sum(-1)

    def entropy(self, dist: Distribution) -> torch.Tensor:
        ent = dist.entropy()
        return ent if self.discrete else ent.sum(-1)

    def deterministic_action(self, params: torch.Tensor) -> torch.Tensor:
        return params.argmax(-1) if self.discrete else params

    def env_action(self, action: torch.Tensor) -> torch.Tensor:
        """Raw policy sample -> action the env accepts (Box: clipped into the box)."""
        if self.discrete:
            return action
        return torch.maximum(torch.minimum(action, self.act_high), self.act_low)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, state: State, deterministic: bool = False):
        obs = torch.as_tensor(obs, dtype=torch.float32, device=self._device())
        if obs.dim() == 1:
            obs = obs[None]
        params, values, state = self.forward_sequence(obs[None], state)
        params, values = params[0], values[0]
        dist = self.distribution(params)
        raw = self.deterministic_action(params) if deterministic else dist.sample()
        logprob = self.log_prob(dist, raw)
        return self.env_action(raw), logprob, values, state

    @torch.no_grad()
    def act_greedy(self, obs: torch.Tensor, state: State):
        """``act(..., deterministic=True)``'s action and state, without the value head and
        the action distribution that a robot's control step does not use (the same values)."""
        obs = torch.as_tensor(obs, dtype=torch.float32, device=self._device())
        if obs.dim() == 1:
            obs = obs[None]
        feats, state = self.features_sequence(obs[None], state)
        return self.env_action(self.deterministic_action(self.action_params(feats[0]))), state

    def load_start_weights(self, source: "RecurrentPolicy") -> None:
        """Fill this network from ``source`` to start a run from it (``init_from``): the same
        network only (subclasses may accept a source they can grow from). ValueError else."""
        if source.describe() != self.describe():
            raise ValueError(f"it holds {source.describe()}, this run trains {self.describe()}")
        self.load_state_dict(source.state_dict(), strict=True)

    def reset_state(self, state: State, mask: torch.Tensor) -> State:
        """Reset the entries where ``mask[B]`` is True to the initial state."""
        return _reset_where(state, self.initial_state(mask.shape[0]), mask.to(torch.bool))

    def describe(self) -> dict:
        """Everything needed to rebuild this module (goes into checkpoint JSON)."""
        return {"kind": self.kind, "obs_dim": self.obs_dim, "action_space": self.action_spec,
                "config": self.config_dict()}


# --------------------------------------------------------------------------- inputs
def product_pairs(pairs: list, obs_dim: int) -> torch.Tensor:
    """Checked ``[P, 2]`` index tensor of conjunctive input channels (``input_products``
    of either network): each pair ``[i, j]`` adds the input ``obs[i] * obs[j]``."""
    out = []
    for pair in pairs:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ValueError(f"input_products needs [i, j] index pairs, got {pair!r}")
        i, j = int(pair[0]), int(pair[1])
        if not (0 <= i < obs_dim and 0 <= j < obs_dim):
            raise ValueError(f"input_products pair {[i, j]} out of range for {obs_dim} observation values")
        out.append((i, j))
    return torch.tensor(out, dtype=torch.long).view(-1, 2)


def append_products(obs: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """``obs [..., D]`` -> ``[..., D + P]``: the raw values, then one product per pair."""
    if not len(pairs):
        return obs
    left, right = pairs.unbind(1)
    return torch.cat([obs, obs[..., left] * obs[..., right]], dim=-1)


# --------------------------------------------------------------------------- LSTM
class DictConfig:
    """``to_dict``/``from_dict`` for the config dataclasses (policies, trainer), which
    travel in checkpoint JSON; unknown fields are an error, not silently dropped."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None):
        if d is None:
            return cls()
        if not isinstance(d, dict):
            raise TypeError(f"{cls.__name__} needs a dict, got {type(d).__name__}")
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields: {sorted(str(k) for k in unknown)[:10]}")
        return cls(**d)
