"""``fumd run``: the perception-action loop as a long-running service.

One loop, one thread owns the engine. Each turn of the loop does at most one cycle, then looks at
what the outside world asked for (signals, a due checkpoint, new files), so a stop request waits
for at most one cycle. Checkpoints snapshot the state between cycles (a copy, the only stall) and
are written by a background thread while the loop goes on (``checkpointing.py``: the cadence, the
write, the restore at start-up); a file moves to ``done/`` only once a finished checkpoint covers
it (see ``ledger.py`` and ``fumd/io/``).

Signals (``signals.py``, installed before the heavy imports): SIGTERM/SIGINT finish the current
cycle, checkpoint and exit 0; SIGHUP reloads the reloadable config sections (jobs included);
SIGUSR1 checkpoints now.

A full disk pauses the loop instead of ending it (``diskspace.py``); a retention pass keeps the
state directory bounded (``retention.py``); results are published exactly once (``fumd/io/outbox.py``).
"""
from __future__ import annotations

import dataclasses
import errno
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from .. import __version__
from ..engine import Engine
from ..errors import ConfigError, InputError, InputFileError
from ..io.inbox import Inbox, QueuedFile
from ..io.outbox import Outbox
from ..io.readers import InputItem, RecordProblem, read_input_file
from ..jobs.registry import build_jobs, job_cadences
from ..jobs.runner import JobRunner
from ..ops.history import History
from ..ops.logging import configure_logging, get_logger
from ..ops.metrics import Metrics
from ..ops.sdnotify import SystemdNotifier, WatchdogPinger
from ..ops.status import write_status
from ..persistence.encoding import snapshot
from .checkpointing import Checkpointer, fault_pause, planned_engine_config, with_saved_network
from .config import ServiceConfig, changed_keys, check_memory, check_state_dir, load_config, reloadable_changes
from .diskspace import DiskGuard, is_disk_full
from .ledger import Ledger, oldest_ledger_seq
from .restarts import RestartTracker
from .retention import RetentionPass
from .signals import SignalLatch


@dataclass
class _OpenFile:
    queued: QueuedFile
    items: Sequence[InputItem]
    next_index: int


