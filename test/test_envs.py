"""Behaviour of the I-maze and manipulator envs on real MuJoCo physics."""
import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import l2l_ros.tasks  # noqa: F401  (registers the ids)
from l2l_ros.tasks.encoding import (DRIVE_LIMITS, IMAZE_OBS_DIM, SCAN_BEAMS, SCAN_RANGE_MAX,
                                    SCAN_RANGE_MIN, encode_imaze)
from l2l_ros.tasks.imaze import IMazeEnv, IMazeGeometry, IMazeSim
from l2l_ros.tasks.manipulator import ArmTask, ManipulatorEnv
from l2l_ros.tasks.meta_wrapper import MetaWrapper


@pytest.fixture(scope="module")
def imaze():
    return IMazeEnv()


@pytest.fixture(scope="module")
def arm_env():
    return ManipulatorEnv()


# --- env checker ---------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("env_id", ["l2l_ros/IMaze-v0", "l2l_ros/Manipulator-v0"])
def test_check_env_plain_and_meta_wrapped(env_id):
    env = gym.make(env_id).unwrapped
    check_env(env, skip_render_check=True)
    # A directly built env (no registry spec): MetaWrapper is not re-creatable from a spec.
    cls = IMazeEnv if "IMaze" in env_id else ManipulatorEnv
    check_env(MetaWrapper(cls()), skip_render_check=True)
    assert env.observation_space.shape[0] == (IMAZE_OBS_DIM if "IMaze" in env_id else 12)


# --- I-maze --------------------------------------------------------------------------

def _drive_to_goal(env, max_steps=400):
    """Waypoint follower on odometry; returns (steps, last step tuple)."""
    g = env.unwrapped.sim.geometry
    sx, sy = IMazeGeometry.goal_signs(env.unwrapped.sim.goal)
    s, h, w, d = g.stem_half_length, g.crossbar_half_length, g.corridor_width, g.alcove_depth
    waypoints = [(0.0, sy * s), (sx * h, sy * s), (sx * h, sy * (s + w / 2 + d / 2))]
    k = 0
    for step in range(1, max_steps + 1):
        x, y, yaw, _, _ = env.unwrapped.sim.odometry()
        while k < len(waypoints) - 1 and math.hypot(waypoints[k][0] - x, waypoints[k][1] - y) < 0.06:
            k += 1
        tx, ty = waypoints[k]
        err = (math.atan2(ty - y, tx - x) - yaw + math.pi) % (2 * math.pi) - math.pi
        action = 0 if abs(err) < 0.2 else (1 if err > 0 else 2)
        out = env.step(action)
        if out[4]["trial_end"]:
            return step, out
    raise AssertionError("scripted controller never reached the goal")


@pytest.mark.parametrize("goal", [0, 2])
def test_reaching_goal_rewards_ends_trial_and_returns_to_centre(imaze, goal):
    obs, info = imaze.reset(seed=3, options={"goal": goal})
    assert info["goal"] == goal and info["trial"] == 0
    sim = imaze.sim
    for trial in range(2):
        steps, (obs, reward, term, trunc, info) = _drive_to_goal(imaze)
        assert 1.0 - imaze.collision_penalty <= reward <= 1.0 + imaze.explore_bonus
        assert info["reached_goal"] and info["trial_end"] and info["trial"] == trial
        assert not term and not trunc
        x, y, _ = info["pose"]
        assert sim.geometry.in_goal(goal, x, y)  # the step ended in the alcove...
        assert math.hypot(*sim.pose()[:2]) < 1e-6  # ...and the robot is back at the centre
        assert info["goal"] == goal and sim.goal == goal
        # A scripted path is within a small factor of the oracle path.
        assert steps < 2.5 * sim.route_steps(goal)
    obs, reward, *_, info = imaze.step(0)
    assert info["trial"] == 2 and not info["trial_end"] and reward <= imaze.explore_bonus


def test_exploration_bonus_pays_once_per_cell_per_task(imaze):
    imaze.reset(seed=5, options={"goal": 0, "heading": math.pi / 2})
    rewards = [imaze.step(0)[1] for _ in range(12)]  # up the stem: new cells
    assert sum(r > 0 for r in rewards) >= 2
    back = [imaze.step(1)[1] for _ in range(10)]  # turning about on the spot: known cells
    assert sum(r > 0 for r in back) <= 1
    imaze.reset(seed=5, options={"goal": 0, "heading": math.pi / 2})
    again = [imaze.step(0)[1] for _ in range(12)]
    assert again == pytest.approx(rewards, abs=1e-9)  # a new task forgets the visited cells


