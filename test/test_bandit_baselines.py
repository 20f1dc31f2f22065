"""Bandit baselines (finite-horizon Gittins, UCB1, Thompson, greedy, random) and the
RL² Table 1 evaluation (`l2l_ros.bandit_eval`)."""
import argparse
import json

import numpy as np
import pytest
import torch

from l2l_ros.bandit_eval import (PAPER_TABLE1, add_bandit_eval_arguments, evaluate_bandits,
                                 main_eval_bandit, run_checkpoint_on_bandits)
from l2l_ros.meta.checkpoint import save_checkpoint
from l2l_ros.meta.policies import build_policy
from l2l_ros.tasks.bandit import N_TIME_FEATURES, BernoulliBanditEnv
from l2l_ros.tasks.bandit_baselines import (BASELINES, bayes_optimal_value, gittins_index_exact,
                                            gittins_index_table, index_policy_value, run_baseline)
from l2l_ros.tasks.meta_wrapper import MetaWrapper

torch.set_num_threads(1)


# --------------------------------------------------------------------------- Gittins indices
def test_gittins_h1_is_posterior_mean():
    T = gittins_index_table(12)
    for s in range(12):
        for f in range(12 - s):
            assert T(s, f, 1) == pytest.approx((1 + s) / (2 + s + f), abs=1e-12)
    assert gittins_index_exact(3, 5, 1) == pytest.approx(3 / 8, abs=1e-10)


@pytest.mark.parametrize("a,b", [(1, 1), (2, 1), (1, 2), (3, 2), (4, 4)])
def test_gittins_h2_hand_worked(a, b):
    # h = 2: pull once, then retire (λ) or pull again (posterior mean). With the
    # indifference point between the two one-step-ahead means μ- < λ < μ+:
    # μ + μ μ+ + (1 - μ) λ = 2 λ  =>  λ = μ (1 + μ+) / (1 + μ).  (1, 1) gives 5/9.
    mu, mu_plus, mu_minus = a / (a + b), (a + 1) / (a + b + 1), a / (a + b + 1)
    lam = mu * (1 + mu_plus) / (1 + mu)
    assert mu_minus < lam < mu_plus
    assert gittins_index_exact(a, b, 2) == pytest.approx(lam, abs=1e-9)
    T = gittins_index_table(10)
    assert T(a - 1, b - 1, 2) == pytest.approx(lam, abs=1e-9)
    assert gittins_index_exact(1, 1, 2) == pytest.approx(5 / 9, abs=1e-9)


def test_gittins_monotone_and_exploration_bonus():
    n = 30
    T = gittins_index_table(n)
    for h in (2, 5, 10, 20):
        for s in range(0, n - h - 1, 3):
            for f in range(0, n - h - s - 1, 3):
                g = T(s, f, h)
                assert T(s + 1, f, h) > g > T(s, f + 1, h)          # successes up, failures down
                assert g > (1 + s) / (2 + s + f)                     # exploration bonus
                assert T(s, f, h + 1) > g                            # longer horizon, larger index
    # The bonus shrinks as the posterior concentrates.
    assert T(0, 0, 10) - 0.5 > T(9, 9, 10) - 0.5 > 0


def test_gittins_table_matches_bisection():
    n = 40
    T = gittins_index_table(n)
    rng = np.random.default_rng(1)
    worst = 0.0
    for _ in range(60):
        h = int(rng.integers(1, n + 1))
        s = int(rng.integers(0, n - h + 1))
        f = int(rng.integers(0, n - h - s + 1))
        worst = max(worst, abs(T(s, f, h) - gittins_index_exact(1 + s, 1 + f, h)))
    assert worst < 2e-4, worst
    with pytest.raises(ValueError):
        T(n, 0, 1)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 7, 8])
def test_gittins_policy_near_bayes_optimal_k2(n):
    T = gittins_index_table(n)
    best = bayes_optimal_value(n, k=2)
    git = index_policy_value(n, 2, lambda s, f, h: T(s, f, h))
    assert git <= best + 1e-12
    assert git >= best * (1 - 1e-3), (git, best)


def test_gittins_vs_bayes_optimal_k3_and_greedy_is_worse():
    n = 6
    T = gittins_index_table(n)
    best = bayes_optimal_value(n, k=3)
    git = index_policy_value(n, 3, lambda s, f, h: T(s, f, h))
    greedy = index_policy_value(n, 3, lambda s, f, h: (1 + s) / (2 + s + f))
    assert best * (1 - 2e-3) <= git <= best + 1e-12
    assert greedy < best - 1e-3  # the comparison can tell a myopic policy apart


# --------------------------------------------------------------------------- Monte Carlo vs exact
def _mc(name, k, n, episodes, seed):
    rng = np.random.default_rng(seed)
    probs = rng.uniform(size=(episodes, k))
    tot = run_baseline(name, k, n, probs, rng)
    return tot.mean(), tot.std(ddof=1) / np.sqrt(episodes)


