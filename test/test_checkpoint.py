"""Checkpoint round trip and refusal of bad files (never unpickles)."""
import hashlib
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from l2l_ros.meta.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from l2l_ros.meta.policies import build_policy

torch.set_num_threads(1)

SPECS = [("lsnn", {"type": "discrete", "n": 3}),
         ("lsnn", {"type": "box", "shape": [3], "low": -1.0, "high": 1.0}),
         ("lstm", {"type": "discrete", "n": 3}),
         ("lstm", {"type": "box", "shape": [3], "low": -1.0, "high": 1.0})]


def _policy(kind="lsnn", spec=SPECS[0][1]):
    torch.manual_seed(0)
    p = build_policy(kind, 6, spec, {"n_lif": 8, "n_alif": 8} if kind == "lsnn" else {"hidden": 16})
    with torch.no_grad():
        p.policy_head.weight.normal_(0, 1.0)
    return p


def _saved(tmp_path, kind="lsnn"):
    p = _policy(kind)
    save_checkpoint(tmp_path / "ckpt", p, {"env_id": "l2l_ros/Bandit-v0", "env_kwargs": {"k": 3, "n": 10},
                                           "command": "pytest", "seed": 7, "evaluation": {"mean_return": 1.5}})
    return p, tmp_path / "ckpt.safetensors", tmp_path / "ckpt.json"


@pytest.mark.parametrize("kind,spec", SPECS)
def test_round_trip_identical_actions(tmp_path, kind, spec):
    p = _policy(kind, spec)
    save_checkpoint(tmp_path / "ckpt", p, {"env_id": "x/Y-v0", "seed": 3})
    for path in (tmp_path / "ckpt.safetensors", tmp_path / "ckpt.json", tmp_path / "ckpt"):
        q, meta = load_checkpoint(path)
        assert meta["policy_kind"] == kind and meta["obs_dim"] == 6 and meta["action_space"]["type"] == spec["type"]
        obs = torch.randn(15, 2, 6)
        s1, s2 = p.initial_state(2), q.initial_state(2)
        for t in range(15):
            a1, l1, v1, s1 = p.act(obs[t], s1, deterministic=True)
            a2, l2, v2, s2 = q.act(obs[t], s2, deterministic=True)
            assert torch.equal(a1, a2) and torch.equal(v1, v2) and torch.equal(l1, l2)


def test_metadata_contents(tmp_path):
    _, _, js = _saved(tmp_path)
    meta = json.loads(js.read_text())
    for key in ("format_version", "env_id", "env_kwargs", "obs_dim", "action_space", "policy_kind",
                "policy_config", "command", "git_commit", "seed", "evaluation", "weights_sha256"):
        assert key in meta
    assert meta["policy_config"]["n_alif"] == 8 and meta["task_family"] == "bandit"
    json.dumps(meta)


def test_git_source_modified_tells_a_tree_with_uncommitted_changes(tmp_path):
    import subprocess

    from l2l_ros.meta.checkpoint import git_commit, git_source_modified

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    assert git_source_modified(tmp_path) is None  # not a repository
    git("init", "-q")
    (tmp_path / "ppo.py").write_text("lr = 0.003\n")
    git("add", "ppo.py")
    git("commit", "-qm", "first")
    assert git_source_modified(tmp_path) is False and len(git_commit(tmp_path)) == 40
    (tmp_path / "notes.txt").write_text("untracked files are not the trained code\n")
    assert git_source_modified(tmp_path) is False
    (tmp_path / "ppo.py").write_text("lr = 0.001\n")
    assert git_source_modified(tmp_path) is True


def test_directory_form(tmp_path):
    p = _policy()
    save_checkpoint(tmp_path, p, {})
    assert (tmp_path / "policy.safetensors").exists() and (tmp_path / "policy.json").exists()
    load_checkpoint(tmp_path)


