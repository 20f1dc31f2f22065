"""The bundled bandit models learn inside a task: what they do depends on pulls long past."""
import numpy as np
import pytest
import torch

from l2l_ros.bandit_eval import BUNDLED_BANDIT_MODELS
from l2l_ros.meta.checkpoint import load_checkpoint
from l2l_ros.meta.rollout import make_env
from l2l_ros.resources import share_path

MODELS = [(k, name) for k in (5, 10) for name in BUNDLED_BANDIT_MODELS]


def _history(k: int, good: int, n: int = 100, pulls: int = 20) -> torch.Tensor:
    """Observations of a task where arm ``good`` paid ``pulls`` times in a row, then
    arm 0 was pulled once and paid nothing (the real env builds the inputs)."""
    env = make_env("l2l_ros/Bandit-v0", {"k": k, "n": n})
    probs = np.zeros(k)
    probs[good] = 1.0
    obs, _ = env.reset(seed=0, options={"probs": probs})
    seq = [obs]
    for arm in [good] * pulls + [0]:
        obs, *_ = env.step(arm)
        seq.append(obs)
    return torch.as_tensor(np.stack(seq))[:, None]  # [T, 1, D]


@pytest.mark.parametrize("k,name", MODELS)
def test_bundled_model_goes_back_to_the_arm_that_paid(k, name):
    path = share_path(*BUNDLED_BANDIT_MODELS[name].format(k=k).split("/"))
    policy, _ = load_checkpoint(path)
    arms = range(1, k)
    probs, forgetful = {}, {}
    for good in arms:
        obs = _history(k, good)
        with torch.no_grad():
            params, _, _ = policy.forward_sequence(obs, policy.initial_state(1))
            reset, _, _ = policy.forward_sequence(
                obs, policy.initial_state(1), done_mask=torch.ones(obs.shape[:2], dtype=torch.bool))
        probs[good] = torch.softmax(params[-1, 0], -1)
        forgetful[good] = torch.softmax(reset[-1, 0], -1)
    # P(pull j | j paid 20 times before the miss on arm 0) against P(pull j | another arm paid).
    back = np.mean([float(probs[j][j]) for j in arms])
    elsewhere = np.mean([float(probs[i][j]) for j in arms for i in arms if i != j])
    assert back > elsewhere + 0.3, (back, elsewhere)
    # With the state reset every step the last input (arm 0, no reward) is all the
    # policy would have: the same choice whatever arm paid before, so back == elsewhere.
    first = forgetful[1]
    assert all(torch.allclose(q, first) for q in forgetful.values())


def test_bandit_bench_times_the_bundled_spiking_recipe():
    """``l2l bench train --task bandit`` must time what the bundled k = 5 model was trained
    with: its network options for the LSNN, the same inputs and reward targets for both."""
    import json

    from l2l_ros.bench import _bandit_config

    meta = json.loads(share_path("models", "bandit_k5_lsnn", "policy.json").read_text())
    lsnn, lstm = _bandit_config("lsnn", 3, "10"), _bandit_config("lstm", 3, "10")
    assert lsnn.policy_config == meta["train_config"]["policy_config"]
    assert lsnn.expected_reward == lstm.expected_reward == meta["train_config"]["expected_reward"]
    assert lstm.policy_config == {"input_products": meta["train_config"]["policy_config"]["input_products"]}
    assert (lsnn.env_kwargs["k"], lsnn.num_envs, lsnn.minibatches) == (5, 128, 2)


def test_bundled_k5_lstm_was_trained_with_the_spiking_models_settings():
    """Issue 3's side-by-side: at k = 5 the LSTM comes from the spiking model's own
    (stage 1) training settings; only the network and the spiking-only options differ."""
    import json

    from l2l_ros.meta.policies import shared_policy_config

    spiking, lstm = (json.loads(share_path("models", *folder.split("/"), "policy.json").read_text())["train_config"]
                     for folder in ("bandit_k5_lsnn/stage1", "bandit_k5_lstm"))
    differing = {key for key in spiking.keys() | lstm.keys() if spiking.get(key) != lstm.get(key)}
    assert differing <= {"policy", "policy_config"}
    assert (spiking["policy"], lstm["policy"]) == ("lsnn", "lstm")
    assert lstm["policy_config"] == shared_policy_config(spiking["policy_config"], "lstm")
    assert lstm["policy_config"]["input_products"]  # the input channels both networks have


def _stages(k: int) -> list[dict]:
    """The bundled spiking model's stages, first to last (the last is the shipped model)."""
    import json

    folder = share_path("models", f"bandit_k{k}_lsnn")
    earlier = sorted((p for p in folder.glob("stage*") if p.is_dir()), key=lambda p: int(p.name[len("stage"):]))
    assert [p.name for p in earlier] == [f"stage{i}" for i in range(1, len(earlier) + 1)]
    return [json.loads((p / "policy.json").read_text()) for p in earlier] + \
        [json.loads((folder / "policy.json").read_text())]


@pytest.mark.parametrize("k", [5, 10])
def test_bundled_spiking_model_is_stage_1_then_learns_from_the_bundled_lstm(k):
    """Each later stage started from the shipped weights of the stage before. k = 5:
    stage 2 learned the shipped LSTM's action distribution as a term of PPO's loss. k = 10:
    stage 2 by plain imitation of it, stage 3 as a term of PPO's loss, then the last
    stages by plain imitation of the Gittins index (``teacher_index_tau``). The model
    cards' claims, checked on the files."""
    import hashlib

    folder = share_path("models", f"bandit_k{k}_lsnn")
    stages = _stages(k)
    assert len(stages) == 2 if k == 5 else len(stages) >= 4
    for i, (before, after) in enumerate(zip(stages, stages[1:]), start=1):
        weights = (folder / f"stage{i}" / "policy.safetensors").read_bytes()
        assert after["init_sha256"] == before["weights_sha256"] == hashlib.sha256(weights).hexdigest()
        cfg = after["train_config"]
        assert cfg["policy_config"] == before["train_config"]["policy_config"]
        same = {key for key in cfg if cfg[key] == before["train_config"].get(key)}
        assert {"env_id", "env_kwargs", "num_envs", "minibatches", "gamma", "reset_options"} <= same
        load_checkpoint(folder / f"stage{i}" / "policy.json")  # each earlier stage loads on its own (raises if not)
    lstm = [s["train_config"]["teacher"] == f"models/bandit_k{k}_lstm/policy.json"
            and s["train_config"]["teacher_soft"] is True for s in stages[1:]]
    index = [s["train_config"]["teacher"] == "gittins" and s["train_config"].get("teacher_index_tau", 0) > 0
             and s["train_config"]["imitation_coef"] == 0 for s in stages[1:]]
    plain = [s["train_config"]["imitation_coef"] == 0 and not s["train_config"]["expected_reward"]
             for s in stages[1:]]
    if k == 5:
        assert lstm == [True] and plain == [False]  # PPO with the LSTM term
        assert stages[-1]["train_config"]["imitation_coef"] > 0 and stages[-1]["train_config"]["expected_reward"]
    else:
        assert lstm[:2] == [True, True] and plain[:2] == [True, False]  # plain, then as PPO's term
        assert all(index[2:]) and not any(index[:2])  # then the Gittins index, plain imitation
