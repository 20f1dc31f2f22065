"""Offscreen rendering and videos (MuJoCo's renderer through EGL; no display, no GPU)."""
from __future__ import annotations

import json

import imageio.v2 as imageio
import numpy as np
import pytest

from l2l_ros.evaluation import RandomAgent, RandomArmAgent
from l2l_ros.tasks.imaze import IMazeEnv
from l2l_ros.tasks.manipulator import ManipulatorEnv
from l2l_ros.video import record_task

def _goal_share(img: np.ndarray) -> float:
    """Share of the picture in the goal's yellow (the floor is white, alcoves green, walls blue-grey)."""
    img = img.astype(int)
    return float(np.mean((img[..., 0] > 220) & (img[..., 1] > 190) & (img[..., 2] < 120)))


def test_the_imaze_frame_marks_the_goal_alcove_and_follows_the_robot():
    env = IMazeEnv(render_mode="rgb_array")
    env.reset(seed=5)
    first = env.render()
    for _ in range(8):
        env.step(0)  # forward
    later = env.render()
    env.close()
    assert first.shape == (480, 480, 3) and first.dtype == np.uint8
    assert _goal_share(first) > 0.005, "no goal drawn"
    assert np.abs(first.astype(int) - later.astype(int)).sum() > 0, "the robot moved and the picture did not"
    with pytest.raises(ValueError):
        IMazeEnv(render_mode="human")


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_a_task_video_has_a_frame_per_step(tmp_path, suffix):
    out = tmp_path / f"task{suffix}"
    info = record_task(IMazeEnv(render_mode="rgb_array"), RandomAgent(3, 0), seed=1, task=0, path=out, max_steps=12)
    assert info["frames"] == 13 and out.stat().st_size > 1000
    frames = [np.asarray(f) for f in imageio.get_reader(out)]  # iterated: mp4 readers have no length
    assert len(frames) == 13 and frames[0].shape[:2] == (480, 480)
    assert _goal_share(np.asarray(frames[0])[..., :3]) > 0.005  # the goal survives compression


def test_arm_frames_and_a_bad_video_name():
    env = ManipulatorEnv(render_mode="rgb_array")
    env.reset(seed=0)
    img = env.render()
    assert img.shape == (480, 480, 3)
    red = np.mean((img[..., 0] > 180) & (img[..., 1] < 80) & (img[..., 2] < 80))
    assert red > 0.0005, "no target drawn"
    with pytest.raises(ValueError, match="must end in"):
        record_task(env, RandomArmAgent(0), 0, 0, "video.avi")


def test_eval_manipulator_json_with_a_video(tmp_path, capsys):
    from l2l_ros.cli import main

    video = tmp_path / "arm.gif"
    from l2l_ros.graphs import default_arm_model

    assert main(["eval", "manipulator", "--tasks", "1", "--json", "--no-baselines", "--video", str(video)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["policies"]) == {default_arm_model(), "random"}  # the bundled arm model by default
    assert doc["video"]["frames"] == ManipulatorEnv().task_steps + 1 and video.exists()
    assert doc["video"]["trials_ended"] > 0  # the trained arm reaches targets in the video
    assert doc["cost_per_control_step"][default_arm_model()]["kind"] in ("lsnn", "lstm")
