"""The whole-sequence LSNN node against the step-by-step reference (values and BPTT gradients)."""
import pytest
import torch

from l2l_ros.snn.lsnn import LSNNConfig, LSNNPolicy


def _policy(**cfg) -> LSNNPolicy:
    torch.manual_seed(0)
    pol = LSNNPolicy(6, {"type": "discrete", "n": 3}, LSNNConfig(n_lif=8, n_alif=8, **cfg)).double()
    with torch.no_grad():  # strong recurrent drive so that spikes, resets and adaptation all happen
        pol.w_rec.mul_(3.0)
    return pol


@pytest.mark.parametrize("cfg", [{}, {"refractory": 0}, {"refractory": 3}, {"detach_reset": True},
                                 {"tau_out": 0.0}, {"tau_a": 20.0, "beta": 3.0}, {"input_population": 5},
                                 {"tau_a": 5.0, "tau_a_max": 50.0, "beta": 3.0},
                                 {"input_products": [[0, 1], [2, 5]]}])
def test_fused_sequence_matches_stepwise_reference(cfg):
    pol = _policy(**cfg)
    obs = torch.rand(40, 3, 6, dtype=torch.float64) * 2
    weights = torch.randn(40, 3, 16, dtype=torch.float64)

    def run(fused: bool):
        pol.zero_grad()
        state = pol.initial_state(3)
        state = type(state)(*(s.double() for s in state))
        if fused:
            feats, final = pol.features_sequence(obs, state)
        else:
            feats, final = pol._features_stepwise(*pol._currents(obs), state)
        (feats * weights).sum().backward()
        return feats.detach(), final, {k: p.grad.clone() for k, p in pol.named_parameters()
                                       if p.grad is not None}

    f_fused, s_fused, g_fused = run(True)
    f_ref, s_ref, g_ref = run(False)
    assert f_ref.sum() > 0, "the test needs spikes"
    torch.testing.assert_close(f_fused, f_ref)
    for a, b in zip(s_fused, s_ref):
        torch.testing.assert_close(a, b)
    assert set(g_fused) == set(g_ref) == {"w_in", "b_in", "w_rec"}
    for k in g_ref:
        assert g_ref[k].abs().sum() > 0
        torch.testing.assert_close(g_fused[k], g_ref[k], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("r0", [0.0, 1.0, 2.0])
def test_one_refractory_tick_shortcut_equals_the_general_counter(r0):
    """With refractory = 1 the fused loop skips the counter (r_t = z_t); from any initial
    counter, the spikes, trace and final state are the stepwise reference's exactly."""
    pol = _policy()
    obs = torch.rand(25, 3, 6, dtype=torch.float64) * 2
    state = type(pol.initial_state(3))(*(s.double() for s in pol.initial_state(3)))
    state = state._replace(z=torch.ones_like(state.z), r=torch.full_like(state.r, r0))
    with torch.no_grad():
        fused, f_final = pol.features_sequence(obs, state)
        ref, r_final = pol._features_stepwise(*pol._currents(obs), state)
    assert ref.sum() > 0
    assert torch.equal(fused, ref)
    for a, b in zip(f_final, r_final):
        assert torch.equal(a, b)


def test_fused_sequence_split_equals_whole():
    """Running a sequence in two halves, carrying the state, equals running it whole
    (the rollout steps one at a time; training re-runs whole tasks)."""
    pol = _policy()
    obs = torch.rand(30, 2, 6, dtype=torch.float64)
    state = type(pol.initial_state(2))(*(s.double() for s in pol.initial_state(2)))
    with torch.no_grad():
        whole, _ = pol.features_sequence(obs, state)
        a, mid = pol.features_sequence(obs[:13], state)
        b, _ = pol.features_sequence(obs[13:], mid)
    torch.testing.assert_close(torch.cat([a, b]), whole)


def test_population_coded_inputs_peak_at_their_tuning_centre(tmp_path):
    """``input_population = 5``: beside its raw value, input i drives channels tuned to
    -1, -0.5, 0, 0.5, 1; the weights of a saved policy come back with the same shape."""
    from l2l_ros.meta.checkpoint import load_checkpoint, save_checkpoint

    pol = _policy(input_population=5)
    assert pol.w_in.shape == (6 * 6, 16)
    obs = torch.zeros(1, 1, 6, dtype=torch.float64)
    obs[0, 0, 2] = 0.5
    with torch.no_grad():
        pol.w_in.zero_()
        pol.b_in.zero_()
        pol.w_in[6 + 2 * 5 + 3, 0] = 1.0  # input 2's channel tuned to 0.5 -> neuron 0
        pol.w_in[6 + 2 * 5 + 4, 1] = 1.0  # input 2's channel tuned to 1.0 -> neuron 1
        pol.w_in[2, 2] = 1.0              # input 2's raw value -> neuron 2
        inp, _ = pol._currents(obs)
    scale = (pol.neurons.threshold * (1.0 - pol.neurons.alpha))[:3]
    torch.testing.assert_close(inp[0, 0, :3] / scale, torch.tensor([1.0, torch.exp(torch.tensor(-0.5)), 0.5],
                                                                   dtype=torch.float64))
    save_checkpoint(tmp_path / "p", pol.float(), {"env_id": "x"})
    loaded, _ = load_checkpoint(tmp_path / "p.json")
    assert loaded.config.input_population == 5 and torch.equal(loaded.w_in, pol.w_in)


def test_ignored_inputs_do_not_reach_the_network():
    pol = _policy(ignore_inputs=[1, 4], input_population=3)
    obs = torch.rand(20, 2, 6, dtype=torch.float64) * 2
    other = obs.clone()
    other[..., [1, 4]] = torch.rand(20, 2, 2, dtype=torch.float64) * 5
    state = type(pol.initial_state(2))(*(s.double() for s in pol.initial_state(2)))
    with torch.no_grad():
        a, _ = pol.features_sequence(obs, state)
        b, _ = pol.features_sequence(other, state)
        changed = other.clone()
        changed[..., 0] += 1.0  # a read input does change the spikes
        c, _ = pol.features_sequence(changed, state)
    assert a.sum() > 0
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)
    with pytest.raises(ValueError, match="out of range"):
        _policy(ignore_inputs=[6])


