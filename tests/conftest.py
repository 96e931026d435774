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


@pytest.fixture
def cfg() -> EngineConfig:
    return small_config()
