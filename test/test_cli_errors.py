"""The `l2l` command: bad input ends in one line, and a trained checkpoint with its evaluation loads."""
from __future__ import annotations

import subprocess
import sys

from l2l_ros.meta.checkpoint import load_checkpoint


def l2l(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "l2l_ros.cli", *args], capture_output=True, text=True, timeout=300)


def test_a_bad_checkpoint_is_one_error_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"obs_dim": Infinity}')
    for path in (str(bad), str(tmp_path / "missing.json")):
        out = l2l("eval", "imaze", "--checkpoint", path, "--tasks", "2")
        assert out.returncode == 2
        assert len(out.stderr.strip().splitlines()) == 1 and "error" in out.stderr, out.stderr
        assert "Traceback" not in out.stderr


def test_train_with_evaluation_leaves_a_checkpoint_that_loads(tmp_path):
    """The evaluation figures go into the checkpoint through the weights' embedded copy,
    so the hash still covers them (a JSON edited alone is refused)."""
    out = l2l("train", "imaze", "--updates", "1", "--num-envs", "2", "--eval-tasks", "2", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr[-2000:]
    _, meta = load_checkpoint(tmp_path / "policy.json")
    assert meta["evaluation"]["tasks"] == 2 and meta["evaluation"]["updates"] == 1
