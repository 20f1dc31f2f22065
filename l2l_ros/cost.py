"""What one control step of a policy costs: spikes and synaptic operations of a spiking
network, multiply-accumulates of the LSTM, and energy estimates from published
per-operation energies. No ROS; used by ``l2l eval`` and the spiking_policy node.

Counting (per control step of ``K`` network ticks, ``n`` recurrent neurons, ``n_in``
input channels after population coding, ``A`` action outputs):

* **SynOps** (spike-driven synaptic operations): every spike reaches the ``n - 1``
  other recurrent neurons (no self-connections) and the ``A`` policy readouts. The
  readout reads a low-pass trace of the spikes; a linear readout of a linear filter is
  the same filter of the readout's input currents, so a chip integrates it spike by
  spike. The value head is for training only and is not counted.
* **Dense MACs**: what is not spike-driven. For the LSNN the input layer
  (``n_in * n`` per step: the observation is analog, population-coded, and held over
  the K ticks, so it is projected once). For the LSTM every weight of its gates and of
  its policy readout, once per step (``4 h (n_in + h) + h A``).
* **On a CPU** our LSNN does not skip silent neurons: the recurrent product is dense,
  ``K n^2`` MACs, plus the input and readout products.

Energies (picojoules per operation, arithmetic only):

* ``SYNOP_PJ = 23.6``: Loihi's synaptic spike operation, and ``NEURON_UPDATE_PJ = 52``
  its neuron update (inactive; 81 active). Davies et al. 2018, "Loihi: a neuromorphic
  manycore processor with on-chip learning", IEEE Micro 38(1), Table 2.
* ``MAC_PJ = 4.6``: a 32-bit float multiply (3.7 pJ) and add (0.9 pJ) at 45 nm.
  Horowitz 2014, "Computing's energy problem (and what we can do about it)", ISSCC,
  Figure 1.1.9. Memory accesses (10 pJ for 64 bits from an 8 KB SRAM, 1.3-2.6 nJ
  from DRAM in the same figure) are left out, which flatters the CPU: the estimates
  are floors, not measurements. On the neuromorphic estimate the dense input layer
  runs on a host at ``MAC_PJ``.
"""
from __future__ import annotations

import numpy as np

SYNOP_PJ = 23.6
NEURON_UPDATE_PJ = 52.0
MAC_PJ = 4.6
SOURCES = {
    "synop_pj": "Davies et al. 2018, IEEE Micro 38(1), Table 2: Loihi synaptic spike op 23.6 pJ",
    "neuron_update_pj": "Davies et al. 2018, Table 2: Loihi neuron update 52 pJ (inactive), 81 pJ (active)",
    "mac_pj": "Horowitz 2014, ISSCC: 32-bit float multiply 3.7 pJ + add 0.9 pJ at 45 nm (arithmetic only)",
}

__all__ = ["SYNOP_PJ", "NEURON_UPDATE_PJ", "MAC_PJ", "SOURCES", "lsnn_cost", "lstm_cost", "policy_cost", "cost_line"]


def _readouts(policy) -> int:
    return int(policy.policy_head.out_features)


def lsnn_cost(policy, spike_counts: np.ndarray, steps: int) -> dict:
    """Per-control-step cost of an LSNN from its spikes per neuron over ``steps`` steps."""
    counts = np.asarray(spike_counts, dtype=np.float64).reshape(-1)
    n = counts.size
    ticks = int(policy.config.ticks_per_step)
    steps = max(int(steps), 1)
    n_in = int(policy.w_in.shape[0])
    fan_out = (n - 1) + _readouts(policy)
    spikes_per_step = float(counts.sum()) / steps
    synops = spikes_per_step * fan_out
    dense_macs = n_in * n
    cpu_macs = dense_macs + ticks * n * n + n * _readouts(policy)
    return {
        "kind": "lsnn", "neurons": n, "ticks_per_step": ticks, "steps": steps,
        "spikes_per_step": spikes_per_step,
        "spikes_per_neuron_per_tick": spikes_per_step / (n * ticks),
        "silent_fraction": float(np.mean(counts == 0)),
        "fan_out": fan_out,
        "synops_per_step": synops,
        "dense_macs_per_step": dense_macs,
        "cpu_macs_per_step": cpu_macs,
        "energy_neuromorphic_nj_per_step": (synops * SYNOP_PJ + n * ticks * NEURON_UPDATE_PJ
                                            + dense_macs * MAC_PJ) / 1e3,
        "energy_cpu_nj_per_step": cpu_macs * MAC_PJ / 1e3,
        "energy_sources": SOURCES,
    }


def lstm_cost(policy) -> dict:
    """Per-control-step MACs and CPU energy of an LSTM policy (weights of its gates and its
    policy readout, each used once per step)."""
    gates = sum(int(p.numel()) for name, p in policy.lstm.named_parameters() if name.startswith("weight"))
    macs = gates + int(policy.policy_head.weight.numel())
    return {"kind": "lstm", "hidden": int(policy.config.hidden), "macs_per_step": macs,
            "energy_cpu_nj_per_step": macs * MAC_PJ / 1e3, "energy_sources": {"mac_pj": SOURCES["mac_pj"]}}


def mlp_cost(policy) -> dict:
    """Per-control-step MACs and CPU energy of the memoryless MLP (its layers and readout)."""
    macs = sum(int(m.weight.numel()) for m in policy.mlp if hasattr(m, "weight"))
    macs += int(policy.policy_head.weight.numel())
    return {"kind": "mlp", "hidden": int(policy.config.hidden), "macs_per_step": macs,
            "energy_cpu_nj_per_step": macs * MAC_PJ / 1e3, "energy_sources": {"mac_pj": SOURCES["mac_pj"]}}


def policy_cost(policy, steps: int) -> dict:
    """The cost of any network: an LSNN's from the spikes counted over ``steps`` control
    steps since its ``count_spikes()``, an LSTM's or an MLP's from its weights."""
    if getattr(policy, "kind", "") == "lstm":
        return lstm_cost(policy)
    if getattr(policy, "kind", "") == "mlp":
        return mlp_cost(policy)
    if getattr(policy, "spike_counter", None) is None:
        raise RuntimeError("call count_spikes() before the steps whose cost is wanted")
    counts = policy.spike_counter
    return lsnn_cost(policy, counts.reshape(-1, counts.shape[-1]).sum(0).cpu().numpy(), steps)


def cost_line(name: str, c: dict) -> str:
    """One line of l2l_ros.cost figures per control step (energies are arithmetic-only floors)."""
    if c["kind"] in ("lstm", "mlp"):
        return (f"{name} cost per step: {c['macs_per_step']:,} MACs; "
                f"CPU {c['energy_cpu_nj_per_step']:.0f} nJ")
    return (f"{name} cost per step: {c['spikes_per_neuron_per_tick']:.3f} spikes/neuron/tick, "
            f"{100 * c['silent_fraction']:.0f}% of neurons silent, {c['synops_per_step']:,.0f} SynOps + "
            f"{c['dense_macs_per_step']:,} input MACs; neuromorphic (Loihi) "
            f"{c['energy_neuromorphic_nj_per_step']:.0f} nJ, CPU {c['energy_cpu_nj_per_step']:.0f} nJ "
            f"({c['cpu_macs_per_step']:,} MACs)")
