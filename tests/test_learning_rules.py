import math
from typing import Any

import numpy as np
import pytest
import torch

from fumd.config import IntrinsicConfig, STDPConfig
from fumd.learning.eligibility import update_trace
from fumd.learning.intrinsic import intrinsic_update, update_rate
from fumd.learning.modulation import effective_eta, synapse_update
from fumd.learning.stdp import event_updates, make_kernels, pair_sum_reference, stdp_window

CFG = STDPConfig()


@pytest.mark.parametrize(
    "dt, expected",
    [
        (1, 0.1 * math.exp(-1 / 20)),
        (5, 0.1 * math.exp(-5 / 20)),
        (10, 0.1 * math.exp(-10 / 20)),
        (-1, -0.12 * math.exp(-1 / 20)),
        (-7, -0.12 * math.exp(-7 / 20)),
        (0, 0.0),
        (11, 0.0),  # outside tau_max = 10
        (-11, 0.0),
    ],
)
def test_stdp_window_values(dt, expected):
    assert float(stdp_window(torch.tensor([dt]), CFG)[0]) == pytest.approx(expected, abs=1e-12)


def test_event_updates_match_hand_pair_sum():
    """One excitatory synapse, pre spikes at 10 and 30, post spikes at 12, 25 and 45."""
    raster = torch.zeros(50, 2, dtype=torch.bool)
    pre_t, post_t = [10, 30], [12, 25, 45]
    raster[pre_t, 0] = True
    raster[post_t, 1] = True
    kernels = make_kernels(CFG, 1.0, torch.device("cpu"))
    post = torch.tensor([1, 1], dtype=torch.int32)
    step = torch.tensor(pre_t)
    dw = event_updates(raster, post, step, torch.zeros(2, dtype=torch.bool), kernels)
    hand = (0.1 * math.exp(-2 / 20)) + (-0.12 * math.exp(-5 / 20)) + (0.1 * math.exp(-15 / 20) * 0)  # 45-30=15 > 10
    assert float(dw.sum()) == pytest.approx(hand, rel=1e-5)
    assert float(dw.sum()) == pytest.approx(pair_sum_reference(pre_t, post_t, CFG), rel=1e-5)


def test_inhibitory_rule_is_symmetric_and_homeostatic():
    kernels = make_kernels(CFG, 1.0, torch.device("cpu"))
    raster = torch.zeros(50, 3, dtype=torch.bool)
    raster[20, 0] = True  # inhibitory pre
    raster[17, 1] = True  # post 3 ms before
    raster[23, 2] = True  # post 3 ms after
    post = torch.tensor([1, 2], dtype=torch.int32)
    dw = event_updates(raster, post, torch.tensor([20, 20]), torch.ones(2, dtype=torch.bool), kernels)
    assert float(dw[0]) == pytest.approx(float(dw[1]))  # symmetric in dt
    expected = -CFG.inh_amplitude * math.exp(-3 / 20) + kernels.inhibitory_offset
    assert float(dw[0]) == pytest.approx(expected, rel=1e-5)
    assert float(dw[0]) < 0  # coincident firing strengthens inhibition (more negative)
    # a silent postsynaptic neuron lets the inhibitory synapse weaken (toward 0)
    silent = event_updates(torch.zeros(50, 3, dtype=torch.bool), post, torch.tensor([20, 20]),
                           torch.ones(2, dtype=torch.bool), kernels)
    assert float(silent[0]) == pytest.approx(kernels.inhibitory_offset) and kernels.inhibitory_offset > 0


def test_trace_decay_and_accumulation():
    e = torch.tensor([1.0, 0.5, 0.0])
    update_trace(e, torch.tensor([2, 2, 0]), torch.tensor([0.1, 0.2, 1.0]), 0.95)
    assert e.tolist() == pytest.approx([0.95 + 1.0, 0.475, 0.3])
    for _ in range(10):
        update_trace(e, torch.tensor([], dtype=torch.int64), torch.tensor([]), 0.95)
    assert float(e[1]) == pytest.approx(0.475 * 0.95**10)


