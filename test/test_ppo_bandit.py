"""PPO with BPTT learns a 2-armed, 10-pull bandit; training resumes from its checkpoint."""
import json

import numpy as np
import pytest
import torch

from l2l_ros.meta.checkpoint import CheckpointError, load_checkpoint
from l2l_ros.meta.config import TrainConfig
from l2l_ros.meta.train import TRAINER_STATE, evaluate, learning_rate, train
from l2l_ros.tasks.bandit import BernoulliBanditEnv, register_bandit

torch.set_num_threads(1)
ENV = "l2l_ros/Bandit-v0"
KW = {"k": 2, "n": 10}
RANDOM_EXPECTATION = 5.0  # n * E[p], p ~ U[0, 1]


def test_bandit_env_spaces_and_truncation():
    env = BernoulliBanditEnv(k=2, n=10)
    obs, info = env.reset(seed=0)
    first = obs.copy()
    assert obs[:2].tolist() == [0.0, 1.0] and env.action_space.n == 2 and "goal" in info
    assert obs[2] == np.float32(np.log1p(10) / np.log1p(1000))
    for t in range(10):
        obs, r, term, trunc, info = env.step(t % 2)
        assert r in (0.0, 1.0) and not term and trunc == (t == 9)
    assert obs.tolist() == [1.0, 0.0, 0.0]
    # One env serves several horizons: the first observation tells them apart.
    long_obs, _ = env.reset(seed=0, options={"n": 500})
    assert long_obs[:2].tolist() == [0.0, 1.0] and long_obs[2] > 0.89
    for _ in range(499):
        assert not env.step(0)[3]
    assert env.step(0)[3]
    assert env.reset(seed=0)[0].tolist() == first.tolist()  # no option: the constructor's n again
    register_bandit()
    register_bandit()  # idempotent


