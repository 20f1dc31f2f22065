"""Imitation of the Gittins teacher (DAgger): the teacher's targets, the mixing, and a
short run that learns a bandit without a reward signal in its loss."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from l2l_ros.meta.checkpoint import load_checkpoint
from l2l_ros.meta.imitation import GittinsTeacher, make_teacher, teacher_share
from l2l_ros.meta.policies import build_policy
from l2l_ros.meta.config import TrainConfig
from l2l_ros.meta.rollout import collect_tasks, trial_ends_by_goal
from l2l_ros.meta.train import evaluate, train
from l2l_ros.tasks.bandit import MetaBanditVectorEnv
from l2l_ros.tasks.bandit_baselines import gittins_index_table

torch.set_num_threads(1)
ENV = "l2l_ros/Bandit-v0"


def _random_histories(teacher, envs, count: int, seed: int):
    """Reset ``teacher`` and feed it a random history of 0 to 8 pulls in each of 3-armed,
    10-pull ``envs``, ``count`` times; yields the Gittins index of every arm afterwards."""
    rng, table = np.random.default_rng(seed), gittins_index_table(10)
    for _ in range(count):
        teacher.reset(envs)
        steps = int(rng.integers(0, 9))
        for _ in range(steps):
            teacher.observe(rng.integers(0, 3, size=3), rng.integers(0, 2, size=3).astype(float))
        yield table(teacher.s, teacher.f, 10 - steps)


def test_gittins_teacher_targets_the_arms_of_highest_index():
    envs = MetaBanditVectorEnv(3, k=3, n=10)
    envs.reset(seed=[0, 1, 2])
    teacher = GittinsTeacher(3, 10)
    teacher.reset(envs)
    assert np.allclose(teacher.target(), 1 / 3)  # nothing known: every arm ties
    # Env 0: arm 0 won once. Env 1: arm 1 lost once. Env 2: arm 2 won once.
    teacher.observe(np.array([0, 1, 2]), np.array([1.0, 0.0, 1.0]))
    target = teacher.target()
    assert target[0].tolist() == [1.0, 0.0, 0.0]  # Beta(2, 1) beats Beta(1, 1) with 9 pulls left
    assert target[1].tolist() == [0.5, 0.0, 0.5]  # the two untried arms tie, the loser is dropped
    assert target[2].tolist() == [0.0, 0.0, 1.0]
    # Against the table on many random histories.
    for index in _random_histories(teacher, envs, 50, seed=0):
        best = index >= index.max(axis=1, keepdims=True) - 1e-12
        np.testing.assert_allclose(teacher.target(), best / best.sum(axis=1, keepdims=True))


def test_soft_gittins_teacher_targets_the_tempered_index():
    """`--teacher gittins --teacher-soft`: softmax(index / 0.01) over the counts the
    teacher tracked, so tied arms share and a clearly worse arm gets almost nothing."""
    envs = MetaBanditVectorEnv(3, k=3, n=10)
    envs.reset(seed=[0, 1, 2])
    teacher = make_teacher("gittins", ENV, {"k": 3, "n": 10}, soft=True)
    assert isinstance(teacher, GittinsTeacher) and teacher.soft
    teacher.reset(envs)
    np.testing.assert_allclose(teacher.target(), 1 / 3)
    teacher.observe(np.array([0, 1, 2]), np.array([1.0, 0.0, 1.0]))
    target = teacher.target()
    np.testing.assert_allclose(target.sum(axis=1), 1.0)
    assert target[0, 0] > 0.9 and target[2, 2] > 0.9  # the winner, far ahead in index
    assert target[1, 0] == pytest.approx(target[1, 2]) and target[1, 1] < 0.01  # the loser is dropped
    for index in _random_histories(teacher, envs, 20, seed=1):
        np.testing.assert_allclose(teacher.target(), torch.softmax(torch.as_tensor(index / 0.01), -1).numpy(),
                                   atol=1e-9)
    # Arms with equal counts are interchangeable: their share follows the student's.
    teacher.reset(envs)
    student = np.array([[0.7, 0.2, 0.1]] * 3)
    np.testing.assert_allclose(teacher.target(student=student), student)  # one group: the student's own
    teacher.observe(np.array([0, 1, 2]), np.array([1.0, 0.0, 1.0]))
    plain, shared = teacher.target(), teacher.target(student=student)
    np.testing.assert_allclose(shared.sum(axis=1), 1.0)
    np.testing.assert_allclose(shared[1, [0, 2]], (plain[1, 0] + plain[1, 2]) * np.array([0.7, 0.1]) / 0.8)
    assert shared[1, 1] == pytest.approx(plain[1, 1])  # the loser is alone in its group
    np.testing.assert_allclose(shared[0, 1:], plain[0, 1:].sum() * np.array([0.2, 0.1]) / 0.3)
    with pytest.raises(ValueError, match="positive temperature"):
        GittinsTeacher(3, 10, soft=True, temperature=0.0)


def test_index_gittins_teacher_targets_the_index_as_logits():
    """`--teacher gittins --teacher-index-tau TAU`: each arm's index minus the best
    arm's, over TAU, floored; the executed arm, when the teacher drives, is drawn from
    the softmax of those logits."""
    from l2l_ros.meta.losses import INDEX_LOGIT_FLOOR

    envs = MetaBanditVectorEnv(3, k=3, n=10)
    envs.reset(seed=[0, 1, 2])
    teacher = make_teacher("gittins", ENV, {"k": 3, "n": 10}, index_tau=0.05)
    assert isinstance(teacher, GittinsTeacher) and teacher.logit_targets
    teacher.reset(envs)
    np.testing.assert_allclose(teacher.target(), 0.0)  # nothing known: every arm is best
    for index in _random_histories(teacher, envs, 20, seed=2):
        expected = np.maximum((index - index.max(axis=1, keepdims=True)) / 0.05, -INDEX_LOGIT_FLOOR)
        np.testing.assert_allclose(teacher.target(), expected, atol=1e-9)
    teacher.reset(envs)
    teacher.observe(np.array([0, 0, 0]), np.array([0.0, 0.0, 0.0]))
    for _ in range(5):
        teacher.observe(np.array([0, 0, 0]), np.array([0.0, 0.0, 0.0]))
    assert (teacher.target()[:, 0] == -INDEX_LOGIT_FLOOR).all()  # six losses: floored
    policy = build_policy("lstm", 8, {"type": "discrete", "n": 3})
    envs = MetaBanditVectorEnv(64, k=3, n=10)
    best_share = {}
    for share in (0.0, 1.0):
        roll = collect_tasks(envs, policy, list(range(64)), teacher=teacher, teacher_share=share,
                             rng=np.random.default_rng(0))
        executed = roll["targets"].gather(-1, roll["actions"][..., None].long())[..., 0]
        best_share[share] = float((executed == 0).float().mean())
    # the teacher drives by the softmax of its logits: mostly one of its best arms
    assert best_share[1.0] > 0.8 and best_share[1.0] > best_share[0.0] + 0.2, best_share
    with pytest.raises(ValueError, match="choose one"):
        GittinsTeacher(3, 10, soft=True, index_tau=0.01)


def test_index_logit_loss_asks_for_the_target_gaps_and_only_a_ceiling_at_the_floor():
    from l2l_ros.meta.losses import INDEX_LOGIT_FLOOR, imitation_loss, index_logit_loss

    F = INDEX_LOGIT_FLOOR
    target = torch.tensor([[0.0, -1.5, -F]])
    assert float(index_logit_loss(torch.tensor([[2.0, 0.5, -20.0]]), target)) == pytest.approx(0.0)
    assert float(index_logit_loss(torch.tensor([[2.0, 0.5, 2.0 - F]]), target)) == pytest.approx(0.0)
    # a floored arm above the floor, or a gap off by one logit, costs its square over the arms
    assert float(index_logit_loss(torch.tensor([[2.0, 0.5, 2.0 - F + 3.0]]), target)) == pytest.approx(9 / 3)
    assert float(index_logit_loss(torch.tensor([[2.0, 1.5, -20.0]]), target)) == pytest.approx(1 / 3)
    # what counts is relative to the teacher's best arm: shifting every logit changes nothing
    logits = torch.randn(4, 3)
    targets = torch.tensor([[0.0, -2.0, -F], [-1.0, 0.0, -0.5], [-F, -F, 0.0], [0.0, 0.0, -3.0]])
    shifted = index_logit_loss(logits + 7.0, targets)
    torch.testing.assert_close(shifted, index_logit_loss(logits, targets))
    torch.testing.assert_close(imitation_loss(logits, targets, "index"), shifted)
    logits.requires_grad_(True)
    index_logit_loss(logits, targets).sum().backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_index_imitation_run_learns_a_bandit_and_refuses_other_teachers(tmp_path):
    """Plain imitation of index targets, the student's samples driving: the squared
    error falls and the student earns more than random."""
    cfg = TrainConfig(env_id=ENV, env_kwargs={"k": 2, "n": 10}, policy="lstm", num_envs=32, updates=40,
                      lr=3e-3, epochs=2, minibatches=2, seed=0, checkpoint_every=20,
                      teacher="gittins", teacher_index_tau=0.05)
    weights = train(cfg, tmp_path, command="pytest")
    lines = [json.loads(x) for x in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    first, last = (np.mean([x["imitation_loss"] for x in part]) for part in (lines[:5], lines[-5:]))
    assert last < 0.5 * first, (first, last)
    policy, meta = load_checkpoint(weights)
    assert meta["train_config"]["teacher_index_tau"] == 0.05
    results = evaluate(policy, ENV, {"k": 2, "n": 10}, tasks=1000, seed=10_000, deterministic=False, num_envs=100)
    mean = float(np.mean([r["return"] for r in results]))
    assert mean > 5.0 + 0.4, mean  # random: 5.0 (s.e. ~0.09); Gittins about 6.5
    for bad in ({"teacher": "models/bandit_k5_lstm/policy.json"}, {"teacher": "gittins", "teacher_soft": True},
                {"teacher": "gittins", "teacher_index_tau": float("nan")}):
        kwargs = {"teacher_index_tau": 0.05, **bad}
        with pytest.raises(ValueError, match="teacher_index_tau"):
            train(TrainConfig(env_id=ENV, env_kwargs={"k": 2, "n": 10}, num_envs=4, updates=1, **kwargs),
                  tmp_path / "refused")


def test_teacher_refuses_what_it_cannot_play():
    with pytest.raises(ValueError, match="bandit family"):
        make_teacher("gittins", "l2l_ros/IMaze-v0", {})
    with pytest.raises(ValueError, match="unknown teacher"):
        make_teacher("ucb", ENV, {"k": 2, "n": 10})
    teacher = GittinsTeacher(2, 10)
    envs = MetaBanditVectorEnv(2, k=2, n=20)
    envs.reset(seed=[0, 1])
    with pytest.raises(ValueError, match="longer than the teacher"):
        teacher.reset(envs)


def test_teacher_share_falls_linearly_to_zero():
    assert [teacher_share(4, u) for u in range(6)] == [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    assert teacher_share(0, 0) == 0.0


@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_collect_executes_the_teacher_or_the_policy(beta):
    envs = MetaBanditVectorEnv(16, k=3, n=10)
    policy = build_policy("lstm", 3 + 3 + 2, {"type": "discrete", "n": 3})
    roll = collect_tasks(envs, policy, list(range(16)), deterministic=True, teacher=GittinsTeacher(3, 10),
                         teacher_share=beta, rng=np.random.default_rng(0))
    T = roll["actions"].shape[0]
    chosen = roll["targets"][torch.arange(T)[:, None], torch.arange(16)[None], roll["actions"]]
    on_teacher = float((chosen > 0).float().mean())
    if beta == 1.0:
        assert on_teacher == 1.0  # every executed arm is one the teacher would pull
    else:
        assert on_teacher < 0.9  # an untrained policy often pulls another
        params, _, _ = policy.forward_sequence(roll["obs"], policy.initial_state(16))
        assert torch.equal(params.argmax(-1), roll["actions"])  # its own most likely arm


def test_imitation_learns_a_bandit_from_the_teacher_alone(tmp_path):
    """Reward enters only the value loss; the policy still beats random clearly on (10, 2)."""
    cfg = TrainConfig(env_id=ENV, env_kwargs={"k": 2, "n": 10}, policy="lsnn", num_envs=32, updates=60,
                      lr=3e-3, epochs=2, minibatches=2, seed=0, checkpoint_every=20,
                      teacher="gittins", teacher_mix_updates=10)
    weights = train(cfg, tmp_path, command="pytest")
    lines = [json.loads(x) for x in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert len(lines) == 60 and lines[0]["teacher_share"] == 1.0 and lines[-1]["teacher_share"] == 0.0
    assert np.mean([x["imitation_loss"] for x in lines[-10:]]) < np.mean([x["imitation_loss"] for x in lines[:10]])
    policy, meta = load_checkpoint(weights)
    assert meta["train_config"]["teacher"] == "gittins"
    results = evaluate(policy, ENV, {"k": 2, "n": 10}, tasks=1000, seed=10_000, deterministic=False, num_envs=100)
    mean = float(np.mean([r["return"] for r in results]))
    assert mean > 5.0 + 0.4, mean  # random: 5.0, s.e. ~0.06; Gittins ~6.1 (not reached in 60 updates)


@pytest.mark.parametrize("name", ["searcher", "searcher-lenient"])
def test_searcher_teacher_drives_the_imaze_envs_to_their_goals(name):
    from l2l_ros.tasks import IMAZE_ID
    from l2l_ros.tasks.encoding import IMAZE_OBS_DIM
    from l2l_ros.tasks.imaze_vector import MetaIMazeVectorEnv

    envs = MetaIMazeVectorEnv(3, nthread=1)
    policy = build_policy("lstm", envs.single_observation_space.shape[0], {"type": "discrete", "n": 3})
    assert envs.single_observation_space.shape[0] > IMAZE_OBS_DIM  # meta features added
    teacher = make_teacher(name, IMAZE_ID, {})
    roll = collect_tasks(envs, policy, [7, 8, 9], deterministic=True, teacher=teacher,
                         teacher_share=1.0, rng=np.random.default_rng(0))
    assert roll["trial_ends"].min() >= 1  # the teacher alone finds every goal
    T = roll["actions"].shape[0]
    chosen = roll["targets"][torch.arange(T)[:, None], torch.arange(3)[None], roll["actions"]]
    assert bool((chosen > 0).all())
    # The strict searcher names one action; the lenient one a set, sometimes of two.
    sizes = (roll["targets"] > 0).sum(-1)[roll["valid"]]
    assert int(sizes.max()) == (1 if name == "searcher" else 2) and int(sizes.min()) == 1
    with pytest.raises(ValueError, match="I-maze family"):
        make_teacher("searcher", ENV, {"k": 2, "n": 10})


def test_trial_ends_by_goal_splits_the_goals_per_task_by_alcove():
    """The log's per-alcove goals: each task's goal entries, grouped by its goal alcove."""
    from l2l_ros.tasks import IMAZE_ID
    from l2l_ros.tasks.imaze import IMazeEnv
    from l2l_ros.tasks.imaze_vector import MetaIMazeVectorEnv

    seeds = [7, 8, 9, 10, 11, 12]
    goals = [IMazeEnv().reset(seed=s)[1]["goal"] for s in seeds]
    assert len(set(goals)) >= 2
    envs = MetaIMazeVectorEnv(len(seeds), nthread=1, task_steps=200)
    policy = build_policy("lstm", envs.single_observation_space.shape[0], {"type": "discrete", "n": 3})
    roll = collect_tasks(envs, policy, seeds, deterministic=True, teacher=make_teacher("searcher", IMAZE_ID, {}),
                         teacher_share=1.0, rng=np.random.default_rng(0))
    ends = roll["trial_ends"]
    assert len(set(ends.tolist())) >= 2  # the grouping has something to tell apart
    expected = {str(g): float(np.mean([e for e, h in zip(ends, goals) if h == g])) for g in set(goals)}
    assert trial_ends_by_goal(roll) == {"trial_ends_by_goal": expected}
    benvs = MetaBanditVectorEnv(2, k=2, n=5)
    bandits = collect_tasks(benvs, build_policy("lstm", benvs.single_observation_space.shape[0],
                                                {"type": "discrete", "n": 2}), [0, 1])
    assert trial_ends_by_goal(bandits) == {}  # no goals, no entry in the log


def test_cli_imitation_run_with_network_constants(tmp_path):
    """`l2l train --teacher gittins --policy-config`: the constants and the teacher reach the checkpoint."""
    from l2l_ros.cli import main

    out = tmp_path / "run"
    assert main(["train", "bandit", "--arms", "2", "--horizons", "6", "--updates", "3", "--num-envs", "4",
                 "--minibatches", "1", "--teacher", "gittins", "--teacher-mix-updates", "2",
                 "--policy-config", '{"n_lif": 4, "n_alif": 6, "tau_m": 1.0}', "--out", str(out)]) == 0
    policy, meta = load_checkpoint(out / "policy.json")
    assert (policy.config.n_lif, policy.config.n_alif, policy.config.tau_m) == (4, 6, 1.0)
    assert meta["train_config"]["teacher"] == "gittins" and meta["train_config"]["teacher_mix_updates"] == 2
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["teacher_share"] for r in rows] == [1.0, 0.5, 0.0]


def test_ppo_with_an_imitation_term_learns_towards_the_teacher(tmp_path):
    """`--teacher gittins --imitation-coef C`: PPO's update (its own samples drive, KL and
    clipping logged) whose loss also pulls towards the teacher's arms."""
    cfg = TrainConfig(env_id=ENV, env_kwargs={"k": 2, "n": 10}, policy="lsnn", num_envs=32, updates=40,
                      lr=3e-3, epochs=2, minibatches=2, seed=0, checkpoint_every=20,
                      teacher="gittins", imitation_coef=1.0)
    weights = train(cfg, tmp_path, command="pytest")
    lines = [json.loads(x) for x in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert all("approx_kl" in x and "teacher_share" not in x for x in lines)  # a PPO update
    policy, meta = load_checkpoint(weights)
    assert meta["train_config"]["imitation_coef"] == 1.0
    roll = collect_tasks(MetaBanditVectorEnv(200, k=2, n=10), policy, list(range(5000, 5200)), deterministic=True,
                         teacher=GittinsTeacher(2, 10))
    # Its most likely arm is Gittins' on 0.90 of the pulls (measured); plain PPO's after
    # the same 40 updates, 0.51, and 5.02 per task against 5.97.
    assert float(roll["agree"].float().mean()) > 0.8
    assert float(roll["rewards"].sum(0).mean()) > 5.0 + 0.4  # random: 5.0
    with pytest.raises(ValueError, match="teacher_mix_updates"):
        train(TrainConfig(env_id=ENV, env_kwargs={"k": 2, "n": 10}, num_envs=4, updates=1, teacher="gittins",
                          imitation_coef=1.0, teacher_mix_updates=2), tmp_path / "refused")
    assert not (tmp_path / "refused").exists()  # refused before anything is written


def test_cli_ppo_with_an_imitation_term(tmp_path):
    from l2l_ros.cli import main

    out = tmp_path / "run"
    assert main(["train", "bandit", "--arms", "2", "--horizons", "6", "--updates", "2", "--num-envs", "4",
                 "--minibatches", "1", "--teacher", "gittins", "--imitation-coef", "0.5", "--out", str(out)]) == 0
    _, meta = load_checkpoint(out / "policy.json")
    assert meta["train_config"]["imitation_coef"] == 0.5
    assert isinstance(meta["git_modified"], bool)  # the trainer says whether it ran uncommitted code
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert all({"approx_kl", "imitation_loss", "teacher_agreement"} <= set(r) for r in rows)


def test_teacher_cross_entropy_is_least_where_the_student_matches_the_teacher():
    from l2l_ros.meta.losses import imitation_loss, teacher_cross_entropy

    teacher = torch.tensor([[0.7, 0.2, 0.1]])
    entropy = float(-(teacher * teacher.log()).sum())
    assert float(teacher_cross_entropy(teacher.log(), teacher)) == pytest.approx(entropy, abs=1e-6)
    for logits in (torch.zeros(1, 3), torch.tensor([[5.0, 0.0, 0.0]]), torch.tensor([[0.0, 1.0, 2.0]])):
        assert float(teacher_cross_entropy(logits, teacher)) > entropy + 1e-3  # the KL is > 0
    one_hot = torch.tensor([[0.0, 1.0, 0.0]])  # a set of one action: both losses are the cross-entropy
    logits = torch.tensor([[0.3, -1.0, 2.0]])
    assert float(imitation_loss(logits, one_hot, "soft")) == pytest.approx(
        float(imitation_loss(logits, one_hot, "set")), abs=1e-6)
    with pytest.raises(ValueError, match="unknown kind"):
        imitation_loss(logits, one_hot, "hard")


def test_soft_policy_teacher_targets_its_action_distribution():
    """`--teacher CHECKPOINT --teacher-soft`: the saved policy's softmax, step by step
    with its own recurrent state; without it, the greedy arm."""
    path = "models/bandit_k5_lstm/policy.json"
    soft, greedy = make_teacher(path, ENV, {}, soft=True), make_teacher(path, ENV, {})
    envs = MetaBanditVectorEnv(8, k=5, n=20)
    student = build_policy("lstm", 10, {"type": "discrete", "n": 5})
    roll = collect_tasks(envs, student, list(range(8)), teacher=soft)
    with torch.no_grad():
        logits, _, _ = soft.policy.forward_sequence(roll["obs"], soft.policy.initial_state(8))
    expected = torch.softmax(logits, -1)
    np.testing.assert_allclose(roll["targets"].numpy(), expected.numpy(), atol=1e-5)
    assert 0.2 < float(expected.max(-1).values.mean()) < 1.0  # a distribution, not one arm
    agree = roll["actions"] == expected.argmax(-1)
    assert torch.equal(roll["agree"], agree)  # agreement: the student pulled the teacher's likeliest arm
    greedy.reset(envs)
    first = greedy.target(roll["obs"][0].numpy())
    assert first.sum(1).tolist() == [1.0] * 8 and (first.argmax(1) == expected[0].argmax(-1).numpy()).all()
    with pytest.raises(ValueError, match="saved policy or gittins"):
        make_teacher("searcher", "l2l_ros/IMaze-v0", {}, soft=True)


def test_soft_distillation_brings_a_fresh_student_towards_the_bundled_lstm(tmp_path):
    """Plain imitation with soft targets, the student's own samples driving: the
    cross-entropy to the teacher falls and the student earns more than random."""
    teacher = "models/bandit_k5_lstm/policy.json"
    cfg = TrainConfig(env_id=ENV, env_kwargs={"k": 5, "n": 10}, policy="lsnn", num_envs=32, updates=60,
                      lr=3e-3, epochs=2, minibatches=2, seed=0, checkpoint_every=30,
                      teacher=teacher, teacher_soft=True)
    weights = train(cfg, tmp_path, command="pytest")
    lines = [json.loads(x) for x in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    first, last = (np.mean([x["imitation_loss"] for x in part]) for part in (lines[:10], lines[-10:]))
    assert last < first - 0.2, (first, last)
    policy, meta = load_checkpoint(weights)
    assert meta["train_config"]["teacher_soft"] is True
    # Which weights taught it, whatever the teacher's path holds later.
    assert meta["teacher_sha256"] == json.loads(Path(teacher).read_text())["weights_sha256"]
    results = evaluate(policy, ENV, {"k": 5, "n": 10}, tasks=1000, seed=10_000, deterministic=False, num_envs=100)
    mean = float(np.mean([r["return"] for r in results]))
    assert mean > 5.0 + 0.4, mean  # random: 5.0 (s.e. ~0.06); the teacher 6.6
    with pytest.raises(ValueError, match="needs teacher"):
        train(TrainConfig(env_id=ENV, env_kwargs={"k": 5, "n": 10}, num_envs=4, updates=1, teacher_soft=True),
              tmp_path / "refused")