@pytest.mark.parametrize("reward", [-2.0, -1.0, 0.0, 0.5, 1.0, 3.0])
def test_effective_eta(reward):
    sig = 1 / (1 + math.exp(-reward))
    assert effective_eta(0.01, reward) == pytest.approx(0.01 * (1 + (2 * sig - 1)))
    assert effective_eta(0.01, 0.0) == pytest.approx(0.01)


def test_clipping_and_dale_after_many_updates():
    gen = torch.Generator().manual_seed(3)
    k = 500
    w = torch.cat([torch.rand(k, generator=gen) * 0.3, -torch.rand(500, generator=gen) * 0.3])
    persistent = torch.zeros(1000, dtype=torch.bool)
    for _ in range(300):
        e = torch.randn(1000, generator=gen) * 5
        r = float(torch.randn(1, generator=gen)) * 2
        synapse_update(w, e, persistent, k, effective_eta(0.01, r) * r, effective_eta(0.01, r) * r, 0.5, 1.0)
        assert bool((w[:k] >= 0).all()) and bool((w[:k] <= 1).all())
        assert bool((w[k:] <= 0).all()) and bool((w[k:] >= -1).all())
    assert bool((w[:k] == 1).any()) and bool((w[:k] == 0).any())  # the bounds were reached


def test_persistent_synapses_learn_at_half_rate():
    w = torch.tensor([0.2, 0.2, -0.2, -0.2])
    e = torch.tensor([1.0, 1.0, -1.0, -1.0])
    persistent = torch.tensor([False, True, False, True])
    synapse_update(w, e, persistent, 2, 0.1, 0.1, 0.5, 1.0)
    assert w.tolist() == pytest.approx([0.3, 0.25, -0.3, -0.25])


def test_intrinsic_plasticity_moves_rate_toward_target():
    cfg = IntrinsicConfig(target_low_hz=5.0, target_high_hz=20.0)
    rate = torch.tensor([60.0, 10.0, 0.0])
    v_th = torch.tensor([-55.0, -55.0, -55.0])
    tau = torch.tensor([20.0, 20.0, 20.0])
    new_v, new_tau = intrinsic_update(rate, v_th, tau, cfg)
    assert float(new_v[0]) == pytest.approx(-55.0 + cfg.eta_v_th * 40.0)  # too fast: threshold up
    assert float(new_v[1]) == -55.0 and float(new_tau[1]) == 20.0  # inside the band: untouched
    assert float(new_v[2]) == pytest.approx(-55.0 - cfg.eta_v_th * 5.0)  # silent: threshold down
    # too fast: a longer tau (smaller jump per input, a lower rate); silent: a shorter one (issue #9)
    assert float(new_tau[0]) > 20.0 > float(new_tau[2])
    assert update_rate(torch.tensor([0.0]), torch.tensor([1]), 50.0, 0.1).item() == pytest.approx(2.0)


def test_intrinsic_plasticity_in_a_running_network_lowers_an_overactive_rate(backend):
    from fumd.engine import Engine
    from tests.conftest import small_config

    cfg = small_config(
        backend=backend,
        lif={"synaptic_gain": 200.0, "global_inhibition": 3.0},
        intrinsic={"target_low_hz": 1.0, "target_high_hz": 5.0, "eta_v_th": 0.02, "rate_alpha": 0.5, "v_th_max": -30.0},
        learning={"eta": 0.0}, encoder={"normalize": "clip01", "channels": "single"},
    )
    engine = Engine(cfg)
    x = [0.5] * 16
    v_th0, tau0 = engine.state.v_th.clone(), engine.state.tau_mem.clone()
    early = sum(engine.cycle({"x": x}).rate_hz for _ in range(10)) / 10
    busy = engine.state.rate_ema > 20.0  # well above the 1-5 Hz band
    for _ in range(150):
        engine.cycle({"x": x})
    late = sum(engine.cycle({"x": x}).rate_hz for _ in range(10)) / 10
    assert late < 0.7 * early
    # the busy neurons got higher thresholds and longer time constants (both lower the rate)
    assert int(busy.sum()) > 10
    assert bool((engine.state.v_th[busy] > v_th0[busy]).all()) and bool((engine.state.tau_mem[busy] > tau0[busy]).all())


