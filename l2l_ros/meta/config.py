"""The outer loop's one configuration (CleanRL style: every field is used by a bundled
recipe or is a standard PPO setting)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from l2l_ros.policy_base import DictConfig

@dataclass
class TrainConfig(DictConfig):
    env_id: str = "l2l_ros/Bandit-v0"
    env_kwargs: dict = field(default_factory=lambda: {"k": 2, "n": 10})
    policy: str = "lsnn"                 # "lsnn" | "lstm"
    policy_config: dict = field(default_factory=dict)
    num_envs: int = 16                   # tasks per update
    updates: int = 200
    lr: float = 1e-3
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_coef: float = 0.2
    epochs: int = 4
    minibatches: int = 4                 # of whole env-sequences
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    seed: int = 0
    checkpoint_every: int = 10
    clip_vloss: bool = True
    norm_adv: bool = True
    max_task_steps: int = 100_000        # guard against an env that never ends
    # Task variants: each update draws one of these reset options (from the update
    # seed) for all its envs, e.g. [{"n": 10}, {"n": 100}, {"n": 500}] bandit
    # horizons; one horizon per update keeps the batch free of padding.
    reset_options: list | None = None
    reward_scale: float = 1.0            # rewards seen by the value/advantage (not the policy's input)
    # From this update on, the learning rate decays linearly to zero at the last update
    # (CleanRL's anneal_lr, started late so a run can be extended); None: constant.
    anneal_lr_after: int | None = None
    # Start a fresh run from the weights of a saved policy (fine-tuning; a fresh
    # optimizer). The policy must match this config; its weights' sha256 goes into
    # the trainer state and policy.json (init_sha256).
    init_from: str | None = None
    # Imitation instead of PPO (l2l_ros.meta.imitation): the policy learns the actions
    # of this teacher ("gittins" for bandits) on the states it visits itself (DAgger).
    # For the first ``teacher_mix_updates`` updates the executed action comes from the
    # teacher with a probability falling linearly from 1 to 0.
    teacher: str | None = None
    teacher_mix_updates: int = 0
    # PPO guided by the teacher instead of replaced by it: with ``teacher`` set and this
    # above 0, the update is PPO's (the policy's own samples are executed) and its loss
    # adds ``imitation_coef`` times the imitation loss (``teacher_nll``) on every
    # visited step, so the reward keeps shaping the driving while the teacher shapes
    # the search (the plain imitation of the I-maze LSNNs collapsed, README).
    imitation_coef: float = 0.0
    # With a saved policy as the teacher: its whole action distribution is the target
    # (the imitation loss is the cross-entropy to it, i.e. the KL divergence up to a
    # constant) instead of its greedy action, and plain imitation executes the
    # student's samples. Why: a policy scored by its samples is matched where it is
    # unsure too, and near-tied actions cost the student little. With the gittins
    # teacher: the tempered index policy, softmax(index / 0.01), is the target.
    teacher_soft: bool = False
    # With a saved I-maze policy as the teacher: in the later trials of tasks whose goal is
    # one of these alcoves, the turn towards the goal's crossbar is taught by that policy
    # playing the maze's mirror image (``imitation.MirroredPolicyTeacher``). Why: the
    # bundled networks return to alcoves 1 and 3 in about 1.5x the bound and to 0 and 2 in
    # 4-6x, turning by habit at the junction; their mirror image turns the right way. Empty: off.
    teacher_mirror_goals: list = field(default_factory=list)
    # With the gittins teacher: > 0 makes the Gittins index itself the target, read as
    # logits: each arm's index minus the best arm's, over this temperature, floored at
    # -INDEX_LOGIT_FLOOR, learnt by squared error on the policy's logits taken relative
    # to the teacher's best arm (``index_logit_loss``); the policy's samples drive. Why:
    # a linear probe on the features of the k = 10 networks trained by PPO and
    # distillation explained 0.3 to 0.5 of the index variance, so their memory does
    # not hold what Gittins plays on;
    # matching the action distribution gave a network one number per step to learn that
    # from and the networks hedged towards uniform play, while the index gives every arm
    # a target at every step and costs little where arms are nearly tied. 0: off.
    teacher_index_tau: float = 0.0
    # Rewards for PPO's advantages and value targets (training only): the mean reward of
    # the action taken minus the task's mean over actions (``info["p"] - info["p_mean"]``,
    # the bandits) instead of the sampled reward. Neither change moves the expected
    # policy gradient: E[r | history, a] = p_a (Rao-Blackwellisation, so the Bernoulli
    # draw's noise leaves the returns), and the task's mean does not depend on the
    # actions (a baseline the critic cannot know early in a task). The policy's input
    # and the logged returns keep the sampled reward. False: off.
    expected_reward: bool = False
    # Potential-based shaping of PPO's rewards (Ng et al. 1999; training only): each step
    # adds c * (d(s) - gamma * d(s')), d the honest oracle's fewest control periods from the
    # pose into the task's goal alcove (``tasks.imaze_oracle``), with d = 0 after the
    # task's last step. Why: a later trial's turn at the junction decides its time, but
    # the goal reward comes many steps later; the potential credits the turn at once.
    # Discounted over a task the shaping sums to c * d(first pose), which no action
    # changes, so it moves no policy's expected return. The policy's input keeps the
    # env's reward (the shaping would tell the hidden goal). The I-maze only; 0: off.
    potential_shaping: float = 0.0
    # A continuous policy's exploration std, fixed (its log_std set and frozen); None: learnt.
    # Why: on the arm, PPO raised the std from 0.6 to 1.05 within 300 updates, so the
    # executed actions were mostly white noise, and with command latency a network cannot
    # tell from white noise which way a joint turns (the calibration it must identify).
    action_std: float | None = None

    def validate(self) -> None:
        """Raise ValueError for settings that contradict each other or are out of range."""
        if self.action_std is not None and not (0.0 < self.action_std <= 10.0):
            raise ValueError(f"action_std must be in (0, 10], got {self.action_std!r}")
        plain_imitation = bool(self.teacher) and not self.imitation_coef
        if self.teacher and not plain_imitation and self.teacher_mix_updates:
            raise ValueError("teacher_mix_updates is for plain imitation; PPO with imitation_coef executes "
                             "the policy's own samples")
        if self.teacher_soft and not self.teacher:
            raise ValueError("teacher_soft makes a teacher's action distribution the target: it needs teacher")
        if self.teacher_mirror_goals and not self.teacher:
            raise ValueError("teacher_mirror_goals mirrors a saved policy's play: it needs teacher CHECKPOINT")
        if self.teacher_index_tau < 0 or not math.isfinite(self.teacher_index_tau):
            raise ValueError(f"teacher_index_tau must be a finite number >= 0, got {self.teacher_index_tau!r}")
        if self.teacher_index_tau and self.teacher != "gittins":
            raise ValueError("teacher_index_tau makes the Gittins index the target: it needs teacher 'gittins'")
        if self.teacher_index_tau and self.teacher_soft:
            raise ValueError("teacher_index_tau and teacher_soft are two different targets: choose one")
        if not (0.0 <= self.potential_shaping < math.inf):
            raise ValueError(f"potential_shaping must be a finite number >= 0, got {self.potential_shaping!r}")
        if self.potential_shaping and plain_imitation:
            raise ValueError("potential_shaping shapes PPO's advantages; plain imitation (teacher without "
                             "imitation_coef) has none")
        if self.expected_reward and plain_imitation:
            raise ValueError("expected_reward shapes PPO's advantages; plain imitation (teacher without "
                             "imitation_coef) has none")

    @property
    def plain_imitation(self) -> bool:
        """A teacher without ``imitation_coef``: the update is imitation's, not PPO's."""
        return bool(self.teacher) and not self.imitation_coef