def test_ppo_lsnn_beats_random_on_bandit(tmp_path):
    cfg = TrainConfig(env_id=ENV, env_kwargs=KW, policy="lsnn", num_envs=32, updates=150, lr=3e-3,
                      epochs=4, minibatches=2, seed=0, checkpoint_every=50)
    logs = []
    weights = train(cfg, tmp_path, progress=logs.append, command="pytest")
    assert weights == tmp_path / "policy.safetensors" and weights.exists()
    lines = [json.loads(x) for x in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [x["update"] for x in lines] == list(range(1, 151)) and len(logs) == 150
    assert lines[-1]["env_steps"] == 150 * 32 * 10
    policy, meta = load_checkpoint(weights)
    assert meta["command"] == "pytest" and meta["env_kwargs"] == KW
    results = evaluate(policy, ENV, KW, tasks=1000, seed=10_000, deterministic=False, num_envs=100)
    mean = float(np.mean([r["return"] for r in results]))
    assert all(r["steps"] == 10 and len(r["goal"]) == 10 for r in results)
    # Random play gets 5.0 (std of the mean over 1000 tasks ~ 0.06).
    assert mean > RANDOM_EXPECTATION + 0.4, mean


def _small(updates):
    return TrainConfig(env_id=ENV, env_kwargs=KW, policy="lsnn", policy_config={"n_lif": 8, "n_alif": 8},
                       num_envs=4, updates=updates, epochs=1, minibatches=2, seed=3, checkpoint_every=2)


def test_resume_continues_from_saved_update(tmp_path):
    # Uninterrupted reference run.
    train(_small(6), tmp_path / "ref")
    # Stopped after 3 updates (clean stop writes a checkpoint), then restarted.
    seen = []
    train(_small(6), tmp_path / "run", progress=lambda d: seen.append(d["update"]),
          should_stop=lambda: len(seen) >= 3)
    assert seen == [1, 2, 3]
    seen2 = []
    train(_small(6), tmp_path / "run", progress=lambda d: seen2.append(d["update"]))
    assert seen2 == [4, 5, 6]
    log = [json.loads(x)["update"] for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert log == [1, 2, 3, 4, 5, 6]
    # Same updates as the uninterrupted run: seeds depend on (seed, update) only.
    a, _ = load_checkpoint(tmp_path / "ref")
    b, _ = load_checkpoint(tmp_path / "run")
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.allclose(x, y, atol=1e-6), k


def test_anneal_lr_after_decays_linearly_to_zero_from_that_update():
    cfg = TrainConfig(lr=0.01, updates=10, anneal_lr_after=6)
    assert [learning_rate(cfg, u) for u in range(6)] == [0.01] * 6
    assert np.allclose([learning_rate(cfg, u) for u in range(6, 10)], [0.01, 0.0075, 0.005, 0.0025])
    assert learning_rate(TrainConfig(lr=0.01, updates=10), 9) == 0.01


def test_extending_a_run_with_annealing_equals_the_annealed_run(tmp_path):
    # One run of 6 updates, annealed after 3 ...
    annealed = _small(6)
    annealed.anneal_lr_after = 3
    train(annealed, tmp_path / "ref")
    # ... equals 3 constant-rate updates, then the same command extended to 6.
    train(_small(3), tmp_path / "run")
    train(annealed, tmp_path / "run")
    log = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["update"] for r in log] == [1, 2, 3, 4, 5, 6]
    assert np.allclose([r["lr"] for r in log], [1e-3] * 4 + [1e-3 * 2 / 3, 1e-3 / 3])
    a, _ = load_checkpoint(tmp_path / "ref")
    b, _ = load_checkpoint(tmp_path / "run")
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.allclose(x, y, atol=1e-6), k
    # Annealing changed the weights (the test would pass vacuously otherwise).
    train(_small(6), tmp_path / "const")
    c, _ = load_checkpoint(tmp_path / "const")
    assert any(not torch.allclose(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))


def test_killed_trainer_loses_at_most_checkpoint_every(tmp_path):
    train(_small(5), tmp_path)  # checkpoints at 2, 4 and 5
    # Simulate a kill after update 5 but with the last checkpoint at 4: roll the
    # trainer state back by re-training to 4 in another dir and copying it over.
    train(_small(4), tmp_path / "at4")
    (tmp_path / TRAINER_STATE).write_bytes((tmp_path / "at4" / TRAINER_STATE).read_bytes())
    seen = []
    train(_small(6), tmp_path, progress=lambda d: seen.append(d["update"]))
    assert seen == [5, 6]
    log = [json.loads(x)["update"] for x in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert log == [1, 2, 3, 4, 5, 6]


def test_native_vector_bandit_equals_wrapped_envs():
    """MetaBanditVectorEnv gives what SyncVectorEnv(MetaWrapper(BernoulliBanditEnv)) gives."""
    import gymnasium as gym

    from l2l_ros.tasks.bandit import MetaBanditVectorEnv
    from l2l_ros.tasks.meta_wrapper import MetaWrapper

    B, k = 6, 4
    ref = gym.vector.SyncVectorEnv([lambda: MetaWrapper(BernoulliBanditEnv(k=k, n=10)) for _ in range(B)])
    fast = MetaBanditVectorEnv(B, k=k, n=10)
    assert fast.single_observation_space == ref.single_observation_space
    rng = np.random.default_rng(0)
    for seeds, options in (([3, 1, 4, 1, 5, 9], None), (list(range(100, 106)), {"n": 7})):
        o1, _ = ref.reset(seed=seeds, options=options)
        o2, _ = fast.reset(seed=seeds, options=options)
        np.testing.assert_array_equal(o1, o2)
        for _ in range(25):  # past the end: both restart tasks the next step
            a = rng.integers(0, k, size=B)
            s1, s2 = ref.step(a), fast.step(a)
            for x, y in zip(s1[:4], s2[:4]):
                np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_cli_trains_one_model_over_several_horizons(tmp_path):
    """`l2l train bandit --horizons` draws one horizon per update and plots per horizon."""
    import pytest

    from l2l_ros.cli import main
    from l2l_ros.families import parse_horizons

    out = tmp_path / "run"
    assert main(["train", "bandit", "--arms", "3", "--horizons", "4,9", "--updates", "10",
                 "--num-envs", "4", "--minibatches", "1", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(rows) == 10
    assert {r["reset_options"]["n"] for r in rows} == {4, 9}
    assert all(r["task_steps"] == r["reset_options"]["n"] for r in rows)
    assert (out / "learning_curve.png").stat().st_size > 1000
    policy, meta = load_checkpoint(out / "policy.json")
    assert meta["env_kwargs"] == {"k": 3, "n": 9} and policy.obs_dim == 3 + 3 + 2
    assert meta["train_config"]["reset_options"] == [{"n": 4}, {"n": 9}]
    for bad in ("0,10", "ten", ","):
        with pytest.raises(ValueError, match="horizons"):
            parse_horizons(bad)


def test_init_from_starts_a_fresh_run_from_saved_weights(tmp_path):
    train(_small(3), tmp_path / "source")
    source, _ = load_checkpoint(tmp_path / "source")
    fine = _small(0)
    fine.init_from = str(tmp_path / "source")
    train(fine, tmp_path / "fine")
    copied, doc = load_checkpoint(tmp_path / "fine")
    for (k, x), (_, y) in zip(source.state_dict().items(), copied.state_dict().items()):
        assert torch.equal(x, y), k
    assert doc["train_config"]["init_from"] == str(tmp_path / "source")
    source_doc = json.loads((tmp_path / "source" / "policy.json").read_text())
    assert doc["init_sha256"] == source_doc["weights_sha256"]
    # A resumed run keeps the hash of the weights it started from, even if the path now holds others.
    train(_small(5), tmp_path / "source")
    moved = json.loads((tmp_path / "source" / "policy.json").read_text())
    assert moved["weights_sha256"] != source_doc["weights_sha256"]
    fine.updates = 1
    train(fine, tmp_path / "fine")
    assert json.loads((tmp_path / "fine" / "policy.json").read_text())["init_sha256"] == source_doc["weights_sha256"]
    # Not the weights a fresh run starts from.
    train(_small(0), tmp_path / "scratch")
    scratch, _ = load_checkpoint(tmp_path / "scratch")
    assert any(not torch.equal(x, y) for x, y in zip(source.state_dict().values(), scratch.state_dict().values()))
    # A different network is refused with the reason.
    other = _small(1)
    other.policy, other.policy_config = "lstm", {}
    other.init_from = str(tmp_path / "source")
    with pytest.raises(CheckpointError, match="cannot start from"):
        train(other, tmp_path / "other")


def test_ctrl_c_on_l2l_train_says_where_to_resume(tmp_path):
    """A real SIGINT to `l2l train`: it finishes and saves the current update (nothing
    lost), exits 130 without a traceback, names the update, and the same command resumes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "l2l_ros.cli", "train", "bandit", "--arms", "2", "--horizons", "5",
           "--updates", "100000", "--num-envs", "4", "--minibatches", "1", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not (out / "policy.json").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.2)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    from safetensors import safe_open

    with safe_open(str(out / TRAINER_STATE), "pt") as f:
        saved = int(f.metadata()["update"])
    assert saved >= 10
    assert f"holds update {saved}; the same command resumes" in err
    log = [json.loads(x)["update"] for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert log == list(range(1, saved + 1))  # saved where it stopped, not at the last multiple of 10
    # The same command with a near budget resumes from that update.
    resumed = subprocess.run(cmd[:cmd.index("--updates") + 1] + [str(saved + 2)] + cmd[cmd.index("--updates") + 2:],
                             capture_output=True, text=True, env=env, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    log = [json.loads(x)["update"] for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert log == list(range(1, saved + 3))