def _follow(env, waypoints, max_steps=200):
    """Drive through waypoints on odometry; the rewards of every step, up to a trial's end."""
    rewards = []
    for tx, ty in waypoints:
        for _ in range(max_steps):
            x, y, yaw, _, _ = env.sim.odometry()
            if math.hypot(tx - x, ty - y) < 0.06:
                break
            err = (math.atan2(ty - y, tx - x) - yaw + math.pi) % (2 * math.pi) - math.pi
            _, reward, _, _, info = env.step(0 if abs(err) < 0.2 else (1 if err > 0 else 2))
            rewards.append(reward)
            if info["trial_end"]:
                return rewards
        else:
            raise AssertionError(f"never reached waypoint {(tx, ty)}")
    return rewards


def test_revisit_penalty_charges_second_entries_of_searched_alcoves_only():
    env = IMazeEnv(revisit_penalty=0.5, explore_bonus=0.0, collision_penalty=0.0)
    g = env.sim.geometry
    s, h, inside = g.stem_half_length, g.crossbar_half_length, g.stem_half_length + g.corridor_width / 2 + 0.1
    env.reset(seed=5, options={"goal": 2, "heading": math.pi / 2})  # alcove 0 (north-east) is not the goal
    rewards = _follow(env, [(0.0, s), (h, s), (h, inside)])
    assert min(rewards) == 0.0  # the first entry is a search, not a revisit
    rewards = _follow(env, [(h, s)])  # out again...
    assert min(rewards) == 0.0
    rewards = _follow(env, [(h, inside)])  # ...and back in: charged once
    assert sorted(rewards)[:2] == [-0.5, 0.0]
    env.reset(seed=5, options={"goal": 0, "heading": math.pi / 2})  # a new task, alcove 0 is the goal
    rewards = _follow(env, [(0.0, s), (h, s), (h, inside)])
    assert min(rewards) == 0.0 and rewards[-1] == 1.0  # the goal is never charged
    with pytest.raises(ValueError, match="revisit_penalty"):
        IMazeEnv(revisit_penalty=float("nan"))


def test_goal_fixed_within_task_and_varies_across_tasks(imaze):
    goals = set()
    for seed in range(8):
        _, info = imaze.reset(seed=seed)
        goals.add(info["goal"])
        for _ in range(15):
            *_, info = imaze.step(imaze.action_space.sample())
            assert info["goal"] == imaze.sim.goal
        assert info["goal"] == imaze.sim.goal
    assert len(goals) >= 3
    # Same seed, same goal.
    assert imaze.reset(seed=5)[1]["goal"] == imaze.reset(seed=5)[1]["goal"]


def test_goal_weights_curriculum_draws_only_weighted_alcoves():
    env = IMazeEnv(goal_weights=(0, 0, 1, 3))
    goals = [env.reset(seed=s)[1]["goal"] for s in range(200)]
    assert set(goals) == {2, 3}
    assert 0.6 < goals.count(3) / len(goals) < 0.9  # 3:1 odds -> 0.75
    # The default family is unchanged by the option's existence: uniform, same tasks per seed.
    plain = IMazeEnv()
    assert [plain.reset(seed=s)[1]["goal"] for s in range(20)] == \
        [int(np.random.default_rng(s).integers(4)) for s in range(20)]


@pytest.mark.parametrize("weights", [(1, 1, 1), (0, 0, 0, 0), (1, -1, 1, 1), (1, float("nan"), 1, 1)])
def test_goal_weights_rejects_bad_weights(weights):
    with pytest.raises(ValueError, match="goal_weights"):
        IMazeEnv(goal_weights=weights)


def test_random_start_curriculum_starts_trials_on_the_centrelines():
    env = IMazeEnv(random_start=1.0)
    g = env.sim.geometry

    def on_centreline(x: float, y: float) -> bool:
        on_stem = abs(x) < 1e-9 and abs(y) <= g.stem_half_length + 1e-9
        on_bar = abs(abs(y) - g.stem_half_length) < 1e-9 and abs(x) <= g.crossbar_half_length + 1e-9
        return on_stem or on_bar

    starts = []
    for s in range(60):
        env.reset(seed=s)
        starts.append(env.sim.pose()[:2])
    for x, y in starts:
        assert on_centreline(x, y), (x, y)
    assert min(y for _, y in starts) < -0.5 and max(y for _, y in starts) > 0.5
    assert len({(round(x, 3), round(y, 3)) for x, y in starts}) == len(starts)
    # A reached goal restarts the trial on the centrelines too, away from the centre.
    env.reset(seed=0, options={"goal": 0})
    env.sim.data.qpos[env.sim.drive.free_qpos:env.sim.drive.free_qpos + 2] = (0.6, 1.0)
    _, reward, _, _, info = env.step(1)
    assert info["trial_end"] and reward > 0.9
    x, y = env.sim.pose()[:2]
    assert on_centreline(x, y) and math.hypot(x, y) > 1e-6, (x, y)
    with pytest.raises(ValueError, match="random_start"):
        IMazeEnv(random_start=1.5)
    with pytest.raises(ValueError, match="free space"):
        env.sim.restart_trial(np.random.default_rng(0), position=(0.5, 0.0))


