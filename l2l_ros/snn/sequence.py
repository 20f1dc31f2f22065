"""The LSNN recurrence over a whole sequence as one autograd node (BPTT by hand).

Why: at the batch sizes of meta-RL (a few tasks per minibatch) a step costs only a
few microseconds of arithmetic but ~15 dispatched ops plus autograd bookkeeping.
Building the graph step by step made the spiking policy ~3x slower than
``nn.LSTM`` (whose loop runs in C++). Here the forward loop runs without a graph and
saves only what the backward needs; everything that does not depend on the
backward recurrence (pseudo-derivatives, ``1 / A``, the gradient of ``W_rec``) is
computed for all steps at once, so a step costs ~12 ops forward and ~11 backward.
Both tick loops run under TorchScript (``torch.jit.script``): the same ATen kernels as
eager torch, so the same values bit for bit (tested against the eager functions), without
the interpreter between ops. TorchScript is deprecated in favour of ``torch.compile``,
whose generated kernels round differently and compile for ~20 s per process (measured:
docs/training.md); it is still in the pinned torch.

Same maths, same order of updates as :class:`l2l_ros.snn.neurons.ALIF` plus the
readout trace of :class:`l2l_ros.snn.lsnn.LSNNPolicy` (the tests check values and
gradients against that step-by-step reference)::

    I_t     = inp_t + z_t W                      (inp and W already scaled by thr (1 - alpha))
    v_{t+1} = alpha v_t + I_t - z_t A_t          A_t = thr + beta b_t
    b_{t+1} = rho b_t + (1 - rho) z_t
    z_{t+1} = H(v_{t+1} / A_{t+1} - 1) * free_t  free_t = (r_t <= 0)
    y_{t+1} = kappa y_t + (1 - kappa) z_{t+1}

Gradients flow to ``inp`` and ``W``; the initial state is treated as a constant
(training always starts a task from the initial state). Use the step-by-step path
when a gradient into the initial state is needed.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from l2l_ros.snn.neurons import pseudo_derivative

__all__ = ["lsnn_sequence"]


def _run_eager(inp: Tensor, w: Tensor, v: Tensor, b: Tensor, z: Tensor, r: Tensor, y: Tensor, thr: Tensor,
               alpha: Tensor, rho: Tensor, beta: Tensor, kappa: float, refractory: int, keep: bool,
               spike_count: Optional[Tensor]) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor,
                                                       Tensor, Tensor, Tensor, Tensor]:
    """The forward recurrence: ``(ys, v_T, b_T, z_T, r_T, zs, a_s, vs, frees)``. ``keep``:
    also keep what the backward needs (z_0..z_T, A_0..A_T, v_1..v_T, the refractory masks);
    without it (inference, no autograd) the same operations run in the same order, so both
    give identical values, and the per-tick values go round two slots instead. ``spike_count``
    (``[B, n]``: one add per tick, or ``[n]``: summed over the batch), when given, gets every
    tick's spikes added.

    Speed (a tick is ~10 dispatched ops on tiny tensors, so their count and the Python
    between them are the cost): it runs as TorchScript (``_run``), the per-tick values are
    written in place (``out=``), and with one refractory tick (every bundled model) a
    neuron is blocked exactly in the tick after a spike, so from the second tick on the
    free mask is ``1 - z_t`` and the counter need not be kept (``r_t = z_t`` once ``r_0 <=
    1``, which the dynamics guarantee; checked). The values are the general formulas'
    exactly (0/1 arithmetic)."""
    T = inp.shape[0]
    slots = T + 1 if keep else 2  # z_0 .. z_T and A_0 .. A_T, or the current and the next
    v_slots = T if keep else 2    # v_1 .. v_T
    zs = inp.new_empty([slots] + list(z.shape))
    a_s = inp.new_empty([slots] + list(z.shape))
    vs = inp.new_empty([v_slots] + list(z.shape))
    ys = inp.new_empty([T] + list(z.shape))                                     # y_1 .. y_T
    f_slots = (T if keep else 2) if refractory > 0 else 0  # the free masks, kept or in two slots
    frees = inp.new_empty([f_slots] + list(z.shape))
    one_tick = refractory == 1 and T > 0 and bool((r <= 1.0).all())
    ones = torch.ones_like(z)
    zero = inp.new_zeros([])
    # addmm with out=: TorchScript rewrites a plain addmm into mm + add, which rounds differently.
    i_t = inp.new_empty(z.shape)
    z_t = z
    a_t = torch.addcmul(thr, beta, b, out=a_s[0])
    if keep:
        zs[0] = z
    for t in range(T):
        nxt = (t + 1) % slots
        torch.addmm(inp[t], z_t, w, out=i_t)
        v = torch.addcmul(torch.addcmul(i_t, alpha, v), z_t, a_t, value=-1.0, out=vs[t % v_slots])
        b = torch.lerp(z_t, b, rho)
        a_next = torch.addcmul(thr, beta, b, out=a_s[nxt])
        fired = v > a_next
        if refractory > 0:
            if one_tick and t > 0:
                free = torch.sub(ones, z_t, out=frees[t % f_slots])
            else:
                free = (r <= 0).to(inp.dtype)
                if keep:
                    frees[t] = free
            z_next = torch.where(fired, free, zero, out=zs[nxt])  # fired * free
            if not one_tick:
                r = torch.maximum(r - 1.0, z_next * float(refractory)).clamp_(min=0.0)
        else:
            z_next = torch.where(fired, ones, zero, out=zs[nxt])
        if kappa > 0:
            y = torch.lerp(z_next, y, kappa, out=ys[t])
        else:
            y = ys[t].copy_(z_next)
        if spike_count is not None:
            if spike_count.dim() == 1:
                spike_count.add_(z_next.sum(0))
            else:
                spike_count.add_(z_next)
        z_t, a_t = z_next, a_next
    if one_tick:
        r = z_t.clone()  # r_T = z_T (see above); a copy, so that the state's tensors never alias
    return ys, v, b, z_t, r, zs, a_s, vs, frees


_run = torch.jit.script(_run_eager)


def _backward_loop_eager(g_ys: Tensor, psi_over_a1: Tensor, psi_cb: Tensor, beta_z: Tensor,
                         neg_a0: Optional[Tensor], alpha: Tensor, rho: Tensor, wt: Tensor, kappa: float) -> Tensor:
    """The backward recurrence, from the last tick to the first: the gradient of every
    tick's input current (run as TorchScript, ``_backward_loop``)."""
    T = psi_over_a1.shape[0]
    one_minus_rho = 1.0 - rho
    g_inp = torch.empty_like(psi_over_a1)
    g_y = torch.zeros_like(psi_over_a1[0])
    g_v = torch.zeros_like(g_y)
    g_b = torch.zeros_like(g_y)
    g_z = torch.zeros_like(g_y)  # written in place by addmm (out=: see _run)
    for t in range(T - 1, -1, -1):  # scalar factors folded into the adds: one op each
        if kappa > 0:
            g_y = torch.add(g_ys[t], g_y, alpha=kappa)
            g_z1 = torch.add(g_z, g_y, alpha=1.0 - kappa)
        else:
            g_y = g_ys[t]
            g_z1 = g_z + g_y
        g_v1 = torch.addcmul(g_v, g_z1, psi_over_a1[t], out=g_inp[t])
        g_b1 = torch.addcmul(g_b, g_z1, psi_cb[t], value=-1.0)
        g_v = alpha * g_v1
        torch.addmm(one_minus_rho * g_b1, g_v1, wt, out=g_z)
        if neg_a0 is not None:
            g_z.addcmul_(neg_a0[t], g_v1)
        g_b = torch.addcmul(rho * g_b1, beta_z[t], g_v1, value=-1.0)
    return g_inp