def test_index_baselines_match_exact_values_k2():
    """Monte Carlo of each index policy = its exact expected reward (k = 2, n = 8)."""
    k, n = 2, 8
    T = gittins_index_table(n)
    exact = {
        "greedy": index_policy_value(n, k, lambda s, f, h: (1 + s) / (2 + s + f)),
        "gittins": index_policy_value(n, k, lambda s, f, h: T(s, f, h)),
        # UCB1: unpulled arms first (ties split: same value as arms in order, p iid)
        "ucb1": index_policy_value(n, k, lambda s, f, h: np.inf if s + f == 0 else
                                   s / (s + f) + np.sqrt(2 * np.log(n - h) / (s + f))),
        "random": n / 2,
    }
    for name, value in exact.items():
        mean, sem = _mc(name, k, n, 4000, seed=7)
        assert abs(mean - value) < 3.5 * sem, (name, mean, value, sem)


def test_baselines_k5_n10_against_paper():
    k, n, E = 5, 10, 2000
    row = PAPER_TABLE1[(n, k)]
    for name, ref in (("random", row["random"]), ("gittins", row["gittins"]),
                      ("ucb1_scaled", row["ucb1"]), ("thompson", row["thompson"]),
                      ("oracle", n * k / (k + 1))):
        mean, sem = _mc(name, k, n, E, seed=3)
        # the paper rounds to 0.1 and has its own sampling error (~0.07)
        assert abs(mean - ref) < 3 * sem + 0.15, (name, mean, ref, sem)
    # textbook UCB1 spends 5 of its 10 pulls on initialisation: well below Gittins
    mean_ucb1, _ = _mc("ucb1", k, n, E, seed=3)
    assert 5.3 < mean_ucb1 < 6.1


def test_run_baseline_common_stream_and_errors():
    rng = np.random.default_rng(0)
    probs = np.array([[0.0, 1.0, 0.0]] * 4)
    u = rng.random((4, 6))
    assert run_baseline("oracle", 3, 6, probs, rng, u).tolist() == [6.0] * 4
    assert run_baseline("gittins", 3, 6, probs, rng, u).min() >= 4  # finds the sure arm fast
    for name in BASELINES:
        assert run_baseline(name, 3, 6, probs, rng, u).shape == (4,)
    seen: dict = {}
    run_baseline("ucb1", 3, 6, probs, rng, u, behaviour=seen)  # initialisation pulls every arm once
    assert seen["arms_tried"].tolist() == [3] * 4 and seen["best_arm_share"].tolist() == [4 / 6] * 4
    run_baseline("oracle", 3, 6, probs, rng, u, behaviour=seen)
    assert seen["arms_tried"].tolist() == [1] * 4 and seen["best_arm_share"].tolist() == [1.0] * 4
    with pytest.raises(ValueError):
        run_baseline("nope", 3, 6, probs, rng, u)
    with pytest.raises(ValueError):
        run_baseline("random", 2, 6, probs, rng, u)


# --------------------------------------------------------------------------- evaluation
class _Recorder:
    """A stand-in policy that plays a fixed arm sequence and records its inputs."""

    def __init__(self, k, actions):
        self.obs_dim, self.action_spec = N_TIME_FEATURES + k + 2, {"type": "discrete", "n": k}
        self.actions, self.seen, self.t = actions, [], 0

    def initial_state(self, batch):
        return ()

    def act(self, obs, state, deterministic=False):
        self.seen.append(obs.numpy().copy())
        a = torch.full((obs.shape[0],), self.actions[self.t], dtype=torch.long)
        self.t += 1
        return a, None, None, state


def test_checkpoint_inputs_match_meta_wrapper():
    k, n = 3, 7
    actions = [0, 1, 2, 1, 0, 0, 2]
    probs = np.array([1.0, 0.0, 1.0])  # deterministic rewards: env and batch agree
    rec = _Recorder(k, actions)
    totals = run_checkpoint_on_bandits(rec, k, n, probs[None], np.full((1, n), 0.5), True)
    env = MetaWrapper(BernoulliBanditEnv(k=k, n=n))
    obs, _ = env.reset(seed=0, options={"probs": probs})
    expected, total = [obs], 0.0
    for a in actions[:-1]:
        obs, r, *_ = env.step(a)
        expected.append(obs)
        total += r
    total += probs[actions[-1]]
    assert totals.tolist() == [total]
    for got, want in zip(rec.seen, expected):
        np.testing.assert_array_equal(got[0], want)
        assert got.dtype == want.dtype == np.float32


def test_checkpoint_behaviour_counts_arms_tried_and_pulls_on_the_best_arm():
    k, n = 4, 5
    probs = np.array([[0.1, 0.9, 0.2, 0.3], [0.8, 0.1, 0.2, 0.3]])
    rec = _Recorder(k, [1, 1, 2, 1, 3])
    behaviour = {}
    run_checkpoint_on_bandits(rec, k, n, probs, np.full((2, n), 0.5), True, behaviour=behaviour)
    assert behaviour["arms_tried"].tolist() == [3, 3]
    np.testing.assert_allclose(behaviour["best_arm_share"], [3 / 5, 0.0])