class Daemon:
    # made by _open_state() from the restored checkpoint, before the loop: the loop, the
    # shutdown and everything they call may use them
    jobs: JobRunner
    inbox: Inbox
    outbox: Outbox
    history: History

    def __init__(self, state_dir: Path, config: ServiceConfig, config_path: Path | None = None,
                 environ: dict[str, str] | None = None, signals: SignalLatch | None = None):
        self.state_dir = Path(state_dir)
        self.config = config
        self.config_path = config_path
        self.log = get_logger(state_dir=str(self.state_dir))
        self.metrics = Metrics()
        self.notifier = SystemdNotifier(environ)
        self.pinger = WatchdogPinger(self.notifier)
        self.wake = threading.Event()
        self.signals = signals  # installed by `fumd run` before its heavy imports, else by run()
        self._phase = "starting"
        self.engine: Engine | None = None
        self.ledger = Ledger()
        self.restarts = RestartTracker(self.state_dir)
        self.disk = DiskGuard(self.state_dir, self.metrics, self.log)
        self.retention = RetentionPass(self.state_dir, self.metrics, self.log)
        self.checkpoints = Checkpointer(self.state_dir / "checkpoints", self.metrics, self.log, self.disk,
                                        self._checkpoint_progress, fault_pause(environ))
        self.current: _OpenFile | None = None
        self.completed: list[QueuedFile] = []  # learned, waiting for a checkpoint to cover them
        self.metrics_port: int | None = None
        self._urgent_retention_done = False
        self._last_status = 0.0
        self._last_scan = 0.0
        self._files_done = 0
        self._rate_window: list[float] = []

    # -- life cycle -----------------------------------------------------------------------
    def run(self, exit_when_idle: bool = False) -> int:
        # refused like a bad config (ConfigError: one line, exit 2), before anything is allocated
        check_state_dir(self.state_dir)
        check_memory(planned_engine_config(self.config.engine, self.checkpoints.directory))
        if self.config.metrics.enabled:
            self.metrics_port = self._serve_metrics()
        if self.signals is None:
            self.signals = SignalLatch().install()
        self.signals.set_wake(self.wake.set)
        if self._stop:  # SIGTERM/SIGINT while starting: nothing restored or changed yet
            self.log.info("stopped_during_startup", step=None)
            self.metrics.close()
            return 0
        self._open_state()
        assert self.engine is not None
        self.metrics.watch_filesystem(self.state_dir)
        self._recover_queue()
        watching = self.inbox.watch(self.wake.set)
        self._files_done = sum(1 for _ in os.scandir(self.inbox.done))
        self._observe_network()
        self.jobs.start()
        self._phase = "running"
        self.log.info("started", step=self.engine.steps_done, ledger=self.ledger.to_dict(), watching=watching,
                      metrics_port=self.metrics_port, pid=os.getpid(), version=__version__)
        self.notifier.ready(status=f"step {self.engine.steps_done}")
        self._write_status(force=True)
        try:
            self._loop(exit_when_idle)
        finally:
            saved = self._shutdown()
        return 0 if saved else 1

    def _loop(self, exit_when_idle: bool) -> None:
        assert self.engine is not None  # run() opened the state first
        while not self._stop:
            self.pinger.maybe_ping()
            self._handle_requests()
            self.jobs.run_due(self.engine)  # plans computed off-loop from wall-clock triggers
            self._collect_checkpoint()
            self._maybe_retention()
            if not self.disk.retry_due():  # disk full: admit nothing, learn nothing, retry later
                self._phase = "paused"
                self._write_status()
                self.wake.wait(self.disk.retry_in())
                self.wake.clear()
                continue
            self._phase = "running"
            try:
                if self.current is None:
                    self._scan_if_due()
                    self.current = self._open_next()
                    if self.current is None and self.inbox.pending_names():
                        self._scan_if_due(force=True)
                        self.current = self._open_next()
            except OSError as exc:
                if not is_disk_full(exc):
                    raise
                self.disk.full("admission", exc)
                continue
            if self.current is not None:
                try:
                    self._step_current()
                except OSError as exc:
                    if not is_disk_full(exc):
                        raise
                    self.disk.full("results", exc)
                    continue
                self._maybe_checkpoint()
                self._write_status()
                continue
            # idle: nothing admitted and nothing in progress
            if exit_when_idle and not self.inbox.pending_names():
                break
            self._maybe_checkpoint()
            self._phase = "idle"
            self._write_status()
            self.wake.wait(self._idle_timeout())
            self.wake.clear()
            self._phase = "running"

    def _shutdown(self) -> bool:
        """Final checkpoint and clean-up; False if the final checkpoint could not be written (the
        inputs since the last good one are then replayed at the next start: nothing is lost)."""
        saved = False
        self._phase = "stopping"
        self.notifier.stopping(status="final checkpoint")
        self.log.info("stopping", step=self.engine.steps_done if self.engine else None)
        try:
            assert self.engine is not None  # run() opened the state before it can shut down
            self.jobs.wait_idle(self.engine)
            self.jobs.shutdown()
            self._wait_checkpoint()
            if self.engine is not None and (self.checkpoints.cycles_since > 0 or self.checkpoints.last is None
                                            or self.completed):
                self._checkpoint(background=False)
            saved = self.checkpoints.cycles_since == 0 and not self.completed
            if saved:
                self.restarts.stopped_cleanly()
            else:
                self.log.error("final_checkpoint_failed",
                               hint="inputs since the last checkpoint are replayed at the next start")
        finally:
            self.outbox.close()
            self.inbox.close()
            self.retention.join(timeout=10)
            self._phase = "stopped"
            self._write_status(force=True)
            self.metrics.close()
            self.log.info("stopped", step=self.engine.steps_done if self.engine else None)
        return saved

    # -- start-up -------------------------------------------------------------------------
    def _serve_metrics(self) -> int:
        host, port = self.config.metrics.host, self.config.metrics.port
        try:
            return self.metrics.serve(host, port)
        except socket.gaierror as exc:
            raise ConfigError(f"metrics.host = {host!r}: cannot resolve it: {exc.strerror or exc}") from None
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"metrics.port = {port}: already in use on {host} (another fumd? set metrics.port, 0 "
                                  "= any free port)") from None
            if exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                raise ConfigError(f"metrics.host = {host!r}: not an address of this machine: "
                                  f"{exc.strerror or exc}") from None
            if exc.errno == errno.EACCES:
                raise ConfigError(f"metrics.port = {port}: permission denied on {host} (ports below 1024 need "
                                  "privileges)") from None
            raise ConfigError(f"metrics.host = {host!r}, metrics.port = {port}: cannot listen: "
                              f"{exc.strerror or exc}") from None

    def _inbox_problem(self, event: str, **fields: Any) -> None:
        if event == "input_stuck":
            self.metrics.errors.labels("input_stuck").inc()
            self.log.error(event, **fields)
        else:
            self.log.warning(event, **fields)

    def _open_state(self) -> None:
        """Restore the engine, the jobs and the ledger from the newest checkpoint, then open the
        state directory's inbox (numbering on from the ledger), history and outbox."""
        self._restore()
        self.inbox = Inbox(self.state_dir, self.config.inbox.max_file_bytes, min_seq=self.ledger.next_seq,
                           settle_seconds=self.config.inbox.settle_seconds, on_problem=self._inbox_problem)
        self.history = History(self.state_dir, self.config.history.every_cycles, self.config.history.max_bytes)
        self.jobs.on_run = self._job_ran
        self.outbox = Outbox(self.state_dir)

    def _restore(self) -> None:
        loaded = self.checkpoints.restore(self.notifier)
        engine_config = with_saved_network(self.config.engine, loaded, self.log)
        stuck = self.restarts.started(loaded.path.name if loaded is not None else None)
        self.metrics.restarts_without_progress.set(stuck)
        if stuck:
            self.log.warning("restart_without_progress", restarts=stuck, checkpoint=str(loaded.path) if loaded
                             else None, hint="the previous start died before writing a newer checkpoint (crash loop?)")
        # a checkpoint's network is taken as saved: building one first would only be overwritten
        self.engine = Engine(engine_config) if loaded is None else Engine.from_state(engine_config, loaded.state)
        self.jobs = self._build_job_runner(self.config)
        if loaded is None:
            self.log.info("fresh_network", neurons=self.engine.state.n, synapses=self.engine.state.nnz,
                          seed=engine_config.network.seed)
            return
        self.jobs.load_state_dict(loaded.state)
        self.ledger = Ledger.from_dict(loaded.meta["ledger"])
        self.checkpoints.restored(loaded, self.engine.steps_done)
        self.log.info("restored", checkpoint=str(loaded.path), step=self.engine.steps_done,
                      ledger=self.ledger.to_dict())

    def _recover_queue(self) -> None:
        """After a restart: files the restored state has fully learned go to done/; files in done/
        that it has not learned (its newer checkpoint was unusable) go back to the queue."""
        self.inbox.finish_many([qf for qf in self.inbox.queued() if self.ledger.covers_file(qf.seq)])
        for qf in self.inbox.done_files():
            if not self.ledger.covers_file(qf.seq):
                self.log.warning("input_replayed", file=qf.name, seq=qf.seq,
                                 reason="not covered by the restored checkpoint")
                self.inbox.requeue(qf)
        self.outbox.drop_partials_below(self.ledger.seq)
        for path in self.outbox.recover():
            self.log.info("publication_completed", results=path.name,
                          hint="the daemon stopped between committing these results and making them visible")
        self._prune_publication_records()

    def _prune_publication_records(self) -> None:
        """Publication records are kept while some checkpoint on disk could send the daemon back
        before their input (a corrupt newest checkpoint falls back to an older one)."""
        oldest = oldest_ledger_seq(self.checkpoints.directory)
        if oldest is not None:
            self.outbox.prune_records_below(oldest)

    # -- input ----------------------------------------------------------------------------
    def _scan_if_due(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_scan < self.config.inbox.rescan_seconds:
            return
        self._last_scan = now
        room = self.config.inbox.max_queued_files - self._unlearned()
        if room <= 0:
            return  # the queue is full: the backlog waits in the inbox
        admitted, rejected = self.inbox.admit(limit=room)
        self.disk.ok()
        for rej in rejected:
            self._count_failed_file(rej.name, rej.reason, rej.message)
        for qf in admitted:
            self.log.info("input_admitted", file=qf.name, seq=qf.seq)
        self.metrics.queue_depth.set(self._queue_depth())

    def _unlearned(self) -> int:
        """Admitted files not yet learned (queue/ also holds learned ones waiting for a checkpoint)."""
        return self.inbox.count_queued_unless(self._learned())[0]

    def _queue_depth(self) -> int:
        """Files not yet processed: inbox + admitted, less those learned and waiting for a checkpoint;
        also sets the age of the oldest of them."""
        admitted, oldest_admitted = self.inbox.count_queued_unless(self._learned())
        in_inbox, oldest_in_inbox = self.inbox.waiting()
        since = [t for t in (oldest_admitted, oldest_in_inbox) if t is not None]
        self.metrics.queue_oldest_age.set(max(0.0, time.time() - min(since)) if since else 0.0)
        return admitted + in_inbox

    def _learned(self) -> Callable[[int], bool]:
        """Whether file ``seq`` is learned (and only waits in queue/ for a checkpoint to cover it)."""
        waiting = {qf.seq for qf in self.completed}
        return lambda seq: self.ledger.covers_file(seq) or seq in waiting

    def _open_next(self) -> _OpenFile | None:
        for qf in self.inbox.queued_unless(self._learned()):
            try:
                items = read_input_file(self.inbox.read(qf), qf.name, self.config.inbox.max_records_per_file)
            except InputFileError as exc:
                self.inbox.fail(qf, exc)
                self._count_failed_file(qf.name, exc.reason, str(exc))
                self.outbox.discard_partial(qf.seq)
                continue
            except Exception as exc:  # noqa: BLE001 - OSError, or a reader bug: the file fails, the daemon lives
                detail = (f"{exc.strerror} ({type(exc).__name__})" if isinstance(exc, OSError) and exc.strerror
                          else f"{type(exc).__name__}: {exc}")
                err = InputFileError("unreadable", f"{qf.name}: cannot read: {detail}")
                if not isinstance(exc, OSError):
                    self.metrics.errors.labels("reader").inc()
                    self.log.exception("reader_error", file=qf.name)
                self.inbox.fail(qf, err)
                self._count_failed_file(qf.name, err.reason, str(err))
                self.outbox.discard_partial(qf.seq)
                continue
            resume = self.ledger.seq == qf.seq
            start = self.ledger.record if resume else 0
            fresh = self.outbox.begin(qf.seq, qf.name, self.ledger.partial_bytes if resume else 0)
            self.ledger = Ledger(qf.seq, start, 0, self.inbox.next_seq)
            self.log.info("input_started", file=qf.name, seq=qf.seq, records=len(items), resume_at=start,
                          **({} if fresh
                             else {"results": "already published (re-learned only; the published file stands)"}))
            return _OpenFile(qf, items, start)
        return None

    def _step_current(self) -> None:
        """Learn the next record of the open file (or publish its results once all are learned).
        An OSError out of here (a full disk) leaves everything consistent for a retry: a learned
        record's results line waits in the outbox, and publication is retried as a whole."""
        assert self.current is not None and self.engine is not None
        cur = self.current
        self.outbox.flush()  # lines a full disk held back
        if cur.next_index < len(cur.items):
            self._run_record(cur, cur.items[cur.next_index])
            cur.next_index += 1
            self.ledger = Ledger(cur.queued.seq, cur.next_index, 0, self.inbox.next_seq)
            self.outbox.flush()
            self.disk.ok()
        if cur.next_index >= len(cur.items):
            results = self.outbox.publish(cur.queued.seq, cur.queued.name)
            self.disk.ok()
            self.completed.append(cur.queued)
            self.ledger = Ledger(cur.queued.seq + 1, 0, 0, self.inbox.next_seq)
            self.metrics.files.labels("done").inc()
            self.log.info("input_finished", file=cur.queued.name, seq=cur.queued.seq, records=len(cur.items),
                          results=results.name if results is not None else None)
            self.current = None

    def _run_record(self, cur: _OpenFile, item: InputItem) -> None:
        assert self.engine is not None
        base = {"seq": cur.queued.seq, "file": cur.queued.name, "record": cur.next_index, "where": item.where}
        if isinstance(item.record, RecordProblem):
            self._record_failed(base, None, item.record.reason, item.record.message)
            return
        started = time.perf_counter()
        try:
            result = self.engine.cycle(item.record)
        except InputError as exc:
            self._record_failed(base, item.record.get("id"), exc.reason, f"{item.where}: {exc}")
            return
        except Exception as exc:  # noqa: BLE001 - a bug must not take the service down; it is counted and logged
            self.metrics.errors.labels("cycle").inc()
            self.log.exception("cycle_error", file=cur.queued.name, where=item.where)
            self._record_failed(base, item.record.get("id"), "internal_error",
                                f"{item.where}: {type(exc).__name__}: {exc}")
            return
        seconds = time.perf_counter() - started
        self.checkpoints.cycles_since += 1
        self._rate_window.append(time.monotonic())
        counts = self.engine.last_cycle_spikes.counts if self.engine.last_cycle_spikes is not None else torch.zeros(1)
        rates = counts.float() * (1000.0 / (self.engine.config.lif.steps * self.engine.config.lif.dt_ms))
        self.metrics.observe_cycle(result, seconds, float(rates.var()) if rates.numel() > 1 else 0.0)
        self.metrics.replays.set(self.engine.replays_done)
        line = {**base, **result.to_dict(), "latency_ms": (time.time() - cur.queued.admitted_at) * 1000.0}
        self.outbox.append(line)
        self.history.cycle(self.engine, result)
        # jobs observe every cycle and, when due, run right here: before any checkpoint can be taken
        self.jobs.after_cycle(self.engine, result)
        self.jobs.run_due(self.engine)

    def _record_failed(self, base: dict[str, Any], rid: Any, reason: str, message: str) -> None:
        self.metrics.records.labels("failed").inc()
        self.metrics.records_failed.labels(reason).inc()
        self.log.warning("record_rejected", file=base["file"], where=base["where"], reason=reason, message=message)
        self.outbox.append({**base, "id": rid if isinstance(rid, (str, int)) else None,
                            "error": {"reason": reason, "message": message}})

    def _count_failed_file(self, name: str, reason: str, message: str) -> None:
        self.metrics.files.labels("failed").inc()
        self.metrics.files_failed.labels(reason).inc()
        self.log.warning("input_rejected", file=name, reason=reason, message=message)

    def _job_ran(self, name: str, outputs: dict[str, float]) -> None:
        assert self.engine is not None  # jobs run only on an open state
        self.history.job(self.engine.steps_done, name, outputs)

    # -- checkpoints (the cadence and the writing: checkpointing.py) ----------------------------
    def _maybe_checkpoint(self) -> None:
        assert self.signals is not None  # installed by run()
        if self.checkpoints.should_start(self.config, self.signals.checkpoint, bool(self.completed)):
            self.signals.take_checkpoint()
            self._checkpoint(background=True)

    def _checkpoint(self, background: bool) -> None:
        """Snapshot the state between cycles (the only stall) and write it, in the background or now."""
        assert self.engine is not None
        if self.current is not None:
            try:
                self.outbox.flush()
            except OSError as exc:
                # the state has learned a record whose results line cannot be written yet: a
                # checkpoint now would lose that line at a replay; wait until it is written
                self.log.warning("checkpoint_deferred", reason=f"results line not yet written: {exc}")
                self.checkpoints.retry = True
                return
        stall_start = time.perf_counter()
        partial = self.outbox.partial_bytes() if self.current is not None else 0
        ledger = Ledger(self.ledger.seq, self.ledger.record, partial, self.inbox.next_seq)
        state = snapshot({**self.engine.state_dict(), **self.jobs.state_dict()})
        self.history.raster(self.engine)
        meta = {"ledger": ledger.to_dict(), "config": self.engine.config.to_dict(), "created_at": time.time(),
                "fumd_version": __version__}
        self.metrics.checkpoint_stall.set(time.perf_counter() - stall_start)
        self.checkpoints.write(state, meta, step=self.engine.steps_done, ledger=ledger, config=self.config.checkpoint,
                               background=background)
        if not background:
            self._collect_checkpoint()

    def _checkpoint_progress(self) -> None:
        if self._phase in ("starting", "stopping"):
            self.notifier.extend_timeout(60)

    def _collect_checkpoint(self) -> None:
        """Handle a finished write: on success, move the inputs it covers to done/."""
        done = self.checkpoints.collect()
        if done is None or done.info is None:
            return
        info = done.info
        covered = [qf for qf in self.completed if done.ledger.covers_file(qf.seq)]
        self.inbox.finish_many(covered)
        self._files_done += len(covered)
        self.completed = [qf for qf in self.completed if not done.ledger.covers_file(qf.seq)]
        self.outbox.drop_partials_below(done.ledger.seq)
        self._prune_publication_records()
        self.restarts.progressed(info.path.name)
        self.metrics.restarts_without_progress.set(0)
        self.log.info("checkpoint_written", path=str(info.path), step=info.step, bytes=info.bytes,
                      seconds=round(info.seconds, 3))
        self._write_status(force=True)

    def _wait_checkpoint(self) -> None:
        self.checkpoints.join()
        self._collect_checkpoint()

    # -- signals and requests ---------------------------------------------------------------
    @property
    def _stop(self) -> bool:
        return self.signals is not None and self.signals.stop

    def _handle_requests(self) -> None:
        assert self.signals is not None  # installed by run()
        if self.signals.take_reload():
            self._reload_config()
        if self.signals.checkpoint and self.checkpoints.pending is None:
            self.signals.take_checkpoint()
            self.log.info("checkpoint_requested")
            self._checkpoint(background=True)

    def _reload_config(self) -> None:
        self.notifier.reloading()
        try:
            new = load_config(self.config_path,
                              seed=self.config.engine.network.seed) if self.config_path else self.config
        except Exception as exc:  # noqa: BLE001 - a bad file (or a bug) never takes the daemon down: it keeps its config
            self.metrics.errors.labels("config_reload").inc()
            if isinstance(exc, ConfigError):
                self.log.error("config_reload_rejected", error=str(exc))
            else:
                self.log.exception("config_reload_rejected", error=f"{type(exc).__name__}: {exc}")
            self.notifier.ready(status="config reload rejected")
            return
        old = self.config
        applied, needs_restart = reloadable_changes(old, new)
        changed = changed_keys(old, applied)
        if applied.jobs != old.jobs and not self._rebuild_jobs(applied):
            jobs_keys = [key for key in changed if key.startswith("jobs.")]
            applied = dataclasses.replace(applied, jobs=old.jobs)
            changed = [key for key in changed if key not in jobs_keys]
            needs_restart += jobs_keys
        self.config = applied
        self.inbox.max_file_bytes = self.config.inbox.max_file_bytes
        self.inbox.settle_seconds = self.config.inbox.settle_seconds
        self.history.every_cycles = self.config.history.every_cycles
        self.history.max_bytes = self.config.history.max_bytes
        configure_logging(self.config.log.level, self.config.log.format)
        self.log.info("config_reloaded", applied=changed, needs_restart=needs_restart)
        self.notifier.ready(status="config reloaded")

    def _build_job_runner(self, config: ServiceConfig) -> JobRunner:
        seed = self.engine.config.network.seed if self.engine is not None else config.engine.network.seed
        return JobRunner(build_jobs(config.jobs, seed=seed), job_cadences(config.jobs, config.deterministic),
                         config.deterministic, self.metrics, self.log, self.wake.set)

    def _rebuild_jobs(self, config: ServiceConfig) -> bool:
        """Apply changed ``[jobs.*]`` settings: finish what the old runner has in flight, carry its
        state over (jobs that stay keep theirs; a newly enabled job starts fresh), swap runners and
        start the new clocks. False, with the old runner untouched and running, if the state does
        not fit the new settings (the caller then names the keys in ``needs_restart``)."""
        assert self.engine is not None
        old = self.jobs
        old.wait_idle(self.engine)
        try:
            new = self._build_job_runner(config)
            new.load_state_dict(old.state_dict())
        except Exception:  # noqa: BLE001 - a reload never takes the daemon down
            self.log.exception("jobs_reload_failed")
            return False
        old.shutdown()
        new.on_run = old.on_run
        self.jobs = new
        new.start()
        self.log.info("jobs_rescheduled", jobs=sorted(new.jobs),
                      cadences={k: list(v) for k, v in new.cadences.items() if k in new.jobs})
        return True

    # -- disk -------------------------------------------------------------------------------
    def _maybe_retention(self) -> None:
        self.retention.maybe_start(self.config.retention, urgent=self.disk.paused and not self._urgent_retention_done)
        self._urgent_retention_done = self.disk.paused  # one urgent pass per pause

    # -- status -----------------------------------------------------------------------------
    def _idle_timeout(self) -> float:
        timeout = self.config.inbox.rescan_seconds
        settle = self.inbox.next_check_in()
        if settle is not None:
            timeout = min(timeout, settle)
        interval = self.notifier.watchdog_interval()
        if interval:
            timeout = min(timeout, interval)
        checkpoint = self.checkpoints.next_check_in(self.config)
        if checkpoint is not None:
            timeout = min(timeout, checkpoint)
        return timeout

    def _observe_network(self) -> None:
        assert self.engine is not None
        st = self.engine.state
        self.metrics.observe_network(st.n, st.nnz, int(st.persistent.sum()), st.sparsity())

    def _write_status(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_status < self.config.status.every_seconds:
            return
        self._last_status = now
        self._observe_network()
        self._rate_window = [t for t in self._rate_window if now - t <= 10.0]
        queue_depth = self._queue_depth()
        self.metrics.queue_depth.set(queue_depth)
        engine = self.engine
        status = {
            "pid": os.getpid(), "phase": self._phase, "version": __version__, "state_dir": str(self.state_dir),
            "step": engine.steps_done if engine else 0,
            "neurons": engine.state.n if engine else None, "synapses": engine.state.nnz if engine else None,
            "inputs_done": self._files_done, "inputs_waiting_for_checkpoint": len(self.completed),
            "queue_depth": queue_depth, "current_file": self.current.queued.name if self.current else None,
            "ledger": self.ledger.to_dict(), "last_checkpoint": self.checkpoints.last,
            "cycles_per_s": len(self._rate_window) / 10.0,
            "metrics_url": f"http://{self.config.metrics.host}:{self.metrics_port}/metrics" if self.metrics_port
            else None, }
        try:
            write_status(self.state_dir, status)
        except OSError as exc:  # status is a view, not state: a full disk must not stop the loop
            if not is_disk_full(exc):
                raise
        self.notifier.status(f"{self._phase}: step {status['step']}, queue {queue_depth}")


def run_daemon(state_dir: Path, config: ServiceConfig, config_path: Path | None, exit_when_idle: bool,
               signals: SignalLatch | None = None) -> int:
    configure_logging(config.log.level, config.log.format)
    return Daemon(state_dir, config, config_path, signals=signals).run(exit_when_idle=exit_when_idle)

