"""Issue 32: a crafted or damaged checkpoint is refused with one CheckpointError line
(never another exception, never a stall), the hash covers the JSON (format 2), a save
killed between its two files loads from the weights (the commit), and a trainer killed
between its writes leaves a pair that the next run repairs."""
import hashlib
import json
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from l2l_ros.meta import checkpoint as ckpt
from l2l_ros.meta.checkpoint import (MAX_JSON_BYTES, MAX_WEIGHTS_BYTES, CheckpointError, load_checkpoint,
                                     read_metadata, remove_stale_temporaries, repair_checkpoint,
                                     rewrite_metadata, save_checkpoint)
from l2l_ros.meta.policies import build_policy

torch.set_num_threads(1)
MODELS = Path(__file__).resolve().parents[1] / "models"


def _policy(kind: str = "lsnn", seed: int = 0):
    torch.manual_seed(seed)
    config = {"n_lif": 4, "n_alif": 4} if kind == "lsnn" else {"hidden": 8}
    return build_policy(kind, 6, {"type": "discrete", "n": 3}, config)


def _save(folder: Path, kind: str = "lsnn", seed: int = 0, **meta) -> tuple[Path, Path]:
    return save_checkpoint(folder / "ckpt", _policy(kind, seed), {"env_id": "l2l_ros/Bandit-v0", "seed": 7,
                                                                 "evaluation": {"updates": seed}, **meta})


def _as_format1(weights: Path, js: Path) -> None:
    """The bundled models' format: weights without the metadata copy."""
    save_file(load_file(str(weights)), str(weights), metadata={"format": "pt"})
    doc = json.loads(js.read_text())
    doc.update(format_version=1, weights_sha256=hashlib.sha256(weights.read_bytes()).hexdigest())
    js.write_text(json.dumps(doc))


def _refused(path: Path, *words: str, reader=load_checkpoint) -> str:
    with pytest.raises(CheckpointError) as e:
        reader(path)
    msg = str(e.value)
    assert "\n" not in msg, msg
    shown = msg.replace(str(path.parent), "<dir>")
    for w in words:
        assert w in shown, msg
    return msg


# ----------------------------------------------------------------------------- crafted fields
CRAFTED = [  # (JSON text replacing a field's value, where, words of the message)
    ('"obs_dim": Infinity', None, ["Infinity is not a JSON number"]),  # was OverflowError
    ('"obs_dim": -1', None, ["obs_dim"]),  # was RuntimeError (negative dimension)
    ('"obs_dim": 100000', None, ["obs_dim"]),
    ('"obs_dim": true', None, ["obs_dim"]),
    ('"obs_dim": 6.0', None, ["obs_dim"]),
    ('"obs_dim": "6"', None, ["obs_dim"]),
    ('"obs_dim": ' + "9" * 5000, None, ["not valid JSON"]),  # more digits than int() converts
    ('"n_lif": -1', "policy_config", ["policy_config", "n_lif"]),  # was RuntimeError
    ('"ticks_per_step": 20000', "policy_config", ["ticks_per_step"]),  # was accepted: seconds a tick
    ('"tau_m": NaN', "policy_config", ["not valid JSON"]),
    ('"tau_m": 0', "policy_config", ["tau_m"]),
    ('"beta": -1.0', "policy_config", ["beta"]),
    ('"detach_reset": "false"', "policy_config", ["detach_reset"]),
    ('"refractory": 1.5', "policy_config", ["refractory"]),
    ('"input_population": 100000', "policy_config", ["input_population"]),
    ('"ignore_inputs": [[]]', "policy_config", ["ignore_inputs"]),
    ('"input_products": [[0, -1]]', "policy_config", ["input_products"]),
    ('"bogus": 1', "policy_config", ["bogus"]),
    ('"n": 0', "action_space", ["action_space.n"]),
    ('"n": 5000', "action_space", ["action_space.n"]),
    ('"n": "3"', "action_space", ["action_space.n"]),
    ('"extra": 1', "action_space", ["extra"]),
    ('"format_version": true', None, ["format_version"]),
    ('"format_version": 3', None, ["format_version"]),
    ('"policy_kind": ["lsnn"]', None, ["policy_kind"]),
    ('"seed": "seven"', None, ["seed"]),
    ('"evaluation": []', None, ["evaluation"]),
    ('"weights_sha256": 12', None, ["weights_sha256"]),
    ('"tensors": {"w_in": [-4]}', None, ["tensors"]),
]


