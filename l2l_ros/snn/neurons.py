"""LIF and ALIF (adaptive-threshold) neurons of the LSNN (Bellec et al. 2018).

Built on snnTorch's :class:`snntorch._neurons.neurons.SpikingNeuron` base (its
threshold buffer, ``spike_grad`` slot and subtract-reset convention) but with
*explicit state passing*: a step takes ``(input, state)`` and returns
``(spikes, new_state)``, with no hidden module attributes, so a whole task can be
unrolled and trained by BPTT, and a ROS node can hold the state between ticks.

Model (DESIGN.md; time constants in network steps, ``dt`` = 1 step by default)::

    A_t     = thr + beta * b_t                         adaptive threshold
    v_{t+1} = alpha * v_t + (1 - alpha) * I_t - z_t * A_t       alpha = exp(-dt/tau_m)
    b_{t+1} = rho * b_t + (1 - rho) * z_t                       rho   = exp(-dt/tau_a)
    z_{t+1} = H((v_{t+1} - A_{t+1}) / A_{t+1})   unless refractory

LIF neurons are ALIF neurons with ``beta = 0``.

Order of updates inside one call of :meth:`ALIF.forward` (state ``(v_t, b_t, z_t,
r_t)``, input current ``I_t``):

1. ``A_t = thr + beta * b_t`` (threshold that produced ``z_t``),
2. ``v_{t+1} = alpha v_t + (1 - alpha) I_t - z_t A_t`` (leak, integrate, reset by
   subtraction of the threshold at which the previous spike was emitted),
3. ``b_{t+1} = rho b_t + (1 - rho) z_t`` (adaptation driven by the previous spike),
4. ``A_{t+1} = thr + beta b_{t+1}``,
5. ``z_{t+1} = H((v_{t+1} - A_{t+1}) / A_{t+1})``, forced to 0 where ``r_t > 0``,
6. ``r_{t+1} = refractory`` where ``z_{t+1} = 1``, else ``max(r_t - 1, 0)``.

So the input of step t reaches the spikes returned by the same call: one network
step per env step adds no lag between observation and action. ``refractory = n``
means that after a spike the neuron cannot spike during the next ``n`` calls
(``n = 0``: no refractoriness). Its membrane keeps integrating meanwhile.

Surrogate gradient: ``dz/dv_scaled = 0.3 * max(0, 1 - |v_scaled|)`` with
``v_scaled = (v - A) / A`` (the LSNN pseudo-derivative). snnTorch 1.0's
``surrogate.triangular`` is *not* this shape (its backward is a constant
``±threshold``, see its source), so :class:`LSNNSpike` implements it.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from snntorch._neurons.neurons import SpikingNeuron

__all__ = ["LSNNSpike", "lsnn_spike", "pseudo_derivative", "NeuronState", "ALIF", "LIF"]


def pseudo_derivative(v_scaled: torch.Tensor, dampening: float = 0.3) -> torch.Tensor:
    """LSNN pseudo-derivative ``dampening * max(0, 1 - |v_scaled|)``."""
    return dampening * torch.clamp(1.0 - v_scaled.abs(), min=0.0)


class LSNNSpike(torch.autograd.Function):
    """Heaviside forward (``v_scaled > 0``), triangular pseudo-derivative backward."""

    @staticmethod
    def forward(ctx, v_scaled: torch.Tensor, dampening: float = 0.3):  # type: ignore[override]
        ctx.save_for_backward(v_scaled)
        ctx.dampening = dampening
        return (v_scaled > 0).to(v_scaled.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # type: ignore[override]
        (v_scaled,) = ctx.saved_tensors
        return grad_output * pseudo_derivative(v_scaled, ctx.dampening), None


def lsnn_spike(dampening: float = 0.3):
    """snnTorch-style surrogate factory (``spike_grad=lsnn_spike()``)."""

    def inner(v_scaled: torch.Tensor) -> torch.Tensor:
        return LSNNSpike.apply(v_scaled, dampening)

    return inner


class _FusedALIFStep(torch.autograd.Function):
    """Steps 1-5 of the update as one autograd node (same maths as the reference).

    Backward, with ``g*`` the incoming gradients of ``v_{t+1}, b_{t+1}, z_{t+1}`` and
    ``psi = pseudo_derivative(v_scaled) * free``::

        g_vs   = gz * psi
        g_v1   = gv + g_vs / A1                  (total gradient of v_{t+1})
        g_b1   = gb - beta * g_vs * v1 / A1**2   (total gradient of b_{t+1})
        dI     = g_v1;   dv = alpha * g_v1
        dz     = -A0 * g_v1 (unless detach_reset) + (1 - rho) * g_b1
        db     = rho * g_b1 - beta * z * g_v1
    """

    @staticmethod
    def forward(ctx, i, v, b, z, r, refractory, alpha, rho, thr, beta, dampening, detach_reset):  # type: ignore[override]
        a0 = torch.addcmul(thr, beta, b)
        v1 = torch.addcmul(i, alpha, v).sub_(z * a0)
        b1 = torch.lerp(z, b, rho)
        a1 = torch.addcmul(thr, beta, b1)
        vs = v1 / a1 - 1.0
        z1 = (vs > 0).to(i.dtype)
        psi = pseudo_derivative(vs, dampening)
        if refractory > 0:
            free = (r <= 0).to(i.dtype)
            z1.mul_(free)
            psi.mul_(free)
            # spike -> refractory steps to come; else count down (r - 1 < 0 -> 0)
            r1 = torch.maximum(r - 1.0, z1 * float(refractory)).clamp_(min=0.0)
        else:
            r1 = r.clone()
        ctx.save_for_backward(v1, a1, a0, z, psi, alpha, rho, beta)
        ctx.detach_reset = detach_reset
        ctx.mark_non_differentiable(r1)
        return v1, b1, z1, r1

    @staticmethod
    def backward(ctx, gv, gb, gz, gr):  # type: ignore[override]
        v1, a1, a0, z, psi, alpha, rho, beta = ctx.saved_tensors
        g_vs = gz * psi
        inv_a1 = 1.0 / a1
        g_v1 = gv + g_vs * inv_a1
        g_b1 = gb - beta * g_vs * v1 * inv_a1 * inv_a1
        di = g_v1
        dv = alpha * g_v1
        dz = (1.0 - rho) * g_b1
        if not ctx.detach_reset:
            dz = dz - a0 * g_v1
        db = rho * g_b1 - beta * z * g_v1
        return di, dv, db, dz, None, None, None, None, None, None, None, None


class NeuronState(NamedTuple):
    """State of a population, each ``[batch, n]``: membrane, adaptation, last
    spikes, remaining refractory steps."""

    v: torch.Tensor
    b: torch.Tensor
    z: torch.Tensor
    r: torch.Tensor


def _per_neuron(value, n: int, name: str) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=torch.float32)
    if t.dim() == 0:
        t = t.expand(n).clone()
    if t.shape != (n,):
        raise ValueError(f"{name} must be a scalar or have shape ({n},), got {tuple(t.shape)}")
    return t


class ALIF(SpikingNeuron):
    """A population of ``n`` adaptive LIF neurons (per-neuron ``beta``/``tau_a``/``tau_m``).

    ``beta``, ``tau_m`` and ``tau_a`` may be scalars or length-``n`` vectors, so one
    fused population can hold LIF (``beta = 0``) and ALIF neurons together.
    Constants are non-persistent buffers: they come from the config, not from the
    weights file.
    """

    def __init__(self, n: int, thr: float = 1.0, beta=1.7, tau_m=3.0, tau_a=300.0,
                 dt: float = 1.0, refractory: int = 1, dampening: float = 0.3,
                 detach_reset: bool = False):
        super().__init__(threshold=thr, spike_grad=lsnn_spike(dampening),
                         reset_mechanism="subtract")
        # The base class keeps a global list of instances for init_hidden mode;
        # with explicit state it is unused and would keep every policy alive.
        try:
            SpikingNeuron.instances.remove(self)
        except ValueError:
            pass
        if thr <= 0:
            raise ValueError("thr must be > 0 (spikes are H((v - A) / A))")
        if refractory < 0:
            raise ValueError("refractory must be >= 0")
        self.n = int(n)
        self.thr = float(thr)
        self.dt = float(dt)
        self.refractory = int(refractory)
        self.dampening = float(dampening)
        self.detach_reset = bool(detach_reset)
        beta_t = _per_neuron(beta, self.n, "beta")
        tau_m_t = _per_neuron(tau_m, self.n, "tau_m")
        tau_a_t = _per_neuron(tau_a, self.n, "tau_a")
        if (tau_m_t <= 0).any() or (tau_a_t <= 0).any():
            raise ValueError("time constants must be > 0")
        self.register_buffer("beta", beta_t, persistent=False)
        self.register_buffer("alpha", torch.exp(-self.dt / tau_m_t), persistent=False)
        self.register_buffer("rho", torch.exp(-self.dt / tau_a_t), persistent=False)

    @property
    def one_minus_alpha(self) -> torch.Tensor:
        return 1.0 - self.alpha

    def initial_state(self, batch: int, device=None, dtype=torch.float32) -> NeuronState:
        zeros = torch.zeros(batch, self.n, device=device, dtype=dtype)
        return NeuronState(zeros, zeros.clone(), zeros.clone(), zeros.clone())

    def threshold_of(self, b: torch.Tensor) -> torch.Tensor:
        """``A = thr + beta * b``."""
        return torch.addcmul(self.threshold.to(b.dtype), self.beta, b)

    def step_scaled(self, i_scaled: torch.Tensor, state: NeuronState, thr: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, NeuronState]:
        """One step with the input already multiplied by ``(1 - alpha)``.

        The LSNN policy folds ``(1 - alpha)`` into its weights, and the elementwise
        update runs as one fused autograd node (:class:`_FusedALIFStep`, hand-written
        backward, checked against :meth:`step_scaled_autograd` in the tests).
        """
        v, b, z, r = state
        if thr is None:
            thr = self.threshold.to(i_scaled.dtype)
        v_new, b_new, z_new, r_new = _FusedALIFStep.apply(
            i_scaled, v, b, z, r, self.refractory, self.alpha, self.rho, thr,
            self.beta, self.dampening, self.detach_reset)
        return z_new, NeuronState(v_new, b_new, z_new, r_new)

    def _next_refractory(self, r: torch.Tensor, z_new: torch.Tensor) -> torch.Tensor:
        if self.refractory <= 0:
            return r
        with torch.no_grad():
            return torch.where(z_new > 0, torch.full_like(r, float(self.refractory)),
                               (r - 1.0).clamp_(min=0.0))

    def step_scaled_autograd(self, i_scaled: torch.Tensor, state: NeuronState
                             ) -> tuple[torch.Tensor, NeuronState]:
        """Reference version of :meth:`step_scaled` built from plain autograd ops."""
        v, b, z, r = state
        a_t = self.threshold_of(b)                                   # 1. A_t
        z_reset = z.detach() if self.detach_reset else z
        v_new = torch.addcmul(i_scaled, self.alpha, v) - z_reset * a_t  # 2. v_{t+1}
        b_new = torch.lerp(z, b, self.rho)                           # 3. b_{t+1} = rho b + (1-rho) z
        a_new = self.threshold_of(b_new)                             # 4. A_{t+1}
        z_new = self.spike_grad(v_new / a_new - 1.0)                 # 5. z_{t+1}
        if self.refractory > 0:
            z_new = z_new * (r <= 0).to(z_new.dtype)
        return z_new, NeuronState(v_new, b_new, z_new, self._next_refractory(r, z_new))

    def forward(self, current: torch.Tensor, state: NeuronState | None = None
                ) -> tuple[torch.Tensor, NeuronState]:
        """``(I_t [B, n], state_t) -> (z_{t+1}, state_{t+1})``; see module docstring."""
        if state is None:
            state = self.initial_state(current.shape[0], current.device, current.dtype)
        return self.step_scaled(current * self.one_minus_alpha, state)

    def extra_repr(self) -> str:
        return (f"n={self.n}, thr={self.thr}, dt={self.dt}, refractory={self.refractory}, "
                f"dampening={self.dampening}")


class LIF(ALIF):
    """Leaky integrate-and-fire: an :class:`ALIF` with ``beta = 0`` (fixed threshold)."""

    def __init__(self, n: int, thr: float = 1.0, tau_m=3.0, dt: float = 1.0,
                 refractory: int = 1, dampening: float = 0.3, detach_reset: bool = False):
        super().__init__(n, thr=thr, beta=0.0, tau_m=tau_m, tau_a=1.0, dt=dt,
                         refractory=refractory, dampening=dampening, detach_reset=detach_reset)


def decay(tau: float, dt: float = 1.0) -> float:
    """``exp(-dt / tau)``; ``tau <= 0`` gives 0 (no memory)."""
    return math.exp(-dt / tau) if tau > 0 else 0.0