def test_forward_action_moves_robot_along_heading(imaze):
    imaze.reset(seed=0, options={"goal": 0, "heading": math.pi / 2})
    x0, y0, yaw0, _, _ = imaze.sim.odometry()
    assert yaw0 == pytest.approx(math.pi / 2, abs=1e-6)
    for _ in range(5):
        obs, reward, *_ , info = imaze.step(0)
    x, y, yaw, v, w = imaze.sim.odometry()
    assert y - y0 > 0.15  # 5 x 0.2 s at 0.22 m/s is 0.22 m; allow spin-up
    assert abs(x - x0) < 0.01 and abs(yaw - yaw0) < 0.05
    assert v == pytest.approx(DRIVE_LIMITS.max_linear, rel=0.05)
    assert obs[1] == pytest.approx(y, abs=1e-6) and obs[4] == pytest.approx(1.0, abs=0.05)
    assert not info["collided"] and reward == 0.0


def test_turn_actions_turn_the_robot(imaze):
    imaze.reset(seed=0, options={"goal": 0, "heading": 0.0})
    for _ in range(3):
        imaze.step(1)
    yaw_left = imaze.sim.odometry()[2]
    assert yaw_left == pytest.approx(3 * 0.2 * 1.5, abs=0.25)
    for _ in range(6):
        imaze.step(2)
    assert imaze.sim.odometry()[2] < yaw_left - 1.2


def test_scan_finite_near_walls_and_changes_with_motion(imaze):
    imaze.reset(seed=0, options={"goal": 0, "heading": math.pi / 2})
    sim = imaze.sim
    r0 = sim.scan()
    assert r0.shape == (SCAN_BEAMS,)
    assert np.isfinite(r0).all()  # enclosed maze: every beam hits a wall
    assert (r0 >= SCAN_RANGE_MIN).all() and (r0 <= SCAN_RANGE_MAX).all()
    # Beam 9 (90 deg CCW of the robot's +x) looks at the stem wall at x = -w/2.
    w = sim.geometry.corridor_width
    assert r0[9] == pytest.approx(w / 2, abs=0.01)
    assert r0[27] == pytest.approx(w / 2, abs=0.01)
    for _ in range(5):
        imaze.step(0)
    r1 = sim.scan()
    assert r1[0] < r0[0] - 0.15  # closer to the wall ahead
    assert np.abs(r1 - r0).max() > 0.15
    obs = encode_imaze(*sim.odometry(), r1)
    np.testing.assert_array_equal(obs, imaze._obs())


def test_collision_with_wall_is_penalised(imaze):
    imaze.reset(seed=0, options={"goal": 0, "heading": 0.0})  # facing the stem wall at 0.25 m
    collided = []
    rewards = []
    for _ in range(10):
        _, r, *_, info = imaze.step(0)
        collided.append(info["collided"])
        rewards.append(r)
    assert any(collided)
    assert min(rewards) == pytest.approx(-imaze.collision_penalty)
    x = imaze.sim.odometry()[0]
    assert x < imaze.sim.geometry.corridor_width / 2  # the wall stopped it


def test_clamped_and_non_finite_commands():
    sim = IMazeSim()
    rng = np.random.default_rng(0)
    sim.new_task(1, rng, heading=math.pi / 2)
    for _ in range(3):
        sim.step(float("nan"), float("inf"))
    x, y, yaw, v, w = sim.odometry()
    assert abs(x) < 1e-3 and abs(y) < 1e-3 and abs(v) < 1e-3 and abs(w) < 1e-3
    assert yaw == pytest.approx(math.pi / 2, abs=1e-3)
    t0 = sim.time
    for _ in range(4):
        sim.step(10.0, 0.0)  # far over the limit
    assert sim.time == pytest.approx(t0 + 4 * sim.control_period)
    x, y, yaw, v, w = sim.odometry()
    assert v <= DRIVE_LIMITS.max_linear * 1.03
    assert y <= 4 * 0.2 * DRIVE_LIMITS.max_linear * 1.03
    sim.new_task(1, rng, heading=0.0)
    for _ in range(3):
        sim.step(0.0, 50.0)
    assert abs(sim.odometry()[4]) <= DRIVE_LIMITS.max_angular * 1.05