def test_an_ignored_input_still_reaches_the_network_through_its_product():
    """The arm's case: the previous command is ignored (no copying of the teacher's last
    action), its product with the joint's velocity (the joint's sign) is read."""
    pol = _policy(ignore_inputs=[1], input_products=[[1, 2]], input_population=3)
    obs = torch.rand(20, 2, 6, dtype=torch.float64) * 2 - 1
    state = type(pol.initial_state(2))(*(s.double() for s in pol.initial_state(2)))
    channels = pol.encode_inputs(obs)
    torch.testing.assert_close(channels[..., 6], obs[..., 1] * obs[..., 2])  # the product channel
    assert not channels[..., 1].any()
    sign_flipped = obs.clone()
    sign_flipped[..., 1] *= -1  # the raw input alone is unread, its product is not
    with torch.no_grad():
        a, _ = pol.features_sequence(obs, state)
        b, _ = pol.features_sequence(sign_flipped, state)
    assert not torch.equal(a, b)


def test_ticks_per_step_holds_each_observation_and_averages_the_trace():
    """``ticks_per_step = K`` is the one-tick network fed each observation K times, its
    features averaged over each block of K ticks; fused and stepwise paths agree."""
    multi, single = _policy(ticks_per_step=3), _policy()
    obs = torch.rand(20, 2, 6, dtype=torch.float64) * 2
    state = type(multi.initial_state(2))(*(s.double() for s in multi.initial_state(2)))
    feats, final = multi.features_sequence(obs, state)
    ref, ref_final = single.features_sequence(obs.repeat_interleave(3, dim=0), state)
    assert feats.shape == (20, 2, 16) and ref.sum() > 0
    torch.testing.assert_close(feats, ref.view(20, 3, 2, 16).mean(1))
    for a, b in zip(final, ref_final):
        torch.testing.assert_close(a, b)
    stepwise, _ = multi.features_sequence(obs, state, done_mask=torch.zeros(20, 2, dtype=torch.bool))
    torch.testing.assert_close(stepwise, feats)
    # A task restart at step 7 resets the state once, at that step's first tick.
    restart = torch.zeros(20, 2, dtype=torch.bool)
    restart[7, 1] = True
    with_restart, _ = multi.features_sequence(obs, state, done_mask=restart)
    fresh, _ = multi.features_sequence(obs[7:, 1:], type(state)(*(s[1:] for s in state)))
    torch.testing.assert_close(with_restart[7:, 1:], fresh)
    torch.testing.assert_close(with_restart[:, :1], feats[:, :1])
    with pytest.raises(ValueError, match="ticks_per_step"):
        _policy(ticks_per_step=0)