def test_event_updates_table_matches_per_event_definition():
    """The gather-from-table implementation equals the per-event definition
    (conv1d correlation + inhibitory offset, then the eligibility gate)."""
    import torch.nn.functional as F

    from fumd.config import STDPConfig
    from fumd.learning.stdp import event_updates, make_kernels

    g = torch.Generator().manual_seed(2)
    steps, n, events = 50, 300, 4000
    raster = torch.rand(steps, n, generator=g) < 0.05
    raster[:, 250:] = False  # some silent neurons
    post = torch.randint(0, n, (events,), generator=g, dtype=torch.int32)
    step = torch.randint(0, steps, (events,), generator=g, dtype=torch.int32)
    inh = torch.rand(events, generator=g) < 0.2
    gate = (torch.rand(n, generator=g) < 0.8).float()
    kernels = make_kernels(STDPConfig(), 1.0, torch.device("cpu"))
    got = event_updates(raster, post, step, inh, kernels, gate)
    weight = torch.stack([kernels.excitatory, kernels.inhibitory]).unsqueeze(1).double()
    pairing = F.conv1d(raster.T.unsqueeze(1).double(), weight, padding=kernels.window)  # [N, 2, T]
    expected = pairing[post.long(), inh.long(), step.long()].float() + inh.float() * kernels.inhibitory_offset
    expected = expected * gate[post.long()]
    assert torch.allclose(got, expected, rtol=1e-6, atol=1e-7)
    assert torch.equal(event_updates(raster, post.long(), step.long(), inh, kernels, gate), got)


def test_causal_kernel_counts_only_pre_before_post():
    kernels = make_kernels(CFG, 1.0, torch.device("cpu"))
    raster = torch.zeros(50, 2, dtype=torch.bool)
    raster[[10, 30], 0] = True
    raster[[12, 25], 1] = True  # 12: 2 ms after the pre spike at 10; 25: 5 ms before the one at 30
    post = torch.tensor([1, 1], dtype=torch.int32)
    causal = torch.tensor([False, True])
    dw = event_updates(raster, post, torch.tensor([10, 30]), torch.zeros(2, dtype=torch.bool), kernels, None, causal)
    assert float(dw[0]) == pytest.approx(0.1 * math.exp(-2 / 20), rel=1e-5)
    assert float(dw[1]) == 0.0  # post-before-pre: no depression on a readout synapse


def test_readout_normalisation_and_magnitude_modulation():
    from fumd.engine import Engine
    from fumd.learning.modulation import reward_coefficient
    from fumd.learning.readout import normalize_readout
    from tests.conftest import small_config

    engine = Engine(small_config())
    ro = engine.readout
    engine.state.w[ro.pos] *= 1.7
    normalize_readout(engine.state.w, ro, 1.0)
    sums = torch.zeros_like(ro.target_sum).index_add_(0, ro.post_local, engine.state.w[ro.pos])
    assert torch.allclose(sums, ro.target_sum, rtol=1e-4)
    assert reward_coefficient(0.01, 0.7, "magnitude") == pytest.approx(-reward_coefficient(0.01, -0.7, "magnitude"))
    assert reward_coefficient(0.01, 0.7, "signed") > -reward_coefficient(0.01, -0.7, "signed")


