"""The compiled readout passes (backends/numba/readout.py) equal the PyTorch ones
(learning/readout.py) bit for bit, and the engine uses them with the CPU backends."""
from __future__ import annotations

import pytest
import torch

from fumd.backends.numba.readout import CompiledReadout
from fumd.engine import Engine
from fumd.learning.readout import TorchReadout
from tests.conftest import small_config


@pytest.fixture(scope="module")
def readout_case():
    engine = Engine(small_config(network={"neurons": 400, "synapses_per_neuron": 20, "input_size": 16,
                                          "max_labels": 4, "population_size": 8, "feature_neurons": 120}))
    st, index = engine.state, engine.readout
    gen = torch.Generator().manual_seed(5)
    st.w[index.pos] = torch.rand(index.pos.numel(), generator=gen) * 0.9
    st.persistent = torch.rand(st.w.numel(), generator=gen) < 0.3
    counts = torch.randint(0, 9, (st.n,), generator=gen, dtype=torch.int64)
    coef = (torch.rand(engine.state.output_idx.shape[0], generator=gen) - 0.5) * 0.2  # per population
    return engine, counts, coef


def test_the_engine_uses_the_compiled_readout_with_the_numba_backend():
    assert Engine(small_config(backend="numba")).readout_kernels.name == "numba"
    assert Engine(small_config(backend="torch")).readout_kernels.name == "torch"


def test_compiled_drive_and_weights_equal_torch(readout_case):
    engine, counts, _ = readout_case
    w, index = engine.state.w, engine.readout
    expected = TorchReadout.drive(w, counts, index)
    assert expected.abs().sum() > 0
    assert torch.equal(CompiledReadout.drive(w, counts, index), expected)
    assert torch.equal(CompiledReadout.weights(w, index), TorchReadout.weights(w, index))


@pytest.mark.parametrize(("persistent_scale", "normalize"), [(1.0, False), (0.25, False), (0.25, True)])
def test_compiled_presynaptic_update_equals_torch(readout_case, persistent_scale, normalize):
    engine, counts, coef = readout_case
    st, index = engine.state, engine.readout
    w_before = st.w[index.pos] * 0.97  # the backend's generic update moved them
    results = []
    for kernels in (TorchReadout, CompiledReadout):
        w = st.w.clone()
        kernels.presynaptic_update(w, counts, index, w_before, coef, st.persistent, persistent_scale, 0.025, 0.8,
                                   normalize)
        results.append(w)
    assert not torch.equal(results[0], st.w)
    assert float(results[0][index.pos].max()) == pytest.approx(0.8)  # the clip acted
    assert torch.equal(results[1], results[0])


def test_compiled_normalize_equals_torch(readout_case):
    engine, _, _ = readout_case
    st, index = engine.state, engine.readout
    results = []
    for kernels in (TorchReadout, CompiledReadout):
        w = st.w.clone()
        w[index.pos[::7]] = 0.0
        kernels.normalize(w, index, 0.5)
        results.append(w)
    assert not torch.equal(results[0], st.w)
    assert torch.equal(results[1], results[0])
