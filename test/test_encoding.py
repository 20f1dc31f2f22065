"""The shared encoder/decoder: the one place sensor data becomes network input and back."""
import math

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from l2l_ros.tasks.encoding import (ARM_MAX_JOINT_VELOCITY, DRIVE_LIMITS, IMAZE_ACTIONS, IMAZE_OBS_DIM,
                                    SCAN_BEAMS, SCAN_RANGE_MAX, clamp_twist, encode_imaze,
                                    encode_manipulator, imaze_action_to_twist,
                                    manipulator_action_to_command, pool_scan)
from l2l_ros.tasks.meta_wrapper import meta_features

any_float = st.floats(allow_nan=True, allow_infinity=True, width=64)


def test_pool_scan_takes_the_nearest_return_per_sector_and_treats_no_return_as_far():
    ranges = np.full(SCAN_BEAMS, np.inf)
    ranges[0] = 0.5
    ranges[SCAN_BEAMS - 1] = np.nan
    pooled = pool_scan(ranges)
    assert pooled[0] == pytest.approx(0.5)
    assert pooled[-1] == pytest.approx(SCAN_RANGE_MAX)
    assert (pooled[1:] == SCAN_RANGE_MAX).all()


def test_pool_scan_rejects_a_scan_of_the_wrong_size():
    with pytest.raises(ValueError, match="beams"):
        pool_scan(np.ones(SCAN_BEAMS + 1))


def test_encode_imaze_shape_and_refuses_non_finite_odometry():
    obs = encode_imaze(0.3, -0.2, math.pi / 2, 0.1, 0.5, np.ones(SCAN_BEAMS))
    assert obs.shape == (IMAZE_OBS_DIM,) and obs.dtype == np.float32
    assert obs[2] == pytest.approx(0.0, abs=1e-6) and obs[3] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="non-finite"):
        encode_imaze(float("nan"), 0.0, 0.0, 0.0, 0.0, np.ones(SCAN_BEAMS))


@given(any_float, any_float)
def test_clamp_twist_is_always_finite_and_within_limits(v, w):
    cv, cw = clamp_twist(v, w)
    assert math.isfinite(cv) and math.isfinite(cw)
    assert abs(cv) <= DRIVE_LIMITS.max_linear and abs(cw) <= DRIVE_LIMITS.max_angular


def test_every_discrete_action_is_within_the_drive_limits():
    for a in range(len(IMAZE_ACTIONS)):
        assert clamp_twist(*imaze_action_to_twist(a)) == imaze_action_to_twist(a)
    with pytest.raises(ValueError):
        imaze_action_to_twist(len(IMAZE_ACTIONS))


@given(st.lists(any_float, min_size=3, max_size=3))
def test_arm_command_is_always_finite_and_within_limits(action):
    cmd = manipulator_action_to_command(np.array(action))
    assert np.isfinite(cmd).all() and (np.abs(cmd) <= ARM_MAX_JOINT_VELOCITY).all()


def test_encode_manipulator_refuses_wrong_sizes_and_nan():
    with pytest.raises(ValueError):
        encode_manipulator([0.0, 0.0], [0.0] * 3, [0.0] * 3)
    with pytest.raises(ValueError, match="non-finite"):
        encode_manipulator([0.0, float("nan"), 0.0], [0.0] * 3, [0.0] * 3)


def test_meta_features_one_hot_reward_and_trial_flag():
    space = gym.spaces.Discrete(3)
    f = meta_features(2, 1.0, True, space)
    np.testing.assert_array_equal(f, [0, 0, 1, 1.0, 1.0])
    np.testing.assert_array_equal(meta_features(None, 0.0, False, space), [0, 0, 0, 0, 0])
    box = gym.spaces.Box(-1, 1, (2,))
    np.testing.assert_allclose(meta_features(np.array([3.0, -0.5]), float("nan"), False, box),
                               [1.0, -0.5, 0.0, 0.0])


@given(st.floats(min_value=0.0, max_value=1e6))
def test_stamps_round_trip_and_never_run_backwards(seconds):
    from l2l_ros.nodes.common import from_stamp, to_stamp

    stamp = to_stamp(seconds)
    assert 0 <= stamp.nanosec < 1_000_000_000
    assert from_stamp(stamp) == pytest.approx(seconds, abs=1e-9)
    later = to_stamp(seconds + 0.2)
    assert (later.sec, later.nanosec) > (stamp.sec, stamp.nanosec)
