"""`l2l bench`: throughput figures on this machine, written to benchmarks/ (never timed tests)."""
from __future__ import annotations

import platform
import tempfile
import time

import numpy as np


def _machine() -> dict:
    import os

    import torch

    return {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "platform": platform.platform()}


def bench_sim(task: str, seconds: float) -> dict:
    """Env control steps/s in the training configuration vs raw mj_step/s of the same model."""
    import mujoco

    from l2l_ros.tasks.imaze import IMazeEnv
    from l2l_ros.tasks.manipulator import ManipulatorEnv

    env = IMazeEnv() if task == "imaze" else ManipulatorEnv()
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds / 2:
        _, _, term, trunc, _ = env.step(env.action_space.sample() if task != "imaze" else int(rng.integers(3)))
        steps += 1
        if term or trunc:
            env.reset()
    env_rate = steps / (time.perf_counter() - t0)
    sim = env.sim
    model, data = sim.model, sim.data
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds / 2:
        for _ in range(100):
            mujoco.mj_step(model, data)
        n += 100
    raw_rate = n / (time.perf_counter() - t0)
    substeps = int(round(sim.control_period / model.opt.timestep))
    return {"task": task, "env_steps_per_s": env_rate, "raw_mj_step_per_s": raw_rate,
            "physics_substeps_per_env_step": substeps,
            "env_overhead_ratio": raw_rate / substeps / env_rate,
            "note": "env_overhead_ratio = (raw mj_step/s / substeps) / env steps/s; 1.0 means "
                    "physics is all the env costs", "machine": _machine()}


def bench_train(task: str, seconds: float) -> dict:
    """Outer-loop agent steps/s (env + forward + backward) for LSNN and LSTM, same settings."""
    import torch

    from l2l_ros.cli import train_config
    from l2l_ros.meta.ppo import train

    torch.set_num_threads(1)
    out: dict = {"task": task, "machine": _machine(), "policies": {}}
    for kind in ("lsnn", "lstm"):
        with tempfile.TemporaryDirectory() as tmp:
            updates = 1
            while True:  # grow the run until it lasts long enough to time
                cfg = train_config(task, kind, updates, 16, 0)
                cfg.checkpoint_every = 10**9
                t0 = time.perf_counter()
                train(cfg, f"{tmp}/{updates}")
                wall = time.perf_counter() - t0
                if wall >= seconds / 2 or updates >= 64:
                    break
                updates *= 2
            log = [__import__("json").loads(line) for line in open(f"{tmp}/{updates}/train_log.jsonl")]
        steps = log[-1]["env_steps"]
        out["policies"][kind] = {"updates": updates, "agent_steps": steps, "wall_s": wall,
                                 "agent_steps_per_s": steps / wall}
    p = out["policies"]
    out["lsnn_to_lstm_throughput_ratio"] = p["lsnn"]["agent_steps_per_s"] / p["lstm"]["agent_steps_per_s"]
    return out


def run(what: str, task: str, seconds: float) -> dict:
    if what == "sim":
        return bench_sim(task, seconds)
    return bench_train(task, seconds)
