"""The engine/job contract (fumd/jobs/base.py), checked the same way on all six jobs: state
round-trip (and the checkpoint layout of before issue #11), compute never touches its snapshot
(nor the engine, nor the job), a stale plan is refused, the same seed gives the same plan, and
the knobs change only through what ``apply`` returns."""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import numpy as np
import pytest
import torch

from fumd.engine import Engine, states_equal
from fumd.jobs.base import Applied, commit, run_once
from fumd.jobs.clustering import ClusteringConfig, ClusteringJob
from fumd.jobs.criticality import CriticalityConfig, CriticalityJob
from fumd.jobs.decay import DecayConfig, DecayJob
from fumd.jobs.runner import JobRunner
from fumd.jobs.structural import StructuralConfig, StructuralJob
from fumd.jobs.tagging import TaggingConfig, TaggingJob
from fumd.jobs.tuning import TuningConfig, TuningJob
from fumd.network import edit
from fumd.ops.metrics import Metrics
from fumd.persistence.checkpoint import load_checkpoint, write_checkpoint
from fumd.persistence.encoding import snapshot as copy_state
from tests.conftest import small_config

SEED = 3
NAMES = ["clustering", "criticality", "decay", "persistence", "structural", "tuning"]

# Each job's checkpoint entries (key -> tensor dtype or JSON type) as the hand-written state_dict
# methods wrote them before the generic STATE tables (issue #11): checkpoints of older builds load.
LAYOUT = {
    "clustering": {"field_spikes": "float32", "fields": "float32", "input_mean": "float32", "keys": "int64",
                   "proj_seed": "int", "rng": "uint8", "runs": "int", "version": "int"},
    "criticality": {"carry": "int64", "electrode_idx": "int64", "electrode_n": "int", "electrode_version": "int",
                    "eta_scale": "float", "event_rate": "float", "inhibition_initial": "float", "open_size": "int",
                    "per_cycle.buf": "int64", "per_cycle.count": "int", "rates.buf": "float64", "rates.count": "int",
                    "rewards.buf": "float64", "rewards.count": "int", "sizes.buf": "int64", "sizes.count": "int",
                    "slow_structural": "bool", "totals.reward": "int", "totals.silent_clusters": "int",
                    "totals.variance": "int"},
    "decay": {},
    "persistence": {"detag_cycle": "int64", "high_reward_cycle": "int64", "low_since": "int64", "streak": "int64",
                    "streak_detagged": "int"},
    "structural": {"events": "int", "pair_count": "uint8", "pair_post": "int32", "pair_pre": "int32", "rng": "uint8",
                   "slow": "bool", "total_neurons_added": "int", "total_neurons_removed": "int",
                   "total_synapses_added": "int", "total_synapses_removed": "int", "total_synapses_rewired": "int",
                   "young_born": "int64", "young_idx": "int64"},
    "tuning": {"bounds": "float64", "count_abandoned": "int", "count_accepted": "int", "count_rejected": "int",
               "count_reverts": "int", "cycles_in_phase": "int", "cycles_total": "int", "format": "int",
               "fruitless": "int",
               "incumbent": "float64", "last_candidate_score": "float", "last_d": "float",
               "last_incumbent_score": "float", "last_se": "float", "names": "list", "pending": "float64",
               "pending_stats": "float64", "phase": "int", "prev_base": "float64", "radius": "float",
               "seed": "int", "session": "int", "trials_in_session": "int", "window": "float64", "xs": "float64",
               "ys": "float64"},
}


def make_jobs(seed: int = SEED) -> dict[str, Any]:
    """All six jobs, wired as the registry wires them, with settings that make each do something
    within a few dozen cycles of a 400-neuron network."""
    crit = CriticalityJob(CriticalityConfig(min_avalanches=10, min_tail=5, sustain_window=5, variance_window=5),
                          seed=seed)
    tuning = TuningConfig(every_cycles=5, window_task_cycles=5, settle_cycles=0, warmup_cycles=0, n_trials=2,
                          n_initial_points=2, acq_optimizer="sampling", rest_cycles=10, max_window_cycles=100)
    jobs = [ClusteringJob(ClusteringConfig(), seed=seed), crit, DecayJob(DecayConfig()), TaggingJob(TaggingConfig()),
            StructuralJob(StructuralConfig(), slow_source=lambda: crit.slow_structural, seed=seed),
            TuningJob(tuning, eta_scale_source=lambda: crit.eta_scale, seed=seed)]
    return {job.name: job for job in jobs}


def config():
    return small_config(network={"activity_history": 8})


def drive(cycles: int = 40) -> tuple[Engine, dict[str, Any]]:
    """An engine learning a labelled stream with every job observing and running every 10 cycles."""
    engine, jobs = Engine(config()), make_jobs()
    rng = np.random.default_rng(0)
    for i in range(cycles):
        result = engine.cycle({"x": rng.random(16).tolist(), "label": str(i % 3)})
        for job in jobs.values():
            if hasattr(job, "observe"):
                job.observe(engine, result)
        if (i + 1) % 10 == 0:
            for job in jobs.values():
                run_once(job, engine)
    return engine, jobs


@pytest.fixture(scope="module")
def runs():
    """Two independent runs with the same seed, and the saved state of the first."""
    a, b = drive(), drive()
    saved = (copy_state(a[0].state_dict()), {name: copy_state(job.state_dict()) for name, job in a[1].items()})
    return a, b, saved


def restored(saved) -> tuple[Engine, dict[str, Any]]:
    engine, jobs = Engine(config()), make_jobs()
    engine.load_state_dict(copy_state(saved[0]))
    for name, job in jobs.items():
        job.load_state_dict(copy_state(saved[1][name]))
    return engine, jobs


