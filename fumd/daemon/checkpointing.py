"""The daemon's checkpoints: when one is due, the snapshot written by a background thread while
the loop goes on, what a finished (or failed) write means, and the restore at start-up.

A checkpoint is due after ``checkpoint_every_cycles()`` learned records, after
``checkpoint_every_seconds()`` with something new to save, on request (SIGUSR1), or again right
away after one failed for lack of space; at most one write is in flight. The files it covers
move to ``done/`` only once it is written (the daemon does that with what ``collect`` returns).
"""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from ..config import EngineConfig
from ..persistence import CheckpointError
from ..persistence.directory import clean_interrupted_writes, list_checkpoints
from ..persistence.manifest import MANIFEST
from ..persistence.read import LoadedCheckpoint, load_latest
from ..persistence.write import CheckpointInfo, write_checkpoint
from .config import CheckpointConfig, ServiceConfig
from .diskspace import DiskGuard, is_disk_full
from .ledger import Ledger

# Fault injection for the crash tests: sleep this long at every progress point of a checkpoint
# write, so that a SIGKILL can land in the middle of one. Never set in production.
FAULT_PAUSE_ENV = "FUMD_FAULT_CHECKPOINT_PAUSE_S"


def fault_pause(environ: Mapping[str, str] | None) -> float:
    """Seconds of ``FAULT_PAUSE_ENV`` in ``environ`` (None: the process environment); 0 unset."""
    return float((environ if environ is not None else os.environ).get(FAULT_PAUSE_ENV, "0") or 0)


@dataclass
class PendingCheckpoint:
    thread: threading.Thread
    ledger: Ledger
    started: float
    info: CheckpointInfo | None = None
    error: BaseException | None = None


