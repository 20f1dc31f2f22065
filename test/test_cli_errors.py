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


def test_bad_values_paths_and_json_end_in_one_error_line_before_any_work(tmp_path):
    """Issue 34: out-of-range counts, bad JSON, bad paths and file names are refused with
    one error line (argparse's usage line aside), exit 2, no traceback, nothing written."""
    import pytest

    from l2l_ros.cli import main

    cases = [
        ["eval", "imaze", "--tasks", "-1"],
        ["train", "imaze", "--updates", "0", "--out", str(tmp_path / "a")],
        ["train", "bandit", "--num-envs", "x", "--out", str(tmp_path / "b")],
        ["eval", "imaze", "--video", str(tmp_path / "v.avi")],
        ["eval", "bandit", "--pulls", "0"],
        ["eval", "manipulator", "--tasks", "0"],
        ["eval", "imaze", "--family", "bogus"],
        ["eval", "imaze", "--family", '{"latency": [0, 1.5]}'],
        ["eval", "manipulator", "--family", "bogus"],
        ["eval", "manipulator", "--family", '{"flip_prob": 2}'],
        ["eval", "manipulator", "--env-kwargs", '{"integrator": "rk5"}'],
        ["eval", "manipulator", "--env-kwargs", '{"family": "sim2real"}'],
    ]
    for args in cases:
        with pytest.raises(SystemExit) as stop:
            main(args)
        assert stop.value.code == 2, args
    for args in (["train", "bandit", "--policy-config", "{bad", "--out", str(tmp_path / "c")],
                 ["export", "nir", str(tmp_path / "missing.json"), str(tmp_path / "nir")],
                 ["export", "nir", "models/imaze_lstm/policy.json", str(tmp_path / "nir")]):
        out = l2l(*args)
        assert out.returncode == 2, (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr, out.stderr
    assert not any((tmp_path / name).exists() for name in ("a", "b", "c", "nir"))


def test_train_device(tmp_path):
    """``--device``: a device torch cannot use is one error line with nothing written; a
    GPU, where torch sees one, trains and leaves a checkpoint that loads on the CPU."""
    import torch

    for device in ("tpu", "cuda:99") + (() if torch.cuda.is_available() else ("cuda",)):
        out = l2l("train", "bandit", "--arms", "2", "--horizons", "10", "--updates", "1", "--num-envs", "2",
                  "--eval-tasks", "0", "--device", device, "--out", str(tmp_path / "refused"))
        assert out.returncode == 2 and "device" in out.stderr and "Traceback" not in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1 and not (tmp_path / "refused").exists()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    out = l2l("train", "bandit", "--arms", "2", "--horizons", "10", "--updates", "2", "--num-envs", "2",
              "--eval-tasks", "0", "--device", device, "--out", str(tmp_path / "run"))
    assert out.returncode == 0, out.stderr[-2000:]
    policy, meta = load_checkpoint(tmp_path / "run" / "policy.json")
    assert meta["evaluation"]["updates"] == 2 and policy.w_in.device.type == "cpu"
