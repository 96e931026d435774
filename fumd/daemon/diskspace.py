"""Disk full: pause, say so once, resume by itself.

ENOSPC (or EDQUOT) can hit any write of the daemon: a results line, a publication, a checkpoint,
the report of a rejected input. Crashing on it makes systemd restart a daemon that fails again
(a crash loop that replays work each time). Instead the loop *pauses*: it takes no new record and
admits nothing, logs ``disk_full`` once (where, the error, the free bytes), sets
``fumd_disk_full`` to 1, and retries the failed step every ``retry_seconds``; the first write that
succeeds ends the episode (``disk_space_returned``). Nothing is lost meanwhile: the record that
was learned keeps its results line in memory until it can be written, a checkpoint that failed
left the previous ones untouched (its temporary directory is removed) and is retried, and an input
that could not be admitted stays in the inbox.
"""
from __future__ import annotations

import errno
import os
import time
from pathlib import Path
from typing import Any, TypeGuard

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(exc: BaseException | None) -> TypeGuard[BaseException]:
    """True if ``exc`` or anything in its cause/context chain is ENOSPC/EDQUOT."""
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def free_bytes(path: Path) -> int | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


class DiskGuard:
    retry_seconds = 5.0

    def __init__(self, state_dir: Path, metrics: Any, log: Any):
        self.state_dir = state_dir
        self.metrics = metrics
        self.log = log
        self.paused = False
        self._episode: str | None = None  # where the current episode began
        self._retry_at = 0.0

    def full(self, where: str, exc: BaseException) -> None:
        """A write failed for lack of space: pause (logged and counted once per episode)."""
        self.paused = True
        self._retry_at = time.monotonic() + self.retry_seconds
        if self._episode is None:
            self._episode = where
            self.metrics.disk_full.set(1)
            self.metrics.disk_full_events.labels(where).inc()
            self.log.error("disk_full", where=where, error=str(exc), free_bytes=free_bytes(self.state_dir),
                           hint="admission and learning pause until space returns; nothing is lost; "
                                "free space or lower [retention] limits / checkpoint.keep")

    def retry_due(self) -> bool:
        """While paused: whether it is time to try again (the caller then retries the step)."""
        if self.paused and time.monotonic() >= self._retry_at:
            self.paused = False  # tentatively: the retried step calls full() again if it fails
        return not self.paused

    def retry_in(self) -> float:
        return max(0.05, self._retry_at - time.monotonic())

    def ok(self) -> None:
        """A write succeeded: the episode, if any, is over."""
        if self._episode is not None and not self.paused:
            self.log.info("disk_space_returned", paused_at=self._episode, free_bytes=free_bytes(self.state_dir))
            self._episode = None
            self.metrics.disk_full.set(0)