def _craft(js: Path, text: str, where: str | None) -> None:
    """Set one field of the JSON to raw JSON ``text`` (which may be no valid JSON value)."""
    key = text.split(":", 1)[0].strip().strip('"')
    doc = json.loads(js.read_text())
    target = doc[where] if where else doc
    target[key] = "@@VALUE@@"
    js.write_text(json.dumps(doc).replace('"@@VALUE@@"', text.split(":", 1)[1].strip()))


@pytest.mark.parametrize("fmt", [1, 2])
@pytest.mark.parametrize("text,where,words", CRAFTED)
def test_crafted_field_is_one_line_checkpoint_error(tmp_path, text, where, words, fmt):
    weights, js = _save(tmp_path)
    if fmt == 1:
        _as_format1(weights, js)
    _craft(js, text, where)
    _refused(js, "ckpt.json", *words, reader=read_metadata)
    _refused(weights, "ckpt.json", *words)


def test_box_action_space_bounds(tmp_path):
    torch.manual_seed(0)
    weights, js = save_checkpoint(tmp_path / "ckpt", build_policy("lstm", 6, {"type": "box", "shape": [2]},
                                                                   {"hidden": 8}), {})
    _as_format1(weights, js)
    good = js.read_text()
    for bad, word in (({"shape": [10**6]}, "shape"), ({"shape": [2, 2, 2, 2, 2]}, "shape"),
                      ({"low": "x"}, "low"), ({"high": [1.0, 2.0, 3.0]}, "high"), ({"low": 2.0}, "low < high")):
        doc = json.loads(good)
        doc["action_space"].update(bad)
        js.write_text(json.dumps(doc))
        _refused(js, word)


def test_json_nested_100000_levels_is_refused(tmp_path):
    weights, js = _save(tmp_path)
    js.write_text(js.read_text().replace('"seed": 7', '"seed": ' + "[" * 100_000 + "]" * 100_000))
    _refused(weights, "ckpt.json", "nested")  # was RecursionError
    js.write_text('{"x": ' + "[" * 70 + "]" * 70 + "}")
    _refused(weights, "ckpt.json", "nested")


def test_any_error_while_building_becomes_checkpoint_error(tmp_path, monkeypatch):
    weights, _ = _save(tmp_path)

    def broken(*args, **kwargs):
        raise RuntimeError("negative dimension -1")

    monkeypatch.setattr(ckpt, "build_policy", broken)
    _refused(weights, "RuntimeError", "negative dimension")
    monkeypatch.setattr(ckpt, "build_policy", lambda *a, **k: (_ for _ in ()).throw(MemoryError()))
    _refused(weights, "MemoryError")
    monkeypatch.setattr(ckpt, "build_policy", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        load_checkpoint(weights)


JUNK = st.one_of(st.none(), st.booleans(), st.text(max_size=5), st.integers(-2**70, 2**70),
                 st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([-1, 0, 1, 4097, 10**9]),
                 st.lists(st.one_of(st.integers(-3, 9), st.lists(st.integers(-3, 9), max_size=3)), max_size=3),
                 st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
GOOD = {}


def _good_pair(folder: Path, kind: str, fmt: int) -> tuple[bytes, bytes]:
    """Bytes of a good pair, made once per kind and format (hypothesis reruns the body)."""
    if (kind, fmt) not in GOOD:
        weights, js = _save(folder, kind)
        if fmt == 1:
            _as_format1(weights, js)
        GOOD[kind, fmt] = (weights.read_bytes(), js.read_bytes())
    return GOOD[kind, fmt]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["lsnn", "lstm", "mlp"]), fmt=st.sampled_from([1, 2]),
       section=st.sampled_from([None, "policy_config", "action_space"]),
       key=st.sampled_from(["obs_dim", "format_version", "policy_kind", "n_lif", "n_alif", "thr", "beta",
                            "tau_m", "tau_a", "tau_out", "dt", "refractory", "dampening", "detach_reset",
                            "input_gain", "input_population", "ignore_inputs", "ticks_per_step", "tau_a_max",
                            "input_products", "hidden", "log_std_init", "n", "type", "shape", "low", "seed",
                            "evaluation", "tensors", "weights_sha256", "policy_config", "action_space"]),
       value=JUNK)
def test_fuzzed_fields_load_or_raise_checkpoint_error(tmp_path, kind, fmt, section, key, value):
    blob, text = _good_pair(tmp_path / "good", kind, fmt)
    weights, js = tmp_path / "ckpt.safetensors", tmp_path / "ckpt.json"
    weights.write_bytes(blob)
    doc = json.loads(text)
    (doc[section] if section else doc)[key] = value
    js.write_text(json.dumps(doc))
    try:
        policy, _ = load_checkpoint(js)
    except CheckpointError as e:
        assert "\n" not in str(e)
    else:
        policy.act(torch.zeros(policy.obs_dim), policy.initial_state(1))


