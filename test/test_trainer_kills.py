"""Issue 32: the trainer SIGKILLed at random moments and at its checkpoint writes: every
checkpoint loads, at most one checkpoint interval is lost, and the resumed run ends
bit-identical to an uninterrupted one (``l2l bench reliability`` runs 20 kills)."""
from __future__ import annotations

import json

from l2l_ros.meta import kill_test
from l2l_ros.meta.kill_test import trainer_kills


def test_three_kills_lose_at_most_one_interval_and_end_bit_identical(tmp_path):
    r = trainer_kills(3, 0, tmp_path, updates=40)
    assert r["problems"] == [], r
    assert r["kills"] == r["kills_delivered"] == 3 and r["targeted_kills"] == 1, r
    assert r["all_checkpoints_loaded"] and r["bit_identical"] and r["log_identical"], r
    assert 0 <= r["max_updates_lost"] <= r["checkpoint_every"] == 4, r
    assert r["leftover_temporaries"] == [] and r["passed"], r
    assert all(rec["loaded"] and rec["updates_lost"] <= 4 for rec in r["records"]), r["records"]
    assert json.loads((tmp_path / "trainer_kills.json").read_text())["passed"]


def test_write_events_ignore_an_earlier_kills_temporaries(tmp_path):
    old = tmp_path / ".trainer_state.safetensors.abcd1234.tmp"
    old.write_bytes(b"half")
    assert kill_test._events(tmp_path, None, {old.name}) == set()
    (tmp_path / ".policy.json.wxyz9876.tmp").write_bytes(b"{")
    (tmp_path / "policy.safetensors").write_bytes(b"x")
    assert kill_test._events(tmp_path, None, {old.name}) == {"policy_json_tmp", "policy_weights_replaced"}
    before = kill_test._weights_id(tmp_path)
    assert "policy_weights_replaced" not in kill_test._events(tmp_path, before, set())
