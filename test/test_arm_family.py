"""Issue 30: the arm family where adaptation matters (calibration, sign flips, payload,
latency, a hidden goal), its classical baselines and the oracle teacher."""
from __future__ import annotations

import numpy as np
import pytest

from l2l_ros.evaluation import arm_controller, run_manipulator_tasks, summarize_manipulator
from l2l_ros.tasks.manipulator import HOME_Q, ArmFamily, ArmTask, ManipulatorEnv


def test_switched_off_randomizations_draw_nothing_so_the_old_family_is_reproduced():
    """The calibration is drawn after everything else and not at all when switched off:
    the nominal-calibration preset gives the same tasks as the sim2real family gives
    before its calibration draws (hence today's figures stay reproducible)."""
    old = ArmFamily.preset("nominal_calibration")
    new = ArmFamily(payload=old.payload)
    for seed in range(5):
        a = ArmTask.sample(np.random.default_rng(seed), old)
        b = ArmTask.sample(np.random.default_rng(seed), new)
        assert a.scale == (1.0, 1.0, 1.0) and a.sign == (1, 1, 1)
        assert (a.payload, a.damping, a.gain, a.latency, a.q_noise, a.qd_noise) == \
               (b.payload, b.damping, b.gain, b.latency, b.q_noise, b.qd_noise)
    tasks = [ArmTask.sample(np.random.default_rng(s)) for s in range(200)]
    scales = np.array([t.scale for t in tasks])
    assert scales.min() >= 1 / 3 - 1e-9 and scales.max() <= 3 + 1e-9
    assert 0.4 < np.mean([t.sign[0] < 0 for t in tasks]) < 0.6
    assert max(t.payload for t in tasks) > 1.2 and {t.latency for t in tasks} == {0, 1, 2, 3}


@pytest.mark.parametrize("spec", ["bogus", {"flipprob": 1}, {"flip_prob": 1.5}, {"scale": [0, 2]},
                                  {"latency": [2, 1]}])
def test_bad_family_specs_are_refused(spec):
    with pytest.raises(ValueError):
        ArmFamily.from_spec(spec)


def test_a_flipped_sign_reverses_a_joint_and_the_scale_speeds_it_within_the_joint_limit():
    env = ManipulatorEnv()
    moved = {}
    for name, task in (("nominal", ArmTask.nominal()),
                       ("flipped", ArmTask(0.0, (0.1,) * 3, 1.0, 0, 0.0, 0.0, sign=(-1, 1, 1))),
                       ("fast", ArmTask(0.0, (0.1,) * 3, 1.0, 0, 0.0, 0.0, scale=(3.0, 1.0, 1.0)))):
        env.reset(seed=0, options={"task": task})
        q0 = env.sim.joint_state(noisy=False)[0][0]
        for _ in range(4):
            env.step(np.array([0.5, 0.0, 0.0]))
        q, qd = env.sim.joint_state(noisy=False)
        moved[name] = (q[0] - q0, qd[0])
    assert moved["nominal"][0] > 0.05 and moved["flipped"][0] < -0.05
    assert moved["flipped"][0] == pytest.approx(-moved["nominal"][0], rel=0.05)
    # 0.5 x 1.5 rad/s x 3 = 2.25 rad/s, held to the URDF's 2 rad/s
    assert moved["fast"][1] > 1.5 * moved["nominal"][1] and moved["fast"][1] <= 2.0 + 0.05


def test_hidden_goal_hides_the_target_and_keeps_it_for_the_task():
    env = ManipulatorEnv(hidden_goal=True)
    obs, info = env.reset(seed=3, options={"task": ArmTask.nominal()})
    sim = env.sim
    assert any(np.allclose(info["target"], spot) for spot in sim.spots)
    np.testing.assert_array_equal(obs[-3:], 0.0)
    searcher = arm_controller("oracle", hidden_goal=True)
    searcher.reset(task=ArmTask.nominal())
    reward, trial_start, rewards, reaches = 0.0, True, [], []
    for step in range(200):
        obs, reward, _, _, info = env.step(searcher.step(obs, reward, trial_start))
        trial_start = info["trial_end"]
        rewards.append(reward)
        np.testing.assert_array_equal(obs[-3:], 0.0)
        if info["trial_end"]:
            reaches.append(step)
            np.testing.assert_allclose(sim.joint_state(noisy=False)[0], HOME_Q)  # back home
            np.testing.assert_array_equal(sim.target, info["target"])  # the same spot
    assert set(rewards) <= {0.0, 1.0} and len(reaches) >= 3
    first, later = reaches[0] + 1, np.diff(reaches)
    assert later.max() < first  # memory: no search after trial 1


