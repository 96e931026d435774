"""Bayesian tuning job (SPEC §8, seed 002 §5.E.1): ask/tell GP optimisation run live over windows."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fumd.errors import ConfigError
from fumd.jobs.tuning import PARAMS, EngineTunables, TuningConfig, TuningJob, propose, revert_out_of_range


def fake_engine(seed: int = 0) -> SimpleNamespace:
    """The attributes EngineTunables reads and writes (engine.eta, engine.gamma, engine.sie.w_*)."""
    cfg = SimpleNamespace(
        learning=SimpleNamespace(eta=0.01, gamma=0.95),
        sie=SimpleNamespace(w_td=1.0, w_novelty=1.0, w_habituation=1.0, w_self_benefit=1.0),
    )
    sie = SimpleNamespace(w_td=1.0, w_novelty=1.0, w_habituation=1.0, w_self_benefit=1.0)
    return SimpleNamespace(eta=0.01, gamma=0.95, sie=sie, config=cfg, generator=torch.Generator().manual_seed(seed))


class TwoParams(EngineTunables):
    """eta and gamma only: the optimisation test stays within the test-time budget."""

    names = ("eta", "gamma")

    def get(self, engine):
        return {"eta": float(engine.eta), "gamma": float(engine.gamma)}

    def defaults(self, engine):
        return {"eta": engine.config.learning.eta, "gamma": engine.config.learning.gamma}


def run_job(job, engine, reward_fn, runs: int, rng=None):
    """Drive the job as the runner does in deterministic mode: every_cycles cycles, then a run."""
    history, outputs = [], []
    for _ in range(runs):
        snap = job.snapshot(engine)
        plan = job.compute(snap)
        outputs.append(job.apply(engine, plan))
        point = job.tunables.get(engine)
        history.append(point)
        for _ in range(job.config.every_cycles):
            r = reward_fn(point) + (0.0 if rng is None else float(rng.normal(0, 0.01)))
            job.observe(engine, SimpleNamespace(total_reward=r))
    return history, outputs


def bowl(optimum):
    cfg = TuningConfig()
    bounds = {n: (lo, hi) for n, lo, hi in cfg.bounds()}

    def reward(point):
        return 1.0 - sum(((point[k] - optimum[k]) / (bounds[k][1] - bounds[k][0])) ** 2 for k in optimum)

    return reward, bounds


def test_proposes_only_in_range_points_and_applies_them():
    job = TuningJob(TuningConfig(n_trials=8, n_initial_points=6, window_cycles=3, settle_cycles=1, every_cycles=4,
                                 acq_optimizer="sampling"))
    engine = fake_engine()
    rng = np.random.default_rng(0)
    history, outputs = run_job(job, engine, lambda p: float(rng.normal()), runs=10)
    bounds = {n: (lo, hi) for n, lo, hi in job.bounds}
    assert len(job.xs) == 8 and outputs[-1]["resting"] == 1.0
    for point in history + [dict(zip(PARAMS, x)) for x in job.xs]:
        for name, value in point.items():
            lo, hi = bounds[name]
            assert lo <= value <= hi, (name, value)
    # each trial's point was live on the engine while it ran
    assert [v for h in history[:8] for v in h.values()] == pytest.approx([v for x in job.xs for v in x])


def test_finds_the_optimum_region_of_a_known_objective_within_budget():
    """Smooth bowl with its optimum inside the box, small observation noise; budget 16 trials
    (6 Latin-hypercube + 10 GP). Tolerance: the best point lies within 10 % of each range of the
    optimum, and its objective beats the best of the initial design."""
    optimum = {"eta": 0.0135, "gamma": 0.925}
    reward, bounds = bowl(optimum)
    cfg = TuningConfig(n_trials=16, n_initial_points=6, window_cycles=2, settle_cycles=0, every_cycles=2)
    job = TuningJob(cfg, tunables=TwoParams())
    engine = fake_engine(3)
    run_job(job, engine, reward, runs=17, rng=np.random.default_rng(1))
    assert job.phase == 1  # budget spent: resting on the best point
    best = dict(zip(job.tunables.names, job.best_x))
    for k in optimum:
        assert abs(best[k] - optimum[k]) <= 0.1 * (bounds[k][1] - bounds[k][0]), (k, best[k])
    assert job.best_y < min(job.ys[:6])
    assert engine.eta == pytest.approx(best["eta"]) and engine.gamma == pytest.approx(best["gamma"])


def test_state_round_trip_continues_identically():
    cfg = TuningConfig(n_trials=12, n_initial_points=4, window_cycles=3, settle_cycles=1, every_cycles=4,
                       acq_optimizer="sampling")
    reward, _ = bowl({"eta": 0.01, "gamma": 0.95})
    a, ea = TuningJob(cfg, tunables=TwoParams()), fake_engine(5)
    run_job(a, ea, reward, runs=4)
    # stop in the middle of a trial window
    for _ in range(2):
        a.observe(ea, SimpleNamespace(total_reward=0.3))
    saved = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in a.state_dict().items()}
    for value in saved.values():
        assert torch.is_tensor(value) or isinstance(value, (int, float, bool, list))
    b, eb = TuningJob(cfg, tunables=TwoParams()), fake_engine(99)  # different generator: seed comes from the state
    b.load_state_dict(saved)
    eb.eta, eb.gamma = ea.eta, ea.gamma
    ha, _ = run_job(a, ea, reward, runs=4)
    hb, _ = run_job(b, eb, reward, runs=4)
    assert ha == hb
    assert a.xs == b.xs and a.ys == b.ys and a.best_x == b.best_x
    assert len(a.xs) > cfg.n_initial_points  # the GP phase was exercised after the restore


def test_out_of_range_parameters_revert_to_defaults():
    job = TuningJob(TuningConfig(n_initial_points=3, window_cycles=2, settle_cycles=0, every_cycles=2))
    engine = fake_engine()
    job.apply(engine, job.compute(job.snapshot(engine)))  # first trial starts
    engine.eta = 0.5  # e.g. an operator or another job pushed it out of the tuner's range
    engine.sie.w_novelty = float("nan")
    out = job.apply(engine, job.compute(job.snapshot(engine)))  # mid-window: only the revert happens
    assert engine.eta == 0.01 and engine.sie.w_novelty == 1.0
    assert out["reverted"] == 2.0 and out["reverts_total"] == 2.0
    assert revert_out_of_range({"eta": 0.01}, [("eta", 0.005, 0.02)], {"eta": 0.01}) == {}
    assert revert_out_of_range({"eta": 0.001}, [("eta", 0.005, 0.02)], {"eta": 0.1}) == {"eta": 0.02}


def test_session_restarts_after_rest_at_the_incumbent():
    cfg = TuningConfig(n_trials=3, n_initial_points=3, window_cycles=1, settle_cycles=0, every_cycles=1, rest_cycles=2)
    job = TuningJob(cfg)
    engine = fake_engine()
    run_job(job, engine, lambda p: -abs(p["eta"] - 0.01), runs=4)
    assert job.phase == 1
    best = list(job.best_x)
    run_job(job, engine, lambda p: 0.0, runs=2)  # rest for 2 cycles, then a new session
    assert job.session == 1 and job.phase == 0 and job.current == best and job.xs == []


def test_propose_is_deterministic():
    bounds = TuningConfig().bounds()
    xs = [propose(bounds, [], [], seed=7, n_initial_points=3)]
    assert propose(bounds, [], [], seed=7, n_initial_points=3) == xs[0]
    assert propose(bounds, [], [], seed=8, n_initial_points=3) != xs[0]


@pytest.mark.parametrize("key,value", [("eta_min", -1.0), ("n_trials", 0), ("window_cycles", 0), ("acq_func", "XX")])
def test_config_errors_name_the_key(key, value):
    with pytest.raises(ConfigError, match=f"jobs.tuning.{key}"):
        TuningConfig(**{key: value}).validate()
    with pytest.raises(ConfigError, match="jobs.tuning.eta_min"):
        TuningConfig(eta_min=0.03).validate()


def test_on_the_real_engine():
    from fumd.engine import Engine
    from tests.conftest import small_config

    engine = Engine(small_config())
    job = TuningJob(TuningConfig(n_trials=3, n_initial_points=3, window_cycles=2, settle_cycles=1, every_cycles=3))
    rng = np.random.default_rng(0)
    for _ in range(4):
        job.apply(engine, job.compute(job.snapshot(engine)))
        for i in range(3):
            job.observe(engine, engine.cycle({"x": rng.random(16).tolist(), "label": str(i % 2)}))
    assert len(job.ys) == 3 and all(math.isfinite(y) for y in job.ys)
    live = EngineTunables().get(engine)
    assert live == pytest.approx(dict(zip(PARAMS, job.best_x)))


def test_empty_state_leaves_a_fresh_job():
    job = TuningJob()
    job.load_state_dict({})
    assert job.seed == -1 and job.xs == []
