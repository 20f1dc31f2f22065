"""The privileged critic (``privileged_critic``): what the envs give it, that its values
replace the policy's value head in PPO, that it lives in the trainer state only, and
the refusals."""
import copy
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from l2l_ros.meta.policies import build_policy
from l2l_ros.meta.ppo import TRAINER_STATE, PrivilegedCritic, TrainConfig, make_env, ppo_update, train
from l2l_ros.tasks import IMAZE_ID
from l2l_ros.tasks.bandit import BANDIT_ENV_ID, MetaBanditVectorEnv

torch.set_num_threads(1)


def test_the_bandits_give_their_arm_probabilities_and_the_imaze_its_goal():
    vec = MetaBanditVectorEnv(3, k=4, n=5)
    _, infos = vec.reset(seed=[1, 2, 3])
    assert np.allclose(infos["privileged"], vec.probs)
    single = make_env(BANDIT_ENV_ID, {"k": 4, "n": 5})
    _, info = single.reset(seed=1)
    assert np.allclose(info["privileged"], single.unwrapped.probs)
    assert np.allclose(info["privileged"], infos["privileged"][0])  # the same task for the same seed
    imaze = make_env(IMAZE_ID, {"task_steps": 5})
    for goal in range(4):
        _, info = imaze.reset(seed=0, options={"goal": goal})
        assert info["privileged"].tolist() == np.eye(4)[goal].tolist()
    imaze.close()


def test_the_critic_reads_the_task_vector_at_every_step():
    critic = PrivilegedCritic(n_features=3, n_privileged=2)
    feats = torch.zeros(5, 2, 3)  # [T, B, F]: the same features in both tasks
    values = critic(feats, torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    assert values.shape == (5, 2)
    assert torch.allclose(values[:, 0], values[0, 0].expand(5))  # one task vector for the whole task
    assert not torch.allclose(values[:, 0], values[:, 1])  # it changes the value


def test_ppo_takes_its_values_from_the_critic_and_trains_it_not_the_value_head():
    envs = MetaBanditVectorEnv(8, k=3, n=12)
    torch.manual_seed(0)
    policy = build_policy("lsnn", envs.single_observation_space.shape[0], {"type": "discrete", "n": 3})
    critic = PrivilegedCritic(policy.policy_head.in_features, 3)
    policy_at_start, critic_at_start = copy.deepcopy(policy), copy.deepcopy(critic)
    opt = torch.optim.Adam(list(policy.parameters()) + list(critic.parameters()), lr=1e-2, eps=1e-5)
    cfg = TrainConfig(env_id=BANDIT_ENV_ID, env_kwargs={"k": 3, "n": 12}, policy="lsnn", num_envs=8,
                      minibatches=2, epochs=2, privileged_critic=True, seed=0)
    torch.manual_seed(1)
    _, roll = ppo_update(cfg, envs, policy, opt, list(range(8)), None, 0, critic=critic)
    # the rollout's values are the critic's on the tasks just played (envs.probs), not the value head's
    assert torch.allclose(roll["privileged"], torch.as_tensor(envs.probs, dtype=torch.float32))
    with torch.no_grad():
        feats, _ = policy_at_start.features_sequence(roll["obs"], policy_at_start.initial_state(8))
        expected = critic_at_start(feats, roll["privileged"])
        head = policy_at_start.heads(feats)[1]
    assert torch.allclose(roll["values"], expected, atol=1e-5)
    assert not torch.allclose(roll["values"], head, atol=1e-3)
    # the critic learned; the policy's own value head, unused, did not move
    assert any(not torch.equal(v, critic_at_start.state_dict()[k]) for k, v in critic.state_dict().items())
    assert all(torch.equal(v, policy_at_start.value_head.state_dict()[k])
               for k, v in policy.value_head.state_dict().items())


def test_train_keeps_the_critic_in_the_trainer_state_and_refuses_a_mismatched_resume(tmp_path):
    cfg = TrainConfig(env_id=BANDIT_ENV_ID, env_kwargs={"k": 3, "n": 10}, policy="lsnn", num_envs=4, updates=2,
                      epochs=1, minibatches=1, seed=3, privileged_critic=True,
                      policy_config={"n_lif": 8, "n_alif": 8})
    weights = train(cfg, tmp_path / "run", command="pytest")
    state = load_file(str(tmp_path / "run" / TRAINER_STATE))
    assert state["critic.net.0.weight"].shape == (64, 16 + 3)
    assert not any(k.startswith("critic") for k in load_file(str(weights)))
    assert json.loads((tmp_path / "run" / "policy.json").read_text())["train_config"]["privileged_critic"]
    cfg.updates = 3
    train(cfg, tmp_path / "run", command="pytest")  # resumes with its critic
    cfg.privileged_critic, cfg.updates = False, 4
    with pytest.raises(ValueError, match="privileged_critic was True"):
        train(cfg, tmp_path / "run")


def test_the_critic_is_refused_without_a_task_vector_and_for_plain_imitation(tmp_path):
    from l2l_ros.tasks import MANIPULATOR_ID

    cfg = TrainConfig(env_id=MANIPULATOR_ID, env_kwargs={}, privileged_critic=True, updates=1, num_envs=1)
    with pytest.raises(ValueError, match=r"info\['privileged'\]"):
        train(cfg, tmp_path / "arm")
    assert not (tmp_path / "arm").exists()
    cfg = TrainConfig(env_id=BANDIT_ENV_ID, env_kwargs={"k": 2, "n": 10}, privileged_critic=True, updates=1,
                      teacher="gittins")
    with pytest.raises(ValueError, match="plain imitation"):
        train(cfg, tmp_path / "imit")
    assert not (tmp_path / "imit").exists()
