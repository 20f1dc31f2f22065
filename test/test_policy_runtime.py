"""PolicyRuntime: what the spiking_policy node runs, tested without DDS."""
import numpy as np
import pytest
import torch

from l2l_ros.meta.checkpoint import save_checkpoint
from l2l_ros.policy_runtime import load_runtime, untrained_runtime
from l2l_ros.tasks.encoding import ARM_OBS_DIM, IMAZE_ACTIONS, IMAZE_OBS_DIM


@pytest.fixture()
def imaze_checkpoint(tmp_path):
    torch.manual_seed(0)
    rt = untrained_runtime("imaze")
    save_checkpoint(tmp_path / "policy", rt.policy, {"env_id": "l2l_ros/IMaze-v0"})
    return tmp_path / "policy.json"


def test_runtime_steps_give_valid_actions_and_reset_restores_the_start(imaze_checkpoint):
    rt = load_runtime(str(imaze_checkpoint), "imaze")
    rng = np.random.default_rng(0)
    obs = [rng.normal(size=IMAZE_OBS_DIM).astype(np.float32) for _ in range(30)]
    first = [rt.step(o, 0.1, i == 0, deterministic=True) for i, o in enumerate(obs)]
    assert all(0 <= a < len(IMAZE_ACTIONS) for a in first)
    rt.reset()
    again = [rt.step(o, 0.1, i == 0, deterministic=True) for i, o in enumerate(obs)]
    assert first == again  # a new task starts from the same state


def test_a_checkpoint_for_another_task_family_is_refused(imaze_checkpoint):
    with pytest.raises(ValueError, match="inputs"):
        load_runtime(str(imaze_checkpoint), "manipulator")


def test_manipulator_runtime_outputs_bounded_actions():
    rt = untrained_runtime("manipulator")
    a = rt.step(np.zeros(ARM_OBS_DIM, np.float32), 0.0, True, deterministic=False)
    assert a.shape == (3,) and np.all(np.abs(a) <= 1.0)


def test_a_corrupt_checkpoint_is_refused_with_the_file_named(tmp_path, imaze_checkpoint):
    weights = imaze_checkpoint.with_suffix(".safetensors")
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match="policy"):
        load_runtime(str(imaze_checkpoint), "imaze")


def test_spike_recording_of_a_whole_task_and_its_raster(imaze_checkpoint, tmp_path):
    from l2l_ros.evaluation import record_lsnn_task
    from l2l_ros.report import plot_spike_raster

    rt = load_runtime(str(imaze_checkpoint), "imaze")
    rec = record_lsnn_task(rt, seed=3, task=0)
    z, b, n_lif = rec["z"], rec["b"], rec["n_lif"]
    assert z.shape == b.shape and z.shape[0] > 100
    assert set(np.unique(z)) <= {0.0, 1.0} and z.sum() > 0
    alif_b = b[:, n_lif:]
    assert np.all(alif_b >= 0.0) and alif_b.max() > 0.0
    # b is a low-pass of the neuron's own spikes: silent ALIF neurons never adapt.
    silent = z[:, n_lif:].sum(0) == 0
    assert np.all(alif_b[:, silent] == 0.0)
    png = plot_spike_raster(rec, tmp_path / "raster.png", "test")
    assert png.stat().st_size > 10_000


def test_the_raster_rate_of_a_network_with_several_ticks_per_step_counts_tick_time():
    from l2l_ros.evaluation import record_lsnn_task
    from l2l_ros.meta.policies import build_policy
    from l2l_ros.policy_runtime import PolicyRuntime
    from l2l_ros.report import spike_rate_hz

    base = untrained_runtime("imaze")
    torch.manual_seed(0)
    policy = build_policy("lsnn", base.policy.obs_dim, base.policy.action_spec, {"ticks_per_step": 4})
    rt = PolicyRuntime(policy, {**base.metadata, "policy_config": policy.config.to_dict()}, "imaze")
    rec = record_lsnn_task(rt, seed=3, task=0)
    assert rec["ticks_per_step"] == 4 and rec["z"].sum() > 0
    # each row is one tick of 0.05 s (a 0.2 s step holds 4), not a whole step
    assert spike_rate_hz(rec) == pytest.approx(rec["z"].mean() / 0.05)
    assert spike_rate_hz({**rec, "ticks_per_step": 1}) == pytest.approx(rec["z"].mean() / 0.2)


@pytest.mark.parametrize("kind", ["lsnn", "lstm", "mlp"])
@pytest.mark.parametrize("spec", [{"type": "discrete", "n": 3},
                                  {"type": "box", "shape": [2], "low": [-1.0, -2.0], "high": [1.0, 0.5]}])
def test_the_greedy_control_step_is_act_deterministic(kind, spec):
    """The runtime's control step skips the value head and the action distribution; the
    actions and the recurrent state are the same values, bit for bit."""
    import torch

    from l2l_ros.meta.policies import build_policy

    torch.manual_seed(0)
    policy = build_policy(kind, 10, spec, None)
    s1, s2 = policy.initial_state(2), policy.initial_state(2)
    for _ in range(40):
        obs = 3 * torch.randn(2, 10)
        a1, _, _, s1 = policy.act(obs, s1, deterministic=True)
        a2, s2 = policy.act_greedy(obs, s2)
        assert torch.equal(a1, a2)
        assert all(torch.equal(x, y) for x, y in zip(s1, s2))
