"""Runs the scheduled jobs on their cadences, never during a cycle.

Two clocks, one rule:

* **Cycles** (``jobs.<name>.every_cycles``; the only clock in deterministic mode): the loop counts
  cycles; a due job runs inline at the next safe point (snapshot -> compute -> apply), so a fixed
  seed and the same inputs give the same state however the process is stopped and restarted.
* **Seconds** (``jobs.<name>.every_seconds``): APScheduler's interval trigger (``max_instances=1``,
  ``coalesce=True``, misfires counted) only marks the job due and wakes the loop. At the next safe
  point the loop takes the job's snapshot and hands ``compute`` to a worker thread; the plan is
  applied at a later safe point, unless the network's structure changed meanwhile (then it is
  dropped and recomputed next time).

A job that raises is counted (``fumd_job_failures_total``), logged and tried again on its next turn;
it never stops the daemon.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from apscheduler.events import EVENT_JOB_MISSED
from apscheduler.schedulers.background import BackgroundScheduler

from .base import Job, commit

if TYPE_CHECKING:
    from ..engine import CycleResult, Engine


@dataclass
class _Running:
    future: Future
    structure_version: int
    started: float


class JobRunner:
    def __init__(self, jobs: list[Job[Any, Any]], cadences: dict[str, tuple[int, float]], deterministic: bool,
                 metrics: Any, log: Any, wake: Callable[[], None]):
        """``cadences``: job name -> (every_cycles, every_seconds); 0 disables that clock."""
        self.jobs = {job.name: job for job in jobs}
        for name in self.jobs:  # series exist from the start (alerts and panels need them)
            metrics.jobs_runs.labels(name)
            metrics.jobs_failures.labels(name)
            metrics.jobs_misfires.labels(name)
        self.cadences = cadences
        self.deterministic = deterministic
        self.metrics = metrics
        self.log = log
        self.wake = wake
        self.cycles = 0
        self._due: set[str] = set()  # by the cycle clock: run inline at the safe point
        self._due_timed: set[str] = set()  # by APScheduler: compute in the worker thread
        self._due_lock = threading.Lock()
        self._running: dict[str, _Running] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fumd-job")
        self._scheduler: BackgroundScheduler | None = None
        self.last_outputs: dict[str, dict[str, float]] = {}
        self.on_run: Callable[[str, dict[str, float]], None] | None = None  # e.g. the history file

    # -- clocks ---------------------------------------------------------------------------
    def start(self) -> None:
        timed = {name: s for name, (_c, s) in self.cadences.items() if s > 0 and not self.deterministic
                 and name in self.jobs}
        if not timed:
            return
        scheduler = BackgroundScheduler(daemon=True)
        for name, seconds in timed.items():
            scheduler.add_job(self._mark_due, "interval", seconds=seconds, args=[name], id=name,
                              max_instances=1, coalesce=True, misfire_grace_time=max(1, int(seconds)))
        scheduler.add_listener(self._missed, EVENT_JOB_MISSED)
        scheduler.start()
        self._scheduler = scheduler

    def _mark_due(self, name: str) -> None:
        with self._due_lock:
            self._due_timed.add(name)
        self.wake()

    def _missed(self, event: Any) -> None:
        self.metrics.jobs_misfires.labels(event.job_id).inc()

    def after_cycle(self, engine: Engine, result: CycleResult) -> None:
        """Called by the loop after every cycle: cheap per-cycle observation, cycle cadences."""
        self.cycles += 1
        for name, job in self.jobs.items():
            observe = getattr(job, "observe", None)
            if observe is not None:
                try:
                    observe(engine, result)
                except Exception:  # noqa: BLE001 - a job's bug must not stop learning
                    self._failed(name, "observe")
            every = self.cadences.get(name, (0, 0.0))[0]
            if every and self.cycles % every == 0:
                with self._due_lock:
                    self._due.add(name)

    # -- the safe point -------------------------------------------------------------------
    def run_due(self, engine: Engine) -> None:
        """Between cycles: apply finished plans, start (or, deterministically, run) due jobs."""
        for name, running in list(self._running.items()):
            if running.future.done():
                del self._running[name]
                self._finish(engine, name, running)
        with self._due_lock:
            inline, timed = set(self._due), self._due_timed - self._due
            self._due.clear()
            self._due_timed.clear()
        for name in sorted(inline | timed):  # sorted: a fixed order, part of determinism
            if name in self._running:
                continue  # max one instance: the due mark is coalesced
            job = self.jobs[name]
            started = time.perf_counter()
            try:
                snap = job.snapshot(engine)
            except Exception:  # noqa: BLE001
                self._failed(name, "snapshot")
                continue
            if name in inline:
                try:
                    plan = job.compute(snap)
                    self._apply(engine, name, plan, started)
                except Exception:  # noqa: BLE001
                    self._failed(name, "run")
            else:
                self._running[name] = _Running(self._executor.submit(job.compute, snap), engine.state.structure_version,
                                               started)

    def _finish(self, engine: Engine, name: str, running: _Running) -> None:
        try:
            plan = running.future.result()
        except Exception:  # noqa: BLE001
            self._failed(name, "compute")
            return
        if engine.state.structure_version != running.structure_version:
            self.log.info("job_plan_stale", job=name)
            with self._due_lock:
                self._due_timed.add(name)
            return
        try:
            self._apply(engine, name, plan, running.started)
        except Exception:  # noqa: BLE001
            self._failed(name, "apply")

    def _apply(self, engine: Engine, name: str, plan: Any, started: float) -> None:
        outputs = commit(engine, self.jobs[name].apply(engine, plan)) if plan is not None else {}
        seconds = time.perf_counter() - started
        self.metrics.jobs_runs.labels(name).inc()
        self.metrics.jobs_duration.labels(name).observe(seconds)
        for key, value in (outputs or {}).items():
            self.metrics.jobs_output.labels(name, key).set(float(value))
        self.last_outputs[name] = dict(outputs or {})
        if self.on_run is not None:
            self.on_run(name, self.last_outputs[name])
        self.log.info("job_ran", job=name, seconds=round(seconds, 4),
                      **{k: _loggable(v) for k, v in (outputs or {}).items()})

    def _failed(self, name: str, phase: str) -> None:
        self.metrics.jobs_failures.labels(name).inc()
        self.log.exception("job_failed", job=name, phase=phase)

    # -- persistence ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"jobs.cycles": self.cycles}
        for name, job in self.jobs.items():
            out.update({f"jobs.{name}.{k}": v for k, v in job.state_dict().items()})
        return out

    def load_state_dict(self, data: dict[str, Any]) -> None:
        self.cycles = int(data.get("jobs.cycles", 0))
        for name, job in self.jobs.items():
            prefix = f"jobs.{name}."
            job.load_state_dict({k[len(prefix):]: v for k, v in data.items() if k.startswith(prefix)})

    def wait_idle(self, engine: Engine) -> None:
        """Finish computations in flight and apply them (before a final checkpoint)."""
        for running in list(self._running.values()):
            try:
                running.future.result()
            except Exception:  # noqa: BLE001 - reported when run_due collects it
                pass
        self.run_due(engine)

    def shutdown(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        self._executor.shutdown(wait=True, cancel_futures=True)


def _loggable(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool)) else str(value)