def fingerprint(x: Any) -> Any:
    """A comparable digest of a snapshot or plan: tensors and arrays by dtype, shape and bytes,
    floats by repr (NaN equals NaN), dataclasses and objects by their fields."""
    if torch.is_tensor(x):
        t = x.detach().cpu().contiguous().reshape(-1)
        return "T", str(x.dtype), tuple(x.shape), hashlib.sha256(t.view(torch.uint8).numpy().tobytes()).hexdigest()
    if isinstance(x, np.ndarray):
        return "A", str(x.dtype), x.shape, hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()
    if isinstance(x, (bool, int, float, str, np.generic)) or x is None:
        return type(x).__name__, repr(x)
    if isinstance(x, dict):
        return tuple(sorted((str(k), fingerprint(v)) for k, v in x.items()))
    if isinstance(x, (list, tuple)):
        return tuple(fingerprint(v) for v in x)
    if dataclasses.is_dataclass(x):
        return type(x).__name__, tuple((f.name, fingerprint(getattr(x, f.name))) for f in dataclasses.fields(x))
    return type(x).__name__, fingerprint(vars(x))


def kind(value: Any) -> str:
    return str(value.dtype).removeprefix("torch.") if torch.is_tensor(value) else type(value).__name__


@pytest.mark.parametrize("name", NAMES)
def test_state_round_trip(name, runs, tmp_path):
    """state_dict -> load_state_dict into a fresh job -> the same state_dict; through a real
    checkpoint too; the entries keep the layout older checkpoints have."""
    (_engine, jobs), _b, _saved = runs
    saved = copy_state(jobs[name].state_dict())
    assert {k: kind(v) for k, v in saved.items()} == LAYOUT[name]
    fresh = make_jobs()[name]
    fresh.load_state_dict(saved)
    assert states_equal(fresh.state_dict(), saved)
    info = write_checkpoint(tmp_path, {f"jobs.{name}.{k}": v for k, v in saved.items()}, {}, step=1)
    loaded, _meta = load_checkpoint(info.path)
    prefix = f"jobs.{name}."
    again = make_jobs()[name]
    again.load_state_dict({k[len(prefix):]: v for k, v in loaded.items()})
    assert states_equal(again.state_dict(), saved)


@pytest.mark.parametrize("name", NAMES)
def test_compute_never_touches_its_snapshot(name, runs):
    """compute is pure: its snapshot, the engine and the job are unchanged, and the same snapshot
    gives the same plan again."""
    engine, jobs = restored(runs[2])
    job = jobs[name]
    snap = job.snapshot(engine)
    snap_before = fingerprint(snap)
    engine_before, job_before = copy_state(engine.state_dict()), copy_state(job.state_dict())
    plan = job.compute(snap)
    assert fingerprint(snap) == snap_before
    assert states_equal(engine.state_dict(), engine_before)
    assert states_equal(job.state_dict(), job_before)
    assert fingerprint(job.compute(snap)) == fingerprint(plan)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_gives_the_same_plan(name, runs):
    (engine_a, jobs_a), (engine_b, jobs_b), _saved = runs
    assert states_equal(engine_a.state_dict(), engine_b.state_dict())
    plan_a = jobs_a[name].compute(jobs_a[name].snapshot(engine_a))
    plan_b = jobs_b[name].compute(jobs_b[name].snapshot(engine_b))
    assert fingerprint(plan_a) == fingerprint(plan_b)


class _Log:
    def info(self, *a, **k): pass  # noqa: E704
    def exception(self, *a, **k): raise AssertionError("a job failed")  # noqa: E704


@pytest.mark.parametrize("name", NAMES)
def test_a_stale_plan_is_refused(name, runs):
    """Wall-clock mode: the plan is computed off the loop; the network's structure changes before
    it comes back (here one synapse is removed); the runner drops it, the engine is untouched, and
    the job is snapshot again and applied on the new structure."""
    engine, jobs = restored(runs[2])
    metrics = Metrics()
    runner = JobRunner([jobs[name]], {name: (0, 3600.0)}, False, metrics, _Log(), lambda: None)
    try:
        runner._mark_due(name)  # what the APScheduler trigger does  # noqa: SLF001
        runner.run_due(engine)  # snapshot, compute submitted to the worker
        runner._running[name].future.result()  # noqa: SLF001
        keep = torch.ones(engine.state.nnz, dtype=torch.bool)
        keep[0] = False
        assert edit.remove_synapses(engine.state, keep) == 1  # structure_version bumped
        before = copy_state(engine.state_dict())
        runner.run_due(engine)
        assert metrics.jobs_runs.labels(name)._value.get() == 0 and name not in runner.last_outputs  # noqa: SLF001
        assert states_equal(engine.state_dict(), before)
        assert name in runner._running  # noqa: SLF001 - due again: recomputed on the new structure
        runner.wait_idle(engine)
        assert metrics.jobs_runs.labels(name)._value.get() == 1 and "stale" not in runner.last_outputs[name]  # noqa: SLF001
    finally:
        runner.shutdown()


@pytest.mark.parametrize("name", NAMES)
def test_knobs_change_only_through_what_apply_returns(name, runs):
    """No job writes eta, gamma, the global inhibition or the SIE weights itself: apply returns
    an ``Applied`` (numeric outputs, new knobs or None) and ``commit`` makes the knobs live."""
    engine, jobs = restored(runs[2])
    job = jobs[name]
    knobs = engine.knobs
    applied = job.apply(engine, job.compute(job.snapshot(engine)))
    assert isinstance(applied, Applied) and engine.knobs == knobs
    assert all(isinstance(v, (int, float)) for v in applied.outputs.values())
    assert commit(engine, applied) is applied.outputs
    assert engine.knobs == (applied.knobs or knobs)
