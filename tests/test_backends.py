"""The backends (fumd/backends): the numba kernels against the PyTorch path and against Norse,
the one spike representation and its derived views, and the backend choice.

The kernels promise the same float32 operations in the same order as the PyTorch path, so the
tests demand bit-identical states, not closeness."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fumd.backends import Backend, make_backend, resolve_backend
from fumd.backends.numba.floats import HAS_F16C, narrow, narrow_software, widen
from fumd.config import EngineConfig
from fumd.engine import Engine, states_equal
from fumd.network.build import build_network
from fumd.network.edit import add_synapses_to_state
from fumd.network.lif import lif_parameters, lif_step, reset_potentials
from fumd.network.propagate import cycle_events, row_positions
from fumd.network.spikes import CycleSpikes


def _float_samples() -> np.ndarray:
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, size=400_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    scaled = (rng.standard_normal(400_000) * rng.choice([1e-9, 6e-8, 1e-6, 6e-5, 1e-3, 1.0, 3e4, 7e4],
                                                        400_000)).astype(np.float32)
    edges = np.array([0.0, -0.0, 65504.0, 65519.996, 65520.0, 65536.0, 6.1035156e-05, 6.0975552e-05, 5.9604645e-08,
                      2.9802322e-08, 2.9802326e-08, 8.940697e-08, 1.0009765625, 1.00048828125, 1.00146484375],
                     dtype=np.float32)
    return np.concatenate([bits, scaled, edges, -edges])


@pytest.mark.parametrize("which", ["selected", "software"])
def test_float16_narrowing_is_torch_half_bit_for_bit(which: str) -> None:
    """Round to nearest even, ties, subnormals, overflow to inf: every finite float32 as torch."""
    values = _float_samples()
    out = np.empty(values.size, dtype=np.uint16)
    (narrow if which == "selected" else narrow_software)(values, out)
    ref = torch.from_numpy(values).half().numpy().view(np.uint16)
    finite = np.isfinite(values)
    assert np.array_equal(out[finite], ref[finite])
    assert np.isnan(out[np.isnan(values)].view(np.float16)).all()
    assert np.array_equal(out[np.isinf(values)], ref[np.isinf(values)])


def test_float16_widening_is_exact() -> None:
    bits = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    out = np.empty(bits.size, dtype=np.float32)
    widen(bits, out)
    ref = bits.view(np.float16).astype(np.float32)
    finite = np.isfinite(ref)
    assert np.array_equal(out[finite], ref[finite]) and np.isnan(out[~finite & np.isnan(ref)]).all()
    assert isinstance(HAS_F16C, bool)


def test_backend_resolution() -> None:
    assert resolve_backend("auto", torch.device("cpu")) == "numba"
    assert resolve_backend("torch", torch.device("cpu")) == "torch"
    assert resolve_backend("auto", torch.device("cuda")) == "torch"  # the kernels are CPU code
    with pytest.raises(RuntimeError, match="CPU only"):
        resolve_backend("numba", torch.device("cuda"))
    for name, expected in (("auto", "numba"), ("numba", "numba"), ("torch", "torch")):
        backend = make_backend(EngineConfig().replace(backend=name), torch.device("cpu"))
        assert isinstance(backend, Backend) and backend.name == expected


def _spikes(steps: int, n: int, seed: int, rate: float = 0.05) -> tuple[CycleSpikes, torch.Tensor]:
    raster = torch.rand(steps, n, generator=torch.Generator().manual_seed(seed)) < rate
    _, neurons = raster.nonzero(as_tuple=True)
    step_ptr = torch.zeros(steps + 1, dtype=torch.int64)
    step_ptr[1:] = torch.cumsum(raster.sum(1), 0)
    return CycleSpikes(step_ptr=step_ptr, neurons=neurons.int(), n=n), raster


def test_cycle_spikes_derived_views() -> None:
    spikes, raster = _spikes(50, 300, seed=1)
    assert torch.equal(spikes.raster, raster)
    assert torch.equal(spikes.counts, raster.sum(0)) and spikes.total == int(raster.sum()) and spikes.steps == 50
    assert torch.equal(spikes.spike_steps.long(), raster.nonzero(as_tuple=True)[0])
    silent = CycleSpikes(step_ptr=torch.zeros(4, dtype=torch.int64), neurons=torch.empty(0, dtype=torch.int32), n=7)
    assert silent.total == 0 and int(silent.counts.sum()) == 0
    assert silent.raster.shape == (3, 7) and not silent.raster.any()


def test_cycle_events_are_the_steps_propagation_events() -> None:
    """One ``row_positions`` over the whole spike list gives every step's propagation positions,
    in the order the simulation reads them (by step, ascending neurons, CSR order)."""
    cfg = EngineConfig().replace(network={"neurons": 1000, "seed": 2, "synapses_per_neuron": 30}, device="cpu")
    state = build_network(cfg, torch.Generator().manual_seed(2), torch.device("cpu"))
    spikes, raster = _spikes(20, state.n, seed=3)
    events = cycle_events(state.indptr, state.col, spikes)
    pos, step = [], []
    for t in range(20):
        rows = raster[t].nonzero().squeeze(1)
        p = row_positions(state.indptr, rows)
        pos.append(p)
        step.append(torch.full((p.numel(),), t, dtype=torch.int32))
    assert torch.equal(events.pos, torch.cat(pos)) and torch.equal(events.step, torch.cat(step))
    assert torch.equal(events.post, state.col[events.pos]) and events.pos.numel() > 1000


def test_simulation_without_synapses_is_norse(backend: str) -> None:
    """With no recurrent synapses the current is the drive alone: V and spikes after 50 steps are
    exactly Norse's ``lif_box_feed_forward_step`` applied 50 times (V stays above the floor)."""
    cfg = EngineConfig().replace(network={"neurons": 1000, "seed": 2}, device="cpu", backend=backend)
    state = build_network(cfg, torch.Generator().manual_seed(2), torch.device("cpu"))
    state.indptr = torch.zeros_like(state.indptr)
    state.col, state.w = state.col[:0], state.w[:0]
    g = torch.Generator().manual_seed(3)
    spikes_in = torch.rand(50, state.input_idx.numel(), generator=g) < 0.3
    state.v = cfg.lif.v_reset + 15.0 * torch.rand(state.n, generator=g)
    v0 = state.v.clone()
    lif = cfg.lif
    out = make_backend(cfg, torch.device("cpu")).simulate(state, spikes_in)
    # Norse with each neuron's own reset (the feature neurons' partial reset, lif.feature_v_reset)
    params = lif_parameters(state.tau_mem, state.v_th, lif.v_rest,
                            reset_potentials(state.n, state.feature_idx, lif, torch.device("cpu")))
    v = v0
    for t in range(50):
        current = torch.zeros(state.n)
        current[state.input_idx] = spikes_in[t].float() * lif.input_current
        z, v = lif_step(current, v, params, lif.dt_ms)
        assert torch.equal(out.raster[t], z), t
    assert torch.equal(state.v, v) and torch.equal(state.last_spikes, z)
    assert out.total > 100  # inputs fired and were reset


