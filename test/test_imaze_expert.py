"""The scripted I-maze searcher (the imitation teacher) plays what the oracle figures assume."""
import math

import numpy as np

from l2l_ros.tasks.imaze import IMazeEnv
from l2l_ros.tasks.imaze_expert import FORWARD, LEFT, RIGHT, IMazeExpert


def _play(env: IMazeEnv, expert: IMazeExpert, seed: int, goal: int | None = None, heading: float | None = None):
    """Actions and trial lengths of one task played by the expert."""
    options = {k: v for k, v in (("goal", goal), ("heading", heading)) if v is not None}
    env.reset(seed=seed, options=options)
    expert.reset()
    actions, trials, collided, since = [], [], 0, 0
    for _ in range(env.task_steps):
        a = expert.action(*env.sim.pose())
        actions.append(a)
        _, _, _, truncated, info = env.step(a)
        collided += info["collided"]
        since += 1
        if info["trial_end"]:
            trials.append(since)
            since = 0
            expert.goal_found(info["goal"])
        if truncated:
            break
    return actions, trials, collided


def test_expert_searches_then_goes_straight_to_the_goal():
    env = IMazeEnv()
    expert = IMazeExpert(env.sim.geometry)
    path = env.sim.route_steps(0)
    first, later = [], []
    for seed in range(8):
        _, trials, collided = _play(env, expert, 100 + seed)
        assert collided == 0 and trials, (seed, trials)  # a goal searched last leaves no time for trial 2
        first.append(trials[0])
        later += trials[1:]
    # The oracle's search (157 steps) assumes no corner cutting; the expert must be about as good.
    assert np.mean(first) <= 1.1 * env.sim.route_search_steps(), first
    assert max(later) <= 1.2 * path and np.mean(later) <= 1.05 * path, later


def test_expert_does_not_know_the_goal_before_finding_it():
    """Same start, four goals: the search is the same path until the goal is reached."""
    env = IMazeEnv()
    expert = IMazeExpert(env.sim.geometry)
    runs = [_play(env, expert, 5, goal=g, heading=0.3) for g in range(4)]
    firsts = sorted(r[1][0] for r in runs)
    assert len(set(firsts)) == 4  # the alcoves are found one after another
    shortest = firsts[0]
    for actions, _, _ in runs:
        assert actions[:shortest] == runs[0][0][:shortest]
    # Facing a little north of east, the northern crossbar is the smaller turn: both of
    # its alcoves come before the southern ones (the oracle's order).
    order = list(np.argsort([r[1][0] for r in runs]))
    assert set(order[:2]) == {0, 1} and set(order[2:]) == {2, 3}, order


def test_expert_steers_back_to_the_centreline():
    expert = IMazeExpert()
    # In the stem, off-centre to the right and facing north: it turns left, back to x = 0.
    assert expert.action(0.15, 0.0, math.pi / 2) == LEFT
    assert expert.action(-0.15, 0.0, math.pi / 2) == RIGHT
    assert expert.action(0.0, 0.0, math.pi / 2) == FORWARD


def test_searcher_agent_plays_from_observations_alone():
    """Pose from the encoded odometry, goal from the reward: the evaluation's 'searcher' row."""
    from l2l_ros.evaluation import SearcherAgent, run_imaze_tasks

    records = run_imaze_tasks(SearcherAgent(), 4, seed=3)
    first = [r for r in records if r["trial"] == 0]
    later = [r for r in records if r["trial"] > 0 and r["success"]]
    assert all(r["success"] for r in first) and len(later) >= 4
    assert max(r["steps"] for r in later) <= 1.2 * later[0]["route_steps"]


def test_eval_imaze_prints_the_searcher_beside_the_models(capsys):
    import json

    from l2l_ros.cli import main

    assert main(["eval", "imaze", "--tasks", "1", "--seed", "4", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert list(doc["policies"]) == ["spiking", "lstm", "lstm_imitation", "searcher", "random"]
    searcher = doc["policies"]["searcher"]
    assert searcher["goals_per_task"] >= 1 and searcher["trial1_mean_steps"] is not None


def test_eval_imaze_names_a_non_spiking_checkpoint_for_what_it_is(capsys):
    import json

    from l2l_ros.cli import main
    from l2l_ros.resources import share_path

    lstm = str(share_path("models", "imaze_lstm_imitation", "policy.json"))
    assert main(["eval", "imaze", "--checkpoint", lstm, "--tasks", "1", "--seed", "4", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert list(doc["policies"]) == ["checkpoint", "lstm", "lstm_imitation", "searcher", "random"]
    assert doc["policies"]["checkpoint"] == doc["policies"]["lstm_imitation"]  # the same model, greedy


def test_lenient_actions_keep_the_searchers_action_and_never_turn_away():
    expert = IMazeExpert()
    rng = np.random.default_rng(3)
    sizes = set()
    for _ in range(2000):
        x, y = rng.uniform(-0.7, 0.7), rng.uniform(-0.9, 0.9)
        yaw = rng.uniform(-math.pi, math.pi)
        expert.reset()
        ok = expert.actions(x, y, yaw)
        err = expert.heading_error(x, y, yaw)
        assert expert.action(x, y, yaw) in ok
        assert (LEFT if err < 0 else RIGHT) not in ok  # the turn away from the route
        assert (FORWARD in ok) == (abs(err) <= 0.5)
        sizes.add(len(ok))
    assert sizes == {1, 2}  # the band between 0.1 and 0.5 rad offers forward and the turn


def test_teacher_nll_is_the_cross_entropy_for_one_action_and_forgives_within_a_set():
    import torch

    from l2l_ros.meta.losses import teacher_nll

    logits = torch.tensor([[2.0, 0.0, -1.0]])
    one = torch.tensor([[0.0, 1.0, 0.0]])
    assert torch.allclose(teacher_nll(logits, one), -torch.log_softmax(logits, -1)[:, 1])
    both = torch.tensor([[0.5, 0.5, 0.0]])  # forward or left: the policy's mass on either counts
    p = torch.softmax(logits, -1)[0]
    assert torch.allclose(teacher_nll(logits, both), -torch.log(p[0] + p[1]))
    assert float(teacher_nll(torch.tensor([[9.0, -9.0, -9.0]]), both)) < 1e-3  # all on one member: ~0 loss
