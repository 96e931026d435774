"""Structural edits of NetworkState (fumd.network.edit): every aligned array stays aligned, the CSR
stays sorted with excitatory synapses first, Dale's law holds, and the engine keeps running and
round-trips its state after each edit."""
import pytest
import torch

from fumd.engine import Engine, states_equal
from fumd.network import edit
from fumd.network.state import NetworkState
from tests.conftest import small_config


def rec(i: int) -> dict:
    g = torch.Generator().manual_seed(1000 + i)
    return {"id": f"r{i}", "x": torch.rand(16, generator=g).tolist(), "label": f"c{i % 3}"}


def warm_engine(cycles: int = 6, **network) -> Engine:
    engine = Engine(small_config(network={**small_config().network.__dict__, **network}))
    for i in range(cycles):
        engine.cycle(rec(i))
    return engine


def cell_id(state: NetworkState, idx: torch.Tensor) -> torch.Tensor:
    """Grid cells are unique per neuron: a numbering-independent neuron identity."""
    xy = state.grid_xy[idx.long()].long()
    return xy[..., 0] * 100_000 + xy[..., 1]


def synapse_table(state: NetworkState) -> dict[tuple[int, int], tuple[float, float, bool]]:
    pre, post = cell_id(state, state.pre_index()), cell_id(state, state.col.long())
    rows = zip(pre.tolist(), post.tolist(), state.w.tolist(), state.e.float().tolist(), state.persistent.tolist(),
               strict=True)
    return {(a, b): (w, e, p) for a, b, w, e, p in rows}


def clone_sd(engine: Engine) -> dict:
    return {k: (v.clone() if torch.is_tensor(v) else v) for k, v in engine.state_dict().items()}


def assert_round_trip(engine: Engine, more: int = 3) -> None:
    """state_dict -> fresh engine is exact, and both continue identically."""
    other = Engine(small_config())
    other.load_state_dict(clone_sd(engine))
    assert states_equal(engine.state_dict(), other.state_dict())
    for i in range(more):
        assert engine.cycle(rec(100 + i)) == other.cycle(rec(100 + i))
    assert states_equal(engine.state_dict(), other.state_dict())
    edit.check_invariants(engine.state)


def test_add_neurons_inserts_excitatory_before_inhibitory_and_keeps_everything_aligned():
    engine = warm_engine()
    st = engine.state
    n0, e0, v0 = st.n, st.n_exc, st.structure_version
    before = synapse_table(st)
    des_cells = cell_id(st, torch.cat([st.input_idx, st.output_idx.reshape(-1)]))
    old_inh_params = st.tau_mem[e0:].clone()
    gen = torch.Generator().manual_seed(3)
    grown = edit.add_neurons(st, 8, 2, cluster=3, init=edit.NeuronInit.from_config(engine.config), generator=gen)
    edit.check_invariants(st)
    assert st.n == n0 + 10 and st.n_exc == e0 + 8 and st.structure_version == v0 + 1
    assert grown.new_index.tolist() == list(range(e0, e0 + 8)) + [n0 + 8, n0 + 9]
    assert grown.old_to_new[:e0].tolist() == list(range(e0))
    assert grown.old_to_new[e0:].tolist() == list(range(e0 + 8, n0 + 8))
    assert torch.equal(st.tau_mem[e0 + 8 : n0 + 8], old_inh_params)  # the inhibitory block moved up intact
    # designated neurons renumbered to the same neurons
    assert torch.equal(cell_id(st, torch.cat([st.input_idx, st.output_idx.reshape(-1)])), des_cells)
    # old synapses unchanged (w, e, persistent), keyed by neuron identity
    after = synapse_table(st)
    assert all(after[k] == v for k, v in before.items())
    assert len(after) == len(before) + grown.synapses_added and grown.synapses_added > 0
    new = grown.new_index
    assert bool((st.v[new] == engine.config.lif.v_reset).all()) and bool((st.cluster[new] == 3).all())
    assert int(st.activity[new].sum()) == 0 and float(st.rate_ema[new].abs().sum()) == 0.0
    assert not bool(st.last_spikes[new].any())
    assert bool((st.tau_mem[new] >= 10.0).all()) and bool((st.tau_mem[new] <= 30.0).all())
    # new synapses: both directions, weights from U(0, 0.3) with the presynaptic sign, fresh trace
    pre, post = st.pre_index(), st.col.long()
    is_new = torch.isin(pre, new) | torch.isin(post, new)
    assert int(is_new.sum()) == grown.synapses_added
    assert bool(torch.isin(pre[is_new], new).any()) and bool(torch.isin(post[is_new], new).any())
    assert float(st.w[is_new].abs().max()) <= 0.3 and float(st.e[is_new].float().abs().sum()) == 0.0
    assert not bool(st.persistent[is_new].any())
    # placed near the cluster: closer to cluster 3's members than to the rest of the network
    old = ~torch.isin(torch.arange(st.n), new)
    d = [float(torch.cdist(st.grid_xy[new].double(), st.grid_xy[(st.cluster == c) & old].double()).min(1).values.mean())
         for c in range(st.n_clusters)]
    assert d[3] < sum(d) / len(d)
    # density kept by the default fan (mean degree scaled to the new size)
    assert abs(st.sparsity() - (1 - len(before) / (n0 * (n0 - 1)))) < 0.003
    assert_round_trip(engine)