# ----------------------------------------------------------------------------- sizes
def test_oversized_files_are_refused_before_reading(tmp_path, monkeypatch):
    weights, js = _save(tmp_path)
    with open(js, "ab") as f:  # sparse: no disk, and a reader that read it would take a while
        f.truncate(MAX_JSON_BYTES + 1)
    t0 = time.perf_counter()
    _refused(weights, "ckpt.json", str(MAX_JSON_BYTES))
    _save(tmp_path)
    with open(weights, "ab") as f:
        f.truncate(MAX_WEIGHTS_BYTES + 1)
    real_open = open
    monkeypatch.setattr("builtins.open", lambda p, *a, **k: (_ for _ in ()).throw(AssertionError(p))
                        if str(p) == str(weights) else real_open(p, *a, **k))
    _refused(weights, "ckpt.safetensors", str(MAX_WEIGHTS_BYTES))
    assert time.perf_counter() - t0 < 2.0


# ----------------------------------------------------------------------------- format 2
def test_hash_covers_every_json_field(tmp_path):
    weights, js = _save(tmp_path)
    doc = json.loads(js.read_text())
    assert doc["format_version"] == 2
    assert doc["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    for key, value in (("evaluation", {"updates": 99}), ("env_id", "other/Env-v0"), ("seed", 8),
                       ("extra", 1)):
        js.write_text(json.dumps({**doc, key: value}))
        _refused(weights, "ckpt.json", key, "edited, or an interrupted save")
        assert read_metadata(js)[key] == value  # reporting code reads the JSON alone
    # Claiming format 1 does not skip the comparison: the weights hold the copy.
    js.write_text(json.dumps({**doc, "format_version": 1, "seed": 8}))
    _refused(weights, "format_version")
    js.write_text(json.dumps(doc))
    load_checkpoint(weights)


def _killed_between_the_files(tmp_path, monkeypatch) -> tuple[Path, Path, bytes]:
    """Save seed 1, then die saving seed 2 after the weights' replace, before the JSON."""
    weights, js = _save(tmp_path, seed=1)
    old_json = js.read_bytes()
    writes = []

    def killed_after_weights(path, data):
        writes.append(Path(path).name)
        if Path(path).suffix == ".json":
            raise KeyboardInterrupt  # the process dies after the weights' replace, before the JSON
        real(path, data)

    real = ckpt.atomic_write_bytes
    monkeypatch.setattr(ckpt, "atomic_write_bytes", killed_after_weights)
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path, seed=2)
    monkeypatch.undo()
    assert writes == ["ckpt.safetensors", "ckpt.json"] and js.read_bytes() == old_json
    return weights, js, old_json


def _same_weights(policy, seed: int) -> bool:
    return all(torch.equal(a, b) for a, b in zip(policy.state_dict().values(), _policy(seed=seed).state_dict().values()))


