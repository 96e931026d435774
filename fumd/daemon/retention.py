"""The daemon's retention pass: measure the state directory and prune it (``fumd/io/retention.py``
has the rules), in a background thread every ``retention.every_seconds``, at start-up, and as
soon as a disk-full pause begins (pruning may be what frees the space).

It runs off the loop because a directory of 100,000 results files takes a while to stat, and
nothing it deletes is in use by the loop: published results, inputs a checkpoint covers (below the
oldest checkpoint's ledger position), rejected inputs.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from ..io.retention import Limits, measure, prune_by_seq, prune_outbox
from .config import STATE_SUBDIRS, RetentionConfig
from .ledger import oldest_ledger_seq


class RetentionPass:
    def __init__(self, state_dir: Path, metrics: Any, log: Any):
        self.state_dir = Path(state_dir)
        self.metrics = metrics
        self.log = log
        self._thread: threading.Thread | None = None
        self._last = float("-inf")

    def maybe_start(self, config: RetentionConfig, urgent: bool = False) -> bool:
        """Start a pass if one is due (or ``urgent``) and none is running; True if started."""
        now = time.monotonic()
        if self._thread is not None and self._thread.is_alive():
            return False
        if not urgent and now - self._last < config.every_seconds:
            return False
        self._last = now
        self._thread = threading.Thread(target=self._run, args=(config,), name="fumd-retention", daemon=True)
        self._thread.start()
        return True

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self, config: RetentionConfig) -> None:
        try:
            self.run_once(config)
        except Exception:  # noqa: BLE001 - housekeeping never takes the daemon down
            self.log.exception("retention_failed")

    def run_once(self, config: RetentionConfig, now: float | None = None) -> dict[str, tuple[int, int]]:
        """One pass: prune outbox/, done/, failed/; set the size metrics. Returns, per directory,
        (entries removed, bytes freed)."""
        removed = {
            "outbox": prune_outbox(self.state_dir / "outbox", Limits(*config.limits("outbox")), now=now),
            # done/: never what a fallback to the oldest checkpoint on disk would replay
            "done": prune_by_seq(self.state_dir / "done", Limits(*config.limits("done")),
                                 below=oldest_ledger_seq(self.state_dir / "checkpoints") or 0, now=now),
            "failed": prune_by_seq(self.state_dir / "failed", Limits(*config.limits("failed")), now=now),
        }
        for name, (count, freed) in removed.items():
            if count:
                self.metrics.retention_removed.labels(name).inc(count)
                self.log.info("retention_pruned", dir=name, removed=count, bytes=freed)
        for sub in STATE_SUBDIRS:
            self.metrics.state_dir_bytes.labels(sub).set(measure(self.state_dir / sub))
        return removed