def test_v_floor_bounds_inhibition():
    """lif.v_min: a strongly inhibited neuron's V stops at the floor (current-based synapses have
    no reversal potential of their own)."""
    from fumd.network.lif import LIFStepper, lif_parameters

    params = lif_parameters(torch.full((2,), 20.0), torch.full((2,), -55.0), -65.0, -70.0)
    v = torch.tensor([-70.0, -70.0])
    spikes = torch.zeros(2, dtype=torch.bool)
    floored, free = LIFStepper(params, 1.0, v_min=-90.0), LIFStepper(params, 1.0)
    v2 = v.clone()
    for _ in range(50):
        floored.step(torch.tensor([-5000.0, 0.0]), v, spikes)
        free.step(torch.tensor([-5000.0, 0.0]), v2, spikes)
    assert float(v[0]) == -90.0 and float(v2[0]) < -1000.0


def test_population_modulator_and_adaptive_threshold():
    from fumd.learning.readout import population_modulator, update_theta

    rates = torch.tensor([10.0, 30.0, 5.0, 0.0], dtype=torch.float64)
    # wrong: the label's population up, the acting one down
    assert population_modulator(4, 1, 0, rates, 0.3).tolist() == [1.0, -1.0, 0.0, 0.0]
    # right with a clear margin: nothing to learn
    assert population_modulator(4, 1, 1, rates, 0.3).tolist() == [0.0, 0.0, 0.0, 0.0]
    # right but close to its strongest rival: a margin update against the rival
    close = torch.tensor([25.0, 30.0, 5.0, 0.0], dtype=torch.float64)
    assert population_modulator(4, 1, 1, close, 0.3).tolist() == [-1.0, 1.0, 0.0, 0.0]
    # no label: the acting population's reward-prediction error
    assert population_modulator(4, 2, None, rates, 0.3, delta=-0.4).tolist() == [0.0, 0.0, -0.4, 0.0]
    # softmax error (learning.label_error = softmax): onehot(label) - softmax(beta (r - max r) / mean r)
    # over the competing populations (here the first 3 of 5), graded, summing to zero
    m = population_modulator(5, 1, 0, rates[:3], 0.3, softmax_beta=30.0)
    pi = torch.softmax(30.0 * (rates[:3] - 30.0) / rates[:3].mean(), 0)
    assert torch.allclose(m[:3], torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64) - pi) and m[3:].eq(0).all()
    assert abs(float(m.sum())) < 1e-12 and m[0] > 0.99 and m[1] < -0.99  # a clear miss: the perceptron's +1 / -1
    right = population_modulator(5, 1, 1, rates[:3], 0.3, softmax_beta=30.0)
    assert right.abs().max() < 1e-6  # a confident right decision teaches (almost) nothing
    near = population_modulator(5, 1, 1, close[:3], 0.3, softmax_beta=30.0)
    assert 0.0 < near[1] < 1.0 and -1.0 < near[0] < 0.0  # a near miss: a graded update against the rival
    silent = population_modulator(3, 0, 2, torch.zeros(3, dtype=torch.float64), 0.3, softmax_beta=30.0)
    assert torch.allclose(silent, torch.tensor([-1 / 3, -1 / 3, 2 / 3], dtype=torch.float64))
    # theta: decays, rises with spikes, falls where the modulator says "should have fired"
    output = torch.tensor([[0, 1], [2, 3]])
    theta = torch.tensor([1.0, 1.0, 1.0, 1.0, 7.0])
    counts = torch.tensor([0, 10, 0, 0, 99])
    new = update_theta(theta, counts, output, 0.1, 0.5, torch.tensor([1.0, -1.0], dtype=torch.float64), 0.2)
    assert new.tolist() == pytest.approx([0.3, 1.3, 0.7, 0.7, 7.0])


def test_readout_is_isolated_and_all_to_all():
    """network.readout_isolated / readout_fan_in = -1: no recurrent synapse ends on an input or an
    output neuron, and every input neuron reaches every output neuron."""
    from fumd.engine import Engine
    from tests.conftest import input_readout_config

    st = Engine(input_readout_config(network={"readout_fan_in": -1})).state
    pre, post = st.pre_index(), st.col.long()
    is_in = torch.zeros(st.n, dtype=torch.bool)
    is_in[st.input_idx] = True
    is_out = torch.zeros(st.n, dtype=torch.bool)
    is_out[st.output_idx.reshape(-1)] = True
    assert not bool(is_in[post].any())
    onto_out = is_out[post]
    assert bool(is_in[pre[onto_out]].all())
    assert int(onto_out.sum()) == st.input_idx.numel() * st.output_idx.numel()


