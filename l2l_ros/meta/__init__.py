"""Outer loop: recurrent policies, PPO with BPTT over whole tasks, checkpoints.

Light: submodules load on first use (``from l2l_ros.meta.ppo import train``)."""
from l2l_ros.meta.policies import LSTMConfig, LSTMPolicy, RecurrentPolicy, build_policy

__all__ = ["LSTMConfig", "LSTMPolicy", "RecurrentPolicy", "build_policy",
           "CheckpointError", "save_checkpoint", "load_checkpoint",
           "TrainConfig", "train", "evaluate"]


def __getattr__(name):
    if name in ("CheckpointError", "save_checkpoint", "load_checkpoint"):
        from l2l_ros.meta import checkpoint

        return getattr(checkpoint, name)
    if name in ("TrainConfig", "train", "evaluate"):
        from l2l_ros.meta import ppo

        return getattr(ppo, name)
    raise AttributeError(name)
