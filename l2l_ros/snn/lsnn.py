"""LSNN policy: input layer -> recurrent LIF + ALIF population -> policy/value readouts.

Network (per network step t, one step per env step)::

    I_t      = thr * (x_t W_in + b_in + z_t W_rec)         W_rec diagonal masked to 0
    z_{t+1}  = ALIF population step (see l2l_ros.snn.neurons for the update order)
    y_{t+1}  = kappa * y_t + (1 - kappa) * z_{t+1}          kappa = exp(-dt / tau_out)
    readouts = Linear(y_{t+1})   (policy logits / Gaussian mean, and value)

The readouts read the **low-pass filtered spike trace** ``y`` (not the membrane),
so the network's only output is its spikes. Currents are expressed in units of
the threshold ``thr`` (the learnable weights stay O(1) for Adam while ``thr`` and
``beta`` keep the paper's values and ratio).

Speed: the input projection of the whole sequence is one matmul, and the factors
``thr * (1 - alpha)`` are folded into the weights once per sequence, so a step is
one ``addmm`` plus ~8 elementwise ops.

Default constants (time in network steps = env steps; tasks of 100-500 steps):

* ``thr = 0.01``, ``beta = 1.7``: the LSNN paper's values; a spike raises an ALIF
  threshold by ``beta * (1 - rho) / thr`` ~ 57 % at ``tau_a = 300``.
* ``tau_m = 3``: the membrane integrates a few env steps (fast reactions; the
  paper's 20 ms is 20 steps at 1 ms, far too slow at one step per control tick).
* ``tau_a = 300``: adaptation memory spans several trials of a 100-500 step task
  (paper: 200-1200 steps).
* ``tau_out = 3``: readout smoothing.
* ``refractory = 1``: one blocked step after a spike (paper: 2-5 steps of 1 ms).
* ``n_lif = 64``, ``n_alif = 64``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import nn

from l2l_ros.policy_base import (MAX_UNITS, DictConfig, RecurrentPolicy, _reset_where, append_products,
                                 check_bool, check_index_list, check_index_pairs, check_int,
                                 check_parameter_count, check_real, product_pairs)
from l2l_ros.snn.neurons import ALIF, NeuronState
from l2l_ros.snn.sequence import lsnn_sequence

__all__ = ["LSNNConfig", "LSNNState", "LSNNPolicy", "MAX_TICKS_PER_STEP"]

# Network ticks per control step: each tick is one recurrent step per env step, so
# K ticks make a control tick K times slower (the bundled I-maze model runs 4).
MAX_TICKS_PER_STEP = 16
MAX_INPUT_POPULATION = 64  # tuning curves per input
MAX_REFRACTORY = 1000      # ticks
MAX_TAU = 1e7              # ticks; time constants beyond this are "never decays"
MAX_GAIN = 1e6             # |input_gain|, |input_bias|, |rec_gain|, dampening, beta
# Added to an evidence channel's magnitude trace: with products of order 0.01 to 1 per
# step, a channel reads about 0 until its product has been seen, then about +-1.
EVIDENCE_FLOOR = 1e-2


@dataclass
class LSNNConfig(DictConfig):
    n_lif: int = 64
    n_alif: int = 64
    thr: float = 0.01
    beta: float = 1.7
    tau_m: float = 3.0
    tau_a: float = 300.0
    tau_out: float = 3.0
    dt: float = 1.0
    refractory: int = 1
    dampening: float = 0.3
    detach_reset: bool = False
    input_gain: float = 5.0
    input_bias: float = 0.5
    rec_gain: float = 1.0
    log_std_init: float = -0.5
    # Population coding of the inputs (Georgopoulos et al. 1986): each input also
    # drives this many input channels with Gaussian tuning curves centred evenly on
    # [-1, 1], beside its raw value. 0: raw values only.
    input_population: int = 0
    # Observation indices the network does not read (zeroed before the input layer),
    # e.g. the previous action and the odometry twist, which let an imitating network
    # copy its own last action instead of reading the pose (the "copycat" problem of
    # imitation with history, Wen et al. 2020). The input_products below are formed from
    # the whole observation first, so a product can keep what an ignored input tells only
    # in combination (the arm's previous command times the joint's velocity shows the
    # joint's sign; the command alone is the teacher's last action to copy).
    ignore_inputs: list = field(default_factory=list)
    # Network time steps (ticks) per observation: the observation is held for this many
    # ticks and the features are the mean readout trace over them, so a rate over the
    # ticks, not one tick's spikes, drives the action (Bellec et al. ran several ms of
    # network time per environment step). The time constants above are in ticks.
    ticks_per_step: int = 1
    # Adaptation time constants spread over the ALIF neurons: > tau_a gives them
    # time constants spaced geometrically from tau_a to tau_a_max (Bellec et al. used
    # several tau_a in one network), so one network holds memories of a few steps
    # and of a whole 500-step task. 0: every ALIF neuron has tau_a.
    tau_a_max: float = 0.0
    # Conjunctive input channels: each pair [i, j] of observation indices adds the
    # channel obs[i] * obs[j] beside the raw values, e.g. "this arm was pulled" times
    # "it paid" for a bandit, so evidence per arm arrives as its own input current
    # instead of being computed by coincidence of two inputs inside the network.
    input_products: list = field(default_factory=list)
    # Evidence channels: > 0 adds, per input product, a slow synaptic trace of it over
    # this many observation steps, normalised by the same trace of its magnitude:
    # e = sum_k lam^k p_{t-k} / (sum_k lam^k |p_{t-k}| + EVIDENCE_FLOOR), lam = exp(-1/tau),
    # in [-1, 1] and reset at a task start. A product (the arm's command times its joint's
    # velocity) shows a hidden sign for one step; its trace holds that evidence for the
    # task, so the network reads the sign instead of learning to hold it (docs/arm.md,
    # attempt 14). Part of the network state, so env and node agree. 0: off.
    evidence_tau: float = 0.0
    # Continuous actions: the mean is policy readout times a gain readout per action
    # (RecurrentPolicy.gain_head), so a sign the network infers can flip its command.
    gain_readout: bool = False

    @property
    def n_rec(self) -> int:
        return self.n_lif + self.n_alif

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first field out of its bounds.

        Why: the config is read from checkpoint JSON; a negative size, a NaN time
        constant or 20000 ticks per step would crash or stall the node that loads it."""
        check_int("n_lif", self.n_lif, 0, MAX_UNITS)
        check_int("n_alif", self.n_alif, 0, MAX_UNITS)
        if self.n_lif + self.n_alif < 1:
            raise ValueError("the LSNN needs at least one neuron (n_lif + n_alif >= 1)")
        check_real("thr", self.thr, 0.0, MAX_GAIN, lo_open=True)
        check_real("beta", self.beta, 0.0, MAX_GAIN)
        for name in ("tau_m", "tau_a", "dt"):
            check_real(name, getattr(self, name), 0.0, MAX_TAU, lo_open=True)
        check_real("tau_out", self.tau_out, 0.0, MAX_TAU)  # 0: no readout smoothing
        check_real("tau_a_max", self.tau_a_max, 0.0, MAX_TAU)  # 0: off; else >= tau_a (checked when built)
        check_int("refractory", self.refractory, 0, MAX_REFRACTORY)
        check_real("dampening", self.dampening, 0.0, MAX_GAIN)
        check_bool("detach_reset", self.detach_reset)
        for name in ("input_gain", "input_bias", "rec_gain"):
            check_real(name, getattr(self, name), -MAX_GAIN, MAX_GAIN)
        check_real("log_std_init", self.log_std_init, -20.0, 20.0)
        check_int("input_population", self.input_population, 0, MAX_INPUT_POPULATION)
        check_index_list("ignore_inputs", self.ignore_inputs)
        check_int("ticks_per_step", self.ticks_per_step, 1, MAX_TICKS_PER_STEP)
        check_index_pairs("input_products", self.input_products)
        check_real("evidence_tau", self.evidence_tau, 0.0, MAX_TAU)
        if self.evidence_tau > 0 and not self.input_products:
            raise ValueError("evidence_tau needs input_products (the evidence is a trace of each product)")
        check_bool("gain_readout", self.gain_readout)


