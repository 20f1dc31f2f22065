"""The project's training settings per task family: what `l2l train FAMILY`, the
trainer node and the recipes start from."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the trainer (torch, gymnasium) loads on first use: `l2l --help` stays fast
    from l2l_ros.meta.config import TrainConfig

FAMILIES = {
    "imaze": ("l2l_ros/IMaze-v0", {}),
    "manipulator": ("l2l_ros/Manipulator-v0", {}),
    "bandit": ("l2l_ros/Bandit-v0", {}),
}

# Bandit training: one model per k serves every horizon; each PPO update draws one
# horizon for all its tasks. Discount 0.995 keeps exploration worth its cost over a
# few hundred pulls; rewards are scaled by 0.05 for the value loss only, so values
# of 500-pull tasks stay O(10).
BANDIT_HORIZONS = (10, 100, 500)
BANDIT_TRAINING = {"gamma": 0.995, "reward_scale": 0.05}


def parse_horizons(horizons: str | None) -> list[int]:
    """``"10,100,500"`` -> ``[10, 100, 500]``; empty or None -> the default horizons."""
    try:
        hs = [int(h) for h in str(horizons).split(",")] if horizons else list(BANDIT_HORIZONS)
    except ValueError:
        hs = []
    if not hs or min(hs) < 1:
        raise ValueError(f"horizons wants a comma-separated list of pulls >= 1, e.g. 10,100,500; got {horizons!r}")
    return hs


def train_config(family: str, policy: str, updates: int, num_envs: int, seed: int,
                 env_kwargs: dict | None = None, arms: int = 5, horizons: str | None = None,
                 **overrides) -> TrainConfig:
    """The project's training settings for a task family (what the bundled models used).

    ``arms`` and ``horizons`` apply to the bandit family only. Overrides that are None
    keep the family's setting; an unknown one is an error.
    """
    from l2l_ros.meta.config import TrainConfig

    if family not in FAMILIES:
        raise ValueError(f"unknown task family {family!r}; one of {sorted(FAMILIES)}")
    env_id, kwargs = FAMILIES[family]
    kwargs = {**kwargs, **(env_kwargs or {})}
    settings: dict = {}
    if family == "bandit":
        hs = parse_horizons(horizons)
        kwargs = {"k": int(arms), "n": max(hs), **(env_kwargs or {})}
        settings = {**BANDIT_TRAINING, "reset_options": [{"n": h} for h in hs]}
    cfg = TrainConfig(env_id=env_id, env_kwargs=kwargs, policy=policy,
                      num_envs=num_envs, updates=updates, seed=seed)
    for key, value in {**settings, **{k: v for k, v in overrides.items() if v is not None}}.items():
        if not hasattr(cfg, key):
            raise ValueError(f"unknown training setting {key!r}")
        setattr(cfg, key, value)
    return cfg