def test_spread_adaptation_time_constants(tmp_path):
    """``tau_a_max``: the ALIF neurons' tau_a run geometrically from tau_a to tau_a_max
    (LIF neurons keep no adaptation), and a saved policy comes back with the same decays."""
    from l2l_ros.meta.checkpoint import load_checkpoint, save_checkpoint

    pol = _policy(tau_a=10.0, tau_a_max=1000.0)
    taus = -1.0 / torch.log(pol.neurons.rho.double())
    torch.testing.assert_close(taus[8:], torch.logspace(1, 3, 8, dtype=torch.float64), rtol=1e-4, atol=0)
    assert torch.all(pol.neurons.beta[:8] == 0) and torch.all(pol.neurons.beta[8:] > 0)
    # After 100 silent steps a fast neuron's raised threshold is gone, a slow one's kept.
    left = pol.neurons.rho.double() ** 100
    assert left[8] < 1e-4 and left[15] > 0.9
    save_checkpoint(tmp_path / "p", pol.float(), {"env_id": "x"})
    loaded, _ = load_checkpoint(tmp_path / "p.json")
    assert torch.equal(loaded.neurons.rho, pol.neurons.rho)
    assert _policy(tau_a=10.0).neurons.rho.unique().numel() == 1  # default: one tau_a
    for bad in (5.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="tau_a_max"):
            _policy(tau_a=10.0, tau_a_max=bad)


def test_input_products_add_conjunction_channels(tmp_path):
    """``input_products [[i, j]]``: the channel obs[i] * obs[j] is read beside the raw
    values (a bandit's "this arm was pulled" times "it paid"), through its own weights."""
    from l2l_ros.meta.checkpoint import load_checkpoint, save_checkpoint

    pol = _policy(input_products=[[0, 3], [1, 3]])
    assert pol.w_in.shape == (6 + 2, 16)
    with torch.no_grad():
        pol.w_in.zero_()
        pol.b_in.zero_()
        pol.w_in[6, 0] = 1.0  # obs[0] * obs[3] -> neuron 0
        pol.w_in[7, 1] = 1.0  # obs[1] * obs[3] -> neuron 1
        pol.w_in[3, 2] = 1.0  # obs[3] alone -> neuron 2
        obs = torch.tensor([[[1.0, 0.0, 0.0, 1.0, 0.0, 0.0]], [[1.0, 0.0, 0.0, 0.0, 0.0, 0.0]],
                            [[0.0, 1.0, 0.0, 0.5, 0.0, 0.0]]], dtype=torch.float64)
        inp, _ = pol._currents(obs)
    scale = (pol.neurons.threshold * (1.0 - pol.neurons.alpha))[:3]
    expected = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.5, 0.5]], dtype=torch.float64)
    torch.testing.assert_close(inp[:, 0, :3] / scale, expected)
    save_checkpoint(tmp_path / "p", pol.float(), {"env_id": "x"})
    loaded, _ = load_checkpoint(tmp_path / "p.json")
    assert loaded.product_pairs.tolist() == [[0, 3], [1, 3]] and torch.equal(loaded.w_in, pol.w_in)
    for bad in ([[0, 6]], [[1]], [3]):
        with pytest.raises(ValueError, match="input_products"):
            _policy(input_products=bad)


