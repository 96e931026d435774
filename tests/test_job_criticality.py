"""Criticality and stability control job (SPEC §7, seed 002 §5.C.3, §5.D.2, §5.E.2)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.special import zeta

from fumd.errors import ConfigError
from fumd.jobs.base import run_once
from fumd.jobs.criticality import (
    CriticalityConfig,
    CriticalityJob,
    avalanches_from_bins,
    fit_discrete_power_law,
    inhibition_bounds,
    next_eta,
    next_inhibition,
    rate_variance,
)
from tests.job_fakes import FakeEngine, sie_weights


def discrete_power_law(tau: float, n: int, seed: int, x_min: int = 1, table: int = 100_000) -> np.ndarray:
    """Exact samples of p(x) = x^-tau / zeta(tau, x_min), x >= x_min: inverse CDF on a table up to
    ``table``; beyond it (where the discrete law is continuous to < 1e-5) the continuous tail."""
    rng = np.random.default_rng(seed)
    x = np.arange(x_min, table, dtype=np.float64)
    pmf = x ** -tau / zeta(tau, x_min)
    cdf = np.cumsum(pmf)
    u = rng.random(n)
    out = np.searchsorted(cdf, u).astype(np.float64) + x_min
    beyond = u >= cdf[-1]
    if beyond.any():  # P(X >= table) = zeta(tau, table) / zeta(tau, x_min); continuous tail from table - 1/2
        v = (u[beyond] - cdf[-1]) / (1.0 - cdf[-1])
        out[beyond] = np.floor((table - 0.5) * (1.0 - v) ** (-1.0 / (tau - 1.0)) + 0.5)
    return out.astype(np.int64)


@pytest.mark.parametrize("tau", [1.3, 1.5, 1.8, 2.0, 2.5])
def test_exponent_estimator_recovers_tau(tau):
    for seed in (0, 1):
        sizes = discrete_power_law(tau, 5000, seed)
        fit = fit_discrete_power_law(sizes, min_tail=50, max_candidates=100)
        assert abs(fit.tau - tau) <= 0.1, (seed, fit)
        assert fit.loglik_ratio_exp > 0  # a power law, not an exponential


def test_exponent_estimator_with_x_min_above_one_and_bulk_constraint():
    sizes = discrete_power_law(1.7, 5000, 2, x_min=5)
    noise = np.random.default_rng(3).integers(1, 5, 500)  # a non-power-law head below x_min
    fit = fit_discrete_power_law(np.concatenate([sizes, noise]), min_tail=50, min_tail_fraction=0.1)
    assert abs(fit.tau - 1.7) <= 0.1 and fit.x_min >= 4
    assert fit_discrete_power_law(np.ones(10, dtype=np.int64), min_tail=50) is None


def test_exponential_sizes_are_not_a_power_law():
    sizes = np.random.default_rng(0).geometric(0.3, 5000)
    fit = fit_discrete_power_law(sizes, min_tail=50, min_tail_fraction=0.1)
    assert fit.loglik_ratio_exp < 0 and abs(fit.tau - 1.5) > 0.2


def test_avalanche_splitting_and_carry():
    closed, open_ = avalanches_from_bins(np.array([0, 1, 2, 0, 3, 0, 0, 4]), 0)
    assert closed == [3, 3] and open_ == 4
    closed, open_ = avalanches_from_bins(np.array([2, 0, 1]), 4)  # open avalanche continues
    assert closed == [6] and open_ == 1
    closed, open_ = avalanches_from_bins(np.array([0, 5, 0]), 1)  # ended at the boundary
    assert closed == [1, 5] and open_ == 0
    closed, open_ = avalanches_from_bins(np.array([1, 1]), 3)
    assert closed == [] and open_ == 5


# -- a fake engine: what the job reads ------------------------------------------------------------
def fake_engine(n: int, n_clusters: int = 4, history: int = 8) -> FakeEngine:
    state = SimpleNamespace(
        n=n, structure_version=0, global_inhibition=5.0, n_clusters=n_clusters,
        cluster=torch.arange(n) % n_clusters, activity=torch.ones(n, history, dtype=torch.uint8),
    )
    config = SimpleNamespace(lif=SimpleNamespace(global_inhibition=5.0, steps=50, dt_ms=1.0))
    return FakeEngine(state=state, eta=0.01, gamma=0.0, sie=sie_weights(), config=config, last_cycle_spikes=None)


def events(raster: torch.Tensor) -> SimpleNamespace:
    """A spike record (as ``CycleSpikes``: events by step, ascending within a step) from a raster,
    without per-neuron counts: the job then takes the cycle's rate from result.rate_hz."""
    step, neuron = raster.nonzero(as_tuple=True)
    return SimpleNamespace(neurons=neuron.to(torch.int32), spike_steps=step.to(torch.int32), steps=raster.shape[0],
                           n=raster.shape[1], counts=torch.zeros(0))