def test_add_neurons_per_neuron_clusters_and_full_grid_grows_the_grid():
    engine = warm_engine(2)
    st = engine.state
    side = int(st.grid_xy.max()) + 1  # 400 neurons on 20 x 20: full
    clusters = torch.tensor([0, 1, 2, 0, 5])
    grown = edit.add_neurons(st, 4, 1, cluster=clusters, init=edit.NeuronInit(),
                             generator=torch.Generator().manual_seed(0), fan_out=5, fan_in=7)
    edit.check_invariants(st)
    assert int(st.grid_xy.max()) + 1 == side + 1
    assert st.cluster[grown.new_index].tolist() == clusters.tolist()
    pre, post = st.pre_index(), st.col.long()
    for k in grown.new_index.tolist():
        assert int((pre == k).sum()) >= 5 and int((post == k).sum()) >= 7
    engine.cycle(rec(50))


def test_neuron_init_defaults_are_the_config_defaults():
    """NeuronInit restates no default: each field is the config key of the same name."""
    from fumd.config import EngineConfig

    assert edit.NeuronInit() == edit.NeuronInit.from_config(EngineConfig())
    cfg = small_config(lif={"tau_mean": 25.0, "v_reset": -72.0}, intrinsic={"tau_max": 35.0}, network={"sigma": 3.0})
    init = edit.NeuronInit.from_config(cfg)
    assert (init.tau_mean, init.v_reset, init.tau_max, init.sigma) == (25.0, -72.0, 35.0, 3.0)


def test_remove_neurons_drops_their_synapses_and_renumbers():
    engine = warm_engine(feature_neurons=100)  # leaves free excitatory neurons to remove
    st = engine.state
    n0, e0 = st.n, st.n_exc
    des = torch.cat([st.input_idx, st.output_idx.reshape(-1), st.feature_idx])
    des_cells, n_features = cell_id(st, des), st.feature_idx.numel()
    free = torch.ones(n0, dtype=torch.bool)
    free[des] = False
    victims = torch.cat([free[:e0].nonzero().squeeze(1)[:5], e0 + free[e0:].nonzero().squeeze(1)[:3]])
    mask = torch.zeros(n0, dtype=torch.bool)
    mask[victims] = True
    gone = set(cell_id(st, victims).tolist())
    before = synapse_table(st)
    old_to_new = edit.remove_neurons(st, mask)
    edit.check_invariants(st)
    assert st.n == n0 - 8 and st.n_exc == e0 - 5
    assert (old_to_new[victims] == -1).all() and old_to_new[~mask].tolist() == list(range(n0 - 8))
    expected = {k: v for k, v in before.items() if k[0] not in gone and k[1] not in gone}
    assert synapse_table(st) == expected
    assert torch.equal(cell_id(st, torch.cat([st.input_idx, st.output_idx.reshape(-1)])), des_cells[:-n_features])
    assert sorted(cell_id(st, st.feature_idx).tolist()) == sorted(des_cells[-n_features:].tolist())
    with pytest.raises(ValueError, match="designated"):
        bad = torch.zeros(st.n, dtype=torch.bool)
        bad[st.output_idx[0, 0]] = True
        edit.remove_neurons(st, bad)
    assert_round_trip(engine)


