"""Neuron maths against hand-computed values (DESIGN.md equations)."""
import math

import pytest
import torch

from l2l_ros.snn.neurons import ALIF, LIF, LSNNSpike, pseudo_derivative
from l2l_ros.meta.policies import build_policy

torch.set_num_threads(1)

TAU_HALF = 1.0 / math.log(2.0)  # exp(-1 / tau) = 0.5


def run(neuron, currents):
    state = neuron.initial_state(1)
    zs, vs, bs = [], [], []
    for i in currents:
        z, state = neuron(torch.tensor([[float(i)]]), state)
        zs.append(float(z)), vs.append(float(state.v)), bs.append(float(state.b))
    return zs, vs, bs


def test_alif_hand_computed():
    # alpha = rho = 0.5, thr = 1, beta = 1, I = 3 every step.
    n = ALIF(1, thr=1.0, beta=1.0, tau_m=TAU_HALF, tau_a=TAU_HALF, refractory=0)
    zs, vs, bs = run(n, [3.0] * 4)
    # step 1: v = 0.5*0 + 0.5*3 - 0 = 1.5; b = 0; A = 1 -> spike
    # step 2: v = 0.75 + 1.5 - 1*1 = 1.25; b = 0.5; A = 1.5 -> no spike
    # step 3: v = 0.625 + 1.5 - 0 = 2.125; b = 0.25; A = 1.25 -> spike
    # step 4: v = 1.0625 + 1.5 - 1.25 (reset by A_t) = 1.3125; b = 0.625; A = 1.625 -> none
    assert vs == pytest.approx([1.5, 1.25, 2.125, 1.3125])
    assert bs == pytest.approx([0.0, 0.5, 0.25, 0.625])
    assert zs == [1.0, 0.0, 1.0, 0.0]


def test_lif_fixed_threshold_and_subtractive_reset():
    n = LIF(1, thr=1.0, tau_m=TAU_HALF, refractory=0)
    zs, vs, _ = run(n, [3.0] * 3)
    assert vs == pytest.approx([1.5, 1.25, 1.125])  # 0.5 v + 1.5 - z * 1
    assert zs == [1.0, 1.0, 1.0]


def test_membrane_integration_below_threshold():
    n = LIF(1, thr=10.0, tau_m=TAU_HALF, refractory=0)
    zs, vs, _ = run(n, [2.0, 2.0, 0.0])
    assert vs == pytest.approx([1.0, 1.5, 0.75])
    assert zs == [0.0, 0.0, 0.0]


def test_refractory_blocks_n_steps():
    n = ALIF(1, thr=1.0, beta=0.0, tau_m=TAU_HALF, tau_a=TAU_HALF, refractory=2)
    zs, vs, _ = run(n, [10.0] * 7)
    assert zs == [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0]
    # the membrane integrates while refractory: 5, 2.5+5-1, 3.25+5, 4.125+5
    assert vs[:4] == pytest.approx([5.0, 6.5, 8.25, 9.125])


def test_lif_equals_alif_with_beta_zero():
    torch.manual_seed(0)
    lif = LIF(5, thr=0.5, tau_m=4.0, refractory=1)
    alif = ALIF(5, thr=0.5, beta=0.0, tau_m=4.0, tau_a=123.0, refractory=1)
    s1, s2 = lif.initial_state(3), alif.initial_state(3)
    for _ in range(30):
        i = torch.randn(3, 5) * 2
        z1, s1 = lif(i, s1)
        z2, s2 = alif(i, s2)
        assert torch.equal(z1, z2) and torch.allclose(s1.v, s2.v)


def test_pseudo_derivative_values():
    for x, expected in [(0.5, 0.15), (-0.25, 0.225), (0.0, 0.3), (1.5, 0.0), (-2.0, 0.0)]:
        v = torch.tensor(x, requires_grad=True)
        z = LSNNSpike.apply(v, 0.3)
        z.backward()
        assert float(z.detach()) == (1.0 if x > 0 else 0.0)
        assert float(v.grad) == pytest.approx(expected)
        assert float(pseudo_derivative(torch.tensor(x))) == pytest.approx(expected)


def test_pseudo_derivative_through_neuron_scaled_by_threshold():
    # z = H((v - A) / A): dz/dv = psi((v - A) / A) / A; v = 0.5 * I, A = 2, I = 5 -> v = 2.5
    n = ALIF(1, thr=2.0, beta=0.0, tau_m=TAU_HALF, tau_a=TAU_HALF, refractory=0)
    i = torch.tensor([[5.0]], requires_grad=True)
    z, _ = n(i, n.initial_state(1))
    z.sum().backward()
    v_scaled = (2.5 - 2.0) / 2.0
    assert float(i.grad) == pytest.approx(0.5 * 0.3 * (1 - v_scaled) / 2.0)


def test_gradient_reaches_input_and_recurrent_weights():
    torch.manual_seed(1)
    p = build_policy("lsnn", 4, {"type": "discrete", "n": 3}, {"n_lif": 8, "n_alif": 8})
    obs = torch.randn(20, 2, 4)
    params, values, _ = p.forward_sequence(obs, p.initial_state(2))
    (params.pow(2).sum() + values.sum()).backward()
    assert p.w_in.grad is not None and p.w_in.grad.abs().sum() > 0
    assert p.w_rec.grad is not None and p.w_rec.grad.abs().sum() > 0
    assert torch.all(p.w_rec.grad.diagonal() == 0)  # no self-connections


def test_fused_step_matches_autograd_reference():
    torch.manual_seed(2)
    for detach_reset, refractory in [(False, 0), (False, 2), (True, 1)]:
        n = ALIF(6, thr=0.7, beta=torch.tensor([0.0, 0.0, 1.7, 1.7, 0.5, 3.0]), tau_m=3.0, tau_a=20.0,
                 refractory=refractory, detach_reset=detach_reset).double()
        inputs = (torch.randn(25, 3, 6, dtype=torch.float64) * 1.5).requires_grad_(True)
        grads, outs = [], []
        for step in (n.step_scaled, n.step_scaled_autograd):
            state = n.initial_state(3, dtype=torch.float64)
            zs = []
            for t in range(25):
                z, state = step(inputs[t], state)
                zs.append(z)
            out = torch.stack(zs)
            w = torch.linspace(-1, 1, out.numel(), dtype=torch.float64).view_as(out)
            (out * w).sum().add(state.v.sum() + state.b.pow(2).sum()).backward()
            grads.append(inputs.grad.clone())
            outs.append(out.detach())
            inputs.grad = None
        assert torch.equal(outs[0], outs[1])
        assert outs[0].sum() > 0
        assert torch.allclose(grads[0], grads[1], atol=1e-10), (detach_reset, refractory)