def test_interrupted_save_loads_from_the_weights_then_repair_rewrites_the_json(tmp_path, monkeypatch):
    weights, js, old_json = _killed_between_the_files(tmp_path, monkeypatch)
    for path in (weights, js, tmp_path / "ckpt"):
        policy, doc = load_checkpoint(path)  # the weights are the commit: every checkpoint loads
        assert doc["json_stale"] is True and doc["evaluation"] == {"updates": 2} and _same_weights(policy, 2)
        assert doc["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert read_metadata(js)["evaluation"] == {"updates": 1} and js.read_bytes() == old_json  # JSON alone
    assert repair_checkpoint(weights) is True
    policy, doc = load_checkpoint(weights)
    assert "json_stale" not in doc and doc["evaluation"] == {"updates": 2} and _same_weights(policy, 2)
    assert doc == json.loads(js.read_text()) == read_metadata(js)
    assert repair_checkpoint(weights) is False
    js.unlink()  # a missing JSON: the weights load alone, and the JSON is rewritten
    assert load_checkpoint(js)[1] == {**doc, "json_stale": True}
    assert repair_checkpoint(js) is True and load_checkpoint(js)[1] == doc


def test_a_stale_json_never_leaks_into_a_later_save(tmp_path, monkeypatch):
    weights, js, _ = _killed_between_the_files(tmp_path, monkeypatch)
    rewrite_metadata(weights, {"evaluation": {"updates": 2, "success_rate": 0.5}})
    policy, doc = load_checkpoint(weights)
    assert "json_stale" not in doc and "json_stale" not in json.loads(js.read_text())
    assert doc["evaluation"]["success_rate"] == 0.5 and _same_weights(policy, 2)
    with pytest.raises(CheckpointError, match="json_stale"):
        rewrite_metadata(weights, {"json_stale": True})
    save_checkpoint(tmp_path / "again", policy, {**doc, "json_stale": True})  # a loaded doc passed back
    assert "json_stale" not in read_metadata(tmp_path / "again") and "json_stale" not in load_checkpoint(
        tmp_path / "again")[1]


def test_a_json_with_the_weights_hash_but_edited_fields_is_still_refused(tmp_path, monkeypatch):
    weights, js, _ = _killed_between_the_files(tmp_path, monkeypatch)
    repair_checkpoint(weights)
    doc = json.loads(js.read_text())
    js.write_text(json.dumps({**doc, "evaluation": {"updates": 99}}))  # hash matches: an edit
    _refused(weights, "ckpt.json", "evaluation", "differs from the copy")
    # A JSON that is no valid document is refused, not bypassed (saves replace it whole).
    js.write_text('{"format_version": 2, "policy_kind": ')
    _refused(weights, "ckpt.json", "not valid JSON")


def test_a_stale_json_does_not_hide_damaged_weights(tmp_path, monkeypatch):
    weights, js, _ = _killed_between_the_files(tmp_path, monkeypatch)
    good = weights.read_bytes()
    data = bytearray(good)
    data[-3] ^= 0x01  # one flipped bit in the tensor data, the header intact
    weights.write_bytes(bytes(data))
    _refused(weights, "ckpt.safetensors", "corrupt", "data_sha256")
    weights.write_bytes(good[: len(good) - 8])
    _refused(weights, "ckpt.safetensors", "truncated")
    js.unlink()
    _refused(weights, "ckpt.safetensors", "truncated")
    weights.write_bytes(good)
    assert load_checkpoint(weights)[1]["json_stale"] is True


def test_format1_with_a_wrong_or_missing_json_is_still_refused(tmp_path):
    weights, js = _save(tmp_path)
    _as_format1(weights, js)
    doc = json.loads(js.read_text())
    js.write_text(json.dumps({**doc, "weights_sha256": "0" * 64}))
    _refused(weights, "sha256", "ckpt.json")
    js.unlink()
    _refused(weights, "ckpt.json", "missing")


def test_kill_before_the_weights_replace_keeps_the_old_pair(tmp_path, monkeypatch):
    weights, js = _save(tmp_path, seed=1)
    monkeypatch.setattr(ckpt.os, "replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path, seed=2)
    monkeypatch.undo()
    assert load_checkpoint(weights)[1]["evaluation"] == {"updates": 1}
    assert not list(tmp_path.glob(".*.tmp"))


def test_repair_needs_format2_weights(tmp_path):
    weights, js = _save(tmp_path)
    _as_format1(weights, js)
    _refused(weights, "format 1", reader=repair_checkpoint)


def test_rewrite_metadata_changes_the_copy_and_the_hash(tmp_path):
    weights, js = _save(tmp_path)
    before = json.loads(js.read_text())
    rewrite_metadata(weights, {"evaluation": {"updates": 0, "success_rate": 0.5}})
    policy, doc = load_checkpoint(weights)
    assert doc["evaluation"]["success_rate"] == 0.5 and doc["weights_sha256"] != before["weights_sha256"]
    with pytest.raises(CheckpointError, match="obs_dim"):
        rewrite_metadata(weights, {"obs_dim": 7})


def test_remove_stale_temporaries_only_takes_atomic_write_leftovers(tmp_path):
    leftovers = [tmp_path / ".policy.json.ab_cd123.tmp", tmp_path / ".trainer_state.safetensors.x1y2z3w4.tmp"]
    kept = [tmp_path / "policy.json", tmp_path / "notes.tmp", tmp_path / ".hidden.tmp"]
    for path in leftovers + kept:
        path.write_text("x")
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted(leftovers)
    assert all(p.exists() for p in kept) and not any(p.exists() for p in leftovers)


def test_bundled_format1_models_still_load_unchanged():
    """The models bundled before format 2 load as they are, beside the format-2 ones."""
    versions = []
    for js in sorted(MODELS.glob("**/policy.json")):
        text = js.read_bytes()
        versions.append(read_metadata(js)["format_version"])
        load_checkpoint(js)
        assert js.read_bytes() == text
    assert 1 in versions and set(versions) <= {1, 2}, versions


# ----------------------------------------------------------------------------- the trainer
def _small(updates: int):
    from l2l_ros.meta.config import TrainConfig

    return TrainConfig(env_id="l2l_ros/Bandit-v0", env_kwargs={"k": 2, "n": 10}, policy="lsnn",
                       policy_config={"n_lif": 8, "n_alif": 8}, num_envs=4, updates=updates, epochs=1,
                       minibatches=2, seed=3, checkpoint_every=2)


def _trainer_update(out: Path) -> tuple[int, dict]:
    """Update counter and policy weights of ``out``'s trainer state."""
    from safetensors import safe_open

    from l2l_ros.meta.train import TRAINER_STATE

    with safe_open(str(out / TRAINER_STATE), "pt") as f:
        update = int(f.metadata()["update"])
        weights = {k[len("policy."):]: f.get_tensor(k) for k in f.keys() if k.startswith("policy.")}
    return update, weights


def _assert_pair_matches(out: Path, reference: dict | None = None) -> None:
    policy, doc = load_checkpoint(out)
    update, weights = _trainer_update(out)
    assert doc["evaluation"]["updates"] == update
    for name, tensor in policy.state_dict().items():
        assert torch.equal(tensor, weights[name]), name
        if reference is not None:
            assert torch.equal(tensor, reference[name]), name  # bit-identical to the uninterrupted run


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Policy weights and JSON of an uninterrupted 4-update run."""
    from l2l_ros.meta.train import train

    out = tmp_path_factory.mktemp("reference")
    train(_small(4), out)
    policy, doc = load_checkpoint(out)
    return policy.state_dict(), doc


def _train_killed(out: Path, monkeypatch, at_update: int, file_suffix: str) -> None:
    """Train 4 updates, killed (KeyboardInterrupt past every handler) when the policy
    pair's ``file_suffix`` file of update ``at_update`` is about to be replaced."""
    from l2l_ros.meta.train import train

    real = ckpt.atomic_write_bytes
    seen = {"updates": 0}

    def maybe_killed(path, data):
        if Path(path).suffix == ".safetensors":
            seen["updates"] += 1
        if Path(path).suffix == file_suffix and seen["updates"] == at_update // 2:
            raise KeyboardInterrupt
        real(path, data)

    monkeypatch.setattr(ckpt, "atomic_write_bytes", maybe_killed)
    with pytest.raises(KeyboardInterrupt):
        train(_small(4), out)
    monkeypatch.undo()


def test_rerun_after_the_last_update_repairs_a_half_written_pair(tmp_path, monkeypatch, reference):
    from l2l_ros.meta.train import train

    _train_killed(tmp_path, monkeypatch, at_update=4, file_suffix=".json")
    assert _trainer_update(tmp_path)[0] == 4
    doc = load_checkpoint(tmp_path / "policy.json")[1]  # new weights, old JSON: loads from the weights
    assert doc["json_stale"] is True and doc["evaluation"]["updates"] == 4
    assert read_metadata(tmp_path / "policy.json")["evaluation"]["updates"] == 2
    (tmp_path / ".policy.safetensors.k1ll3d00.tmp").write_bytes(b"half")
    seen = []
    train(_small(4), tmp_path, progress=seen.append)  # nothing left to train: it used to exit here
    assert seen == [] and not list(tmp_path.glob(".*.tmp"))
    _assert_pair_matches(tmp_path, reference[0])
    doc = load_checkpoint(tmp_path)[1]
    assert doc["evaluation"] == reference[1]["evaluation"]


def test_rerun_rewrites_a_pair_older_than_the_trainer_state(tmp_path, monkeypatch, reference):
    from l2l_ros.meta.train import train

    _train_killed(tmp_path, monkeypatch, at_update=4, file_suffix=".safetensors")
    assert _trainer_update(tmp_path)[0] == 4
    assert load_checkpoint(tmp_path)[1]["evaluation"]["updates"] == 2  # loads, but is the older one
    train(_small(4), tmp_path)
    _assert_pair_matches(tmp_path, reference[0])
    # A JSON put back from an older save is caught the same way.
    weights, js = tmp_path / "policy.safetensors", tmp_path / "policy.json"
    old = json.loads(js.read_text())
    js.write_text(json.dumps({**old, "evaluation": {"updates": 2}}))
    train(_small(4), tmp_path)
    _assert_pair_matches(tmp_path, reference[0])


def test_resumed_run_killed_mid_save_ends_bit_identical(tmp_path, monkeypatch, reference):
    from l2l_ros.meta.train import train

    _train_killed(tmp_path, monkeypatch, at_update=2, file_suffix=".json")
    assert _trainer_update(tmp_path)[0] == 2
    seen = []
    train(_small(4), tmp_path, progress=lambda d: seen.append(d["update"]))
    assert seen == [3, 4]
    _assert_pair_matches(tmp_path, reference[0])