def test_rewire_moves_synapses_keeps_sign_and_sorted_rows():
    engine = warm_engine()
    st = engine.state
    pre = st.pre_index()
    keys = set((pre * st.n + st.col.long()).tolist())
    # one excitatory and one inhibitory synapse, each to a target its neuron does not reach yet
    picks, targets = [], []
    for pos in (5, st.n_exc_synapses + 7):
        i = int(pre[pos])
        j = next(j for j in range(st.n) if j != i and i * st.n + j not in keys)
        picks.append(pos)
        targets.append(j)
    w_before = st.w[picks].clone()
    st.e[picks] = 0.5
    nnz, n_exc_syn = st.nnz, st.n_exc_synapses
    edit.rewire_synapses(st, torch.tensor(picks), torch.tensor(targets))
    edit.check_invariants(st)
    assert st.nnz == nnz and st.n_exc_synapses == n_exc_syn  # rows keep their size
    where = edit.find_synapses(st, pre[picks], torch.tensor(targets))
    assert bool((where >= 0).all())
    assert torch.equal(st.w[where], w_before)  # magnitude and sign kept
    assert float(st.e[where].float().abs().sum()) == 0.0  # trace reset
    # errors: persistent, duplicate pair, autapse
    st.persistent[0] = True
    with pytest.raises(ValueError, match="persistent"):
        edit.rewire_synapses(st, torch.tensor([0]), torch.tensor([int(st.col[1])]))
    row0 = st.col[st.indptr[1] : st.indptr[2]].long()
    with pytest.raises(ValueError, match="duplicate"):
        edit.rewire_synapses(st, st.indptr[1:2], row0[1:2])
    with pytest.raises(ValueError, match="autapse"):
        edit.rewire_synapses(st, st.indptr[1:2], torch.tensor([1]))
    assert_round_trip(engine)


def test_add_synapses_to_state_skips_duplicates_and_applies_dale():
    engine = warm_engine()
    st = engine.state
    existing_pre, existing_post = int(st.pre_index()[0]), int(st.col[0])
    inh = st.n - 1
    pre = torch.tensor([existing_pre, 3, 3, inh, 7])
    post = torch.tensor([existing_post, 3, 200, 5, 200])
    nnz = st.nnz
    taken = set((st.pre_index() * st.n + st.col.long()).tolist())
    fresh = [(int(a), int(b)) for a, b in zip(pre, post, strict=True) if a != b and int(a) * st.n + int(b) not in taken]
    added = edit.add_synapses_to_state(st, pre, post, torch.full((5,), -0.2))  # sign comes from the presynaptic type
    edit.check_invariants(st)
    assert added == len(fresh) and st.nnz == nnz + added
    w = st.w[edit.find_synapses(st, torch.tensor([a for a, _ in fresh]), torch.tensor([b for _, b in fresh]))]
    for (a, _b), value in zip(fresh, w.tolist(), strict=True):
        assert value == pytest.approx(-0.2 if a >= st.n_exc else 0.2)
    assert_round_trip(engine)