def _format1(tmp_path, kind="lsnn"):
    """A format-1 pair (weights without the metadata copy, as the bundled models):
    the JSON is covered by nothing, so its own checks are what refuses a bad one."""
    p, st, js = _saved(tmp_path, kind)
    save_file(load_file(str(st)), str(st), metadata={"format": "pt"})
    meta = json.loads(js.read_text())
    meta.update(format_version=1, weights_sha256=hashlib.sha256(st.read_bytes()).hexdigest())
    js.write_text(json.dumps(meta))
    load_checkpoint(js)
    return p, st, js


def _rehash(st, js):
    """Record the weights' sha256 in a format-1 JSON (as a save would)."""
    meta = json.loads(js.read_text())
    meta["weights_sha256"] = hashlib.sha256(st.read_bytes()).hexdigest()
    js.write_text(json.dumps(meta))


def _expect(path, *words):
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    msg = str(e.value).replace(str(path.parent), "<dir>")  # the test's name is in its tmp_path
    for w in words:
        assert w in msg, msg
    assert isinstance(e.value, ValueError)
    return msg


def test_missing_files(tmp_path):
    _, st, js = _saved(tmp_path)
    st.unlink()
    _expect(js, "ckpt.safetensors", "missing")
    js.unlink()
    _expect(tmp_path / "ckpt.json", "ckpt.json", "missing")


def test_corrupt_safetensors(tmp_path):
    _, st, js = _saved(tmp_path)
    data = bytearray(st.read_bytes())
    data[:16] = b"\xff" * 16  # garbage header length and header
    st.write_bytes(bytes(data))
    _expect(js, "ckpt.safetensors", "corrupt")


def test_truncated_safetensors(tmp_path):
    _, st, js = _saved(tmp_path)
    data = st.read_bytes()
    st.write_bytes(data[: len(data) // 2])
    _expect(st, "ckpt.safetensors", "truncated")


def test_bad_json(tmp_path):
    _, st, js = _saved(tmp_path)
    js.write_text('{"format_version": 1, "policy_kind": ')
    _expect(st, "ckpt.json", "not valid JSON")


def test_missing_keys(tmp_path):
    _, st, js = _saved(tmp_path)
    meta = json.loads(js.read_text())
    del meta["obs_dim"]
    js.write_text(json.dumps(meta))
    _expect(st, "ckpt.json", "obs_dim")


def test_shape_mismatch(tmp_path):
    _, st, js = _format1(tmp_path)
    meta = json.loads(js.read_text())
    meta["policy_config"]["n_alif"] = 9  # the metadata now describes a bigger network
    js.write_text(json.dumps(meta))
    _expect(st, "ckpt.safetensors", "shape")


def test_edited_format2_metadata_is_refused(tmp_path):
    _, st, js = _saved(tmp_path)
    meta = json.loads(js.read_text())
    meta["policy_config"]["n_alif"] = 9  # the hash of the weights covers the JSON too
    js.write_text(json.dumps(meta))
    _expect(st, "ckpt.json", "policy_config", "edited, or an interrupted save")


def test_shape_mismatch_in_weights(tmp_path):
    _, st, js = _format1(tmp_path)
    tensors = load_file(str(st))
    tensors["w_in"] = torch.zeros(7, 16)
    save_file(tensors, str(st))
    _rehash(st, js)
    _expect(js, "w_in", "shape")


def test_nan_weights(tmp_path):
    _, st, js = _format1(tmp_path)
    tensors = load_file(str(st))
    tensors["w_rec"][0, 1] = float("nan")
    save_file(tensors, str(st))
    _rehash(st, js)
    _expect(js, "w_rec", "non-finite")


def test_weights_from_another_save(tmp_path):
    _, st, js = _saved(tmp_path)
    tensors = load_file(str(st))
    tensors["w_rec"] += 1.0
    save_file(tensors, str(st))
    _expect(js, "sha256")


def test_refuses_to_save_nan(tmp_path):
    p = _policy()
    with torch.no_grad():
        p.w_in[0, 0] = float("inf")
    with pytest.raises(CheckpointError):
        save_checkpoint(tmp_path / "x", p, {})
