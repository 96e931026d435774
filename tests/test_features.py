"""Issue #15: the feature pathway, a convergent random expansion of the input read by the readout.

``network.feature_neurons`` excitatory neurons each receive ``network.feature_fan_in`` synapses from
distinct input neurons (and, by default, nothing from the recurrent network); the readout reads
them (``network.readout_from``); the jobs leave them alone; checkpoints carry them."""
from __future__ import annotations

import pytest
import torch

from fumd.config import feature_neurons
from fumd.engine import Engine
from fumd.jobs.decay import readout_synapses
from fumd.network import edit
from tests.conftest import small_config

FEATURES = {"feature_neurons": 60, "feature_fan_in": 3, "readout_fan_in": -1, "readout_from": "both"}


def _engine(backend: str = "numba", learning: dict | None = None, **network) -> Engine:
    base = small_config().network.__dict__
    return Engine(small_config(backend=backend, network={**base, **FEATURES, **network}, learning=learning or {}))


def _masks(st):
    def mask(idx):
        m = torch.zeros(st.n, dtype=torch.bool)
        m[idx.reshape(-1).long()] = True
        return m
    return mask(st.input_idx), mask(st.feature_idx), mask(st.output_idx)


def test_feature_neurons_converge_on_inputs_and_are_read_out():
    engine = _engine()
    st = engine.state
    assert st.feature_idx.numel() == 60 == feature_neurons(engine.config)
    is_in, is_feat, is_out = _masks(st)
    assert not bool((is_in & is_feat).any() or (is_out & is_feat).any())
    assert bool((st.feature_idx < st.n_exc).all())  # excitatory: they can drive the readout (Dale)
    pre, post = st.pre_index(), st.col.long()
    onto_feat = is_feat[post]
    assert bool(is_in[pre[onto_feat]].all())  # feature_recurrent = false: the input pathway only
    per_feature = torch.bincount(post[onto_feat], minlength=st.n)[st.feature_idx]
    assert per_feature.tolist() == [3] * 60  # distinct inputs converge on every feature neuron
    pos = onto_feat.nonzero().squeeze(1)
    sums = torch.zeros(st.n).index_add_(0, post[pos], st.w[pos])[st.feature_idx]
    assert torch.allclose(sums, torch.full_like(sums, 3 * engine.config.network.feature_weight))
    # readout_from = both, readout_fan_in = -1: every input and every feature neuron reaches every output neuron
    onto_out = is_out[post]
    assert bool((is_in | is_feat)[pre[onto_out]].all())
    assert int(onto_out.sum()) == (st.input_idx.numel() + 60) * st.output_idx.numel()
    assert engine.readout.pos.numel() == int(onto_out.sum())


def test_readout_from_input_or_features_and_recurrent_features():
    st = _engine(readout_from="input").state
    is_in, is_feat, is_out = _masks(st)
    pre, post = st.pre_index(), st.col.long()
    assert bool(is_in[pre[is_out[post]]].all())
    st = _engine(readout_from="features").state
    is_in, is_feat, is_out = _masks(st)
    pre, post = st.pre_index(), st.col.long()
    assert bool(is_feat[pre[is_out[st.col.long()]]].all())
    st = _engine(feature_recurrent=True).state
    is_in, is_feat, _ = _masks(st)
    pre, post = st.pre_index(), st.col.long()
    assert bool((~is_in[pre] & is_feat[post]).any())  # the recurrent network reaches them too
    assert _engine(feature_neurons=0).state.feature_idx.numel() == 0


@pytest.mark.parametrize("plasticity", ["fixed", "stdp"])
def test_feature_pathway_is_a_fixed_expansion_unless_stdp(backend, plasticity):
    engine = _engine(backend, learning={"feature_plasticity": plasticity, "eta": 0.05})
    pos = engine.readout.feature_pos
    assert pos.numel() == 60 * 3
    before = engine.state.w[pos].clone()
    readout_before = engine.state.w[engine.readout.pos].clone()
    gen = torch.Generator().manual_seed(0)
    for i in range(30):
        x = torch.rand(16, generator=gen).tolist()
        engine.cycle({"x": x, "label": f"c{i % 3}"})
    assert not torch.equal(engine.state.w[engine.readout.pos], readout_before)  # the readout learned
    assert torch.equal(engine.state.w[pos], before) == (plasticity == "fixed")


def test_jobs_protect_feature_neurons_and_their_synapses():
    st = _engine().state
    _, is_feat, _ = _masks(st)
    protected = readout_synapses(st)
    assert bool(protected[is_feat[st.col.long()]].all())  # decay never touches the feature pathway
    remove = torch.zeros(st.n, dtype=torch.bool)
    remove[st.feature_idx[0]] = True
    with pytest.raises(ValueError, match="never removed"):
        edit.remove_neurons(st, remove)


def test_feature_idx_follows_its_neurons_through_edits():
    st = _engine().state
    cells = st.grid_xy[st.feature_idx.long()].clone()
    remove = torch.zeros(st.n, dtype=torch.bool)
    remove[torch.tensor([i for i in range(st.n) if i not in set(st.designated_idx().tolist())][:5])] = True
    edit.remove_neurons(st, remove)
    assert torch.equal(st.grid_xy[st.feature_idx.long()], cells)
    edit.check_invariants(st)


def test_a_checkpoint_from_before_features_loads_without_them():
    engine = _engine()
    data = engine.state_dict()
    del data["network.feature_idx"]
    other = _engine()
    other.load_state_dict(data)
    assert other.state.feature_idx.numel() == 0
    assert other.readout.feature_pos.numel() == 0


@pytest.mark.parametrize("error", ["perceptron", "softmax"])
def test_label_error_reaches_the_modulator(monkeypatch, error):
    """``learning.label_error`` is what the engine's label modulator uses: the softmax error (with
    ``softmax_beta``) or the perceptron's."""
    import fumd.engine as engine_module

    seen = []
    real = engine_module.population_modulator

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        seen.append((kwargs.get("softmax_beta", 0.0), out))
        return out

    monkeypatch.setattr(engine_module, "population_modulator", spy)
    engine = Engine(small_config(learning={"label_error": error, "softmax_beta": 7.0}))
    for i in range(6):
        engine.cycle({"id": f"r{i}", "x": [0.1 * ((i + k) % 5) for k in range(16)], "label": f"c{i % 2}"})
    assert seen and all(beta == (7.0 if error == "softmax" else 0.0) for beta, _m in seen)
    values = {round(float(v), 6) for _beta, m in seen for v in m}
    if error == "perceptron":
        assert values <= {-1.0, 0.0, 1.0}
    else:  # graded
        assert values - {-1.0, 0.0, 1.0}
