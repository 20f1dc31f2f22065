"""The I-maze's mirror image across the stem, and the teacher that plays it
(``encoding.mirror_imaze_sensors``, ``meta.imitation.MirroredPolicyTeacher``)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l2l_ros.meta.imitation import MirroredPolicyTeacher, PolicyTeacher, make_teacher
from l2l_ros.resources import share_path
from l2l_ros.tasks import IMAZE_ID
from l2l_ros.tasks.encoding import IMAZE_MIRRORED_ACTIONS, SCAN_BEAMS, encode_imaze, mirror_imaze_sensors
from l2l_ros.tasks.imaze import IMazeEnv
from l2l_ros.tasks.imaze_family import IMazeGeometry
from l2l_ros.tasks.imaze_vector import MetaIMazeVectorEnv

# The previous bundled network (teacher trained by plain PPO), which has the slow-alcove habit.
MODEL = str(share_path("models", "imaze_plain_ppo", "lsnn") / "policy.json")
MIRROR_GOAL = {0: 1, 1: 0, 2: 3, 3: 2}


def _encode_mirrored(env: IMazeEnv) -> np.ndarray:
    odometry, scan = env.sensed()
    mirrored, mirrored_scan = mirror_imaze_sensors(*odometry, scan)
    return encode_imaze(*mirrored, mirrored_scan)


@pytest.mark.parametrize("geometry", [None, IMazeGeometry(corridor_width=0.45, stem_half_length=0.8,
                                                          crossbar_half_length=0.5, alcove_depth=0.35)])
def test_the_mirror_of_what_the_robot_senses_is_what_its_mirror_image_senses(geometry):
    """Drive a robot and its mirror image (mirrored start heading, goal and turns) side by
    side, walls touched included: the mirror of one's sensors must be the other's, its
    position the other's mirrored, and a goal entry of one a goal entry of the other. If
    the scan's beams, the pose or the turns were mirrored wrongly, or the maze or the robot
    were not symmetric, this would fail."""
    rng = np.random.default_rng(3)
    for goal, heading in ((0, 0.7), (2, -2.0)):
        env, image = IMazeEnv(geometry=geometry), IMazeEnv(geometry=geometry)
        env.reset(seed=1, options={"goal": goal, "heading": heading})
        image_obs, _ = image.reset(seed=1, options={"goal": MIRROR_GOAL[goal], "heading": math.pi - heading})
        for t in range(150):
            np.testing.assert_allclose(_encode_mirrored(env), image_obs, atol=1e-5, err_msg=f"step {t}")
            a = 0 if t % 4 == 0 else int(rng.integers(3))
            _, _, _, _, info = env.step(a)
            image_obs, _, _, _, image_info = image.step(IMAZE_MIRRORED_ACTIONS[a])
            assert info["reached_goal"] == image_info["reached_goal"]
            x, y, _ = info["pose"]
            ix, iy, _ = image_info["pose"]
            assert (ix, iy) == pytest.approx((-x, y), abs=1e-6)
        env.close()
        image.close()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0.0, 4.0), min_size=SCAN_BEAMS, max_size=SCAN_BEAMS),
       st.floats(-2, 2), st.floats(-2, 2), st.floats(-math.pi, math.pi))
def test_mirroring_twice_gives_back_the_sensors(ranges, x, y, yaw):
    once, once_scan = mirror_imaze_sensors(x, y, yaw, 0.1, 0.5, np.array(ranges))
    odometry, scan = mirror_imaze_sensors(*once, once_scan)
    assert scan == pytest.approx(np.array(ranges))
    assert odometry[:2] == pytest.approx((x, y))
    assert (math.cos(odometry[2]), math.sin(odometry[2])) == pytest.approx((math.cos(yaw), math.sin(yaw)), abs=1e-9)
    assert odometry[3:] == pytest.approx((0.1, 0.5))


def _drive(teacher, goal: int, tasks: int = 6) -> tuple[list[int], list[int]]:
    """The teacher's greedy action drives ``tasks`` tasks with the goal in ``goal``;
    returns trial 1's steps per task and every later trial's steps."""
    envs = MetaIMazeVectorEnv(tasks)
    obs, _ = envs.reset(seed=[500 + i for i in range(tasks)], options={"goal": goal})
    teacher.reset(envs)
    start, trial = np.zeros(tasks, int), np.zeros(tasks, int)
    first, later = [0] * tasks, []
    done = np.zeros(tasks, bool)
    for step in range(1, 10_000):
        obs, _, term, trunc, info = envs.step(teacher.target(obs).argmax(1))
        for i in np.flatnonzero(~done & info["trial_end"]):
            if trial[i] == 0:
                first[i] = step - start[i]
            else:
                later.append(step - start[i])
            trial[i] += 1
            start[i] = step
        done |= term | trunc
        if done.all():
            break
    envs.close()
    return first, later


def test_the_mirror_teacher_returns_to_its_slow_alcove_as_to_its_fast_one():
    """The previous bundled network returns slowly to alcove 0 and fast to alcove 1 (about 90
    against 40 steps). Taught from the mirror image, the returns to alcove 0 are those to
    alcove 1; trial 1, where the goal is unknown, is the direct network's, step for step."""
    direct_first, direct_later = _drive(PolicyTeacher(MODEL), goal=0)
    mirror_first, mirror_later = _drive(MirroredPolicyTeacher(MODEL, [0, 2]), goal=0)
    assert mirror_first == direct_first
    assert len(direct_later) >= 6 and len(mirror_later) >= 6
    assert np.mean(mirror_later) < 0.6 * np.mean(direct_later), (np.mean(mirror_later), np.mean(direct_later))
    # A goal outside the mirror set is taught directly: the same drive as the plain teacher.
    assert _drive(MirroredPolicyTeacher(MODEL, [0, 2]), goal=1, tasks=3) == _drive(PolicyTeacher(MODEL), goal=1, tasks=3)


def test_mirror_goals_are_refused_where_they_mean_nothing():
    with pytest.raises(ValueError, match="mirror"):
        make_teacher("searcher", IMAZE_ID, {}, mirror_goals=(0,))
    with pytest.raises(ValueError, match="alcoves 0..3"):
        MirroredPolicyTeacher(MODEL, [4])
    arm = str(share_path("models", "arm_lstm") / "policy.json")
    with pytest.raises(ValueError, match="I-maze"):
        make_teacher(arm, "l2l_ros/Manipulator-v0", {}, mirror_goals=(0,))
