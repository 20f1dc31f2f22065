"""The LSNN's state carries information across steps (and is reset by done_mask)."""
import torch

from l2l_ros.meta.policies import build_policy

torch.set_num_threads(1)


def _policy(kind="lsnn"):
    torch.manual_seed(0)
    p = build_policy(kind, 5, {"type": "discrete", "n": 3}, None)
    with torch.no_grad():  # make the readout non-trivial (it is initialised near zero)
        p.policy_head.weight.normal_(0, 1.0)
    return p


def _two_histories(T=12, B=4):
    g = torch.Generator().manual_seed(1)
    a = torch.rand(T, B, 5, generator=g)
    b = a.clone()
    b[0] = -a[0] * 3  # differ only at step 0
    return a, b


def test_outputs_depend_on_earlier_inputs():
    p = _policy()
    a, b = _two_histories()
    with torch.no_grad():
        pa, va, _ = p.forward_sequence(a, p.initial_state(4))
        pb, vb, _ = p.forward_sequence(b, p.initial_state(4))
    later = slice(3, None)  # steps 3.. see identical inputs; only memory can differ
    assert not torch.allclose(pa[later], pb[later]) or not torch.allclose(va[later], vb[later])
    # ... and the state itself keeps the difference long after the input was gone
    diff = (pa[-1] - pb[-1]).abs().sum() + (va[-1] - vb[-1]).abs().sum()
    assert diff > 0


def test_resetting_every_step_would_forget():
    p = _policy()
    a, b = _two_histories()
    every = torch.ones(a.shape[:2], dtype=torch.bool)
    with torch.no_grad():
        pa, _, _ = p.forward_sequence(a, p.initial_state(4), done_mask=every)
        pb, _, _ = p.forward_sequence(b, p.initial_state(4), done_mask=every)
    assert torch.equal(pa[1:], pb[1:])


def test_stepwise_act_matches_sequence_and_state_carries():
    p = _policy()
    a, _ = _two_histories()
    with torch.no_grad():
        seq_params, seq_values, _ = p.forward_sequence(a, p.initial_state(4))
    state = p.initial_state(4)
    for t in range(a.shape[0]):
        with torch.no_grad():
            params, values, state = p.forward_sequence(a[t:t + 1], state)
        assert torch.allclose(params[0], seq_params[t], atol=1e-5)
        assert torch.allclose(values[0], seq_values[t], atol=1e-5)
    action, logp, value, state = p.act(a[0], p.initial_state(4), deterministic=True)
    assert action.shape == (4,) and logp.shape == (4,) and value.shape == (4,)


def test_done_mask_restarts_like_a_fresh_task():
    p = _policy()
    a, _ = _two_histories(T=10, B=2)
    mask = torch.zeros(10, 2, dtype=torch.bool)
    mask[6, 1] = True
    with torch.no_grad():
        full, _, _ = p.forward_sequence(a, p.initial_state(2), done_mask=mask)
        fresh, _, _ = p.forward_sequence(a[6:, 1:2], p.initial_state(1))
    assert torch.allclose(full[6:, 1], fresh[:, 0], atol=1e-6)


def test_lstm_also_carries_state():
    p = _policy("lstm")
    a, b = _two_histories()
    with torch.no_grad():
        pa, _, _ = p.forward_sequence(a, p.initial_state(4))
        pb, _, _ = p.forward_sequence(b, p.initial_state(4))
    assert not torch.allclose(pa[-1], pb[-1])


def test_lstm_input_products_feed_the_conjunction(tmp_path):
    """The LSTM's ``input_products`` (the LSNN option, so both networks can be trained
    on the same inputs): the product channel has its own input weights and reaches the
    features; it survives a checkpoint; bad pairs are refused; an old config without
    the field loads as before."""
    import pytest

    from l2l_ros.meta.checkpoint import load_checkpoint, save_checkpoint
    from l2l_ros.meta.policies import LSTMConfig

    torch.manual_seed(0)
    pol = build_policy("lstm", 5, {"type": "discrete", "n": 3}, {"input_products": [[0, 3]]})
    assert pol.lstm.weight_ih_l0.shape[1] == 5 + 1
    with torch.no_grad():
        pol.lstm.weight_ih_l0[:, :5] = 0.0  # only the product channel reaches the cell
        one = torch.tensor([[[1.0, 0, 0, 1.0, 0]]])  # obs[0] * obs[3] = 1
        no_product = torch.tensor([[[1.0, 0, 0, 0.0, 0]]])  # obs[0] * obs[3] = 0
        f_one, _ = pol.features_sequence(one, pol.initial_state(1))
        f_none, _ = pol.features_sequence(no_product, pol.initial_state(1))
        f_zero, _ = pol.features_sequence(torch.zeros(1, 1, 5), pol.initial_state(1))
    assert not torch.allclose(f_one, f_none)
    torch.testing.assert_close(f_none, f_zero)
    save_checkpoint(tmp_path / "p", pol, {"env_id": "x"})
    loaded, _ = load_checkpoint(tmp_path / "p.json")
    assert loaded.product_pairs.tolist() == [[0, 3]]
    assert torch.equal(loaded.lstm.weight_ih_l0, pol.lstm.weight_ih_l0)
    for bad in ([[0, 5]], [[1]], [3]):
        with pytest.raises(ValueError, match="input_products"):
            build_policy("lstm", 5, {"type": "discrete", "n": 3}, {"input_products": bad})
    assert LSTMConfig.from_dict({"hidden": 8, "log_std_init": -0.5}).input_products == []
