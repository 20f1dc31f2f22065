"""Potential-based shaping of PPO's I-maze rewards (TrainConfig.potential_shaping)."""
import numpy as np
import pytest
import torch

from l2l_ros.meta.config import TrainConfig
from l2l_ros.meta.rollout import IMazeStepsToGoal, collect_tasks, potential_shaping
from l2l_ros.meta.train import train
from l2l_ros.policy_base import action_spec_from_space
from l2l_ros.snn.lsnn import LSNNPolicy
from l2l_ros.tasks.imaze_oracle import oracle_for
from l2l_ros.tasks.imaze_vector import MetaIMazeVectorEnv


@pytest.mark.parametrize("seed", range(5))
def test_shaping_telescopes_within_each_trial_whatever_the_path(seed):
    """Ng et al.'s invariance, each trial an episode: discounted over a task, the shaping is
    c * d_0 plus c * gamma**(t+1) * d_{t+1} for each goal entry at a step t that another
    trial follows (a bonus on the goal's reward, from the next trial's start), so within a
    trial no action's ranking moves (tasks of different lengths in one batch)."""
    rng = np.random.default_rng(seed)
    T, B, gamma, coef = 30, 4, 0.97, 0.02
    lengths = rng.integers(1, T + 1, B)
    valid = torch.as_tensor(np.arange(T)[:, None] < lengths[None, :])
    potentials = torch.as_tensor(rng.integers(0, 80, (T + 1, B)), dtype=torch.float32)
    entered = torch.as_tensor(rng.random((T, B)) < 0.1) & valid
    shaping = potential_shaping(potentials, valid, coef, gamma, entered)
    discount = gamma ** torch.arange(T + 1, dtype=torch.float64)[:, None]
    total = (shaping.double() * discount[:-1]).sum(0)
    followed = entered & torch.cat([valid[1:], torch.zeros_like(valid[:1])])
    bonus = (followed.double() * discount[1:] * potentials[1:].double()).sum(0)
    torch.testing.assert_close(total, coef * (potentials[0].double() + bonus), rtol=0, atol=1e-5)
    assert torch.all(shaping[~valid] == 0)
    # the step that enters the goal is paid its whole distance, not charged the next start's
    torch.testing.assert_close(shaping[entered], coef * potentials[:-1][entered])


def test_the_potential_is_the_oracles_steps_to_the_goal_and_rollouts_record_it():
    envs = MetaIMazeVectorEnv(2, nthread=1, task_steps=40)
    try:
        torch.manual_seed(0)
        policy = LSNNPolicy(envs.single_observation_space.shape[0],
                            action_spec_from_space(envs.single_action_space), {"n_lif": 8, "n_alif": 8})
        roll = collect_tasks(envs, policy, [3, 4], potential=IMazeStepsToGoal())
        d = roll["potentials"]
        assert d.shape == (roll["rewards"].shape[0] + 1, 2)
        assert roll["goal_entered"].shape == roll["rewards"].shape
        assert not bool(roll["goal_entered"].any()), "40 random steps reach no goal alcove"
        sims = envs.sims
        oracles = [oracle_for(s.geometry) for s in sims]
        assert d[-1].tolist() == [o.nearest_steps_to_goal(s.goal, *s.pose()) for o, s in zip(oracles, sims)]
        assert bool((d > 0).all()), "40 steps of a random policy do not reach a goal alcove, and a pose " \
            "against a wall must not look like one (the bound there is 0)"
        assert bool((d[1:] - d[:-1]).abs().max() > 0), "the robot moved, so its distance changed"
    finally:
        envs.close()


def test_potential_shaping_is_refused_where_it_cannot_apply(tmp_path):
    with pytest.raises(ValueError, match="potential_shaping must be"):
        TrainConfig(potential_shaping=-1.0).validate()
    with pytest.raises(ValueError, match="plain imitation"):
        TrainConfig(potential_shaping=0.02, teacher="imaze-expert").validate()
    bandit = TrainConfig(env_id="l2l_ros/Bandit-v0", env_kwargs={"k": 2, "n": 5}, num_envs=2, updates=1,
                         potential_shaping=0.02)
    with pytest.raises(ValueError, match="I-maze's oracle"):
        train(bandit, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_nearest_pose_search_stays_inside_the_lattice():
    """A free pose keeps its bound; a pose far outside the maze has no nearby free pose
    (NaN, so the rollout holds the last potential) instead of a value from a wrapped window."""
    from l2l_ros.tasks.imaze_family import IMazeGeometry

    oracle = oracle_for(IMazeGeometry())
    assert oracle.nearest_steps_to_goal(1, 0.0, 0.0, 0.3) == oracle.steps_to_goal(1, 0.0, 0.0, 0.3) > 0
    for goal, x, y in ((0, -1.1, 0.0), (0, 0.0, -1.4), (1, 0.0, -1.4), (2, 1.2, 1.4), (0, -5.0, -5.0)):
        assert np.isnan(oracle.nearest_steps_to_goal(goal, x, y, 0.0))  # a few cells to metres outside


def test_the_default_maze_oracle_is_built_once_across_rollouts():
    """Each rollout makes a new potential; on the default maze it takes oracle_for's cached
    oracle instead of building the maze's lattice again (0.3 s per update)."""
    envs = MetaIMazeVectorEnv(2, nthread=1, task_steps=40)
    try:
        envs.reset(seed=[5, 6])
        first, second = IMazeStepsToGoal(), IMazeStepsToGoal()
        first(envs)
        second(envs)
        geometry = envs.sims[0].geometry
        assert first._oracles[geometry] is second._oracles[geometry] is oracle_for(geometry)
    finally:
        envs.close()


def test_the_potential_keeps_one_oracle_per_maze_of_a_family_batch():
    """With a task family each task has its own maze: the potential builds each maze's
    oracle once per rollout (oracle_for's small cache would rebuild them every step)."""
    envs = MetaIMazeVectorEnv(3, nthread=1, task_steps=40, family="sim2real")
    try:
        envs.reset(seed=[5, 6, 7])
        potential = IMazeStepsToGoal()
        first = potential(envs)
        kept = dict(potential._oracles)
        assert len(kept) == 3, "three tasks, three mazes"
        envs.step(np.zeros(3, dtype=np.int64))
        potential(envs)
        assert all(potential._oracles[g] is o for g, o in kept.items()), "no oracle is rebuilt"
        expected = [oracle_for(s.geometry).nearest_steps_to_goal(s.goal, *s.pose()) for s in envs.sims]
        np.testing.assert_array_equal(potential(envs), expected)
        assert np.all(np.isfinite(first)) and np.all(first > 0)
    finally:
        envs.close()
