"""Tuning job (SPEC §8, seed 002 §5.E.1; issue #9): the live learning rate is tuned on a task
measure its knobs cannot inflate, in paired windows, and the incumbent is kept unless beaten."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fumd.errors import ConfigError
from fumd.jobs.base import run_once
from fumd.jobs.tuning import (
    BASE,
    REST,
    TRIAL,
    WARMUP,
    EngineTunables,
    TuningConfig,
    TuningJob,
    WindowStats,
    compare,
    propose,
    revert_out_of_range,
    task_score,
    trust_bounds,
)
from tests.job_fakes import FakeEngine, sie_weights

ETA0 = 0.01


def fake_engine(seed: int = 0, eta: float = ETA0) -> FakeEngine:
    """What the tuner reads (the knobs: eta, gamma, sie.w_*; config; generator)."""
    cfg = SimpleNamespace(learning=SimpleNamespace(eta=eta, gamma=0.0), sie=sie_weights())
    return FakeEngine(eta=eta, gamma=0.0, sie=sie_weights(), state=SimpleNamespace(global_inhibition=5.0), config=cfg,
                      generator=torch.Generator().manual_seed(seed))


def set_eta(engine, eta: float) -> None:
    engine.set_knobs(engine.knobs.replace(eta=eta))


def labelled(correct: bool, total_reward: float | None = None) -> SimpleNamespace:
    ext = 1.0 if correct else -1.0
    return SimpleNamespace(correct=correct, total_reward=ext if total_reward is None else total_reward,
                           components={"external": ext})


def unlabelled(total_reward: float = 0.5) -> SimpleNamespace:
    return SimpleNamespace(correct=None, total_reward=total_reward, components={"external": None})


def fast(**kw) -> TuningConfig:
    base = dict(every_cycles=10, window_task_cycles=100, settle_cycles=0, warmup_cycles=0, n_trials=6,
                n_initial_points=3, rest_cycles=50, acq_optimizer="sampling", max_window_cycles=1000)
    base.update(kw)
    return TuningConfig(**base)


def drive(job: TuningJob, engine, result_fn, cycles: int) -> list[dict]:
    """The runner's deterministic loop: observe every cycle, run every ``every_cycles``."""
    outs = []
    for i in range(1, cycles + 1):
        job.observe(engine, result_fn(engine, i))
        if i % job.config.every_cycles == 0:
            outs.append(run_once(job, engine))
    return outs


def bernoulli(p_of_eta, rng, trend=None):
    """A labelled stream whose accuracy is ``p(eta)`` (plus an optional trend in the cycle index)."""
    def fn(engine, i):
        p = p_of_eta(engine.eta) + (trend(i) if trend else 0.0)
        return labelled(bool(rng.random() < min(max(p, 0.0), 1.0)))
    return fn


def test_task_score_is_the_external_reward_and_nothing_else():
    assert task_score(labelled(True, total_reward=-3.0)) == 1.0
    assert task_score(labelled(False, total_reward=5.0)) == -1.0
    assert task_score(unlabelled(2.0)) is None
    assert task_score(SimpleNamespace(correct=None, components={"external": 0.25})) == 0.25  # a rewarded record
    assert task_score(SimpleNamespace(correct=True, components={})) == 1.0


def test_default_search_space_is_eta_only_around_the_configured_value():
    cfg = TuningConfig()
    assert cfg.names() == ("eta",)
    assert cfg.bounds(0.02) == [("eta", 0.01, 0.04, "log-uniform")]
    assert TuningConfig(tune_gamma=True).names() == ("eta", "gamma")
    assert TuningConfig(tune_gamma=True, tune_sie_weights=True).names()[2:] == ("w_td", "w_novelty", "w_habituation",
                                                                                "w_self_benefit")
    assert TuningConfig(eta_min=0.001, eta_max=0.002).bounds(0.5)[0][1:3] == (0.001, 0.002)
    assert cfg.window_task_cycles >= 100  # accuracy noise (sd ~0.05 at 100) must not drive the GP