_backward_loop = torch.jit.script(_backward_loop_eager)


class _LSNNSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, inp, w, v, b, z, r, y, thr, alpha, rho, beta, kappa: float,
                refractory: int, dampening: float, detach_reset: bool):  # type: ignore[override]
        ys, v_T, b_T, z_T, r, zs, a_s, vs, frees = _run(inp, w, v, b, z, r, y, thr, alpha, rho, beta,
                                                        kappa, refractory, True, None)
        ctx.save_for_backward(w, zs, a_s, vs, frees, alpha, rho, beta)
        ctx.kappa, ctx.refractory = kappa, refractory
        ctx.dampening, ctx.detach_reset = dampening, detach_reset
        ctx.mark_non_differentiable(v_T, b_T, z_T, r)
        return ys, v_T, b_T, z_T, r

    @staticmethod
    def backward(ctx, g_ys, *_ignored):  # type: ignore[override]
        w, zs, a_s, vs, frees, alpha, rho, beta = ctx.saved_tensors
        kappa = ctx.kappa
        T = vs.shape[0]
        # Everything that does not depend on the backward recurrence, for all steps.
        inv_a1 = a_s[1:].reciprocal()
        psi = pseudo_derivative(vs * inv_a1 - 1.0, ctx.dampening)
        if ctx.refractory > 0:
            psi.mul_(frees)
        psi_over_a1 = psi * inv_a1                       # d v_{t+1} / d z-input
        psi_cb = psi * beta * vs * inv_a1 * inv_a1       # d b_{t+1} / d z-input
        beta_z = beta * zs[:T]
        neg_a0 = None if ctx.detach_reset else -a_s[:T]
        g_inp = _backward_loop(g_ys, psi_over_a1, psi_cb, beta_z, neg_a0, alpha, rho, w.t(), kappa)
        n = w.shape[0]
        g_w = zs[:T].reshape(-1, n).t() @ g_inp.reshape(-1, n)
        return (g_inp, g_w) + (None,) * 13


def lsnn_sequence(inp: torch.Tensor, w: torch.Tensor, state: tuple, thr: torch.Tensor,
                  alpha: torch.Tensor, rho: torch.Tensor, beta: torch.Tensor, kappa: float,
                  refractory: int, dampening: float, detach_reset: bool,
                  spike_count: torch.Tensor | None = None):
    """Run ``inp[T,B,n]`` from ``state = (v, b, z, r, y)``; returns ``(y[T,B,n], (v, b, z, r, y_T))``.
    ``spike_count``: a tensor that every tick's spikes are added to (inference only)."""
    v, b, z, r, y = state
    thr_n = thr.expand_as(beta).to(inp.dtype)
    if torch.is_grad_enabled() and (inp.requires_grad or w.requires_grad):
        ys, v, b, z, r = _LSNNSequence.apply(inp, w, v, b, z, r, y, thr_n, alpha, rho, beta, float(kappa),
                                             int(refractory), float(dampening), bool(detach_reset))
    else:  # inference (rollouts, the ROS node): nothing kept for a backward
        ys, v, b, z, r = _run(inp, w, v, b, z, r, y, thr_n, alpha, rho, beta, float(kappa),
                              int(refractory), False, spike_count)[:5]
    return ys, (v, b, z, r, ys[-1])
