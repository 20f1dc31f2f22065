"""Data-parallel training under torchrun (issue 33): 2 ranks on this machine, gloo on loopback."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import torch

from l2l_ros.meta.checkpoint import load_checkpoint
from l2l_ros.meta.distributed import local_launcher
from l2l_ros.meta.train import evaluate

ROOT = Path(__file__).resolve().parents[1]
BANDIT = ["train", "bandit", "--arms", "2", "--horizons", "10", "--eval-tasks", "0"]


def _run(args: list[str], ranks: int = 1) -> subprocess.CompletedProcess:
    launcher, env = local_launcher(ranks)
    return subprocess.run(launcher + ["-m", "l2l_ros.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def _log(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]


def test_two_ranks_learn_as_one_process_with_the_same_total_batch(tmp_path):
    recipe = BANDIT + ["--policy", "lsnn", "--num-envs", "32", "--minibatches", "2", "--lr", "0.003",
                       "--gamma", "0.99", "--reward-scale", "1", "--updates", "150", "--seed", "0"]
    scores = {}
    for ranks in (1, 2):
        out = tmp_path / f"ranks{ranks}"
        done = _run(recipe + ["--out", str(out)], ranks)
        assert done.returncode == 0, done.stderr[-2000:]
        log = _log(out)
        assert len(log) == 150 and log[-1]["env_steps"] == 150 * 32 * 10  # every rank's tasks counted
        assert log[-1].get("ranks", 1) == ranks
        policy, _ = load_checkpoint(out / "policy.json")
        results = evaluate(policy, "l2l_ros/Bandit-v0", {"k": 2, "n": 10}, tasks=1000, seed=10_000, num_envs=100)
        scores[ranks] = float(np.mean([r["return"] for r in results]))
    # Random play: 5.0 (s.e. of a 1000-task mean ~0.06); both learn, and about as well.
    assert min(scores.values()) > 5.4 and abs(scores[1] - scores[2]) < 0.3, scores


def test_a_resumed_two_rank_run_ends_bit_identical_to_an_unbroken_one(tmp_path):
    small = BANDIT + ["--num-envs", "8", "--minibatches", "1"]
    for updates in (6, 12):  # stop at 6 (a checkpoint), then the same command extended to 12
        done = _run(small + ["--updates", str(updates), "--out", str(tmp_path / "resumed")], 2)
        assert done.returncode == 0, done.stderr[-3000:]
    done = _run(small + ["--updates", "12", "--out", str(tmp_path / "direct")], 2)
    assert done.returncode == 0, done.stderr[-2000:]
    a, _ = load_checkpoint(tmp_path / "resumed" / "policy.json")
    b, _ = load_checkpoint(tmp_path / "direct" / "policy.json")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    strip = lambda rows: [{k: v for k, v in r.items() if not k.endswith("seconds") and k != "updates"}  # noqa: E731
                          for r in rows]
    assert strip(_log(tmp_path / "resumed")) == strip(_log(tmp_path / "direct"))
    assert not list((tmp_path / "direct").glob("*.tmp*"))


def test_num_envs_must_split_evenly_over_the_ranks(tmp_path):
    done = _run(BANDIT + ["--num-envs", "5", "--updates", "1", "--out", str(tmp_path / "odd")], 2)
    assert done.returncode != 0 and "must be a multiple of the number of ranks (2)" in done.stderr
    assert not (tmp_path / "odd").exists()