def test_numba_simulation_equals_torch_path() -> None:
    """Recurrent network, inhibition gain != 1, V floor, adaptive thresholds and the feature
    neurons' partial reset acting: the spikes (one list, by step) and V identical on both
    backends, cycle after cycle; a neuron that fired on the last step sits at its own reset."""
    cfg = EngineConfig().replace(network={"neurons": 1500, "seed": 4, "synapses_per_neuron": 60}, device="cpu",
                                 lif={"v_min": -71.0, "feature_v_reset": -58.0})
    states = [build_network(cfg, torch.Generator().manual_seed(4), torch.device("cpu")) for _ in range(2)]
    spikes_in = torch.rand(50, states[0].input_idx.numel(), generator=torch.Generator().manual_seed(5)) < 0.2
    for st in states:
        st.global_inhibition = 1.7
        st.theta[st.output_idx.reshape(-1)] = 2.5
    outs = []
    for name, st in zip(("torch", "numba"), states, strict=True):
        backend = make_backend(cfg.replace(backend=name), torch.device("cpu"))
        outs.append([backend.simulate(st, spikes_in) for _ in range(3)])
    for ref, got in zip(*outs, strict=True):
        assert torch.equal(ref.step_ptr, got.step_ptr) and torch.equal(ref.neurons, got.neurons)
        assert ref.neurons.dtype == got.neurons.dtype == torch.int32
    assert torch.equal(states[0].v, states[1].v) and torch.equal(states[0].last_spikes, states[1].last_spikes)
    assert float(states[0].v.min()) >= -71.0
    assert outs[1][-1].total > 500
    st = states[1]
    feature = torch.zeros(st.n, dtype=torch.bool)
    feature[st.feature_idx.long()] = True
    assert int((st.last_spikes & feature).sum()) > 0 and int((st.last_spikes & ~feature).sum()) > 0
    assert bool((st.v[st.last_spikes & feature] == -58.0).all())
    assert bool((st.v[st.last_spikes & ~feature] == -70.0).all())


