"""The LSNN policy as a NIR graph (Neuromorphic Intermediate Representation, Pedersen et
al. 2024, the ``nir`` package), and back.

Graph, per network tick (time unit: one tick, ``dt = 1``)::

    input -> w_in (Affine) -> neurons (LIF) -> rec (Linear) -> neurons
                                       \\-> trace (LI) -> readout (Affine) -> output

* ``input``: the network's input channels: the observation after the policy's own
  encoding (population coding by Gaussian tuning curves and input products, which NIR
  has no node for); ``LSNNPolicy.encode_inputs`` computes them, and with ``evidence_tau``
  the evidence traces from ``LSNNPolicy.evidence_sequence`` (two leaky integrators per
  product and their ratio) are input channels too.
* ``neurons``: one LIF node for the whole recurrent population, with the parameters
  under which forward Euler (``v += dt / tau * (v_leak - v + r I)``, how snnTorch, Norse
  and most NIR back ends step it) is our exact update: ``tau = 1 / (1 - alpha)``,
  ``r = 1``, ``v_leak = 0``, ``v_threshold = thr``; weights carry the threshold scaling.
* ``trace``: the readout's low-pass spike trace as an LI node (``tau = 1 / (1 - kappa)``);
  ``readout`` is the policy head (the value head and the action noise are for training only). With
  ``gain_readout`` a second Affine, ``gain_readout``, reads the same trace into a second
  output, ``gain``: the action's pre-activation is ``readout * gain``, a product NIR has
  no node for (``trace -> gain_readout -> gain``).

What NIR cannot say, written as node metadata under ``"l2l_ros"`` (a consumer that
ignores it runs plain LIF neurons):

* **adaptive thresholds** (ALIF): NIR 1.0 has no adaptive-threshold node, and the
  threshold increase is no composite of NIR nodes either (the reset subtracts the
  adapted threshold, a product of two state variables). ``beta`` and ``tau_a`` per
  neuron are in the ``neurons`` node's metadata; a LIF-only network (``n_alif = 0``)
  has none of this and is what a third-party NIR simulator can run faithfully;
* the **reset by subtraction** of the threshold (NIR's LIF resets to ``v_reset``) and the
  **refractory** ticks;
* ``ticks_per_step``: the observation is held for K ticks and the readout averages the
  trace over them.

``import_lsnn`` rebuilds an :class:`LSNNPolicy` from such a file with bit-identical
weights (the graph stores float64, scaled exactly), so its spikes equal the exported
network's on the same inputs (tested).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from l2l_ros.snn.lsnn import LSNNPolicy

__all__ = ["export_lsnn", "import_lsnn", "NIR_FORMAT"]

NIR_FORMAT = 1


def _f64(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def export_lsnn(policy: LSNNPolicy, path: str | Path, description: dict | None = None):
    """Write ``policy`` as a NIR graph to ``path`` (``nir.write``); returns the graph."""
    import nir

    if not isinstance(policy, LSNNPolicy):
        raise TypeError(f"NIR export takes a spiking (lsnn) policy, not {type(policy).__name__}")
    n = policy.neurons
    cfg = policy.config
    thr = float(cfg.thr)
    alpha = _f64(n.alpha)
    size = policy.w_in.shape[1]
    nodes = {
        "input": nir.Input(input_type={"input": np.array([policy.w_in.shape[0]])}),
        "w_in": nir.Affine(weight=_f64(policy.w_in).T * thr, bias=_f64(policy.b_in) * thr),
        "neurons": nir.LIF(tau=1.0 / (1.0 - alpha), r=np.ones(size), v_leak=np.zeros(size),
                           v_threshold=np.full(size, thr), v_reset=np.zeros(size), metadata={"l2l_ros": json.dumps({
                               "adaptation": {"beta": _f64(n.beta).tolist(), "tau_a": (-1.0 / np.log(_f64(n.rho))).tolist(),
                                              "rule": "A = v_threshold + beta * b; b += (1 - exp(-1 / tau_a)) * (z - b)"},
                               "reset": "subtract the adapted threshold A", "refractory_ticks": int(cfg.refractory),
                               "n_lif": int(cfg.n_lif), "n_alif": int(cfg.n_alif)})}),
        "rec": nir.Linear(weight=_f64(policy.w_rec * policy.rec_mask).T * thr),
        "trace": nir.LI(tau=np.full(size, 1.0 / (1.0 - policy.kappa) if policy.kappa > 0 else 1.0),
                        r=np.ones(size), v_leak=np.zeros(size)),
        "readout": nir.Affine(weight=_f64(policy.policy_head.weight), bias=_f64(policy.policy_head.bias)),
        "output": nir.Output(output_type={"output": np.array([policy.policy_head.out_features])}),
    }
    edges = [("input", "w_in"), ("w_in", "neurons"), ("neurons", "rec"), ("rec", "neurons"),
             ("neurons", "trace"), ("trace", "readout"), ("readout", "output")]
    if policy.gain_head is not None:  # the action's pre-activation is readout * gain
        nodes["gain_readout"] = nir.Affine(weight=_f64(policy.gain_head.weight), bias=_f64(policy.gain_head.bias))
        nodes["gain"] = nir.Output(output_type={"output": np.array([policy.gain_head.out_features])})
        edges += [("trace", "gain_readout"), ("gain_readout", "gain")]
    meta = {"format": NIR_FORMAT, "dt": 1.0, "time_unit": "one network tick",
            "ticks_per_step": int(cfg.ticks_per_step), "obs_dim": int(policy.obs_dim),
            "action_space": policy.action_spec, "config": cfg.to_dict(), **(description or {})}
    graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata={"l2l_ros": json.dumps(meta)})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nir.write(str(path), graph)
    return graph


def import_lsnn(path: str | Path) -> LSNNPolicy:
    """An :class:`LSNNPolicy` from a graph written by :func:`export_lsnn`."""
    import nir

    graph = nir.read(str(path))
    raw = graph.metadata.get("l2l_ros")
    if raw is None:
        raise ValueError(f"{path}: not an l2l_ros LSNN graph (no l2l_ros metadata)")
    meta = json.loads(raw if isinstance(raw, str) else raw.decode())
    if int(meta.get("format", -1)) != NIR_FORMAT:
        raise ValueError(f"{path}: l2l_ros NIR format {meta.get('format')}, expected {NIR_FORMAT}")
    policy = LSNNPolicy(int(meta["obs_dim"]), meta["action_space"], meta["config"])
    thr = float(policy.config.thr)
    nodes = graph.nodes
    with torch.no_grad():
        policy.w_in.copy_(torch.from_numpy(np.asarray(nodes["w_in"].weight).T / thr))
        policy.b_in.copy_(torch.from_numpy(np.asarray(nodes["w_in"].bias) / thr))
        policy.w_rec.copy_(torch.from_numpy(np.asarray(nodes["rec"].weight).T / thr))
        policy.policy_head.weight.copy_(torch.from_numpy(np.asarray(nodes["readout"].weight)))
        policy.policy_head.bias.copy_(torch.from_numpy(np.asarray(nodes["readout"].bias)))
        if policy.gain_head is not None:
            policy.gain_head.weight.copy_(torch.from_numpy(np.asarray(nodes["gain_readout"].weight)))
            policy.gain_head.bias.copy_(torch.from_numpy(np.asarray(nodes["gain_readout"].bias)))
    tau = np.asarray(nodes["neurons"].tau, dtype=np.float64)
    if not np.allclose(1.0 - 1.0 / tau, policy.neurons.alpha.double().numpy(), rtol=0, atol=1e-6) or \
            not math.isclose(float(np.asarray(nodes["neurons"].v_threshold).reshape(-1)[0]), thr):
        raise ValueError(f"{path}: the neurons' constants disagree with the stored config")
    return policy.eval()
