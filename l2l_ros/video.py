"""Videos of whole tasks: every trial of one task one after another, rendered offscreen by
MuJoCo (``render_mode="rgb_array"``) with the goal marked. ``.mp4`` through ffmpeg
(``imageio-ffmpeg``'s bundled binary), ``.gif`` through Pillow."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from l2l_ros.evaluation import play_task, task_seed

__all__ = ["record_task"]

SUFFIXES = (".mp4", ".gif")


def record_task(env, agent, seed: int, task: int, path: str | Path, deterministic: bool = True,
                max_steps: int | None = None) -> dict:
    """Play task ``task`` of ``seed`` (numbered as ``l2l eval`` and the sims number them) with
    ``agent`` in ``env`` (made with ``render_mode="rgb_array"``) and write every step's frame
    to ``path``. Returns ``{"path", "frames", "trials_ended", "fps"}``."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise ValueError(f"video file {path} must end in {' or '.join(SUFFIXES)}")
    obs, _ = env.reset(seed=task_seed(seed, task))
    agent.reset()
    frames = [env.render()]
    ended = 0
    for _, info, _ in play_task(env, agent, obs, deterministic):
        ended += bool(info.get("trial_end", False))
        frames.append(env.render())
        if max_steps is not None and len(frames) > max_steps:
            break
    env.close()
    fps = int(env.metadata.get("render_fps", 10))
    _write(path, frames, fps)
    return {"path": str(path), "frames": len(frames), "trials_ended": int(ended), "fps": fps}


def _write(path: Path, frames: list[np.ndarray], fps: int) -> None:
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        imageio.mimsave(path, frames, duration=1000.0 / fps, loop=0)
        return
    with imageio.get_writer(path, fps=fps, codec="libx264", quality=7, macro_block_size=16) as writer:
        for frame in frames:
            writer.append_data(frame)
