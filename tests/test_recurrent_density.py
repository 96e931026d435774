"""Density targets count the recurrent synapses, not the readout's (found by a 2 x 100k soak: once
pruning had shrunk a 1,000-neuron network to 781 neurons, the 65,536 readout synapses alone were
above the whole network's target density, and density control and decay pruning removed every
recurrent synapse). With the readout protected, structural density control and the decay floor
count the synapses onto non-designated neurons against ``build.recurrent_density``."""
from __future__ import annotations

import torch

from fumd.engine import Engine
from fumd.jobs.base import run_once
from fumd.jobs.decay import DecayConfig, DecayJob
from fumd.jobs.structural import StructuralConfig, StructuralJob
from fumd.network import edit
from fumd.network.build import initial_density, recurrent_density
from tests.conftest import small_config


def shrunk_engine() -> Engine:
    """A network whose readout (16 x 32 outputs x 32 input channels) outweighs its recurrent part,
    then a seventh of its hidden neurons removed, as pruning does over a long run."""
    cfg = small_config(network={"neurons": 700, "synapses_per_neuron": 10, "max_labels": 16, "population_size": 32,
                                "readout_fan_in": -1, "activity_history": 8})
    engine = Engine(cfg)
    for i in range(4):
        g = torch.Generator().manual_seed(i)
        engine.cycle({"id": f"r{i}", "x": torch.rand(16, generator=g).tolist(), "label": f"c{i % 3}"})
    st = engine.state
    hidden = torch.ones(st.n, dtype=torch.bool)
    hidden[st.designated_idx()] = False
    remove = torch.zeros(st.n, dtype=torch.bool)
    remove[hidden.nonzero().squeeze(1)[:100]] = True
    edit.remove_neurons(st, remove)
    engine.drop_last_cycle_spikes()
    return engine


def recurrent_synapses(engine: Engine) -> int:
    st = engine.state
    designated = torch.zeros(st.n, dtype=torch.bool)
    designated[st.designated_idx()] = True
    return int((~designated[st.col.long()]).sum())


def hidden_neurons(engine: Engine) -> int:
    st = engine.state
    return st.n - int(st.designated_idx().unique().numel())


def test_recurrent_density_is_the_hidden_neurons_in_degree() -> None:
    cfg = small_config(network={"neurons": 700, "synapses_per_neuron": 10, "max_labels": 16, "population_size": 32,
                                "readout_fan_in": -1})
    engine = Engine(cfg)
    assert recurrent_density(cfg) == 10 / 699 and initial_density(cfg) > 2 * 10 / 699  # the readout dominates
    built = recurrent_synapses(engine) / (hidden_neurons(engine) * (engine.state.n - 1))
    assert abs(built / recurrent_density(cfg) - 1.0) < 0.1  # what build_network makes


def test_density_control_keeps_the_recurrent_synapses_when_the_network_shrinks() -> None:
    engine = shrunk_engine()
    before = recurrent_synapses(engine)
    assert before > 0
    job = StructuralJob(StructuralConfig(growth=False, pruning=False, rewiring=False, density_cap=0.5))
    run_once(job, engine)
    # density control brings the recurrent synapses to their target (removing neurons removed
    # their synapses with them, so little changes); counting the readout over all N (N - 1) pairs,
    # the network looked far too dense and every recurrent synapse went
    target = recurrent_density(engine.config) * hidden_neurons(engine) * (engine.state.n - 1)
    after = recurrent_synapses(engine)
    assert after >= 0.8 * before and abs(after / target - 1.0) <= 0.05 + 1e-9


def test_decay_floor_counts_recurrent_synapses() -> None:
    engine = shrunk_engine()
    st, cfg = engine.state, engine.config
    job = DecayJob(DecayConfig(prune_below=1.0, prune_floor=0.9))  # every unprotected synapse counts as weak
    before = recurrent_synapses(engine)
    target = recurrent_density(cfg) * hidden_neurons(engine) * (st.n - 1)
    assert before > 0.9 * target  # room to prune
    run_once(job, engine)
    assert before > recurrent_synapses(engine) >= int(0.9 * target) > 0  # to the floor (counting the readout: to 0)