@pytest.mark.parametrize("cfg", [{}, {"refractory": 0}, {"tau_out": 0.0}, {"ticks_per_step": 4, "tau_a": 20.0}])
def test_inference_path_gives_exactly_the_training_paths_values(cfg):
    """Without autograd (rollouts, the ROS node) the sequence keeps nothing for a backward;
    its spikes, trace and final state must be bit-identical to the training path's."""
    torch.manual_seed(0)
    pol = LSNNPolicy(6, {"type": "discrete", "n": 3}, LSNNConfig(n_lif=8, n_alif=8, **cfg))
    with torch.no_grad():
        pol.w_rec.mul_(3.0)
    obs = torch.rand(30, 2, 6) * 2
    trained, t_final = pol.features_sequence(obs, pol.initial_state(2))
    assert trained.requires_grad
    with torch.no_grad():
        inferred, i_final = pol.features_sequence(obs, pol.initial_state(2))
    assert torch.equal(trained.detach(), inferred) and float(inferred.abs().sum()) > 0
    assert all(torch.equal(a.detach(), b) for a, b in zip(t_final, i_final))


@pytest.mark.parametrize("refractory,kappa,keep,count", [(1, 0.7, False, "none"), (1, 0.7, True, "none"),
                                                          (0, 0.7, False, "neurons"), (2, 0.0, True, "none"),
                                                          (1, 0.0, False, "batch")])
