"""Neuromorphic cost (l2l_ros.cost): spikes counted on every tick, SynOps, MACs, energy."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from l2l_ros.cost import MAC_PJ, NEURON_UPDATE_PJ, SYNOP_PJ, lsnn_cost, lstm_cost
from l2l_ros.meta.policies import LSTMPolicy
from l2l_ros.snn.lsnn import LSNNPolicy

SPEC = {"type": "discrete", "n": 3}


@pytest.mark.parametrize("ticks", [1, 3])
def test_every_ticks_spikes_are_counted(ticks):
    """With no readout smoothing the trace is the spikes: its sum over the ticks (the
    step's mean times K) is what the counter must hold, on both recurrence paths."""
    torch.manual_seed(0)
    policy = LSNNPolicy(5, SPEC, {"n_lif": 6, "n_alif": 6, "tau_out": 0.0, "ticks_per_step": ticks,
                                  "input_gain": 20.0})
    obs = torch.randn(40, 2, 5)
    with torch.no_grad():
        for done_mask in (None, torch.zeros(40, 2)):  # the fused sequence, then the step-by-step path
            policy.count_spikes()
            ys, _ = policy.features_sequence(obs, policy.initial_state(2), done_mask)
            expected = (ys.double() * ticks).sum((0, 1))
            assert policy.spike_counter.sum() > 0
            assert torch.allclose(policy.spike_counter, expected)


def test_counting_changes_no_action_and_training_ignores_it():
    from l2l_ros.policy_runtime import MODE_SPACES, untrained_runtime

    sensors = MODE_SPACES["imaze"][0]
    torch.manual_seed(1)
    a, b = untrained_runtime("imaze"), untrained_runtime("imaze")
    b.policy.load_state_dict(a.policy.state_dict())
    b.count_spikes()
    rng = np.random.default_rng(0)
    for t in range(30):
        x = rng.uniform(-1, 1, sensors)
        assert a.step(x, 0.0, t == 0) == b.step(x, 0.0, t == 0)
    assert b.steps == 30 and b.policy.spike_counter.sum() > 0
    counted = b.policy.spike_counter.clone()
    ys, _ = b.policy.features_sequence(torch.zeros(4, 1, b.policy.obs_dim), b.policy.initial_state(1))  # autograd
    assert ys.requires_grad and torch.equal(b.policy.spike_counter, counted)


def test_lsnn_cost_arithmetic():
    policy = LSNNPolicy(5, SPEC, {"n_lif": 3, "n_alif": 1, "ticks_per_step": 2, "input_population": 2})
    counts = np.array([10.0, 0.0, 6.0, 0.0])
    c = lsnn_cost(policy, counts, steps=4)
    n_in = 5 * 3  # raw values and 2 tuning curves each
    assert c["spikes_per_step"] == 4.0 and c["spikes_per_neuron_per_tick"] == 4.0 / (4 * 2)
    assert c["silent_fraction"] == 0.5 and c["fan_out"] == 3 + 3
    assert c["synops_per_step"] == 4.0 * 6 and c["dense_macs_per_step"] == n_in * 4
    assert c["cpu_macs_per_step"] == n_in * 4 + 2 * 16 + 4 * 3
    assert c["energy_neuromorphic_nj_per_step"] == pytest.approx(
        (24 * SYNOP_PJ + 4 * 2 * NEURON_UPDATE_PJ + n_in * 4 * MAC_PJ) / 1e3)
    assert set(c["energy_sources"]) == {"synop_pj", "neuron_update_pj", "mac_pj"}


def test_lstm_macs_are_its_gate_and_readout_weights():
    policy = LSTMPolicy(5, SPEC, {"hidden": 8})
    c = lstm_cost(policy)
    assert c["macs_per_step"] == 4 * 8 * (5 + 8) + 8 * 3
    assert c["energy_cpu_nj_per_step"] == pytest.approx(c["macs_per_step"] * MAC_PJ / 1e3)


def test_eval_imaze_json_reports_the_cost_of_each_network(capsys):
    import json

    from l2l_ros.cli import main

    assert main(["eval", "imaze", "--tasks", "1", "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert captured.err == "", "--json is quiet: no progress bars"
    spiking, lstm = doc["cost_per_control_step"]["spiking"], doc["cost_per_control_step"]["lstm"]
    from l2l_ros.tasks.imaze import IMazeEnv

    assert spiking["steps"] == IMazeEnv().task_steps  # one task, every step counted
    assert 0 < spiking["spikes_per_neuron_per_tick"] < 1 and 0 <= spiking["silent_fraction"] < 1
    assert lstm["macs_per_step"] > 0 and "searcher" not in doc["cost_per_control_step"]


def test_eval_bandit_reports_the_cost_of_each_models_own_play():
    from l2l_ros.bandit_eval import bundled_bandit_models, evaluate_bandits

    res = evaluate_bandits(5, 6, 20, 0, bundled_bandit_models(5), baselines=("random",))
    spiking, lstm = res["cost_per_control_step"]["spiking"], res["cost_per_control_step"]["lstm"]
    assert spiking["steps"] == 20 * 6 and spiking["spikes_per_step"] > 0
    assert lstm["macs_per_step"] > spiking["dense_macs_per_step"]