def test_knobs_cannot_inflate_the_objective():
    """The SIE weights make total_reward as large as they like (x 10 per unit); the task does not
    change. With the SIE weights in its space the tuner sees only noise: every measured
    difference stays within it (the seed's objective would see differences of ~10), and what was
    measured is the task, not total_reward."""
    rng = np.random.default_rng(0)
    job = TuningJob(fast(tune_sie_weights=True, n_trials=6, rest_cycles=10**6))
    engine = fake_engine()

    def fn(engine, i):
        inflated = engine.sie.w_td + engine.sie.w_novelty + engine.sie.w_habituation + engine.sie.w_self_benefit
        return labelled(bool(rng.random() < 0.6), total_reward=10.0 * inflated)

    drive(job, engine, fn, 6000)
    assert job.phase == REST and job.counts["rejected"] + job.counts["accepted"] == 6
    assert job.counts["accepted"] <= 1  # only noise can pass the z = 2 test (~2 % per candidate)
    spread = [abs(w - 1.0) for x in job.xs for w in x[1:]]
    assert max(spread) > 0.3  # the candidates did move the SIE weights ...
    assert max(abs(y) for y in job.ys) < 0.5  # ... and the objective did not follow them
    assert -0.2 < job.last["incumbent_score"] < 0.6  # 2 x 0.6 - 1 = 0.2: the task measure


def test_without_a_task_signal_nothing_is_tuned():
    job = TuningJob(fast())
    engine = fake_engine()
    outs = drive(job, engine, lambda e, i: unlabelled(total_reward=float(i)), 3000)
    assert engine.eta == ETA0 and job.phase == BASE and outs[-1]["task_cycles"] == 0.0
    assert job.xs == [] and job.counts["accepted"] == job.counts["rejected"] == 0