def feed(job, engine, raster, rate_hz=10.0, reward=0.0):
    engine.last_cycle_spikes = events(raster)
    job.observe(engine, SimpleNamespace(rate_hz=rate_hz, total_reward=reward))


def test_electrode_events_from_the_spike_list_equal_the_raster_count():
    """``observe_spikes`` counts electrode events per step from the event list (no [T, N] raster):
    the same counts as the raster's electrode columns, on a real cycle."""
    from fumd.analysis.avalanches import AvalancheDetector
    from fumd.engine import Engine
    from tests.conftest import small_config

    engine = Engine(small_config())
    rng = np.random.default_rng(1)
    for i in range(4):  # (the first input is its own running mean: no input spikes)
        engine.cycle({"x": rng.random(16).tolist(), "label": str(i % 2)})
    spikes = engine.last_cycle_spikes
    def detector() -> AvalancheDetector:
        return AvalancheDetector(electrodes=64, bin_steps=0, max_bin_steps=8, iei_alpha=0.1, large_fraction=0.5,
                                 ring_size=100, sustain_window=5, seed=3)

    a, b = detector(), detector()
    idx = a.place_electrodes(spikes.n, 0)
    b.place_electrodes(spikes.n, 0)
    per_step = spikes.raster[:, idx].sum(1).numpy().astype(np.int64)
    assert per_step.sum() > 0
    for _ in range(3):
        assert a.observe_spikes(spikes) == b.observe_counts(per_step)
    assert a.state_dict().keys() == b.state_dict().keys()
    assert all(np.array_equal(np.asarray(a.state_dict()[k]), np.asarray(b.state_dict()[k])) for k in a.state_dict())


def run(job, engine):
    return run_once(job, engine)


def poisson_raster(n, rate_hz, steps, gen):
    return torch.rand(steps, n, generator=gen) < rate_hz / 1000.0


def test_inhibition_rises_when_avalanches_are_forced_large():
    cfg = CriticalityConfig(min_avalanches=100, sustain_window=10)
    job, engine = CriticalityJob(cfg), fake_engine(5000)
    for _ in range(10):  # a big network, every neuron active in every step: one avalanche that never ends
        feed(job, engine, torch.ones(50, 5000, dtype=torch.bool))
    out = run(job, engine)
    assert out["large_avalanches_sustained"] == 1.0
    assert engine.state.global_inhibition == pytest.approx(5.5)
    for _ in range(30):
        run(job, engine)
    assert engine.state.global_inhibition == pytest.approx(2 * 5.0)  # bounded: g0 x inhibition_range


def test_sparse_asynchronous_activity_is_not_a_large_avalanche():
    cfg = CriticalityConfig(min_avalanches=100, sustain_window=10)
    job, engine = CriticalityJob(cfg), fake_engine(2000)
    gen = torch.Generator().manual_seed(0)
    for _ in range(40):
        feed(job, engine, poisson_raster(2000, 5.0, 50, gen))
    plan = job.compute(job.snapshot(engine))
    assert not plan.sustained_large
    assert plan.n_avalanches > 100
    assert job.avalanches.bin_width() >= 2  # 64 electrodes x 5 Hz: mean inter-event interval ~3 ms


def test_avalanche_continues_across_cycles():
    job, engine = CriticalityJob(CriticalityConfig(bin_steps=1, electrodes=4)), fake_engine(4)
    a = torch.zeros(50, 4, dtype=torch.bool)
    a[-3:, 0] = True
    b = torch.zeros(50, 4, dtype=torch.bool)
    b[:2, 1] = True
    feed(job, engine, a)
    assert len(job.avalanches.sizes) == 0 and job.avalanches.open_size == 3
    feed(job, engine, b)
    assert job.avalanches.sizes.values().tolist() == [5] and job.avalanches.open_size == 0


