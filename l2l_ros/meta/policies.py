"""The LSTM and MLP baselines and the factory of the policy kinds (the LSNN is in ``snn/``).

The interface both implement is :mod:`l2l_ros.policy_base` (re-exported here)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from l2l_ros.policy_base import (MAX_BOX_SIZE, MAX_DISCRETE_ACTIONS, MAX_PARAMETERS,  # noqa: F401
                                 MAX_UNITS, DictConfig, RecurrentPolicy, _reset_where,
                                 action_spec_from_space, append_products, check_bool, check_index_list,
                                 check_index_pairs, check_int, check_parameter_count, check_real,
                                 normalize_action_spec, product_pairs, select_state, space_from_action_spec)
from l2l_ros.snn.lsnn import LSNNConfig, LSNNPolicy

__all__ = [
    "RecurrentPolicy", "LSTMPolicy", "LSTMConfig", "MLPPolicy", "MLPConfig", "DictConfig", "build_policy",
    "config_from_dict",
    "action_spec_from_space", "normalize_action_spec", "space_from_action_spec",
    "select_state", "POLICY_KINDS", "product_pairs", "append_products", "shared_policy_config",
    "check_int", "check_real", "check_bool", "check_index_list", "check_index_pairs",
    "MAX_UNITS", "MAX_PARAMETERS", "MAX_DISCRETE_ACTIONS", "MAX_BOX_SIZE",
]

POLICY_KINDS = ("lsnn", "lstm", "mlp")


@dataclass
class LSTMConfig(DictConfig):
    """Non-spiking baseline: one LSTM layer of ``hidden`` units; readouts from h."""

    hidden: int = 128
    log_std_init: float = -0.5
    # The LSNN's conjunctive input channels (``LSNNConfig.input_products``), so the two
    # networks can be trained on the same inputs.
    input_products: list = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first field out of its bounds (see ``MAX_UNITS``)."""
        check_int("hidden", self.hidden, 1, MAX_UNITS)
        check_real("log_std_init", self.log_std_init, -20.0, 20.0)
        check_index_pairs("input_products", self.input_products)


class LSTMPolicy(RecurrentPolicy):
    kind = "lstm"

    def __init__(self, obs_dim: int, action_spec: dict, config: LSTMConfig | dict | None = None):
        if not isinstance(config, LSTMConfig):
            config = LSTMConfig.from_dict(config)
        config.validate()  # again: a config object may have been changed after it was made
        self.config = config
        n_in = check_int("obs_dim", obs_dim, 1, MAX_UNITS) + len(config.input_products)
        h = config.hidden
        check_parameter_count("lstm", 4 * h * (n_in + h + 2))
        super().__init__(obs_dim, action_spec, config.hidden, config.log_std_init)
        self.register_buffer("product_pairs", product_pairs(config.input_products, obs_dim), persistent=False)
        self.lstm = nn.LSTM(obs_dim + len(self.product_pairs), config.hidden)
        for name, p in self.lstm.named_parameters():
            if "bias" in name:
                nn.init.zeros_(p)
            else:
                nn.init.orthogonal_(p, 1.0)

    def config_dict(self) -> dict:
        return self.config.to_dict()

    def initial_state(self, batch: int):
        h = torch.zeros(batch, self.config.hidden, device=self._device())
        return (h, h.clone())

    def features_sequence(self, obs, state, done_mask=None):
        h, c = state
        obs = append_products(obs, self.product_pairs)
        if done_mask is None or not bool(done_mask.any()):
            out, (h, c) = self.lstm(obs, (h[None].contiguous(), c[None].contiguous()))
            return out, (h[0], c[0])
        outs = []
        init = self.initial_state(obs.shape[1])
        for t in range(obs.shape[0]):
            h, c = _reset_where((h, c), init, done_mask[t].to(torch.bool))
            out, (h1, c1) = self.lstm(obs[t:t + 1], (h[None].contiguous(), c[None].contiguous()))
            h, c = h1[0], c1[0]
            outs.append(out[0])
        return torch.stack(outs), (h, c)


@dataclass
class MLPConfig(LSTMConfig):
    """Memoryless baseline: two tanh layers of ``hidden`` units on the current input only
    (the LSTM's settings, used the same way).

    Same inputs as the recurrent networks (observation, previous action and reward), no
    state: the domain-randomization policy of standard sim-to-real practice, which can
    react to the last step but cannot accumulate what a task is like."""


class MLPPolicy(RecurrentPolicy):
    """The policy interface with an empty state (a ``[batch, 0]`` tensor)."""

    kind = "mlp"

    def __init__(self, obs_dim: int, action_spec: dict, config: MLPConfig | dict | None = None):
        if not isinstance(config, MLPConfig):
            config = MLPConfig.from_dict(config)
        config.validate()
        self.config = config
        n_in = check_int("obs_dim", obs_dim, 1, MAX_UNITS) + len(config.input_products)
        h = config.hidden
        check_parameter_count("mlp", h * (n_in + h + 2))
        super().__init__(obs_dim, action_spec, h, config.log_std_init)
        self.register_buffer("product_pairs", product_pairs(config.input_products, obs_dim), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(n_in, h), nn.Tanh(), nn.Linear(h, h), nn.Tanh())

    def config_dict(self) -> dict:
        return self.config.to_dict()

    def initial_state(self, batch: int):
        return (torch.zeros(batch, 0, device=self._device()),)

    def features_sequence(self, obs, state, done_mask=None):
        return self.mlp(append_products(obs, self.product_pairs)), state


# --------------------------------------------------------------------------- factory
def _config_class(kind: str) -> type:
    if kind == "lsnn":
        return LSNNConfig
    if kind == "lstm":
        return LSTMConfig
    if kind == "mlp":
        return MLPConfig
    raise ValueError(f"unknown policy kind {kind!r} (expected one of {POLICY_KINDS})")


def config_from_dict(kind: str, config: Any):
    """Policy config object for ``kind`` from a dataclass, dict or None."""
    cls = _config_class(kind)
    return config if isinstance(config, cls) else cls.from_dict(config)


def shared_policy_config(policy_config: dict | None, kind: str) -> dict:
    """The options of ``policy_config`` that a ``kind`` network also has, so that another
    network can be trained with a model's recipe (e.g. the LSTM beside a spiking model:
    the same input channels; the neuron options have no LSTM counterpart)."""
    fields = {f.name for f in dataclasses.fields(_config_class(kind))}
    return {key: value for key, value in (policy_config or {}).items() if key in fields}


def build_policy(kind: str, obs_dim: int, action_space_spec: dict, config: Any = None) -> RecurrentPolicy:
    """``kind`` is ``"lsnn"``, ``"lstm"`` or ``"mlp"``; ``config`` a config dataclass, dict or None."""
    cfg = config_from_dict(kind, config)
    if kind == "lsnn":
        return LSNNPolicy(obs_dim, action_space_spec, cfg)
    if kind == "mlp":
        return MLPPolicy(obs_dim, action_space_spec, cfg)
    return LSTMPolicy(obs_dim, action_space_spec, cfg)