def test_accepts_a_clearly_better_eta_and_applies_it_to_engine_eta():
    """Accuracy 0.5 at eta0, up to 0.9 at 2 x eta0: the tuner finds a better eta, makes it the
    incumbent and leaves engine.eta at it; the accepted point is truly better than the start."""
    rng = np.random.default_rng(1)

    def p(eta):
        return 0.5 + 0.4 * math.log2(eta / ETA0) if eta > ETA0 else 0.5 - 0.2 * math.log2(ETA0 / eta)

    job = TuningJob(fast(n_trials=8))
    engine = fake_engine()
    drive(job, engine, bernoulli(p, rng), 8000)
    assert job.counts["accepted"] >= 1
    assert p(job.incumbent[0]) >= p(ETA0) + 0.1
    if job.phase in (BASE, REST):  # the incumbent is what runs outside candidate windows
        assert engine.eta == pytest.approx(job.incumbent[0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_never_leaves_the_engine_worse_than_it_started(seed):
    """Accuracy peaks at the configured eta: every candidate is worse. After several sessions the
    incumbent is still (practically) the starting point and engine.eta is back on it."""
    rng = np.random.default_rng(seed)

    def p(eta):
        return 0.8 - 0.3 * abs(math.log2(eta / ETA0))

    job = TuningJob(fast(n_trials=6))
    engine = fake_engine(seed)
    drive(job, engine, bernoulli(p, rng), 8000)
    assert job.session >= 1 and job.counts["rejected"] >= 6
    assert p(job.incumbent[0]) >= p(ETA0) - 0.02
    assert p(engine.eta) >= p(ETA0) - 0.02 or job.phase == TRIAL


def test_the_trust_region_narrows_the_search_after_worse_candidates():
    """Accuracy peaks at the configured eta, so every candidate window costs accuracy in
    proportion to its distance from it. Each candidate that scores below the incumbent halves the
    region the next one is drawn from (down to trust_min = 1/8 of the range's half-width): in the
    second half of the run candidates sit far closer to eta0 than with the whole range
    (``trust_shrink = 1``), and the tuner still never leaves the incumbent worse."""
    def p(eta):
        return 0.8 - 0.3 * abs(math.log2(eta / ETA0))

    def explored(**kw) -> tuple[float, TuningJob]:
        job = TuningJob(fast(n_trials=6, **kw))
        engine = fake_engine(4)
        outs = drive(job, engine, bernoulli(p, np.random.default_rng(4)), 8000)
        late = [abs(math.log2(o["param_eta"] / ETA0)) for o in outs[len(outs) // 2:] if o["phase"] == TRIAL]
        assert len(late) > 50
        return float(np.mean(late)), job

    narrowed, job = explored()
    whole, free = explored(trust_shrink=1.0)
    assert job.radius == pytest.approx(job.config.trust_min) and free.radius == 1.0
    assert narrowed < 0.4 * whole, (narrowed, whole)
    assert p(job.incumbent[0]) >= p(ETA0) - 0.02


def test_trust_bounds_shrink_around_the_centre_in_log_space():
    bounds = [("eta", 0.005, 0.02, "log-uniform"), ("gamma", 0.0, 0.5, "uniform")]
    whole = trust_bounds(bounds, [0.01, 0.25], 1.0)
    assert whole == [("eta", pytest.approx(0.005), pytest.approx(0.02), "log-uniform"), ("gamma", 0.0, 0.5, "uniform")]
    (_, lo, hi, _), (_, glo, ghi, _) = trust_bounds(bounds, [0.01, 0.25], 0.5)
    assert (lo, hi) == (pytest.approx(0.01 / 2**0.5), pytest.approx(0.01 * 2**0.5))
    assert (glo, ghi) == (pytest.approx(0.125), pytest.approx(0.375))
    (_, lo, hi, _), _ = trust_bounds(bounds, [0.02, 0.0], 0.5)  # at the edge: cut to the range
    assert (lo, hi) == (pytest.approx(0.02 / 2**0.5), pytest.approx(0.02))


def test_a_learning_curve_does_not_make_candidates_look_better():
    """A network that is still learning fast (accuracy 0.2 -> 0.9 over the run, whatever eta is):
    every candidate window comes later than the incumbent window before it, so a sequential
    comparison would credit every candidate with the trend (+0.23 per window pair in external
    reward, ~3.5 standard errors). The paired A-B-A comparison cancels a linear trend: nothing
    is accepted."""
    rng = np.random.default_rng(3)
    job = TuningJob(fast(n_trials=8, window_task_cycles=400, every_cycles=20))
    engine = fake_engine()
    drive(job, engine, bernoulli(lambda eta: 0.2, rng, trend=lambda i: 0.7 * i / 2400), 2400)
    assert job.counts["rejected"] >= 2
    assert job.counts["accepted"] == 0 and job.incumbent == pytest.approx([ETA0])
    assert engine.eta == pytest.approx(ETA0) or job.phase == TRIAL


def test_compare_uses_the_standard_error_with_pseudo_observations():
    a, b = WindowStats(), WindowStats()
    for i in range(100):
        a.add(1.0 if i % 10 < 7 else -1.0)  # mean 0.4
        b.add(1.0 if i % 10 < 6 else -1.0)  # mean 0.2
    d, se, accept = compare(a, b, margin=0.02, z=2.0)
    pa, pb = a.merged(WindowStats(2, 0.0, 2.0)), b.merged(WindowStats(2, 0.0, 2.0))  # + one +1, one -1
    assert d == pytest.approx(pa.mean - pb.mean) and se == pytest.approx(math.sqrt(pa.var / 102 + pb.var / 102))
    assert not accept  # 0.196 < 2 x 0.13
    assert compare(a, b, margin=0.02, z=1.0)[2]
    # near the ceiling: 0 errors in 100 against 4 in 200 is not evidence (P = 0.13 at a 2 % error
    # rate), though the plain Wald test calls it significant
    perfect, base = WindowStats(), WindowStats()
    for _ in range(100):
        perfect.add(1.0)
    for i in range(200):
        base.add(-1.0 if i % 50 == 0 else 1.0)  # 4 errors in 200
    assert not compare(perfect, base, margin=0.02, z=2.0)[2]
    plain_se = math.sqrt(perfect.var / 100 + base.var / 200)
    assert perfect.mean - base.mean > 2.0 * plain_se


def test_warmup_then_first_window_and_trial_switching():
    job = TuningJob(fast(warmup_cycles=30, every_cycles=10, window_task_cycles=20))
    engine = fake_engine()
    outs = drive(job, engine, lambda e, i: labelled(i % 2 == 0), 20)
    assert job.phase == WARMUP and outs[-1]["phase"] == WARMUP
    drive(job, engine, lambda e, i: labelled(i % 2 == 0), 10)
    assert job.phase == BASE and job.incumbent == [ETA0]
    drive(job, engine, lambda e, i: labelled(i % 2 == 0), 20)
    assert job.phase == TRIAL and job.pending is not None
    lo, hi = job.bounds[0][1:3]
    assert lo <= engine.eta <= hi and engine.eta == pytest.approx(job.pending[0])  # the candidate is live
    drive(job, engine, lambda e, i: labelled(i % 2 == 0), 20)
    assert job.phase == BASE and engine.eta == pytest.approx(ETA0)  # the incumbent is back at once


def test_eta_is_shared_with_the_criticality_scale():
    scale = [0.5]
    job = TuningJob(fast(warmup_cycles=0, window_task_cycles=20, every_cycles=10), eta_scale_source=lambda: scale[0])
    engine = fake_engine(eta=ETA0 * 0.5)  # criticality has halved it
    drive(job, engine, lambda e, i: labelled(i % 2 == 0), 40)
    assert job.phase == TRIAL and job.incumbent == pytest.approx([ETA0])  # the scale is not taken for the tuner's value
    assert engine.eta == pytest.approx(job.pending[0] * 0.5)
    assert EngineTunables(("eta",), lambda: scale[0]).get(engine.knobs)["eta"] == pytest.approx(job.pending[0])


def test_out_of_range_values_revert_to_the_incumbent():
    job = TuningJob(fast(window_task_cycles=20))
    engine = fake_engine()
    run_once(job, engine)
    set_eta(engine, 0.5)  # e.g. an operator or another job pushed it far out of the tuner's range
    out = run_once(job, engine)
    assert engine.eta == ETA0 and out["reverted"] == 1.0 and out["reverts_total"] == 1.0
    set_eta(engine, float("nan"))
    run_once(job, engine)
    assert engine.eta == ETA0
    bounds = [("eta", 0.005, 0.02, "log-uniform")]
    assert revert_out_of_range({"eta": 0.01}, bounds, {"eta": 0.01}) == {}
    assert revert_out_of_range({"eta": 0.001}, bounds, {"eta": 0.1}) == {"eta": 0.02}


def test_state_round_trip_continues_identically():
    def run(job, engine, rng, cycles):
        return drive(job, engine, bernoulli(lambda eta: 0.5 + 10 * (eta - ETA0), rng), cycles)

    cfg = fast(window_task_cycles=50, n_trials=6)
    a, ea = TuningJob(cfg), fake_engine(5)
    run(a, ea, np.random.default_rng(0), 705)  # stops in the middle of a window
    saved = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in a.state_dict().items()}
    for value in saved.values():
        assert torch.is_tensor(value) or isinstance(value, (int, float, bool, list))
    b, eb = TuningJob(cfg), fake_engine(99)  # a different generator: the seed comes from the state
    b.load_state_dict(saved)
    eb.eta = ea.eta
    oa = run(a, ea, np.random.default_rng(7), 1500)
    ob = run(b, eb, np.random.default_rng(7), 1500)
    assert oa == ob or all(str(x) == str(y) for x, y in zip(oa, ob, strict=True))  # nan == nan in the outputs
    assert a.xs == b.xs and a.ys == b.ys and a.incumbent == b.incumbent and ea.eta == eb.eta
    assert len(a.xs) + 6 * a.session > cfg.n_initial_points  # the GP phase was exercised after the restore


def test_old_or_foreign_state_starts_a_fresh_tuner():
    job = TuningJob()
    job.load_state_dict({})
    assert job.seed == -1 and job.xs == [] and job.phase == WARMUP
    old = {"names": ["eta", "gamma", "w_td", "w_novelty", "w_habituation", "w_self_benefit"], "seed": 3, "session": 2,
           "phase": 1, "xs": torch.zeros(1, 6), "ys": torch.zeros(1)}  # the seed-objective tuner's checkpoint
    job.load_state_dict(old)
    assert job.seed == -1 and job.phase == WARMUP and job.incumbent is None


def test_propose_is_deterministic_and_in_range():
    bounds = TuningConfig().bounds(ETA0)
    x = propose(bounds, [[ETA0]], [0.0], seed=7, n_initial_points=3)
    assert propose(bounds, [[ETA0]], [0.0], seed=7, n_initial_points=3) == x
    assert propose(bounds, [[ETA0]], [0.0], seed=8, n_initial_points=3) != x
    assert bounds[0][1] <= x[0] <= bounds[0][2]


@pytest.mark.parametrize("key,value", [("eta_range", 0.5), ("n_trials", 0), ("window_task_cycles", 1),
                                       ("acq_func", "XX"), ("accept_z", -1.0)])
def test_config_errors_name_the_key(key, value):
    with pytest.raises(ConfigError, match=f"jobs.tuning.{key}"):
        TuningConfig(**{key: value}).validate()
    with pytest.raises(ConfigError, match="jobs.tuning.eta_min"):
        TuningConfig(eta_min=0.03).validate()
    with pytest.raises(ConfigError, match="jobs.tuning.eta_min"):
        TuningConfig(eta_min=0.03, eta_max=0.02).validate()


# -- the real engine ------------------------------------------------------------------------------
def _weights_after(engine, eta: float, records) -> torch.Tensor:
    set_eta(engine, eta)
    w0 = engine.state.w.clone()
    for r in records:
        engine.cycle(r)
    return (engine.state.w - w0).abs()


def test_the_engine_learns_at_the_live_eta():
    """What the tuner (and the criticality job) set is what the engine uses: from one state, three
    labelled cycles change no weight at engine.eta = 0 and change weights at the configured eta.
    Fails if the engine reads its learning rate from anywhere but ``engine.eta``."""
    from fumd.engine import Engine
    from tests.conftest import small_config

    rng = np.random.default_rng(0)
    warm = [{"x": rng.random(16).tolist(), "label": str(i % 3)} for i in range(6)]
    probe = [{"x": rng.random(16).tolist(), "label": str(i % 3)} for i in range(3)]
    engine = Engine(small_config())
    for r in warm:
        engine.cycle(r)
    saved = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in engine.state_dict().items()}
    frozen = _weights_after(engine, 0.0, probe)
    assert float(frozen.max()) == 0.0
    engine.load_state_dict(saved)
    moved = _weights_after(engine, engine.config.learning.eta, probe)
    assert float(moved.max()) > 0.0


def test_on_the_real_engine():
    from fumd.engine import Engine
    from tests.conftest import small_config

    engine = Engine(small_config())
    job = TuningJob(fast(every_cycles=5, window_task_cycles=5, n_trials=2, n_initial_points=2))
    rng = np.random.default_rng(0)
    for i in range(40):
        job.observe(engine, engine.cycle({"x": rng.random(16).tolist(), "label": str(i % 2)}))
        if (i + 1) % 5 == 0:
            out = run_once(job, engine)
    lo, hi = job.bounds[0][1:3]
    assert job.counts["accepted"] + job.counts["rejected"] >= 1
    assert lo <= engine.eta <= hi and set(out) >= {"session", "phase", "param_eta", "incumbent_eta", "last_d"}


def test_exploration_backs_off_while_the_incumbent_keeps_winning():
    """Accuracy peaks at the configured eta: every session ends without an accepted candidate,
    so each rest is ``rest_growth`` times the one before (up to ``rest_max_cycles``) and candidate
    windows become rarer; with ``rest_growth = 1`` the cadence stays fixed. A restored checkpoint
    keeps the count."""
    def p(eta):
        return 0.8 - 0.3 * abs(math.log2(eta / ETA0))

    def run(**kw) -> tuple[TuningJob, list[dict]]:
        job = TuningJob(fast(n_trials=2, rest_cycles=200, rest_max_cycles=1600, **kw))
        engine = fake_engine(5)
        return job, drive(job, engine, bernoulli(p, np.random.default_rng(5)), 12000)

    job, outs = run()
    fixed_job, fixed = run(rest_growth=1.0)
    assert job.counts["accepted"] == 0 and job.fruitless >= 5
    rests = sorted({o["rest_cycles"] for o in outs if o["phase"] == REST})
    assert rests == [200.0, 400.0, 800.0, 1600.0]
    assert {o["rest_cycles"] for o in fixed if o["phase"] == REST} == {200.0}
    trials = sum(1 for o in outs if o["phase"] == TRIAL)
    fixed_trials = sum(1 for o in fixed if o["phase"] == TRIAL)
    assert trials < 0.6 * fixed_trials, (trials, fixed_trials)
    restored = TuningJob(fast(n_trials=2, rest_cycles=200, rest_max_cycles=1600))
    restored.load_state_dict(job.state_dict())
    assert restored.fruitless == job.fruitless


def test_an_accepted_candidate_resets_the_back_off():
    job = TuningJob(fast(n_trials=2, rest_cycles=200))
    job.fruitless = 3
    engine = fake_engine(6)
    stream = bernoulli(lambda eta: 0.3 + 0.5 * min(1.0, max(0.0, math.log2(eta / ETA0))), np.random.default_rng(6))
    for _ in range(300):  # 100-cycle chunks until a candidate is accepted
        drive(job, engine, stream, 100)
        if job.counts["accepted"]:
            break
    assert job.counts["accepted"] == 1 and job.fruitless == 0