def _theta_engine(backend: str, **learning):
    from fumd.engine import Engine
    from tests.conftest import input_readout_config

    homeostasis_off = {"theta_plus_mv": 0.0, "theta_decay": 1.0}
    return Engine(input_readout_config(backend=backend, learning={**homeostasis_off, **learning}))


def test_engine_applies_the_error_driven_bias_and_reserve_competition(backend):
    """With homeostasis off (plus 0, decay 1) theta moves only by the bias: a wrong decision lowers
    the label population's theta by bias_mv and raises the acting one's; with reserve_compete the
    populations without a label that outfire the label are pushed up too."""
    rng = np.random.default_rng(0)
    xs = rng.normal(0.0, 1.0, (40, 16))
    engine = _theta_engine(backend, bias_mv=0.5)
    out = engine.state.output_idx
    for i, x in enumerate(xs):
        before = engine.state.theta[out[:, 0]].clone()
        r = engine.cycle({"x": x.tolist(), "label": "a" if i % 2 else "b"})
        step = engine.state.theta[out[:, 0]] - before
        if r.correct is False:
            assert float(step[r.action_index]) == pytest.approx(0.5)
            assert float(step[engine.vocabulary.labels.index(r.label)]) == pytest.approx(-0.5)
    assert bool((engine.state.theta[out[2:].reshape(-1)] > 0).any())  # reserve populations were outbid
    others = torch.ones(engine.state.n, dtype=torch.bool)
    others[out.reshape(-1)] = False
    assert bool((engine.state.theta[others] == 0).all())
    plain = _theta_engine(backend, bias_mv=0.5, reserve_compete=False)
    for i, x in enumerate(xs):
        plain.cycle({"x": x.tolist(), "label": "a" if i % 2 else "b"})
    assert bool((plain.state.theta[out[2:].reshape(-1)] == 0).all())


def test_adaptive_threshold_silences_a_population(backend):
    """The simulation's threshold is v_th + theta."""
    from fumd.engine import Engine
    from tests.conftest import small_config

    counts = []
    for raise_mv in (0.0, 50.0):
        engine = Engine(small_config(backend=backend, learning={"enabled": False}))
        engine.state.theta[engine.state.output_idx[0]] = raise_mv
        x = np.random.default_rng(1).normal(0.0, 1.0, (20, 16))
        total = 0
        for row in x:
            engine.cycle({"x": row.tolist()})
            total += int(engine.last_cycle_spikes.counts[engine.state.output_idx[0]].sum())
        counts.append(total)
    assert counts[0] > 0 and counts[1] == 0


def test_readout_learning_rate_is_normalised_by_fan_in():
    """learning.readout_eta_fan_in: a readout wider than the reference learns at
    sqrt(reference / fan-in) of readout_eta (docs/mechanisms.md); up to the reference, unchanged."""
    from fumd.engine import Engine
    from fumd.learning.readout import fan_in_scale
    from tests.conftest import input_readout_config

    assert fan_in_scale(14, 32.0) == 1.0 and fan_in_scale(512, 32.0) == pytest.approx(0.25)
    assert fan_in_scale(512, 0.0) == 1.0
    network = {"input_size": 64, "readout_fan_in": -1}  # 128 ON/OFF channels
    modulator = torch.zeros(4, dtype=torch.float64)
    modulator[0], modulator[1] = 1.0, -1.0
    coefs = {}
    for reference in (32.0, 0.0):
        cfg = input_readout_config(network=network)
        engine = Engine(cfg.replace(learning={**cfg.learning.__dict__, "readout_eta_fan_in": reference}))
        coefs[reference] = engine._readout_coefficients(modulator, 1.0).readout
    nonzero = coefs[0.0] != 0
    assert nonzero.any()
    assert torch.allclose(coefs[32.0][nonzero] / coefs[0.0][nonzero], torch.full((int(nonzero.sum()),), 0.5))