def test_evaluate_bandits_with_fresh_checkpoint(tmp_path):
    k, n = 3, 10
    policy = build_policy("lstm", N_TIME_FEATURES + k + 2, {"type": "discrete", "n": k}, {"hidden": 16})
    save_checkpoint(tmp_path / "fresh", policy,
                    {"env_id": "l2l_ros/Bandit-v0", "env_kwargs": {"k": k, "n": n}})
    res = evaluate_bandits(k, n, 300, seed=5, checkpoints={"fresh": str(tmp_path / "fresh")})
    assert (res["k"], res["n"], res["episodes"], res["seed"]) == (k, n, 300, 5)
    assert res["paper"] == {}
    pol = res["policies"]
    assert {"random", "gittins", "ucb1", "thompson", "greedy", "fresh", "fresh/argmax"} <= set(pol)
    for st in pol.values():
        assert np.isfinite(st["mean"]) and st["sem"] > 0
    # an untrained policy plays close to uniformly: near n/2 and well below Gittins
    assert abs(pol["fresh"]["mean"] - n / 2) < 5 * pol["fresh"]["sem"] + 0.2
    assert pol["gittins"]["mean"] > pol["fresh"]["mean"] + 0.5
    # ... so it tries nearly every arm, and pulls the best about 1/k of the time
    assert pol["fresh"]["arms_tried"] > k - 0.5 and abs(pol["fresh"]["best_arm_share"] - 1 / k) < 0.1
    # same seed, same figures
    again = evaluate_bandits(k, n, 300, seed=5, checkpoints={"fresh": str(tmp_path / "fresh")})
    assert again["policies"]["fresh"]["mean"] == pol["fresh"]["mean"]
    assert again["policies"]["gittins"]["mean"] == pol["gittins"]["mean"]
    assert res["action_rules"] == {"fresh": "sampled"}  # not trained on index targets
    save_checkpoint(tmp_path / "index", policy, {"env_id": "l2l_ros/Bandit-v0", "env_kwargs": {"k": k, "n": n},
                                                  "train_config": {"teacher": "gittins", "teacher_index_tau": 0.01}})
    both = evaluate_bandits(k, n, 20, seed=5, checkpoints={"fresh": str(tmp_path / "fresh"),
                                                           "index": str(tmp_path / "index")})
    assert both["action_rules"] == {"fresh": "sampled", "index": "argmax"}
    wrong = build_policy("lstm", N_TIME_FEATURES + 4 + 2, {"type": "discrete", "n": 4}, {"hidden": 8})
    save_checkpoint(tmp_path / "wrong", wrong, {})
    with pytest.raises(ValueError):
        evaluate_bandits(k, n, 10, seed=0, checkpoints={"w": str(tmp_path / "wrong")})


def test_main_eval_bandit_json(capsys, tmp_path):
    parser = add_bandit_eval_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--arms", "5", "--pulls", "10", "--episodes", "50", "--seed", "1", "--json"])
    assert main_eval_bandit(args) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["paper"]["gittins"] == 6.6 and res["episodes"] == 50
    assert all({"arms_tried", "best_arm_share"} <= set(st) for st in res["policies"].values())
    # the text table: one row per policy with its mean, arms tried and share on the best arm
    args = parser.parse_args(["--arms", "5", "--pulls", "10", "--episodes", "50", "--seed", "1", "--no-bundled"])
    assert main_eval_bandit(args) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows["oracle"][4:6] == ["1.0", "100%"] and rows["ucb1"][4] == "5.0"  # UCB1 starts with every arm
    assert float(rows["gittins"][1]) == pytest.approx(res["policies"]["gittins"]["mean"], abs=0.005)
    # the bundled models' own rules are marked in the text table
    args = parser.parse_args(["--arms", "5", "--pulls", "10", "--episodes", "20", "--seed", "1"])
    assert main_eval_bandit(args) == 0
    marked = [line.split()[0] for line in capsys.readouterr().out.splitlines() if "the model's own rule" in line]
    assert sorted(marked) == sorted(n + ("/argmax" if r == "argmax" else "") for n, r in res["action_rules"].items())
    assert len(marked) == len(res["action_rules"]) >= 1
    args = parser.parse_args(["--arms", "2", "--pulls", "4", "--episodes", "5", "--checkpoint", "oops"])
    assert main_eval_bandit(args) == 2
    args = parser.parse_args(["--arms", "2", "--pulls", "4", "--episodes", "5",
                              "--checkpoint", f"x={tmp_path / 'missing'}"])
    assert main_eval_bandit(args) == 2
    assert "l2l eval bandit" in capsys.readouterr().err
