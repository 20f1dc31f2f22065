"""Outer loop: the LSTM baseline and the policy factory, rollouts, PPO and imitation
updates, the training loop and checkpoints.

Modules, in import order: ``config`` (TrainConfig), ``policies``, ``checkpoint``,
``rollout``, ``losses``, ``imitation``, ``ppo``, ``train``. Light: submodules load on
first use (``from l2l_ros.meta.train import train``)."""
from l2l_ros.meta.policies import LSTMConfig, LSTMPolicy, RecurrentPolicy, build_policy

__all__ = ["LSTMConfig", "LSTMPolicy", "RecurrentPolicy", "build_policy",
           "CheckpointError", "save_checkpoint", "load_checkpoint",
           "TrainConfig", "train", "evaluate"]


def __getattr__(name):
    if name in ("CheckpointError", "save_checkpoint", "load_checkpoint"):
        from l2l_ros.meta import checkpoint

        return getattr(checkpoint, name)
    if name in ("TrainConfig", "train", "evaluate"):
        from l2l_ros.meta import train

        return getattr(train, name)
    raise AttributeError(name)
