"""Spiking neurons (LIF, ALIF) and the LSNN policy. No ROS, no envs."""
from l2l_ros.snn.neurons import ALIF, LIF, LSNNSpike, NeuronState, lsnn_spike, pseudo_derivative

__all__ = ["ALIF", "LIF", "LSNNSpike", "NeuronState", "lsnn_spike", "pseudo_derivative",
           "LSNNConfig", "LSNNPolicy", "LSNNState"]


def __getattr__(name):  # lazy: lsnn imports l2l_ros.meta.policies
    if name in ("LSNNConfig", "LSNNPolicy", "LSNNState"):
        from l2l_ros.snn import lsnn

        return getattr(lsnn, name)
    raise AttributeError(name)