def test_readout_weight_sum_grows_with_fan_in(backend):
    """learning.readout_weight_fan_in: each output neuron's readout weights sum to
    readout_weight_sum x sqrt(fan-in / reference) above the reference, at build time and after the
    synaptic scaling of a learning step (docs/mechanisms.md); up to the reference, unchanged."""
    from fumd.engine import Engine
    from fumd.learning.readout import weight_sum_for
    from tests.conftest import input_readout_config

    assert weight_sum_for(20, 3.0, 32.0) == 3.0 and weight_sum_for(128, 3.0, 32.0) == pytest.approx(6.0)
    assert weight_sum_for(512, 3.0, 0.0) == 3.0
    network = {"input_size": 64, "readout_fan_in": -1}  # 128 ON/OFF channels
    for reference, expected in ((32.0, 6.0), (0.0, 3.0)):
        cfg = input_readout_config(backend=backend, network=network)
        engine = Engine(cfg.replace(learning={**cfg.learning.__dict__, "readout_weight_fan_in": reference,
                                              "readout_weight_sum": 3.0}))
        ro, st = engine.readout, engine.state

        def sums(ro: Any = ro, st: Any = st) -> torch.Tensor:  # bound to this iteration's readout and state
            return torch.zeros(ro.target_sum.numel(),
                               dtype=torch.float64).index_add_(0, ro.post_local, st.w[ro.pos].double())

        assert sums().mean().item() == pytest.approx(expected, rel=0.1)  # the initial draw: the sum on average
        x = torch.rand(64, generator=torch.Generator().manual_seed(1)).tolist()
        for i in range(3):
            engine.cycle({"x": x, "label": "a" if i % 2 else "b"})
        assert torch.allclose(sums(), torch.full_like(sums(), expected), rtol=1e-3)  # scaled back after learning


def test_presynaptic_eligibility_potentiates_a_silent_label_population(backend):
    """learning.readout_eligibility = presynaptic (e-prop's readout rule): e_ij = scale x n_i, so
    the label population's readout weights from the neurons that fired grow on a wrong decision
    even when that population did not spike (the causal eligibility needs its spikes)."""

    from fumd.engine import Engine
    from fumd.learning.readout import presynaptic_eligibility
    from tests.conftest import small_config

    engine = Engine(small_config(backend=backend, learning={"readout_eligibility": "presynaptic",
                                                           "readout_normalize": False, "margin": 0.0}))
    st, ro = engine.state, engine.readout
    counts = torch.zeros(st.n, dtype=torch.int64)
    counts[st.input_idx[:3]] = torch.tensor([4, 0, 2])
    e = presynaptic_eligibility(counts, ro, 0.5)
    assert torch.equal(e, counts[ro.pre].float() * 0.5)
    assert torch.equal(ro.pre, st.pre_index()[ro.pos])

    # a cycle whose label population stays silent: force it with a huge threshold on it
    engine.cycle({"x": [0.0] * 16, "label": "a"})
    engine.cycle({"x": [0.0] * 16, "label": "b"})
    label = engine.vocabulary.add("b")
    st.theta[st.output_idx[label]] = 1e4
    w_before = st.w.clone()
    result = engine.cycle({"x": [3.0] * 8 + [-3.0] * 8, "label": "b"})
    assert result.action_index != label and not result.correct
    counts = engine.last_cycle_spikes.counts
    assert int(counts[st.output_idx[label]].sum()) == 0
    onto_label = (ro.post_local // st.output_idx.shape[1]) == label
    active = counts[ro.pre] > 0
    grew = st.w[ro.pos] > w_before[ro.pos]
    assert bool(grew[onto_label & active].all()) and bool((onto_label & active).any())
    assert not bool(grew[onto_label & ~active].any())
