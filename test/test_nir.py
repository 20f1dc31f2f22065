"""NIR export (l2l export nir): exact round trip, and what the graph's nodes mean."""
from __future__ import annotations

import json

import nir
import numpy as np
import pytest
import torch

from l2l_ros.meta.checkpoint import load_checkpoint
from l2l_ros.snn.lsnn import LSNNPolicy
from l2l_ros.snn.nir_export import export_lsnn, import_lsnn


def _recorded_imaze_inputs(steps: int = 120) -> torch.Tensor:
    """Network inputs of the bundled I-maze model driving one real task."""
    from l2l_ros.evaluation import run_imaze_tasks
    from l2l_ros.policy_runtime import load_runtime

    runtime = load_runtime("models/imaze_lsnn/policy.json", "imaze")
    seen = []
    act = runtime.policy.act_greedy  # the runtime's (deterministic) control step

    def recording_act(obs, state):
        seen.append(torch.as_tensor(obs, dtype=torch.float32).reshape(-1).clone())
        return act(obs, state)

    runtime.policy.act_greedy = recording_act
    run_imaze_tasks(runtime, 1, seed=3, task_steps=steps)
    return torch.stack(seen)[:, None, :]


@pytest.mark.parametrize("model", ["models/imaze_lsnn/policy.json", "models/bandit_k5_lsnn/policy.json",
                                   "models/arm_lsnn/policy.json"])
def test_export_and_reimport_give_identical_weights_and_spikes(model, tmp_path):
    policy, _ = load_checkpoint(model)
    export_lsnn(policy, tmp_path / "net.nir")
    again = import_lsnn(tmp_path / "net.nir")
    for name, p in policy.named_parameters():
        if not name.startswith(("value_head", "log_std")):  # training only (the value, the action noise)
            assert torch.equal(p, dict(again.named_parameters())[name]), name
    obs = _recorded_imaze_inputs() if "imaze" in model else torch.rand(300, 4, policy.obs_dim)
    with torch.no_grad():
        ya, sa = policy.features_sequence(obs, policy.initial_state(obs.shape[1]))
        yb, sb = again.features_sequence(obs, again.initial_state(obs.shape[1]))
    assert torch.equal(ya, yb) and torch.equal(sa.z, sb.z) and float(ya.sum()) > 0
    with torch.no_grad():  # the actions too (the arm's: the product of its two readouts)
        assert torch.equal(policy.action_params(ya), again.action_params(yb))


def test_the_graph_run_by_its_nir_meaning_spikes_as_the_network(tmp_path):
    """A LIF-only network (what NIR can hold without our metadata), stepped by a plain
    forward-Euler reading of the NIR nodes, spikes exactly as LSNNPolicy does."""
    torch.manual_seed(0)
    policy = LSNNPolicy(4, {"type": "discrete", "n": 2},
                        {"n_lif": 10, "n_alif": 0, "refractory": 0, "input_population": 3, "input_gain": 8.0})
    export_lsnn(policy, tmp_path / "lif.nir")
    g = nir.read(str(tmp_path / "lif.nir"))
    assert {type(n).__name__ for n in g.nodes.values()} >= {"Affine", "LIF", "Linear", "LI"}
    assert ("rec", "neurons") in [tuple(e) for e in g.edges]
    w_in, rec, lif, li, readout = (g.nodes[k] for k in ("w_in", "rec", "neurons", "trace", "readout"))
    extra = json.loads(lif.metadata["l2l_ros"])
    assert extra["n_alif"] == 0 and extra["reset"].startswith("subtract")
    obs = torch.rand(60, 1, 4) * 2 - 1
    x = policy.encode_inputs(obs)[:, 0].double().numpy()
    v, z, y = np.zeros(10), np.zeros(10), np.zeros(10)
    spikes, logits = [], []
    for t in range(len(x)):
        current = w_in.weight @ x[t] + w_in.bias + rec.weight @ z
        v = v + (lif.v_leak - v + lif.r * current) / lif.tau - z * lif.v_threshold  # Euler, reset by subtraction
        z = (v > lif.v_threshold).astype(float)
        y = y + (li.v_leak - y + li.r * z) / li.tau
        spikes.append(z)
        logits.append(readout.weight @ y + readout.bias)
    with torch.no_grad():
        ys, _ = policy.features_sequence(obs, policy.initial_state(1))
        params, _ = policy.heads(ys)
    kappa = policy.kappa
    ours = ((ys[1:, 0] - kappa * ys[:-1, 0]) / (1 - kappa)).round().numpy()  # spikes from the trace
    assert np.array_equal(np.asarray(spikes)[1:], ours) and np.asarray(spikes).sum() > 5
    assert np.allclose(np.asarray(logits), params[:, 0].double().numpy(), atol=1e-5)


def test_export_refuses_what_is_not_spiking(tmp_path, capsys):
    from l2l_ros.cli import main

    assert main(["export", "nir", "models/imaze_lstm/policy.json", str(tmp_path)]) == 2
    assert "NIR describes spiking networks" in capsys.readouterr().err
    assert main(["export", "nir", "models/bandit_k5_lsnn/policy.json", str(tmp_path)]) == 0
    assert "ALIF neurons' adaptation" in capsys.readouterr().out
    assert (tmp_path / "network.nir").exists()
