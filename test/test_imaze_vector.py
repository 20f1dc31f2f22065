"""The batched I-maze vector env against the sequential envs it replaces in training."""
import gymnasium as gym
import numpy as np
import pytest

from l2l_ros.meta.rollout import make_vector_env
from l2l_ros.tasks import IMAZE_ID
from l2l_ros.tasks.imaze import IMazeEnv
from l2l_ros.tasks.imaze_vector import MetaIMazeVectorEnv
from l2l_ros.tasks.meta_wrapper import MetaWrapper


@pytest.mark.parametrize("nthread", [1, 2])
def test_batched_physics_matches_sequential_envs_through_autoreset(nthread):
    n, task_steps = 3, 40
    batched = MetaIMazeVectorEnv(n, nthread=nthread, task_steps=task_steps)
    ref = gym.vector.SyncVectorEnv([lambda: MetaWrapper(IMazeEnv(task_steps=task_steps)) for _ in range(n)])
    o1, i1 = batched.reset(seed=[5, 6, 7])
    o2, i2 = ref.reset(seed=[5, 6, 7])
    assert np.array_equal(o1, o2) and np.array_equal(i1["goal"], i2["goal"])
    rng = np.random.default_rng(0)
    collisions = truncations = 0
    for t in range(2 * task_steps + 5):  # two tasks per env and an autoreset step
        a = rng.integers(3, size=n)
        s1, s2 = batched.step(a), ref.step(a)
        # Cold solver start per control period: equal to the solver tolerance.
        np.testing.assert_allclose(s1[0], s2[0], atol=1e-4, err_msg=f"step {t}")
        np.testing.assert_allclose(s1[1], s2[1], atol=1e-12, err_msg=f"step {t}")
        for k in (2, 3):
            assert np.array_equal(s1[k], s2[k]), (t, k)
        for key in ("collided", "trial_end", "goal"):
            if key in s2[4]:
                assert np.array_equal(s1[4][key], s2[4][key]), (t, key)
        collisions += int(np.sum(s2[4].get("collided", 0)))
        truncations += int(np.sum(s2[3]))
    assert collisions > 0 and truncations == 2 * n  # the test saw walls and resets
    batched.close()
    ref.close()


def test_trainer_uses_the_batched_env_for_the_imaze():
    envs = make_vector_env(IMAZE_ID, {"task_steps": 5}, 2)
    assert isinstance(envs, MetaIMazeVectorEnv)
    envs.close()


def test_batched_env_rejects_bad_actions_and_seed_counts():
    envs = MetaIMazeVectorEnv(2, nthread=1, task_steps=5)
    envs.reset(seed=0)
    with pytest.raises(ValueError, match="out of range"):
        envs.step(np.array([0, 7]))
    with pytest.raises(ValueError, match="need 2 seeds"):
        envs.reset(seed=[1, 2, 3])
    envs.close()
