"""Signals at any moment: handlers installed first, requests latched until the loop runs.

``fumd run`` spends seconds importing torch and restoring a checkpoint before its loop runs. With
the default dispositions a SIGHUP in that window kills the process (exit 129) and a SIGTERM
kills it without a clean stop, and once Python starts finalising it restores the default
disposition of every signal it handled, so a late SIGHUP turns exit 0 into death by signal. Under
systemd (``ExecReload=`` and stop at any time) none of that may happen. So:

* ``SignalLatch.install()`` runs first thing in ``fumd run``, before any heavy import: it only
  sets flags (and calls ``wake`` once the loop has set one), which is safe at any moment.
* The daemon reads the flags at its safe points: a stop during start-up ends the start-up
  before anything is changed, or makes the loop exit at once (exit 0, state intact); a reload or
  checkpoint request waits for the loop.
* ``finish()`` ignores these signals for the last moments of the process, so the interpreter's
  finalisation never restores the killing default (an ignored signal stays ignored).
"""
from __future__ import annotations

import signal
import threading
from typing import Any, Callable

HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)


class SignalLatch:
    def __init__(self) -> None:
        self.stop = False
        self.reload = False
        self.checkpoint = False
        self.received: list[int] = []  # signal numbers in arrival order (diagnostics, tests)
        self._wake: Callable[[], None] | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> "SignalLatch":
        """Take over the handled signals (main thread only); ``restore()`` gives them back."""
        for sig in HANDLED:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def set_wake(self, wake: Callable[[], None]) -> None:
        """Called from the loop once it can be woken: requests that arrive later wake it."""
        self._wake = wake
        if self.stop or self.reload or self.checkpoint:
            wake()

    def _handle(self, signum: int, _frame: Any) -> None:
        # runs between bytecodes of the main thread: set flags only, never block or allocate much
        if len(self.received) < 1000:
            self.received.append(signum)
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stop = True
        elif signum == signal.SIGHUP:
            self.reload = True
        elif signum == signal.SIGUSR1:
            self.checkpoint = True
        wake = self._wake
        if wake is not None:
            wake()

    def take_reload(self) -> bool:
        requested, self.reload = self.reload, False
        return requested

    def take_checkpoint(self) -> bool:
        requested, self.checkpoint = self.checkpoint, False
        return requested

    def restore(self) -> None:
        """Give the signals back (a start refused before anything ran: ``main()`` called in-process)."""
        if threading.current_thread() is threading.main_thread():
            for sig, previous in self._previous.items():
                signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

    def finish(self) -> None:
        """The daemon has stopped: ignore these signals until the process is gone."""
        if threading.current_thread() is threading.main_thread():
            for sig in HANDLED:
                signal.signal(sig, signal.SIG_IGN)