def test_the_oracle_knows_the_calibration_and_the_fixed_controller_fails_when_a_sign_flips():
    records = {name: run_manipulator_tasks(arm_controller(name), 24, seed=11) for name in ("resolved_rate", "oracle")}
    fixed, oracle = (summarize_manipulator(records[n]) for n in ("resolved_rate", "oracle"))
    for flips, s in oracle["by_sign_flips"].items():
        assert s["targets_per_task"] > 2.0, flips
        if flips != "0":
            assert fixed["by_sign_flips"][flips]["targets_per_task"] < 0.5 * s["targets_per_task"], flips
    # without calibration errors the tuned fixed controller is a real controller
    nominal = summarize_manipulator(run_manipulator_tasks(arm_controller("resolved_rate"), 8, seed=11,
                                                          env_kwargs={"family": "nominal_calibration"}))
    assert nominal["targets_per_task"] > 5.0


def test_the_arm_oracle_teacher_guides_ppo_and_is_refused_for_plain_imitation(tmp_path):
    import json

    from l2l_ros.families import train_config
    from l2l_ros.meta.train import train

    cfg = train_config("manipulator", "lstm", updates=2, num_envs=2, seed=0, teacher="arm-oracle",
                       imitation_coef=1.0, minibatches=1, epochs=1)
    train(cfg, tmp_path / "guided")
    rows = [json.loads(line) for line in (tmp_path / "guided" / "train_log.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(np.isfinite(r["imitation_loss"]) and r["imitation_loss"] > 0 for r in rows)
    plain = train_config("manipulator", "lstm", updates=1, num_envs=2, seed=0, teacher="arm-oracle")
    with pytest.raises(ValueError, match="action_std"):
        train(plain, tmp_path / "plain")
    # with a fixed spread, plain imitation (DAgger) runs, the teacher driving at first
    plain = train_config("manipulator", "lstm", updates=2, num_envs=2, seed=0, teacher="arm-oracle",
                         action_std=0.15, teacher_mix_updates=2, minibatches=1, epochs=1)
    train(plain, tmp_path / "plain")
    rows = [json.loads(line) for line in (tmp_path / "plain" / "train_log.jsonl").read_text().splitlines()]
    assert [r["teacher_share"] for r in rows] == [1.0, 0.5] and np.isfinite(rows[-1]["imitation_loss"])
    # a saved continuous policy teaches its mean action (an LSTM distilled into a spiking network)
    from l2l_ros.meta.imitation import PolicyTeacher

    teacher = PolicyTeacher(str(tmp_path / "guided" / "policy.json"))
    obs = np.zeros((2, teacher.policy.obs_dim), np.float32)
    teacher.state = teacher.policy.initial_state(2)
    mean = teacher.target(obs)
    assert teacher.continuous and mean.shape == (2, 3) and np.all(np.abs(mean) <= 1.0)
    student = train_config("manipulator", "lsnn", updates=1, num_envs=2, seed=0, minibatches=1, epochs=1,
                           teacher=str(tmp_path / "guided" / "policy.json"), imitation_coef=1.0)
    train(student, tmp_path / "student")
    [row] = [json.loads(line) for line in (tmp_path / "student" / "train_log.jsonl").read_text().splitlines()]
    assert np.isfinite(row["imitation_loss"])


def test_the_driver_stops_a_joint_at_its_limit_whatever_the_calibration_and_lets_it_back():
    """Issue 30: whatever the network outputs, the arm stops at its joint limits. The driver
    (ArmSim, as manipulator_sim runs it) does it in motor space, where the direction is
    known: the policy cannot know which sign drives a joint out."""
    from l2l_ros.tasks.manipulator import LIMIT_MARGIN

    for latency, sign in ((0, 1), (3, 1), (3, -1), (0, -1)):
        env = ManipulatorEnv()
        env.reset(seed=0, options={"task": ArmTask(0.0, (0.1,) * 3, 1.0, latency, 0.0, 0.0, scale=(3.0,) * 3,
                                                   sign=(1, sign, 1))})
        upper = env.sim.arm.upper[1]
        highest = -np.inf
        for _ in range(100):  # full speed, joint 1 driven up (its calibration sign undone), for 5 s
            env.step(np.array([0.0, sign, 0.0]))
            highest = max(highest, env.sim.joint_state(noisy=False)[0][1])
        assert upper - LIMIT_MARGIN < highest < upper - LIMIT_MARGIN + 0.015, (latency, sign, highest)
        for _ in range(10):  # and back
            env.step(np.array([0.0, -sign, 0.0]))
        assert env.sim.joint_state(noisy=False)[0][1] < upper - 0.3, (latency, sign)


def test_the_memoryless_baseline_has_no_state_and_saves_like_the_others(tmp_path):
    """The MLP (issue 30's domain-randomization baseline) sees the same inputs and keeps
    nothing: the same input gives the same output whatever came before."""
    import torch

    from l2l_ros.cost import policy_cost
    from l2l_ros.meta.checkpoint import load_checkpoint, save_checkpoint
    from l2l_ros.meta.policies import build_policy

    policy = build_policy("mlp", 17, {"type": "box", "shape": [3], "low": -1.0, "high": 1.0})
    x = torch.randn(5, 1, 17)
    params, _, state = policy.forward_sequence(x, policy.initial_state(1))
    again, _, _ = policy.forward_sequence(x[-1:], state)
    torch.testing.assert_close(params[-1], again[0])
    _, js = save_checkpoint(tmp_path / "mlp", policy, {"env_id": "l2l_ros/Manipulator-v0"})
    loaded, meta = load_checkpoint(js)
    assert meta["policy_kind"] == "mlp"
    torch.testing.assert_close(loaded.forward_sequence(x, loaded.initial_state(1))[0], params)
    assert policy_cost(loaded, 1)["macs_per_step"] == 128 * 17 + 128 * 128 + 3 * 128


def test_the_identifying_oracle_acts_nominal_until_a_joint_has_shown_its_calibration():
    """The networks' teacher: only what a history could tell. Before a joint's response
    is seen it drives the joint as if nominal; after, as the oracle does."""
    from l2l_ros.tasks.arm_controllers import IDENTIFIED

    task = ArmTask(0.0, (0.1,) * 3, 1.0, 2, 0.0, 0.0, scale=(2.0, 0.5, 1.0), sign=(-1, 1, -1))
    env = ManipulatorEnv()
    obs, _ = env.reset(seed=5, options={"task": task})
    oracle, ident = arm_controller("oracle"), arm_controller("oracle_identify")
    nominal = arm_controller("oracle")
    oracle.reset(task=task)
    ident.reset(task=task)
    nominal.reset(task=ArmTask(0.0, (0.1,) * 3, 1.0, 2, 0.0, 0.0))
    first = ident.action(obs)
    np.testing.assert_allclose(first, nominal.action(obs), atol=1e-6)  # nothing seen yet
    assert not np.allclose(first, oracle.action(obs), atol=1e-3)
    for _ in range(40):  # its own actions, executed, reveal every joint it moves one way
        action = ident.step(obs, 0.0, False)
        obs, *_ = env.step(action)
    moved = ident.identified
    assert moved.any()
    np.testing.assert_array_equal(moved, np.abs(ident._evidence) >= IDENTIFIED)
    np.testing.assert_allclose(ident.calibration[moved], task.calibration[moved])
    np.testing.assert_array_equal(ident.calibration[~moved], 1.0)
    # noise that cancels out shows nothing
    noisy = arm_controller("oracle_identify")
    noisy.reset(task=task)
    for k in range(200):
        noisy.executed(np.full(3, 0.5 if k % 2 else -0.5))
    assert not noisy.identified.any()


@pytest.mark.parametrize("hidden_goal", [False, True])
def test_the_arm_teacher_driving_itself_reaches_targets_from_the_rl2_inputs(hidden_goal):
    """The teacher reads only the vector env's meta-wrapped observations (and each task, for
    its privileges): executed, its actions reach targets, and with a hidden goal it finds
    the spot and goes back to it (reward and trial start come from the RL² inputs)."""
    from l2l_ros.meta.imitation import ArmOracleTeacher
    from l2l_ros.meta.rollout import make_vector_env
    from l2l_ros.tasks import MANIPULATOR_ID

    envs = make_vector_env(MANIPULATOR_ID, {"hidden_goal": hidden_goal}, 3)
    obs, _ = envs.reset(seed=[21, 22, 23])
    teacher = ArmOracleTeacher()
    teacher.reset(envs)
    reaches = np.zeros(3, int)
    for _ in range(200):
        action = teacher.target(obs)
        teacher.observe(action, None)
        obs, reward, _, _, info = envs.step(action)
        reaches += np.asarray(info["trial_end"], bool)
    assert reaches.min() >= 2, reaches
    envs.close()


def test_a_recipes_arm_evaluation_checks_the_model_against_the_oracle(tmp_path):
    """recipes.evaluate_arm_model: an untrained network reaches nothing and fails both of
    issue 30's checks, measured against the oracle on the same tasks."""
    from l2l_ros.meta.checkpoint import save_checkpoint
    from l2l_ros.meta.policies import build_policy
    from l2l_ros.recipes import ARM_TARGETS, evaluate_arm_model

    policy = build_policy("lstm", 17, {"type": "box", "shape": [3], "low": -1.0, "high": 1.0})
    _, js = save_checkpoint(tmp_path / "untrained", policy, {"env_id": "l2l_ros/Manipulator-v0"})
    result = evaluate_arm_model(js, 2, 3)
    assert result["oracle"]["targets_per_task"] > 0 and result["model"]["targets_per_task"] == 0
    assert result["targets_vs_oracle"] == 0.0 and result["later_reach_vs_oracle"] is None
    assert result["checks"] == {"targets_vs_oracle": False, "later_reach_vs_oracle": False}
    assert not result["targets_met"] and result["targets"] == ARM_TARGETS
