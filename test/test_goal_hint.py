"""The goal hint (``goal_hint_updates``): a training-only input that gives the spiking
network the task's goal once the goal has been found, fading to nothing. The rollout
and PPO's replay must feed it identically, it must be absent before the first goal
entry, and it must never reach the saved policy."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from l2l_ros.meta.imitation import make_teacher
from l2l_ros.meta.policies import build_policy
from l2l_ros.meta.ppo import TRAINER_STATE, GoalHint, TrainConfig, collect_tasks, goal_hint_strength, train
from l2l_ros.tasks import IMAZE_ID
from l2l_ros.tasks.imaze import IMazeEnv
from l2l_ros.tasks.imaze_vector import MetaIMazeVectorEnv

torch.set_num_threads(1)


def _seeds_for_goals(goals: list[int]) -> list[int]:
    env, found = IMazeEnv(), {}
    for seed in range(200):
        found.setdefault(env.reset(seed=seed)[1]["goal"], seed)
        if all(g in found for g in goals):
            return [found[g] for g in goals]
    raise AssertionError(f"no seeds for goals {goals}")


def test_strength_falls_linearly_from_one_to_zero():
    cfg = TrainConfig(goal_hint_updates=4)
    assert [goal_hint_strength(cfg, u) for u in range(6)] == [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    assert goal_hint_strength(TrainConfig(), 0) == 0.0


@pytest.mark.parametrize("ticks", [1, 2])
def test_rollout_and_replay_feed_the_hint_only_after_the_goal_is_found(ticks):
    """The searcher drives three tasks (goals 0, 1, 2) while the LSNN, hinted, computes
    its values; replaying the tasks with the hint gives those values back, without it the
    features agree exactly until the first goal entry and differ after it."""
    torch.manual_seed(0)
    envs = MetaIMazeVectorEnv(3, nthread=1)
    policy = build_policy("lsnn", envs.single_observation_space.shape[0], {"type": "discrete", "n": 3},
                          {"ticks_per_step": ticks})
    head = GoalHint(4, policy.hint_size)
    roll = collect_tasks(envs, policy, _seeds_for_goals([0, 1, 2]),
                         teacher=make_teacher("searcher", IMAZE_ID, {}), teacher_share=1.0,
                         rng=np.random.default_rng(0), goal_hint=(head, 0.5))
    envs.close()
    goal, known, valid = roll["goal"], roll["goal_known"], roll["valid"]
    assert goal.tolist() == [0, 1, 2]
    hint = head(goal, known, 0.5)
    assert bool((hint[~known] == 0).all()) and bool((hint[known] != 0).any())

    def replay(input_hint):
        kwargs = {} if input_hint is None else {"input_hint": input_hint}
        return policy.features_sequence(roll["obs"], policy.initial_state(3), **kwargs)[0]

    hinted = replay(hint)
    _, values = policy.heads(hinted)
    assert torch.allclose(values[valid], roll["values"][valid], atol=1e-5)
    plain = replay(None)
    for b in range(3):
        first = int(torch.nonzero(known[:, b])[0])  # the searcher finds every goal
        assert torch.equal(hinted[:first, b], plain[:first, b])
        assert not torch.allclose(hinted[first:, b], plain[first:, b])
    # The hint's gradient reaches the rows of the tasks' goals only.
    hinted[known].sum().backward()
    grad = head.weight.grad.abs().sum(1)
    assert bool((grad[:3] > 0).all()) and float(grad[3]) == 0.0
    with pytest.raises(ValueError, match="input_hint must be"):
        policy.features_sequence(roll["obs"], policy.initial_state(3), input_hint=hint[..., :5])


def test_train_keeps_the_hint_out_of_the_policy_and_refuses_what_it_cannot_hint(tmp_path):
    cfg = TrainConfig(env_id=IMAZE_ID, env_kwargs={"task_steps": 60}, policy="lsnn", num_envs=2, updates=3,
                      epochs=1, minibatches=1, seed=3, goal_hint_updates=2,
                      policy_config={"n_lif": 8, "n_alif": 8})
    weights = train(cfg, tmp_path / "run", command="pytest")
    assert load_file(str(tmp_path / "run" / TRAINER_STATE))["goal_hint.weight"].shape == (4, 16)
    assert not any("hint" in k for k in load_file(str(weights)))
    rows = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r.get("goal_hint_strength") for r in rows] == [1.0, 0.5, None]  # faded out at update 2
    assert json.loads((tmp_path / "run" / "policy.json").read_text())["train_config"]["goal_hint_updates"] == 2
    cfg.goal_hint_updates, cfg.updates = 0, 4
    with pytest.raises(ValueError, match="goal_hint_updates was 2"):
        train(cfg, tmp_path / "run")
    imaze = {"env_id": IMAZE_ID, "env_kwargs": {}, "num_envs": 2, "updates": 1}
    refusals = [
        (TrainConfig(**imaze, policy="lstm", goal_hint_updates=5), "no such input"),
        (TrainConfig(env_kwargs={"k": 2, "n": 10}, policy="lsnn", num_envs=2, updates=1, goal_hint_updates=5),
         "goals to remember"),
        (TrainConfig(**imaze, policy="lsnn", teacher="searcher", goal_hint_updates=5), "plain imitation"),
        (TrainConfig(**imaze, policy="lsnn", goal_hint_updates=-1), ">= 0"),
    ]
    for i, (bad, reason) in enumerate(refusals):
        with pytest.raises(ValueError, match=reason):
            train(bad, tmp_path / f"refused{i}")
        assert not (tmp_path / f"refused{i}").exists()