def test_off_critical_index_raises_inhibition_and_slows_structural():
    job, engine = CriticalityJob(CriticalityConfig(min_avalanches=100, inhibition_mode="seed")), fake_engine(1000)
    job.avalanches.sizes.extend(np.random.default_rng(0).geometric(0.3, 3000))  # steep: far from tau = 1.5
    out = run(job, engine)
    assert out["criticality_index"] > 0.2 and out["slow_structural"] == 1.0 and job.slow_structural
    assert engine.state.global_inhibition == pytest.approx(5.5)
    job2, engine2 = CriticalityJob(CriticalityConfig(min_avalanches=100, inhibition_mode="seed")), fake_engine(1000)
    job2.avalanches.sizes.extend(discrete_power_law(1.5, 3000, 0))
    out2 = run(job2, engine2)
    assert out2["criticality_index"] < 0.2 and out2["slow_structural"] == 0.0
    assert engine2.state.global_inhibition == 5.0
    # signed mode: subcritical (tau > 1.7) lowers inhibition instead
    job3, engine3 = CriticalityJob(CriticalityConfig(min_avalanches=100, inhibition_mode="signed")), fake_engine(1000)
    job3.avalanches.sizes.extend(np.random.default_rng(0).geometric(0.3, 3000))
    run(job3, engine3)
    assert engine3.state.global_inhibition == pytest.approx(5.0 / 1.1)


def test_eta_scale_drops_on_high_rate_variance_is_bounded_and_recovers():
    job, engine = CriticalityJob(CriticalityConfig(variance_window=20, variance_measure="cv2")), fake_engine(100)
    for i in range(20):
        job.observe(engine, SimpleNamespace(rate_hz=5.0 if i % 2 else 50.0, total_reward=0.0))
    out = run(job, engine)
    assert out["rate_variance"] > 0.1 and engine.eta == pytest.approx(0.009) and out["eta_reduced"] == 1.0
    for _ in range(20):
        out = run(job, engine)
    assert job.eta_scale == pytest.approx(0.5) and engine.eta == pytest.approx(0.005)  # never below half
    engine.set_knobs(engine.knobs.replace(eta=0.004))  # the tuner sets its value x the scale: the scale is kept on it
    for i in range(20):
        job.observe(engine, SimpleNamespace(rate_hz=15.0 + 0.5 * (i % 2), total_reward=0.0))
    for _ in range(10):
        out = run(job, engine)
    assert job.eta_scale == pytest.approx(1.0) and engine.eta == pytest.approx(0.008)  # recovered: 0.004 / 0.5
    assert out["eta_reduced"] == 0.0 and out["eta_scale"] == 1.0
    assert rate_variance(np.array([1.0, 3.0]), "hz2") == pytest.approx(2.0)
    assert next_eta(0.001, 10.0, CriticalityConfig(eta_min=0.002)) == (0.001, 0.9)  # below the floor: left alone


def test_block_variance_ignores_per_input_variation_and_sees_slow_swings():
    """Different inputs drive the network differently (5 vs 50 Hz on alternate inputs): that is not
    instability, and the default measure (cv2 of 20-cycle block means) stays low, so the learning
    rate is left alone; a slow swing (10 Hz for 100 cycles, then 40 Hz) is seen."""
    alternating = np.array([5.0 if i % 2 else 50.0 for i in range(200)])
    assert rate_variance(alternating, "cv2") > 0.5
    assert rate_variance(alternating, "cv2_blocks", 20) < 0.01
    swing = np.concatenate([np.full(100, 10.0), np.full(100, 40.0)])
    assert rate_variance(swing, "cv2_blocks", 20) > 0.3
    job, engine = CriticalityJob(CriticalityConfig(variance_window=200)), fake_engine(100)
    for r in alternating:
        job.observe(engine, SimpleNamespace(rate_hz=float(r), total_reward=0.0))
    out = run(job, engine)
    assert out["eta_reduced"] == 0.0 and engine.eta == 0.01
    for r in swing:
        job.observe(engine, SimpleNamespace(rate_hz=float(r), total_reward=0.0))
    assert run(job, engine)["eta_reduced"] == 1.0


def fake_engine_configured(n: int, g0: float = 12.0) -> SimpleNamespace:
    engine = fake_engine(n)
    engine.state.global_inhibition = g0
    engine.config.lif.global_inhibition = g0
    return engine


def feed_rate(job, engine, rate_hz: float, cycles: int = 20) -> None:
    for _ in range(cycles):
        job.observe(engine, SimpleNamespace(rate_hz=rate_hz, total_reward=0.0))