def _run(backend: str, cycles: int, threads: int | None = None, edit_at: int | None = None, **sections) -> Engine:
    cfg = EngineConfig().replace(network={"neurons": 1200, "seed": 7, "synapses_per_neuron": 60}, device="cpu",
                                 deterministic=True, backend=backend, **sections)
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        engine = Engine(cfg)
        assert engine.backend.name == backend
        engine.state.persistent[::7] = True  # the persistent learning rate takes part
        engine.state.global_inhibition = 1.3
        rng = np.random.default_rng(1)
        for i in range(cycles):
            if i == edit_at:  # structure changes between cycles (jobs): derived arrays follow
                g = torch.Generator().manual_seed(9)
                pre = torch.randint(0, engine.state.n, (300,), generator=g)
                post = engine.state.output_idx.reshape(-1)[torch.randint(0, 40, (300,), generator=g)]
                keep = pre != post
                add_synapses_to_state(engine.state, pre[keep], post[keep], torch.full((int(keep.sum()),), 0.05))
            record = {"x": rng.random(cfg.network.input_size).tolist(), "label": str(i % 4)}
            if i % 5 == 4:
                record = {"x": record["x"], "reward": float(rng.uniform(-1, 1))}
            engine.cycle(record)
        return engine
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("trace_dtype", ["float16", "float32"])
def test_numba_learning_is_bit_identical_to_torch_path(trace_dtype: str) -> None:
    """STDP table, traces (float16: one rounding per cycle; float32), reward-modulated weights with
    persistent scaling, readout update and synaptic scaling: the whole state after 40 cycles is the
    same, bit for bit, on both backends."""
    learning = {"trace_dtype": trace_dtype}
    ref = _run("torch", 40, learning=learning)
    got = _run("numba", 40, learning=learning)
    assert states_equal(ref.state_dict(), got.state_dict())
    assert float(got.state.e.float().abs().sum()) > 0 and int(got.state.persistent.sum()) > 0


def test_numba_learning_after_a_structure_change_and_across_thread_counts() -> None:
    """Synapses added between cycles (as the structural job does) re-derive the kernels' row data;
    the parallel kernels give the same state on one and on two threads."""
    ref = _run("torch", 24, edit_at=12)
    one = _run("numba", 24, threads=1, edit_at=12)
    two = _run("numba", 24, threads=2, edit_at=12)
    assert ref.state.structure_version > 0
    assert states_equal(ref.state_dict(), one.state_dict())
    assert states_equal(one.state_dict(), two.state_dict())


def test_loading_a_state_with_another_structure_rederives_everything(backend: str) -> None:
    """Two engines that added different synapses (same structure_version): after loading one's
    state into the other, both continue identically (nothing derived from the old structure)."""
    cfg = EngineConfig().replace(network={"neurons": 1200, "seed": 7, "synapses_per_neuron": 60}, device="cpu",
                                 deterministic=True, backend=backend)
    rng = np.random.default_rng(2)
    inputs = [{"x": rng.random(cfg.network.input_size).tolist(), "label": str(i % 4)} for i in range(12)]
    engines = []
    for seed in (1, 2):
        engine = Engine(cfg)
        g = torch.Generator().manual_seed(seed)
        plain = torch.ones(engine.state.n_exc, dtype=torch.bool)  # not yet all-to-all onto the outputs
        plain[engine.state.feature_idx.long()] = False
        plain[engine.state.input_idx.long()] = False
        plain = plain.nonzero().squeeze(1)
        pre = plain[torch.randperm(plain.numel(), generator=g)[:200]]
        post = engine.state.output_idx.reshape(-1)[torch.randint(0, 40, (200,), generator=g)]
        assert add_synapses_to_state(engine.state, pre, post, torch.full((200,), 0.05)) > 150
        for record in inputs[:4]:
            engine.cycle(record)
        engines.append(engine)
    a, b = engines
    assert a.state.structure_version == b.state.structure_version
    b.load_state_dict({k: v.clone() if torch.is_tensor(v) else v for k, v in a.state_dict().items()})
    for record in inputs[4:]:
        a.cycle(record)
        b.cycle(record)
    assert states_equal(a.state_dict(), b.state_dict())
