import math

import pytest
import torch

from fumd.engine import Engine
from fumd.network.build import candidate_offsets
from fumd.network.propagate import row_positions
from tests.conftest import small_config


def test_built_network_ei_ratio_sparsity_and_dale():
    cfg = small_config(network={"neurons": 2000, "synapses_per_neuron": 50, "readout_fan_in": 0,
                                "readout_isolated": False, "feature_neurons": 0})  # SPEC §1's network alone
    st = Engine(cfg).state
    assert st.n == 2000 and st.n_exc == 1600  # 80 / 20
    assert st.nnz == 2000 * 50
    assert st.sparsity() > 0.95
    k = st.n_exc_synapses
    assert bool((st.w[:k] >= 0).all()) and bool((st.w[k:] <= 0).all())  # Dale's law
    assert float(st.w[:k].max()) <= 0.3 and float(st.w[k:].min()) >= -0.3  # U(0, .3) / U(-.3, 0)
    assert abs(float(st.w[:k].mean()) - 0.15) < 0.01
    pre = st.pre_index()
    assert not bool((pre == st.col.long()).any())  # no autapses
    # no duplicate synapses
    key = pre * st.n + st.col.long()
    assert torch.unique(key).numel() == st.nnz
    # heterogeneous parameters ~ N(20, 2), N(-55, 2)
    assert abs(float(st.tau_mem.mean()) - 20.0) < 0.3 and 1.5 < float(st.tau_mem.std()) < 2.5
    assert abs(float(st.v_th.mean()) + 55.0) < 0.3 and 1.5 < float(st.v_th.std()) < 2.5
    assert bool((st.v == -70.0).all())


def test_connectivity_is_distance_biased():
    cfg = small_config(network={"neurons": 2500, "synapses_per_neuron": 20, "readout_fan_in": 0})
    st = Engine(cfg).state
    pre = st.pre_index()
    d = (st.grid_xy[pre].double() - st.grid_xy[st.col.long()].double()).norm(dim=1)
    # exp(-d/5) over a 2-D grid: mean distance ~ 2 sigma = 10; uniform over a 50x50 grid ~ 26
    assert 7.0 < float(d.mean()) < 13.0
    offsets, weight = candidate_offsets(5.0, 30.0, torch.device("cpu"))
    assert math.isclose(float(weight.max()), math.exp(-1 / 5), rel_tol=1e-9)


def test_designated_neurons_are_disjoint_excitatory():
    st = Engine(small_config()).state
    ids = torch.cat([st.input_idx, st.output_idx.reshape(-1)])
    assert torch.unique(ids).numel() == ids.numel()
    assert bool((ids < st.n_exc).all())


def test_row_positions_match_csr_slices():
    indptr = torch.tensor([0, 2, 2, 5, 6])
    assert row_positions(indptr, torch.tensor([0, 2])).tolist() == [0, 1, 2, 3, 4]
    assert row_positions(indptr, torch.tensor([1, 3])).tolist() == [5]
    assert row_positions(indptr, torch.tensor([], dtype=torch.int64)).numel() == 0


def test_event_driven_current_equals_dense_product():
    """The event-driven gather gives exactly W^T s for the spiking neurons."""
    from fumd.network.propagate import recurrent_current

    st = Engine(small_config()).state
    spikes = torch.zeros(st.n, dtype=torch.bool)
    spikes[torch.tensor([3, 50, 330, 399])] = True
    rows = spikes.nonzero().squeeze(1)
    pos = row_positions(st.indptr, rows)
    out = torch.zeros(st.n)
    n_exc_events = int((pos < st.n_exc_synapses).sum())
    recurrent_current(out, st.col[pos], st.w[pos], n_exc_events, gain=2.0, inhib_gain=3.0)
    dense = torch.zeros(st.n, st.n)
    pre = st.pre_index()
    scale = torch.where(pre < st.n_exc, 2.0, 6.0)
    dense[pre, st.col.long()] = st.w * scale
    expected = spikes.float() @ dense
    assert torch.allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize("per_neuron_reset", [False, True])
def test_fused_lif_equals_norse(per_neuron_reset):
    """The in-place LIF step used by the simulation is bit-identical to Norse's functional step,
    with one reset potential and with one per neuron (the feature neurons' partial reset)."""
    from fumd.network.lif import LIFStepper, lif_parameters, lif_step

    g = torch.Generator().manual_seed(5)
    n = 5000
    tau = 20.0 + 2.0 * torch.randn(n, generator=g)
    v_th = -50.0 + torch.randn(n, generator=g)
    reset = torch.where(torch.arange(n) % 3 == 0, -58.0, -70.0) if per_neuron_reset else -70.0
    params = lif_parameters(tau, v_th, -65.0, reset)
    v_ref = -65.0 + 10.0 * torch.randn(n, generator=g)
    v_fast = v_ref.clone()
    stepper = LIFStepper(params, 1.0)
    spikes = torch.empty(n, dtype=torch.bool)
    fired = 0
    for _ in range(50):
        current = 30.0 * torch.randn(n, generator=g)
        z_ref, v_ref = lif_step(current, v_ref, params, 1.0)
        stepper.step(current.clone(), v_fast, spikes)
        assert torch.equal(spikes, z_ref)
        assert torch.equal(v_fast, v_ref)
        fired += int(spikes.sum())
    assert fired > 200  # the reset path was exercised


def test_row_positions_into_buffer_with_empty_rows():
    indptr = torch.tensor([0, 0, 3, 3, 3, 7, 7])
    buf = torch.empty(32, dtype=torch.int64)
    for rows in ([0, 1, 3, 4, 5], [1, 4], [0, 2, 3], [4, 5], [1]):
        rows = torch.tensor(rows)
        expected = torch.cat([torch.arange(int(indptr[r]), int(indptr[r + 1])) for r in rows])
        assert torch.equal(row_positions(indptr, rows, out=buf), expected)
        assert torch.equal(row_positions(indptr, rows), expected)