def test_inhibition_acts_in_both_directions_within_a_range_around_the_configured_value():
    """Issue #9: the default controller lowers inhibition when the network is too quiet or
    subcritical and raises it when it is hot or supercritical, never leaving [g0/2, 2 g0]."""
    cfg = CriticalityConfig(min_avalanches=100)
    # too quiet (no avalanche fit yet): less inhibition, down to g0 / 2
    job, engine = CriticalityJob(cfg), fake_engine_configured(1000)
    feed_rate(job, engine, 0.5)
    out = run(job, engine)
    assert engine.state.global_inhibition == pytest.approx(12.0 / 1.1) and out["inhibition_direction"] == -1.0
    for _ in range(30):
        run(job, engine)
    assert engine.state.global_inhibition == pytest.approx(6.0) and job.last_reason == "quiet"
    # too hot: more, up to 2 g0
    job, engine = CriticalityJob(cfg), fake_engine_configured(1000)
    feed_rate(job, engine, 120.0)
    for _ in range(30):
        run(job, engine)
    assert engine.state.global_inhibition == pytest.approx(24.0) and job.last_reason == "hot"
    # supercritical (tau ~ 1.2 < 1.3) at a normal rate: more
    job, engine = CriticalityJob(cfg), fake_engine_configured(1000)
    job.avalanches.sizes.extend(discrete_power_law(1.2, 3000, 0))
    feed_rate(job, engine, 10.0)
    run(job, engine)
    assert engine.state.global_inhibition == pytest.approx(12.0 * 1.1) and job.last_reason == "supercritical"
    # subcritical (steep sizes, tau > 1.7) at a normal rate: less
    job, engine = CriticalityJob(cfg), fake_engine_configured(1000)
    job.avalanches.sizes.extend(np.random.default_rng(0).geometric(0.3, 3000))
    feed_rate(job, engine, 10.0)
    out = run(job, engine)
    assert engine.state.global_inhibition == pytest.approx(12.0 / 1.1) and job.last_reason == "subcritical"
    assert out["slow_structural"] == 1.0
    # ... but subcritical-looking sizes in a hot network (the electrode estimate at high rates): more
    job, engine = CriticalityJob(cfg), fake_engine_configured(1000)
    job.avalanches.sizes.extend(np.random.default_rng(0).geometric(0.3, 3000))
    feed_rate(job, engine, 120.0)
    run(job, engine)
    assert engine.state.global_inhibition == pytest.approx(12.0 * 1.1) and job.last_reason == "hot"
    # in the band, near criticality: unchanged
    job, engine = CriticalityJob(cfg), fake_engine_configured(1000)
    job.avalanches.sizes.extend(discrete_power_law(1.5, 3000, 0))
    feed_rate(job, engine, 10.0)
    out = run(job, engine)
    assert engine.state.global_inhibition == 12.0 and out["inhibition_changed"] == 0.0


def test_inhibition_bounds_and_next_inhibition_unit():
    cfg = CriticalityConfig()
    assert inhibition_bounds(12.0, cfg) == (6.0, 24.0)
    assert inhibition_bounds(12.0, CriticalityConfig(inhibition_max=20.0, inhibition_min=8.0)) == (8.0, 20.0)
    # a value outside the range (an old checkpoint at 25) moves into it
    assert next_inhibition(50.0, None, None, False, cfg, 10.0, (6.0, 24.0))[0] == 24.0
    # seed mode: never down
    seed = CriticalityConfig(inhibition_mode="seed")
    assert next_inhibition(12.0, 3.0, 1.5, False, seed, 0.1, (6.0, 24.0))[0] == pytest.approx(13.2)
    assert next_inhibition(12.0, None, None, False, seed, 0.1, (6.0, 24.0))[0] == 12.0


def test_anomalies_are_detected_and_counted():
    job, engine = CriticalityJob(CriticalityConfig(variance_window=20, reward_window=10,
                                                   variance_measure="cv2")), fake_engine(100, n_clusters=5)
    engine.state.activity[engine.state.cluster == 2] = 0  # cluster 2 silent over the activity window
    engine.state.cluster[engine.state.cluster == 4] = 3  # cluster 4 empty: not "silent"
    for i in range(20):
        job.observe(engine, SimpleNamespace(rate_hz=1.0 if i % 2 else 40.0, total_reward=-2.5))
    out = run(job, engine)
    assert out["anomaly_variance"] == 1.0 and out["anomaly_reward"] == 1.0 and out["silent_clusters"] == 1.0
    assert out["anomalies"] == 3.0 and out["anomalies_total"] == 3.0
    assert any(a.startswith("silent_clusters=2") for a in job.last_anomalies)
    quiet, e2 = CriticalityJob(CriticalityConfig(reward_window=10)), fake_engine(100)
    for _ in range(20):
        quiet.observe(e2, SimpleNamespace(rate_hz=10.0, total_reward=1.5))
    assert run(quiet, e2)["anomalies"] == 0.0


