"""Losses of the outer loop beside PPO's own: imitation of a teacher, in its three
kinds of targets (an action set, an action distribution, Gittins index gaps)."""
from __future__ import annotations

import torch

from l2l_ros.meta.config import TrainConfig


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp(min=1.0)



def teacher_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy from the teacher's action distribution ``targets`` (soft targets) to
    the policy's: the KL divergence between them plus the teacher's entropy."""
    return -(targets * torch.log_softmax(logits, dim=-1)).sum(-1)


def teacher_targets(config: TrainConfig, teacher=None) -> str:
    """What a run's teacher targets are: ``"action"`` (a continuous action, a teacher with
    ``continuous = True``), ``"index"`` (index gaps as logits, ``teacher_index_tau``),
    ``"soft"`` (an action distribution, ``teacher_soft``) or ``"set"`` (the teacher's
    equally good actions). All but the last are learnt on the policy's own samples, a
    set on its most likely actions."""
    if getattr(teacher, "continuous", False):
        return "action"
    if config.teacher_index_tau > 0:
        return "index"
    return "soft" if config.teacher_soft else "set"


def imitation_loss(logits: torch.Tensor, targets: torch.Tensor, kind: str) -> torch.Tensor:
    """The loss for targets of ``kind`` (``teacher_targets``): ``index_logit_loss``,
    ``teacher_cross_entropy``, ``teacher_nll`` or ``teacher_action_error``."""
    losses = {"index": index_logit_loss, "soft": teacher_cross_entropy, "set": teacher_nll,
              "action": teacher_action_error}
    if kind not in losses:
        raise ValueError(f"unknown kind of teacher targets {kind!r} (expected one of {sorted(losses)})")
    return losses[kind](logits, targets)


INDEX_LOGIT_FLOOR = 8.0


def index_logit_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over actions of the squared error between the policy's logits and the
    teacher's target logits ``targets`` (0 for its best action, negative for the others,
    floored at ``-INDEX_LOGIT_FLOOR``), both relative to the teacher's best action.
    An action at the floor only has to stay at or below it: any action that much worse
    is as good as never taken, however much worse the teacher thinks it is."""
    best = targets.argmax(-1, keepdim=True)
    rel = logits - logits.gather(-1, best)
    floored = targets <= -INDEX_LOGIT_FLOOR + 1e-6
    err = torch.where(floored, torch.relu(rel + INDEX_LOGIT_FLOOR), rel - targets)
    return (err ** 2).mean(-1)


def teacher_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Minus the log of the probability the policy gives to the teacher's set of actions
    (those with ``targets > 0``): any of the teacher's equally good actions is right.
    Equal to the cross-entropy when the teacher names one action."""
    logp = torch.log_softmax(logits, dim=-1)
    return -torch.logsumexp(logp.masked_fill(targets <= 0, float("-inf")), dim=-1)


def teacher_action_error(mean: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Squared distance between the policy's mean action (a Box policy's ``params``) and
    the teacher's action, summed over the action's components. The mean only: the
    spread is PPO's, or fixed (``TrainConfig.action_std``)."""
    return ((mean - targets) ** 2).sum(-1)
