"""The training-only novelty bonus (``novelty_bonus``): which steps count as novel, the
bonus reaching PPO's update (and only its advantages), and the refusals."""
import copy
import json

import pytest
import torch

from l2l_ros.meta.policies import build_policy
from l2l_ros.meta.ppo import TrainConfig, first_time_actions, make_vector_env, ppo_update, train
from l2l_ros.tasks.bandit import BANDIT_ENV_ID

torch.set_num_threads(1)


def test_first_time_actions_marks_each_actions_first_step_per_task():
    actions = torch.tensor([[0, 2], [0, 1], [1, 2], [0, 0], [2, 1]])  # [T=5, B=2]
    novel = first_time_actions(actions, 3)
    assert novel[:, 0].tolist() == [True, False, True, False, True]
    assert novel[:, 1].tolist() == [True, True, False, True, False]
    assert int(novel.sum(0)[0]) == 3  # every action of task 0 was tried once


def _logp_gap(policy, roll) -> float:
    """Mean log-probability of the rollout's novel actions minus that of its repeats."""
    novel = first_time_actions(roll["actions"], policy.action_dim) & roll["valid"]
    repeat = ~novel & roll["valid"]
    with torch.no_grad():
        params, _, _ = policy.forward_sequence(roll["obs"], policy.initial_state(roll["obs"].shape[1]))
        logp = policy.log_prob(policy.distribution(params), roll["actions"])
    return float(logp[novel].mean() - logp[repeat].mean())


def test_the_bonus_makes_ppo_favour_untried_arms_on_the_same_rollout():
    torch.manual_seed(0)
    envs = make_vector_env(BANDIT_ENV_ID, {"k": 5, "n": 30}, 16)
    base = build_policy("lstm", envs.single_observation_space.shape[0], {"type": "discrete", "n": 5})
    gaps = {}
    for bonus in (0.0, 2.0):
        policy = copy.deepcopy(base)
        opt = torch.optim.Adam(policy.parameters(), lr=1e-2, eps=1e-5)
        cfg = TrainConfig(env_id=BANDIT_ENV_ID, env_kwargs={"k": 5, "n": 30}, policy="lstm", num_envs=16,
                          minibatches=1, epochs=10, novelty_bonus=bonus, seed=0)
        torch.manual_seed(1)  # the same samples, so both updates learn from the same rollout
        stats, roll = ppo_update(cfg, envs, policy, opt, list(range(16)), None, 0)
        gaps[bonus] = _logp_gap(policy, roll)
        if bonus:
            # the rollout's rewards (the log's returns, the policy's input) stay the env's
            assert set(torch.unique(roll["rewards"]).tolist()) <= {0.0, 1.0}
            tried = [len(set(roll["actions"][roll["valid"][:, b], b].tolist())) for b in range(16)]
            assert stats["mean_actions_tried"] == [pytest.approx(sum(tried) / 16)]
        else:
            assert "mean_actions_tried" not in stats
    envs.close()
    # measured: 0.08 without the bonus, 0.19 with it (the untrained network: 0.0001)
    assert gaps[2.0] > gaps[0.0] + 0.05, gaps


def test_training_logs_the_arms_tried(tmp_path):
    cfg = TrainConfig(env_id=BANDIT_ENV_ID, env_kwargs={"k": 5, "n": 10}, policy="lsnn", num_envs=8,
                      updates=2, minibatches=2, epochs=1, novelty_bonus=0.5, seed=3)
    train(cfg, tmp_path / "run")
    lines = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert len(lines) == 2
    for line in lines:
        assert 1.0 <= line["mean_actions_tried"] <= 5.0
        assert 0.0 <= line["mean_reward_per_step"] <= 1.0  # the env's reward, without the bonus
    saved = json.loads((tmp_path / "run" / "policy.json").read_text())["train_config"]
    assert saved["novelty_bonus"] == 0.5


@pytest.mark.parametrize("bad", [-0.1, float("nan")])
def test_a_negative_or_nan_bonus_is_refused(tmp_path, bad):
    cfg = TrainConfig(env_id=BANDIT_ENV_ID, env_kwargs={"k": 2, "n": 10}, novelty_bonus=bad, updates=1)
    with pytest.raises(ValueError, match="novelty_bonus"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_bonus_is_refused_for_continuous_actions_and_plain_imitation(tmp_path):
    from l2l_ros.tasks import MANIPULATOR_ID

    cfg = TrainConfig(env_id=MANIPULATOR_ID, env_kwargs={}, novelty_bonus=0.5, updates=1, num_envs=1)
    with pytest.raises(ValueError, match="discrete"):
        train(cfg, tmp_path / "arm")
    assert not (tmp_path / "arm").exists()
    cfg = TrainConfig(env_id=BANDIT_ENV_ID, env_kwargs={"k": 2, "n": 10}, novelty_bonus=0.5, updates=1,
                      teacher="gittins")
    with pytest.raises(ValueError, match="plain imitation"):
        train(cfg, tmp_path / "imit")
    assert not (tmp_path / "imit").exists()