class Checkpointer:
    """The checkpoints of one state directory: the cadence, the write in flight, the last one."""

    def __init__(self, directory: Path, metrics: Any, log: Any, disk: DiskGuard, progress: Callable[[], None],
                 pause: float = 0.0):
        self.directory = directory
        self.metrics = metrics
        self.log = log
        self.disk = disk
        self._progress = progress  # called at every progress point of a write (from its thread)
        self._pause = pause  # FAULT_PAUSE_ENV
        self.pending: PendingCheckpoint | None = None
        self.last: dict[str, Any] | None = None  # the last checkpoint written or restored (status)
        self.cycles_since = 0  # records learned since the last snapshot
        self.retry = False  # a checkpoint failed for lack of space: retry when the pause ends
        self._last_time = time.monotonic()

    # -- cadence ----------------------------------------------------------------------------------
    def should_start(self, config: ServiceConfig, requested: bool, files_waiting: bool) -> bool:
        """Whether to start a checkpoint now: one is due (``requested``: SIGUSR1; ``files_waiting``:
        learned files wait for one) and none is being written."""
        due = requested
        every_cycles = config.checkpoint_every_cycles()
        if every_cycles and self.cycles_since >= every_cycles:
            due = True
        every_s = config.checkpoint_every_seconds()
        if every_s and time.monotonic() - self._last_time >= every_s and (self.cycles_since or files_waiting):
            due = True
        if self.retry:
            due = True
        return due and self.pending is None

    def next_check_in(self, config: ServiceConfig) -> float | None:
        """How long an idle loop may sleep before a checkpoint needs it (None: no limit)."""
        timeout = None
        every_s = config.checkpoint_every_seconds()
        if every_s:
            timeout = max(0.05, every_s - (time.monotonic() - self._last_time))
        if self.pending is not None:
            timeout = 0.1 if timeout is None else min(timeout, 0.1)
        return timeout

    # -- writing ----------------------------------------------------------------------------------
    def write(self, state: dict[str, Any], meta: dict[str, Any], *, step: int, ledger: Ledger, config: CheckpointConfig,
              background: bool) -> None:
        """Write the snapshot ``state`` (+ ``meta``) as covering ``ledger``: in a background
        thread, or here (then ``collect`` it right away)."""
        self.cycles_since = 0
        self._last_time = time.monotonic()
        pending = PendingCheckpoint(threading.Thread(target=lambda: None), ledger, time.monotonic())

        def write() -> None:
            try:
                pending.info = write_checkpoint(self.directory, state, meta, step=step, fmt=config.format,
                                                keep=config.keep, progress=self._tick)
            except BaseException as exc:  # noqa: BLE001 - reported by the loop
                pending.error = exc

        if background:
            pending.thread = threading.Thread(target=write, name="fumd-checkpoint", daemon=True)
            self.pending = pending
            pending.thread.start()
        else:
            write()
            self.pending = pending

    def _tick(self) -> None:
        self._progress()
        if self._pause:
            time.sleep(self._pause)

    def collect(self) -> PendingCheckpoint | None:
        """A finished write, once: a failure is counted, logged and scheduled for a retry (None
        is returned); a success is recorded as ``last`` and returned."""
        pending = self.pending
        if pending is None or pending.thread.is_alive():
            return None
        self.pending = None
        if pending.error is not None or pending.info is None:
            self.metrics.checkpoints.labels("failed").inc()
            self.metrics.errors.labels("checkpoint").inc()
            self.log.error("checkpoint_failed", error=repr(pending.error))
            self.cycles_since = max(self.cycles_since, 1)  # try again next time
            if is_disk_full(pending.error):  # pause, and retry as soon as the pause ends
                self.disk.full("checkpoint", pending.error)
                self.retry = True
            return None
        self.retry = False
        self.disk.ok()
        info = pending.info
        now = time.time()
        self.metrics.observe_checkpoint(info.seconds, info.bytes, now)
        self.last = {"path": str(info.path), "step": info.step, "time": now, "bytes": info.bytes,
                     "seconds": info.seconds, "format": info.format}
        return pending

    def join(self) -> None:
        """Wait for the write in flight, if any (``collect`` it next)."""
        if self.pending is not None:
            self.pending.thread.join()

    # -- start-up ---------------------------------------------------------------------------------
    def restore(self, notifier: Any) -> LoadedCheckpoint | None:
        """The newest usable checkpoint (None: there is none, a fresh start), after removing what
        an interrupted write left; newer unusable ones are logged and counted. Raises
        CheckpointError when checkpoints exist but none is usable."""
        notifier.extend_timeout(120)
        for path in clean_interrupted_writes(self.directory):
            # the trace of a kill during a checkpoint write: the previous checkpoints are whole
            self.log.info("checkpoint_leftover_removed", path=str(path), reason="interrupted checkpoint write")
        try:
            loaded = load_latest(self.directory, progress=lambda: notifier.extend_timeout(60))
        except CheckpointError as exc:
            # checkpoints exist but none is usable: refuse, rather than silently start from scratch
            raise CheckpointError(f"{exc}\nNo usable checkpoint in {self.directory}; to start a fresh network, move "
                                  "that directory aside.") from None
        if loaded is not None:
            for path, reason in loaded.skipped:
                self.log.error("checkpoint_unusable", path=str(path), reason=reason)
                self.metrics.errors.labels("checkpoint_unusable").inc()
        return loaded

    def restored(self, loaded: LoadedCheckpoint, step: int) -> None:
        self.last = {"path": str(loaded.path), "step": step, "time": loaded.meta.get("created_at")}
        if loaded.meta.get("created_at"):
            self.metrics.checkpoint_timestamp.set(loaded.meta["created_at"])


def with_saved_network(engine_config: EngineConfig, loaded: LoadedCheckpoint | None, log: Any) -> EngineConfig:
    """The engine config to restore ``loaded`` into: the network's shape lives in the checkpoint;
    the config cannot change it (a different one is logged)."""
    if loaded is None:
        return engine_config
    saved = loaded.meta.get("config", {})
    if "network" in saved and saved["network"] != engine_config.to_dict()["network"]:
        log.warning("network_config_from_checkpoint", config=engine_config.to_dict()["network"],
                    checkpoint=saved["network"])
        engine_config = engine_config.replace(network=saved["network"])
    return engine_config


def planned_engine_config(engine_config: EngineConfig, directory: Path) -> EngineConfig:
    """The engine config a start will run, before anything is loaded: the network's shape comes
    from the newest checkpoint when there is one (read from its manifest only; best effort)."""
    try:
        newest = list_checkpoints(directory)
        if newest:
            manifest = json.loads((newest[0] / MANIFEST).read_text())
            saved = manifest.get("meta", {}).get("config", {}).get("network")
            if isinstance(saved, dict):
                engine_config = engine_config.replace(network=saved)
    except Exception:  # noqa: BLE001 - an unreadable checkpoint is reported by the restore itself
        pass
    return engine_config
