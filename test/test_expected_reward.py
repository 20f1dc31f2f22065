"""Expected rewards for PPO (``expected_reward``): what the bandit envs report, what the
rollout records, that PPO learns from it (and not from the draw), and the refusals."""
import copy

import numpy as np
import pytest
import torch

from l2l_ros.meta.policies import build_policy
from l2l_ros.meta.config import TrainConfig
from l2l_ros.meta.ppo import ppo_update
from l2l_ros.meta.rollout import collect_tasks, make_env, make_vector_env
from l2l_ros.meta.train import train
from l2l_ros.tasks.bandit import BANDIT_ENV_ID, MetaBanditVectorEnv

torch.set_num_threads(1)


def test_the_vector_env_reports_p_and_p_mean_as_the_single_env_does():
    k, n, seeds = 4, 6, [11, 12, 13]
    vec = MetaBanditVectorEnv(len(seeds), k=k, n=n)
    singles = [make_env(BANDIT_ENV_ID, {"k": k, "n": n}) for _ in seeds]
    vec.reset(seed=seeds)
    for env, s in zip(singles, seeds):
        env.reset(seed=s)
    rng = np.random.default_rng(0)
    for _ in range(n):
        actions = rng.integers(0, k, size=len(seeds))
        _, _, _, _, infos = vec.step(actions)
        for i, env in enumerate(singles):
            _, _, _, _, info = env.step(int(actions[i]))
            assert infos["_p"][i]
            assert infos["p"][i] == pytest.approx(info["p"])
            assert infos["p_mean"][i] == pytest.approx(info["p_mean"])
            assert info["p"] == pytest.approx(env.unwrapped.probs[actions[i]])
            assert info["p_mean"] == pytest.approx(env.unwrapped.probs.mean())
    # every task ended: the next step restarts them, pulls nothing and reports no p
    _, reward, _, _, infos = vec.step(np.zeros(len(seeds), dtype=np.int64))
    assert not infos["_p"].any() and not reward.any()


def test_the_rollout_records_the_centred_expected_reward_of_each_pull():
    envs = MetaBanditVectorEnv(5, k=3, n=8)
    policy = build_policy("lsnn", envs.single_observation_space.shape[0], {"type": "discrete", "n": 3})
    torch.manual_seed(0)
    roll = collect_tasks(envs, policy, list(range(5)), expected_rewards=True)
    # the envs now hold the tasks just played (they end together and restart on the next step)
    probs = torch.as_tensor(envs.probs, dtype=torch.float32)
    expected = probs.gather(1, roll["actions"].T).T - probs.mean(1)
    assert roll["valid"].all()
    assert torch.allclose(roll["expected_rewards"], expected, atol=1e-6)
    assert set(torch.unique(roll["rewards"]).tolist()) <= {0.0, 1.0}  # the draws are kept


class SilentBandit(MetaBanditVectorEnv):
    """Two arms, p = (1, 0) in every task, and every draw paid as 0: only ``info['p']``
    says which arm is better (a fake, to isolate the reward PPO learns from)."""

    def _reset_one(self, i, seed, options):
        super()._reset_one(i, seed, options)
        self.probs[i] = (1.0, 0.0)

    def step(self, actions):
        obs, reward, terminated, truncated, infos = super().step(actions)
        return obs, np.zeros_like(reward), terminated, truncated, infos


def test_ppo_learns_from_the_expected_reward_and_not_from_the_draw():
    envs = SilentBandit(16, k=2, n=20)
    torch.manual_seed(0)
    base = build_policy("lstm", envs.single_observation_space.shape[0], {"type": "discrete", "n": 2})
    p_better = {}
    for expected in (False, True):
        policy = copy.deepcopy(base)
        opt = torch.optim.Adam(policy.parameters(), lr=1e-2, eps=1e-5)
        cfg = TrainConfig(env_id=BANDIT_ENV_ID, env_kwargs={"k": 2, "n": 20}, policy="lstm", num_envs=16,
                          minibatches=1, epochs=10, expected_reward=expected, seed=0)
        torch.manual_seed(1)  # the same samples, so both updates learn from the same rollout
        _, roll = ppo_update(cfg, envs, policy, opt, list(range(16)), None, 0)
        with torch.no_grad():
            params, _, _ = policy.forward_sequence(roll["obs"], policy.initial_state(16))
            p_better[expected] = float(torch.softmax(params, -1)[..., 0].mean())
    # measured: 0.50 from the draws (all 0: the critic's noise only) and 0.59 with the
    # expected rewards (one update; PPO's clip holds each step near ratio 1.2). Over
    # torch seeds 1 to 5: 0.40 to 0.50 against 0.58 to 0.62.
    assert p_better[True] > 0.55, p_better
    assert p_better[True] > p_better[False] + 0.05, p_better


def test_expected_reward_is_refused_where_the_env_gives_no_p_and_for_plain_imitation(tmp_path):
    from l2l_ros.tasks import MANIPULATOR_ID

    cfg = TrainConfig(env_id=MANIPULATOR_ID, env_kwargs={}, expected_reward=True, updates=1, num_envs=1)
    with pytest.raises(ValueError, match=r"info\['p'\]"):
        train(cfg, tmp_path / "arm")
    assert not (tmp_path / "arm").exists()
    cfg = TrainConfig(env_id=BANDIT_ENV_ID, env_kwargs={"k": 2, "n": 10}, expected_reward=True, updates=1,
                      teacher="gittins")
    with pytest.raises(ValueError, match="plain imitation"):
        train(cfg, tmp_path / "imit")
    assert not (tmp_path / "imit").exists()


def test_make_vector_env_gives_the_native_bandit_env():
    envs = make_vector_env(BANDIT_ENV_ID, {"k": 2, "n": 5}, 3)
    assert isinstance(envs, MetaBanditVectorEnv)  # the one that reports p and p_mean per step
    envs.close()