@pytest.mark.parametrize("dense", [True, False])
def test_sample_near_is_distance_biased_and_respects_exclusions(monkeypatch, dense):
    if not dense:
        monkeypatch.setattr(edit, "DENSE_SAMPLING_LIMIT", 0)
    side = 40
    cells = torch.arange(side * side)
    xy = torch.stack([cells // side, cells % side], 1).to(torch.int32)
    centers_idx = torch.tensor([0, 820, 1599] * 20)
    cand = torch.ones(side * side, dtype=torch.bool)
    cand[::2] = False
    out = edit.sample_near(xy, xy[centers_idx], 10, 5.0, torch.Generator().manual_seed(0), candidates=cand,
                           exclude=centers_idx)
    assert out.shape == (60, 10) and bool((out >= 0).all())
    assert bool(cand[out].all()) and not bool((out == centers_idx[:, None]).any())
    assert all(torch.unique(row).numel() == 10 for row in out)
    d = (xy[out].double() - xy[centers_idx][:, None].double()).norm(dim=2)
    assert 3.0 < float(d.mean()) < 13.0  # exp(-d/5): ~2 sigma, far below a uniform draw (~20)
    # independent proposals (the structural job's rejection sampler): same bias, same exclusions
    prop = edit.propose_near(xy, xy[centers_idx], 50, 5.0, torch.Generator().manual_seed(1), candidates=cand,
                             exclude=centers_idx)
    usable = prop >= 0
    assert float(usable.float().mean()) > 0.15 and bool(cand[prop[usable]].all())  # corners lose 3/4 of the offsets
    assert not bool((prop == centers_idx[:, None]).any())
    d = (xy[prop.clamp(min=0)].double() - xy[centers_idx][:, None].double()).norm(dim=2)[usable]
    assert 3.0 < float(d.mean()) < 13.0
    # fewer candidates than asked: padded with -1
    few = torch.zeros(side * side, dtype=torch.bool)
    few[[5, 6, 7]] = True
    out = edit.sample_near(xy, xy[:2], 5, 5.0, torch.Generator().manual_seed(0), candidates=few)
    assert sorted(out[0, :3].tolist()) == [5, 6, 7] and out[0, 3:].tolist() == [-1, -1]


def test_pruning_compensation_formula():
    engine = warm_engine(1)
    st = engine.state
    pre, post = st.pre_index(), st.col.long()
    j = int(post[0])
    into = (post == j).nonzero().squeeze(1)
    exc_in = into[pre[into] < st.n_exc]
    victim = int(pre[exc_in[0]])
    mask = torch.zeros(st.n, dtype=torch.bool)
    mask[victim] = True
    shift = edit.pruning_compensation(st, mask, 1.0, 100.0, -65.0)
    f_e = float(st.w[exc_in[0]].abs() / st.w[exc_in].abs().sum())
    assert float(shift[j]) == pytest.approx(-(float(st.v_th[j]) + 65.0) * f_e, rel=1e-4)
    targets = set(post[pre == victim].tolist())
    assert set(shift.nonzero().squeeze(1).tolist()) <= targets
    capped = edit.pruning_compensation(st, mask, 1.0, 0.01, -65.0)
    assert float(capped.abs().max()) <= 0.01 + 1e-7


def test_engine_runs_and_round_trips_after_every_kind_of_edit():
    engine = warm_engine()
    init = edit.NeuronInit.from_config(engine.config)
    st = engine.state
    edit.add_neurons(st, 4, 1, cluster=0, init=init, generator=torch.Generator().manual_seed(1))
    engine.cycle(rec(20))
    mask = torch.zeros(st.n, dtype=torch.bool)
    des = torch.cat([st.input_idx, st.output_idx.reshape(-1)])
    mask[[i for i in range(st.n - 1, 0, -7) if i not in set(des.tolist())][:4]] = True
    edit.remove_neurons(st, mask)
    engine.cycle(rec(21))
    keep = torch.ones(st.nnz, dtype=torch.bool)
    keep[::50] = False
    edit.remove_synapses(st, keep)
    engine.cycle(rec(22))
    edit.check_invariants(st)
    assert_round_trip(engine, more=4)