@pytest.mark.parametrize("batch,n", [(1, 128), (8, 256)])
def test_compiled_loops_are_eager_torchs_values_bit_for_bit(refractory, kappa, keep, count, batch, n):
    """The tick loops run under TorchScript for speed; they must give what the same Python
    gives under eager torch exactly (a rewrite such as addmm -> mm + add rounds differently,
    and a flipped spike changes an episode), forward and backward."""
    from l2l_ros.snn import sequence

    g = torch.Generator().manual_seed(n + batch)
    T = 12
    inp = torch.randn(T, batch, n, generator=g) * 0.02
    w = torch.randn(n, n, generator=g) * 0.01
    v, b = torch.rand(batch, n, generator=g) * 0.01, torch.rand(batch, n, generator=g) * 0.01
    z = (torch.rand(batch, n, generator=g) > 0.7).float()
    r, y = z.clone(), torch.rand(batch, n, generator=g)
    thr, beta = torch.full((n,), 0.01), torch.cat([torch.zeros(n // 2), torch.full((n - n // 2,), 1.7)])
    alpha, rho = torch.full((n,), 0.7), torch.full((n,), 0.995)
    outs = []
    for run in (sequence._run, sequence._run_eager):
        counter = {"none": None, "neurons": torch.zeros(n, dtype=torch.float64),
                   "batch": torch.zeros(batch, n, dtype=torch.float64)}[count]
        for _ in range(3):  # TorchScript's executor optimises after the first calls
            out = run(inp, w, v, b, z, r, y, thr, alpha, rho, beta, kappa, refractory, keep, counter)
        outs.append(list(out) + ([counter] if counter is not None else []))
    assert float(outs[0][3].sum()) > 0, "the test needs spikes"
    assert all(torch.equal(a, e) for a, e in zip(*outs))
    if keep:
        g_ys = torch.randn(T, batch, n, generator=g)
        psi = torch.rand(T, batch, n, generator=g)
        args = (g_ys, psi, psi * 0.3, beta * outs[0][5][:T], -outs[0][6][:T], alpha, rho, w.t(), kappa)
        grads = [f(*args) for f in (sequence._backward_loop, sequence._backward_loop_eager) for _ in range(3)]
        assert torch.equal(grads[2], grads[5]) and float(grads[2].abs().sum()) > 0


def _evidence_policy() -> LSNNPolicy:
    torch.manual_seed(0)
    return LSNNPolicy(4, {"type": "box", "shape": [2], "low": -1.0, "high": 1.0},
                      LSNNConfig(n_lif=8, n_alif=8, input_population=3, input_products=[[0, 2], [1, 3]],
                                 evidence_tau=10.0))


def test_evidence_channels_are_a_normalised_trace_of_each_product_reset_at_a_task_start():
    """e_t = sum_k lam^k p_{t-k} / (sum_k lam^k |p_{t-k}| + floor) per product, checked
    against a plain loop, in [-1, 1], and a task restart forgets the previous task's sign."""
    from l2l_ros.snn.lsnn import EVIDENCE_FLOOR
    pol = _evidence_policy()
    obs = torch.rand(30, 2, 4, dtype=torch.float64) * 2 - 1
    obs[:, 0, 0] = obs[:, 0, 0].abs()
    obs[:15, 0, 2] = obs[:15, 0, 2].abs()   # env 0, product 0: positive in the first task ...
    obs[15:, 0, 2] = -obs[15:, 0, 2].abs()  # ... negative in the second
    done = torch.zeros(30, 2, dtype=torch.bool)
    done[15, 0] = True
    ev, traces = pol.evidence_sequence(obs, torch.zeros(2, 4, dtype=torch.float64), done)
    lam = torch.exp(torch.tensor(-0.1, dtype=torch.float64))
    for b in range(2):
        for j, (i, k) in enumerate([(0, 2), (1, 3)]):
            s = m = 0.0
            for t in range(30):
                if done[t, b]:
                    s = m = 0.0
                p = obs[t, b, i] * obs[t, b, k]
                s, m = lam * s + p, lam * m + abs(p)
                assert abs(float(ev[t, b, j]) - float(s / (m + EVIDENCE_FLOOR))) < 1e-12
    assert float(ev.abs().max()) <= 1.0
    assert float(ev[14, 0, 0]) > 0.9 and float(ev[16, 0, 0]) < -0.9  # the sign of this task only
    assert traces.shape == (2, 4)


def test_evidence_carries_across_steps_as_the_node_runs_it(tmp_path):
    """One observation at a time through the state (the ROS node's path) gives the whole
    sequence's actions; the evidence reaches the network; the config round-trips a checkpoint."""
    from l2l_ros.meta.checkpoint import load_checkpoint, save_checkpoint
    pol = _evidence_policy()
    obs = torch.rand(40, 3, 4) * 2 - 1
    with torch.no_grad():
        whole, _, _ = pol.forward_sequence(obs, pol.initial_state(3))
        state, steps = pol.initial_state(3), []
        for t in range(40):
            params, _, state = pol.forward_sequence(obs[t:t + 1], state)
            steps.append(params[0])
        torch.testing.assert_close(torch.stack(steps), whole)
        assert state.evidence.shape == (3, 4) and float(state.evidence.abs().sum()) > 0
        n_raw = 4 + 2  # observation and products, then the 2 evidence channels
        pol.w_in[n_raw:n_raw + 2].add_(5.0)  # the evidence channels drive the neurons
        moved, _, _ = pol.forward_sequence(obs, pol.initial_state(3))
    assert not torch.equal(moved, whole)
    save_checkpoint(tmp_path / "p", pol, {"env_id": "x"})
    loaded, _ = load_checkpoint(tmp_path / "p.json")
    assert loaded.config.evidence_tau == 10.0 and loaded.n_evidence == 2


def test_evidence_needs_products():
    with pytest.raises(ValueError, match="evidence_tau needs input_products"):
        LSNNConfig(evidence_tau=5.0)
    with pytest.raises(ValueError, match="evidence"):
        _evidence_policy().encode_inputs(torch.zeros(1, 4))


@pytest.mark.parametrize("grow", [{"evidence_tau": 10.0}, {"gain_readout": True},
                                  {"evidence_tau": 10.0, "gain_readout": True}])
def test_init_from_grows_evidence_channels_and_a_gain_readout(grow):
    """``init_from`` a network without them (attempt 17's start, docs/arm.md): the same
    actions at the start (zero weights on the evidence channels, a gain of 1), the new
    parts then get gradients; any other difference, or dropping a part, is refused."""
    torch.manual_seed(2)
    spec = {"type": "box", "shape": [2], "low": -1.0, "high": 1.0}
    base = {"n_lif": 8, "n_alif": 8, "input_population": 3, "input_products": [[0, 2], [1, 3]]}
    source = LSNNPolicy(4, spec, base)
    with torch.no_grad():
        source.policy_head.weight.mul_(50.0)  # actions well away from 0
    grown = LSNNPolicy(4, spec, {**base, **grow})
    grown.load_start_weights(source)
    obs = torch.rand(30, 2, 4) * 2 - 1
    with torch.no_grad():
        a, _, _ = source.forward_sequence(obs, source.initial_state(2))
        b, _, _ = grown.forward_sequence(obs, grown.initial_state(2))
    assert torch.equal(a, b) and float(a.abs().max()) > 0.1
    grown.forward_sequence(obs, grown.initial_state(2))[0].pow(2).sum().backward()
    if "evidence_tau" in grow:  # the evidence channels, after 4 inputs and 2 products
        assert float(grown.w_in.grad[6:8].abs().sum()) > 0
    if "gain_readout" in grow:
        assert float(grown.gain_head.weight.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="this run trains"):
        grown.load_start_weights(LSNNPolicy(4, spec, {**base, "n_lif": 9}))
    with pytest.raises(ValueError, match="this run trains"):
        source.load_start_weights(grown)  # dropping a part is not growing


def test_gain_readout_starts_as_the_plain_readout_and_can_flip_an_action():
    """``gain_readout``: the mean action is the policy readout times a second readout (an
    arm joint's inferred sign and scale times the command); it starts at a gain of 1."""
    torch.manual_seed(0)
    spec = {"type": "box", "low": [-1.0, -1.0], "high": [1.0, 1.0], "shape": [2]}
    plain = LSNNPolicy(6, spec, LSNNConfig(n_lif=8, n_alif=8))
    gated = LSNNPolicy(6, spec, LSNNConfig(n_lif=8, n_alif=8, gain_readout=True))
    missing = gated.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing == ["gain_head.weight", "gain_head.bias"]
    obs = torch.rand(20, 3, 6) * 2
    with torch.no_grad():
        plain.policy_head.weight.mul_(100.0)
        gated.policy_head.weight.mul_(100.0)
        mean = plain(obs, plain.initial_state(3))[0]
        assert torch.equal(gated(obs, gated.initial_state(3))[0], mean) and float(mean.abs().max()) > 0.01
        gated.gain_head.bias.copy_(torch.tensor([-1.0, 1.0]))  # the first joint mirrored
        flipped = gated(obs, gated.initial_state(3))[0]
    torch.testing.assert_close(flipped[..., 0], -mean[..., 0])
    assert torch.equal(flipped[..., 1], mean[..., 1])


def test_gain_readout_is_for_continuous_actions_only():
    discrete = LSNNPolicy(6, {"type": "discrete", "n": 3}, LSNNConfig(n_lif=8, n_alif=8, gain_readout=True))
    assert discrete.gain_head is None  # logits need no sign