def test_restart_trial_keeps_goal_and_recentres():
    sim = IMazeSim()
    rng = np.random.default_rng(1)
    sim.new_task(3, rng)
    for _ in range(5):
        sim.step(0.22, 0.5)
    assert math.hypot(*sim.odometry()[:2]) > 0.05
    sim.restart_trial(rng)
    assert sim.goal == 3 and sim.trial == 1
    assert math.hypot(*sim.odometry()[:2]) < 1e-9


def test_oracle_figures():
    sim = IMazeSim()
    path = [sim.route_steps(g) for g in range(4)]
    search = sim.route_search_steps()
    assert all(p > 0 for p in path) and search > 0
    assert max(path) < search
    # The search visits at least one alcove: never cheaper than a direct path.
    assert search >= min(path) - 1
    # A bigger maze costs more.
    big = IMazeSim(IMazeGeometry(stem_half_length=1.0, crossbar_half_length=1.0))
    assert big.route_steps(0) > path[0] and big.route_search_steps() > search


def test_truncation_at_task_steps():
    env = IMazeEnv(task_steps=5)
    env.reset(seed=0)
    flags = [env.step(0)[3] for _ in range(5)]
    assert flags == [False] * 4 + [True]


# --- manipulator ---------------------------------------------------------------------

def _numeric_jacobian(sim, q, eps=1e-5):
    p0 = sim.forward_kinematics(q)
    jac = np.zeros((3, 3))
    for i in range(3):
        dq = q.copy()
        dq[i] += eps
        jac[:, i] = (sim.forward_kinematics(dq) - p0) / eps
    return jac


def test_manipulator_reach_gives_bonus_and_new_target(arm_env):
    obs, info = arm_env.reset(seed=0, options={"task": ArmTask.nominal()})
    sim = arm_env.sim
    first_target = info["target"].copy()
    reached = None
    for step in range(200):
        q, _ = sim.joint_state(noisy=False)
        err = sim.target - sim.ee_position()
        qd = np.linalg.pinv(_numeric_jacobian(sim, q)) @ (4.0 * err)
        obs, reward, term, trunc, info = arm_env.step(np.clip(qd / 1.5, -1, 1))
        if info["trial_end"]:
            reached = step
            break
    assert reached is not None, "Jacobian controller never reached the target"
    assert reward > 0.5 and info["reached_goal"] and info["trial"] == 0
    assert not np.allclose(sim.target, first_target)
    assert sim.trial == 1


def test_manipulator_latency_and_dynamics_vary(arm_env):
    _, info = arm_env.reset(seed=1, options={"task": ArmTask(0.0, (0.1, 0.1, 0.1), 1.0, 2, 0.0, 0.0)})
    sim = arm_env.sim
    q0, _ = sim.joint_state(noisy=False)
    arm_env.step(np.array([1.0, 0.0, 0.0]))
    arm_env.step(np.array([1.0, 0.0, 0.0]))
    q2, _ = sim.joint_state(noisy=False)
    assert abs(q2[0] - q0[0]) < 1e-3  # command not applied yet
    arm_env.step(np.array([1.0, 0.0, 0.0]))
    arm_env.step(np.array([1.0, 0.0, 0.0]))
    q4, qd4 = sim.joint_state(noisy=False)
    assert q4[0] - q0[0] > 0.02 and qd4[0] > 0.5
    tasks = {arm_env.reset(seed=s)[1]["task"] for s in range(5)}
    assert len(tasks) == 5
    targets = [tuple(arm_env.reset(seed=s)[1]["target"]) for s in range(5)]
    assert len(set(targets)) == 5


def test_manipulator_target_fixed_within_trial_and_nonfinite_action_holds(arm_env):
    _, info = arm_env.reset(seed=2, options={"task": ArmTask.nominal()})
    target = info["target"].copy()
    q0, _ = arm_env.sim.joint_state(noisy=False)
    for _ in range(10):
        obs, r, *_, info = arm_env.step(np.array([np.nan, np.inf, -np.inf]))
        assert not info["trial_end"]
        np.testing.assert_array_equal(info["target"], target)
        assert r == pytest.approx(-info["distance"])
    q1, _ = arm_env.sim.joint_state(noisy=False)
    np.testing.assert_allclose(q1, q0, atol=1e-2)  # only the 50 g flange sags
    np.testing.assert_allclose(obs[-3:], target, rtol=1e-6)
