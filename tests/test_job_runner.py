"""The job runner on its own: cycle clock inline, APScheduler clock via the worker thread, stale
plans dropped, failures counted and retried, job state saved."""
import time
from types import SimpleNamespace

from fumd.jobs.base import Applied
from fumd.jobs.runner import JobRunner
from fumd.ops.metrics import Metrics


class _Log:
    def info(self, *a, **k): pass  # noqa: E704
    def exception(self, *a, **k): pass  # noqa: E704


class CountingJob:
    def __init__(self, name, fail=False):
        self.name, self.fail, self.applied, self.observed = name, fail, 0, 0

    def observe(self, engine, result):
        self.observed += 1

    def snapshot(self, engine):
        return engine.state.structure_version

    def compute(self, snap):
        if self.fail:
            raise RuntimeError("boom")
        return snap

    def apply(self, engine, plan):
        self.applied += 1
        return Applied({"plan": plan})

    def state_dict(self):
        return {"applied": self.applied}

    def load_state_dict(self, data):
        self.applied = int(data.get("applied", 0))


def engine():
    return SimpleNamespace(state=SimpleNamespace(structure_version=0))


def value(metric, *labels):
    return metric.labels(*labels)._value.get()  # noqa: SLF001


def test_cycle_clock_runs_inline_and_failures_are_counted_not_raised():
    m, eng = Metrics(), engine()
    ok, bad = CountingJob("a"), CountingJob("b", fail=True)
    runner = JobRunner([ok, bad], {"a": (3, 0.0), "b": (2, 0.0)}, True, m, _Log(), lambda: None)
    for _ in range(6):
        runner.after_cycle(eng, None)
        runner.run_due(eng)
    assert ok.observed == 6 and ok.applied == 2 and value(m.jobs_runs, "a") == 2
    assert bad.applied == 0 and value(m.jobs_failures, "b") == 3
    assert value(m.jobs_output, "a", "plan") == 0.0
    saved = runner.state_dict()
    assert saved == {"jobs.cycles": 6, "jobs.a.applied": 2, "jobs.b.applied": 0}
    fresh = JobRunner([CountingJob("a")], {"a": (3, 0.0)}, True, m, _Log(), lambda: None)
    fresh.load_state_dict(saved)
    assert fresh.cycles == 6 and fresh.jobs["a"].applied == 2


def test_seconds_clock_computes_off_loop_and_drops_stale_plans():
    m, eng, woken = Metrics(), engine(), []
    job = CountingJob("t")
    runner = JobRunner([job], {"t": (0, 0.05)}, False, m, _Log(), lambda: woken.append(1))
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while not woken and time.monotonic() < deadline:
            time.sleep(0.01)
        assert woken, "APScheduler never marked the job due"
        runner.run_due(eng)  # snapshot taken, compute submitted to the worker
        eng.state.structure_version = 1  # the network changed before the plan came back
        time.sleep(0.2)
        runner.run_due(eng)  # stale plan dropped, job marked due again
        assert job.applied == 0
        deadline = time.monotonic() + 10
        while job.applied == 0 and time.monotonic() < deadline:
            runner.run_due(eng)
            time.sleep(0.02)
        assert job.applied >= 1 and runner.last_outputs["t"]["plan"] == 1
    finally:
        runner.shutdown()


def test_jobs_never_touch_the_engines_random_stream():
    """Issue #9: every job draws its seeds from its own stream (network.seed + the job's name), so
    the engine's input spikes are the same with the jobs on or off, and a job's effect on learning
    can be measured without that noise. Each job runs once on a real engine; the engine's
    generator state is unchanged, and a second build gives the same draws."""
    import numpy as np
    import torch

    from fumd.engine import Engine
    from fumd.jobs.base import run_once
    from fumd.jobs.config import JobsConfig
    from fumd.jobs.registry import build_jobs
    from tests.conftest import small_config

    engine = Engine(small_config(network={"activity_history": 8}))
    rng = np.random.default_rng(0)
    jobs = build_jobs(JobsConfig(), seed=3)
    for i in range(12):
        result = engine.cycle({"x": rng.random(16).tolist(), "label": str(i % 3)})
        for job in jobs:
            if hasattr(job, "observe"):
                job.observe(engine, result)
    before = engine.generator.get_state().clone()
    for job in jobs:
        run_once(job, engine)
    assert torch.equal(engine.generator.get_state(), before)
    a = {j.name: j for j in build_jobs(JobsConfig(), seed=3)}
    b = {j.name: j for j in build_jobs(JobsConfig(), seed=3)}
    assert a["clustering"].stream.integer(1000) == b["clustering"].stream.integer(1000)
    assert a["structural"].stream.integer(1000) != build_jobs(JobsConfig(), seed=4)[4].stream.integer(1000)