def test_state_round_trip_continues_identically():
    gen = torch.Generator().manual_seed(1)
    rasters = [poisson_raster(500, 20.0, 50, gen) for _ in range(12)]
    a, ea = CriticalityJob(CriticalityConfig(min_avalanches=20, min_tail=10), seed=3), fake_engine(500)
    for r in rasters[:6]:
        feed(a, ea, r, rate_hz=float(r.sum()) / 500 * 20)
    saved = a.state_dict()
    for value in saved.values():
        assert torch.is_tensor(value) or isinstance(value, (int, float, bool, list))
    b, eb = CriticalityJob(CriticalityConfig(min_avalanches=20, min_tail=10), seed=3), fake_engine(500)
    b.load_state_dict(saved)
    for r in rasters[6:]:
        feed(a, ea, r, rate_hz=float(r.sum()) / 500 * 20)
        feed(b, eb, r, rate_hz=float(r.sum()) / 500 * 20)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]) if torch.is_tensor(sa[k]) else sa[k] == sb[k], k
    assert run(a, ea) == run(b, eb)


def test_structure_change_redraws_electrodes():
    job, engine = CriticalityJob(CriticalityConfig(electrodes=8)), fake_engine(100)
    feed(job, engine, torch.ones(50, 100, dtype=torch.bool))
    first = job.avalanches.electrode_idx.clone()
    engine.state.structure_version = 1
    engine.state.n = 90
    feed(job, engine, torch.ones(50, 90, dtype=torch.bool))
    assert int(job.avalanches.electrode_idx.max()) < 90 and not torch.equal(first, job.avalanches.electrode_idx)


@pytest.mark.parametrize("key,value", [("electrodes", 0), ("large_fraction", 2.0), ("eta_factor", 1.5),
                                       ("inhibition_mode", "up"), ("variance_measure", "std")])
def test_config_errors_name_the_key(key, value):
    with pytest.raises(ConfigError, match=f"jobs.criticality.{key}"):
        CriticalityConfig(**{key: value}).validate()


def test_on_the_real_engine():
    """The attributes the job reads exist on the real Engine (last_cycle_spikes events, state.activity,
    state.cluster, state.global_inhibition, eta, CycleResult.rate_hz / total_reward)."""
    from fumd.engine import Engine
    from tests.conftest import small_config

    engine = Engine(small_config())
    job = CriticalityJob(CriticalityConfig(min_avalanches=10, min_tail=5, sustain_window=5, variance_window=5))
    rng = np.random.default_rng(0)
    for i in range(12):
        result = engine.cycle({"x": rng.random(16).tolist(), "label": str(i % 2)})
        job.observe(engine, result)
    out = run(job, engine)
    assert set(out) >= {"tau", "criticality_index", "global_inhibition", "eta", "silent_clusters", "anomalies"}
    assert all(isinstance(v, float) for v in out.values())
    lo, hi = inhibition_bounds(engine.config.lif.global_inhibition, job.config)
    assert lo <= engine.state.global_inhibition <= hi
    # the rate that decides "quiet" / "hot" is the recurrent neurons' (input and output left out)
    counts = engine.last_cycle_spikes.counts
    rec = torch.ones(engine.state.n, dtype=torch.bool)
    rec[engine.state.input_idx.reshape(-1)] = False
    rec[engine.state.output_idx.reshape(-1)] = False
    expected = float(counts[rec].sum()) / int(rec.sum()) * 1000.0 / (engine.config.lif.steps * engine.config.lif.dt_ms)
    assert job.recurrent_rate_hz(engine, result) == pytest.approx(expected)
    engine.cycle({"x": rng.random(16).tolist()})  # the engine still runs after apply


def test_empty_state_leaves_a_fresh_job():
    job = CriticalityJob()
    job.load_state_dict({})
    assert len(job.avalanches.sizes) == 0 and job.avalanches.electrode_idx is None