class LSNNState(NamedTuple):
    """Each ``[B, n_rec]``: membrane, adaptation, last spikes, refractory counter,
    readout trace; then ``evidence [B, 2P]``: the signed and the magnitude traces of the
    P input products (``[B, 0]`` with ``evidence_tau`` 0)."""

    v: torch.Tensor
    b: torch.Tensor
    z: torch.Tensor
    r: torch.Tensor
    trace: torch.Tensor
    evidence: torch.Tensor


class LSNNPolicy(RecurrentPolicy):
    kind = "lsnn"

    def __init__(self, obs_dim: int, action_spec: dict, config: LSNNConfig | dict | None = None):
        if not isinstance(config, LSNNConfig):
            config = LSNNConfig.from_dict(config)
        config.validate()  # again: a config object may have been changed after it was made
        self.config = config
        n = config.n_rec
        n_in = (check_int("obs_dim", obs_dim, 1, MAX_UNITS) + len(config.input_products)
                * (2 if config.evidence_tau > 0 else 1)) * (1 + config.input_population)
        check_parameter_count("lsnn", n_in * n + n * n + 2 * n)
        super().__init__(obs_dim, action_spec, n, config.log_std_init, gain_readout=config.gain_readout)
        beta = torch.cat([torch.zeros(config.n_lif), torch.full((config.n_alif,), float(config.beta))])
        # Neurons 0..n_lif-1 are LIF (beta = 0), the rest ALIF.
        self.neurons = ALIF(n, thr=config.thr, beta=beta, tau_m=config.tau_m, tau_a=self._adaptation_taus(config),
                            dt=config.dt, refractory=config.refractory,
                            dampening=config.dampening, detach_reset=config.detach_reset)
        # Index tensors of the product pairs, built once (``_currents`` runs every control tick).
        pairs = product_pairs(config.input_products, obs_dim)
        self.register_buffer("product_pairs", pairs, persistent=False)
        self.n_evidence = len(pairs) if config.evidence_tau > 0 else 0
        self.evidence_decay = math.exp(-1.0 / config.evidence_tau) if self.n_evidence else 0.0
        n_in = (obs_dim + len(pairs) + self.n_evidence) * (1 + max(0, config.input_population))
        self.w_in = nn.Parameter(torch.randn(n_in, n) * (config.input_gain / math.sqrt(max(n_in, 1))))
        P = max(0, config.input_population)
        self.register_buffer("tuning_centres", torch.linspace(-1.0, 1.0, P) if P > 1 else torch.zeros(P),
                             persistent=False)
        self.tuning_width = 2.0 / (P - 1) if P > 1 else 1.0
        bad = [i for i in config.ignore_inputs if not 0 <= int(i) < obs_dim]
        if bad:
            raise ValueError(f"ignore_inputs {bad} out of range for {obs_dim} observation values")
        keep = torch.ones(obs_dim + len(pairs))  # the products are kept
        keep[[int(i) for i in config.ignore_inputs]] = 0.0
        self.register_buffer("input_keep", keep, persistent=False)
        self.b_in = nn.Parameter(torch.full((n,), float(config.input_bias)))
        self.w_rec = nn.Parameter(torch.randn(n, n) * (config.rec_gain / math.sqrt(n)))
        self.register_buffer("rec_mask", 1.0 - torch.eye(n), persistent=False)
        with torch.no_grad():
            self.w_rec.mul_(self.rec_mask)
        self.kappa = math.exp(-config.dt / config.tau_out) if config.tau_out > 0 else 0.0
        #: ``[n]`` spikes per neuron summed over every tick of every inference run since
        #: ``count_spikes()`` (None: not counted).
        self.spike_counter: torch.Tensor | None = None

    def count_spikes(self, batch: int | None = None) -> None:
        """Count every inference tick's spikes per neuron from now on (float64: a node counts
        for hours, and float32 stops adding 1 beyond 2**24). ``batch``: keep ``[batch, n]``
        counts, one add per tick with no reduction (the robot's batch of 1 on the control
        path); None: ``[n]``, summed over any batch."""
        shape = (self.config.n_rec,) if batch is None else (batch, self.config.n_rec)
        self.spike_counter = torch.zeros(shape, dtype=torch.float64, device=self._device())

    @staticmethod
    def _adaptation_taus(config: LSNNConfig) -> float | torch.Tensor:
        lo, hi = float(config.tau_a), float(config.tau_a_max)
        if not (hi == 0 or hi >= lo):  # also refuses NaN
            raise ValueError(f"tau_a_max ({hi}) must be 0 (off) or >= tau_a ({lo})")
        if hi in (0, lo) or config.n_alif == 0:
            return lo
        taus = torch.logspace(math.log10(lo), math.log10(hi), config.n_alif, dtype=torch.float64)
        return torch.cat([torch.full((config.n_lif,), lo, dtype=torch.float64), taus]).float()

    def config_dict(self) -> dict:
        return self.config.to_dict()

    def load_start_weights(self, source: RecurrentPolicy) -> None:
        """As the base class, and also from the same network without evidence channels
        (``evidence_tau`` 0) or without a gain readout: its weights, with zero input weights
        on the evidence channels and a gain head of weight 0 and bias 1, so the network
        starts by acting exactly as the source (docs/arm.md, attempt 17)."""
        if not isinstance(source, LSNNPolicy):
            return super().load_start_weights(source)
        grows_evidence = bool(self.n_evidence) and not source.n_evidence
        grows_gain = self.gain_head is not None and source.gain_head is None
        if not (grows_evidence or grows_gain):
            return super().load_start_weights(source)
        mine = {**source.describe(), "config": {**source.config.to_dict(), "evidence_tau": self.config.evidence_tau,
                                                "gain_readout": self.config.gain_readout}}
        if mine != self.describe():
            raise ValueError(f"it holds {source.describe()}, this run trains {self.describe()}")
        weights = dict(source.state_dict())
        if grows_evidence:
            old, P = weights["w_in"], self.config.input_population
            d_old = self.obs_dim + len(self.product_pairs)
            d_new = d_old + self.n_evidence
            w_in = old.new_zeros(self.w_in.shape)  # channels: raw values, then P tuning curves per value
            w_in[:d_old] = old[:d_old]
            w_in[d_new:d_new + d_old * P] = old[d_old:]
            weights["w_in"] = w_in
        if grows_gain:
            weights["gain_head.weight"] = torch.zeros_like(self.gain_head.weight)
            weights["gain_head.bias"] = torch.ones_like(self.gain_head.bias)
        self.load_state_dict(weights, strict=True)

    def initial_state(self, batch: int) -> LSNNState:
        z = torch.zeros(batch, self.config.n_rec, device=self._device())
        return LSNNState(z, z.clone(), z.clone(), z.clone(), z.clone(),
                         torch.zeros(batch, 2 * self.n_evidence, device=self._device()))

    def encode_inputs(self, obs: torch.Tensor, evidence: torch.Tensor | None = None) -> torch.Tensor:
        """``obs [..., obs_dim]`` -> the input channels ``[..., n_in]`` that ``w_in`` reads:
        product channels appended, ignored inputs zeroed, the evidence channels
        ``[..., P]`` appended (from :meth:`evidence_sequence`; needed with ``evidence_tau``),
        then the tuning curves."""
        obs = append_products(obs, self.product_pairs)
        if self.config.ignore_inputs:
            obs = obs * self.input_keep
        if self.n_evidence:
            if evidence is None or evidence.shape[-1] != self.n_evidence:
                raise ValueError(f"this network reads {self.n_evidence} evidence channels (evidence_tau > 0)")
            obs = torch.cat([obs, evidence], dim=-1)
        if self.config.input_population > 0:
            tuned = torch.exp(-0.5 * ((obs[..., None] - self.tuning_centres) / self.tuning_width) ** 2)
            obs = torch.cat([obs, tuned.flatten(-2)], dim=-1)
        return obs

    def evidence_sequence(self, obs: torch.Tensor, traces: torch.Tensor,
                          done_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``obs [T,B,obs_dim]``, ``traces [B,2P]`` -> the evidence channels ``[T,B,P]`` and
        the traces after the sequence (zeroed where ``done_mask[t]``, before step t). For a
        network with evidence channels (``features_sequence`` calls it only then)."""
        T = obs.shape[0]
        left, right = self.product_pairs.unbind(1)
        p = obs[..., left] * obs[..., right]
        drive = torch.cat([p, p.abs()], dim=-1)
        lam, out = self.evidence_decay, []
        for t in range(T):
            if done_mask is not None:
                traces = traces * (~done_mask[t].to(torch.bool)).to(traces.dtype)[:, None]
            traces = drive[t] + lam * traces
            out.append(traces)
        seq = torch.stack(out)
        P = self.n_evidence
        return seq[..., :P] / (seq[..., P:] + EVIDENCE_FLOOR), traces

    def _currents(self, obs: torch.Tensor, evidence: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Input currents ``[T,B,n]`` of the whole sequence and the recurrent weights, both
        with ``thr * (1 - alpha)`` folded in (so ``I_scaled = (1 - alpha) * I``)."""
        obs = self.encode_inputs(obs, evidence)
        T, B, D = obs.shape
        scale = self.neurons.threshold * (1.0 - self.neurons.alpha)
        inp = torch.addmm(self.b_in, obs.reshape(T * B, D), self.w_in).reshape(T, B, -1)
        return inp * scale, self.w_rec * self.rec_mask * scale

    def features_sequence(self, obs: torch.Tensor, state: LSNNState,
                          done_mask: torch.Tensor | None = None):
        evidence, traces = None, state[5]  # without evidence channels: no work on the control path
        if self.n_evidence:
            evidence, traces = self.evidence_sequence(obs, traces, done_mask)
        inp, w_rec = self._currents(obs, evidence)
        K = self.config.ticks_per_step
        if K > 1:  # hold each observation for K ticks; a task restart resets at its first tick
            T, B = inp.shape[:2]
            # One step (every control tick, every rollout step): a view, no copy.
            inp = inp.expand(K, B, inp.shape[2]) if T == 1 else inp.repeat_interleave(K, dim=0)
            if done_mask is not None:
                ticks_mask = torch.zeros(T * K, B, dtype=torch.bool, device=inp.device)
                ticks_mask[::K] = done_mask.to(torch.bool)
                done_mask = ticks_mask
        if done_mask is None and not any(s.requires_grad for s in state):
            n = self.neurons
            ys, final = lsnn_sequence(inp, w_rec, tuple(state[:5]), n.threshold, n.alpha, n.rho, n.beta,
                                      self.kappa, n.refractory, n.dampening, n.detach_reset,
                                      spike_count=self.spike_counter)  # counted on the inference path only
        else:
            ys, final = self._features_stepwise(inp, w_rec, state, done_mask)
        final = LSNNState(*final[:5], traces)
        if K > 1:
            ys = ys.view(-1, K, *ys.shape[1:]).mean(1)
        return ys, final

    def _features_stepwise(self, inp: torch.Tensor, w_rec: torch.Tensor, state: LSNNState,
                           done_mask: torch.Tensor | None = None):
        """Reference path, one autograd node per step: task restarts inside the
        sequence (``done_mask``) and gradients into the initial state."""
        T, B = inp.shape[:2]
        neurons, kappa = self.neurons, self.kappa
        thr = neurons.threshold.to(inp.dtype)
        init = self.initial_state(B)[:5] if done_mask is not None else None
        v, b, z, r, y = state[:5]
        ns = NeuronState(v, b, z, r)
        traces = []
        for t in range(T):
            if done_mask is not None:
                m = done_mask[t].to(torch.bool)
                if bool(m.any()):
                    v, b, z, r, y = _reset_where((*ns, y), init, m)
                    ns = NeuronState(v, b, z, r)
            i_t = torch.addmm(inp[t], ns.z, w_rec)
            z_new, ns = neurons.step_scaled(i_t, ns, thr)
            if self.spike_counter is not None and not torch.is_grad_enabled():
                self.spike_counter += z_new.detach().sum(0)
            y = torch.lerp(z_new, y, kappa) if kappa > 0 else z_new
            traces.append(y)
        return torch.stack(traces), (*ns, y)
