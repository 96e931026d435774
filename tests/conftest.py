import pytest
import torch

from fumd.config import EngineConfig

torch.set_num_threads(1)


def small_config(**sections) -> EngineConfig:
    """A 400-neuron network: fast enough for unit tests, big enough to be a real network."""
    base = EngineConfig().replace(
        network={"neurons": 400, "synapses_per_neuron": 20, "input_size": 16, "max_labels": 4, "population_size": 8,
                 "readout_fan_in": 8},
        deterministic=True,
    )
    return base.replace(**sections) if sections else base


# Issue #9's readout, the default before the potential readout of the feature pathway (issue #15):
# the input neurons alone, read through causal (STDP) eligibility, the perceptron error and the
# spike decision. Tests of that pathway's own rules pin it.
INPUT_NETWORK = {"feature_neurons": 0, "readout_from": "input"}
SPIKE_READOUT = {"readout_eligibility": "causal", "label_error": "perceptron", "readout_decision": "spikes"}


def input_readout_config(network: dict | None = None, learning: dict | None = None, **sections) -> EngineConfig:
    """``small_config`` with issue #9's input readout (``INPUT_NETWORK``, ``SPIKE_READOUT``)."""
    base = small_config()
    return small_config(network={**base.network.__dict__, **INPUT_NETWORK, **(network or {})},
                        learning={**base.learning.__dict__, **SPIKE_READOUT, **(learning or {})}, **sections)


@pytest.fixture
def cfg() -> EngineConfig:
    return small_config()


def set_rewards(sie, c: int, values) -> None:
    """Write ``values`` into cluster c's reward ring as the SIE would (slot = count % H)."""
    h = sie.reward_history.shape[1]
    sie.reward_count[c] = 0
    for v in values:
        sie.reward_history[c, int(sie.reward_count[c]) % h] = v
        sie.reward_count[c] += 1


@pytest.fixture(params=["numba", "torch"])
def backend(request) -> str:
    """The ``backend`` setting of the test's engine: a test that takes this fixture runs once on
    each backend (fumd/backends), as one suite on every target."""
    return request.param
