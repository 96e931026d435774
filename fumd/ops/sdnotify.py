"""systemd service notification (``sd_notify(3)``), spoken directly over ``$NOTIFY_SOCKET``.

Protocol
--------
A service started with ``Type=notify`` finds in its environment ``NOTIFY_SOCKET``: the
address of a unix *datagram* socket owned by the service manager.  Either a file-system
path (``/run/systemd/notify``) or, when it starts with ``@``, a name in the Linux abstract
namespace (the ``@`` stands for a leading NUL byte).  Each notification is one datagram
of newline-separated ``KEY=VALUE`` assignments, e.g. ``b"READY=1\\nSTATUS=running"``.
The manager identifies the sender from the kernel-supplied credentials (``SCM_CREDENTIALS``),
so with ``NotifyAccess=main`` only the main process may notify; nothing needs to be sent
with the datagram.  The assignments used here:

``READY=1``               start-up finished (with ``Type=notify`` the unit is "activating"
                          until this arrives; also ends a reload started with ``RELOADING=1``)
``STATUS=...``            one line of free text shown by ``systemctl status``
``MAINPID=...``           the main process id (informational here: we are the main process)
``WATCHDOG=1``            keep-alive; must arrive within every ``WatchdogSec=`` period once
                          the start-up is complete, otherwise the manager kills the service
                          (SIGABRT by default) and ``Restart=on-failure`` restarts it
``WATCHDOG_USEC=...``     change the watchdog timeout at run time (used around a long
                          operation and restored afterwards, see :meth:`SystemdNotifier.busy`)
``STOPPING=1``            shutdown has begun
``RELOADING=1``           a configuration reload has begun; must carry ``MONOTONIC_USEC=``
                          (``CLOCK_MONOTONIC`` in microseconds) and be ended by ``READY=1``
``EXTEND_TIMEOUT_USEC=``  "send me another message within this many microseconds": extends
                          the start-up (``TimeoutStartSec=``), run-time or stop
                          (``TimeoutStopSec=``) timeout of the *current* state; not cumulative,
                          so a long operation re-sends it.  It does **not** extend the watchdog.

The manager exports ``WATCHDOG_USEC`` (the timeout) and ``WATCHDOG_PID`` (the process that
should ping).  ``WATCHDOG_PID`` not equal to our pid means the variables were inherited by a
child that is not the main process: the watchdog is then not ours to feed.  ``sd_watchdog_enabled(3)``
recommends pinging at half the timeout; :meth:`SystemdNotifier.watchdog_interval` returns that.

Where the ping comes from
-------------------------
``WATCHDOG=1`` must be sent from the daemon's *main loop* — call :meth:`WatchdogPinger.maybe_ping`
once per cycle — and never from a helper thread or timer.  The watchdog exists to detect a
daemon that is alive but no longer making progress (a dead-locked or spinning loop, a stuck
device call, a leak that makes every cycle crawl).  A background thread would keep pinging
while the loop is hung, so systemd would never kill and restart it.  Consequently every single
step of the loop (including a checkpoint write) must fit inside ``WatchdogSec=``, or raise the
timeout for its duration with :meth:`SystemdNotifier.busy` / :meth:`SystemdNotifier.set_watchdog_timeout`.

Failure policy
--------------
Not running under systemd (``NOTIFY_SOCKET`` unset) is normal: every call is then a no-op that
returns ``False``.  A failing send (socket gone, manager busy) is logged at debug level and
reported as ``False``; it never raises into the caller — losing one notification must not take
the daemon down.  Malformed *arguments* (a field without ``=``, a newline inside a field, a
negative duration) are programming errors and raise ``ValueError``.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import time
from typing import Callable, Iterator, Mapping

log = logging.getLogger(__name__)

__all__ = ["SystemdNotifier", "WatchdogPinger"]

# A notification must never stall the main loop: if the manager's receive queue is full the
# datagram is dropped after this long instead of blocking.
SEND_TIMEOUT_S = 1.0


def _usec(seconds: float) -> int:
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"duration must be a finite number of seconds >= 0, got {seconds!r}")
    return max(1, math.ceil(seconds * 1_000_000))


def _one_line(text: str) -> str:
    # STATUS= is a single assignment: a newline would smuggle in further assignments.
    return " ".join(str(text).splitlines()).strip()


class SystemdNotifier:
    """Sends ``sd_notify`` messages; a silent no-op when not started by systemd.

    ``environ`` defaults to ``os.environ`` and is read once, at construction.
    """

    def __init__(self, environ: Mapping[str, str] | None = None):
        env = os.environ if environ is None else environ
        self.socket_path: str | None = None
        self._address: str | bytes | None = None
        raw = env.get("NOTIFY_SOCKET") or ""
        if raw.startswith("/"):
            self._address = raw
        elif raw.startswith("@") and len(raw) > 1:
            self._address = b"\0" + raw[1:].encode()  # Linux abstract namespace
        elif raw:
            log.warning("NOTIFY_SOCKET=%r is not a path or abstract socket; notifications disabled", raw)
        if self._address is not None:
            self.socket_path = raw
        self.enabled: bool = self._address is not None

        self._watchdog_usec: int | None = None
        usec, pid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
        if usec:
            try:
                value = int(usec)
                pid_ok = pid is None or pid == "" or int(pid) == os.getpid()
            except ValueError:
                log.warning("ignoring malformed WATCHDOG_USEC=%r / WATCHDOG_PID=%r", usec, pid)
            else:
                if value > 0 and pid_ok:
                    self._watchdog_usec = value

    # -- low level ---------------------------------------------------------------------------

    def send(self, *fields: str) -> bool:
        """Send one datagram of ``KEY=VALUE`` fields joined by newlines; ``True`` when sent."""
        for f in fields:
            if "=" not in f or "\n" in f or f.startswith("="):
                raise ValueError(f"not a KEY=VALUE notification field: {f!r}")
        address = self._address
        if not self.enabled or not fields or address is None:
            return False
        payload = "\n".join(fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.settimeout(SEND_TIMEOUT_S)
                sock.sendto(payload, address)
        except OSError as exc:  # includes socket.timeout
            log.debug("sd_notify to %s failed: %s", self.socket_path, exc)
            return False
        return True

    # -- states ------------------------------------------------------------------------------

    def ready(self, status: str | None = None) -> bool:
        """Start-up (or a reload) is complete: ``READY=1``, optional ``STATUS=``, ``MAINPID=``."""
        fields = ["READY=1"]
        if status is not None:
            fields.append("STATUS=" + _one_line(status))
        fields.append(f"MAINPID={os.getpid()}")
        return self.send(*fields)

    def status(self, text: str) -> bool:
        """One line of free-form status for ``systemctl status``."""
        return self.send("STATUS=" + _one_line(text))

    def watchdog(self) -> bool:
        """``WATCHDOG=1``; prefer :class:`WatchdogPinger` in loops. No-op without a watchdog."""
        if self._watchdog_usec is None:
            return False
        return self.send("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        """Shutdown has begun (``STOPPING=1``, optional ``STATUS=``)."""
        fields = ["STOPPING=1"]
        if status is not None:
            fields.append("STATUS=" + _one_line(status))
        return self.send(*fields)

    def reloading(self) -> bool:
        """A reload (SIGHUP) has begun; finish it with :meth:`ready`."""
        return self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for ``seconds`` more before the start/stop timeout of the current state fires.

        Not cumulative (the manager waits at least ``seconds`` from *now*) and not a watchdog
        extension; re-send during an operation that outlasts it.
        """
        return self.send(f"EXTEND_TIMEOUT_USEC={_usec(seconds)}")

    # -- watchdog ----------------------------------------------------------------------------

    @property
    def watchdog_enabled(self) -> bool:
        return self.enabled and self._watchdog_usec is not None

    @property
    def watchdog_timeout(self) -> float | None:
        """The configured watchdog timeout in seconds (``WATCHDOG_USEC``), ``None`` if none."""
        usec = self._watchdog_usec
        if not self.enabled or usec is None:
            return None
        return usec / 1_000_000

    def watchdog_interval(self) -> float | None:
        """Seconds between pings: half of ``WATCHDOG_USEC``; ``None`` if there is no watchdog."""
        timeout = self.watchdog_timeout
        return None if timeout is None else timeout / 2

    def set_watchdog_timeout(self, seconds: float) -> bool:
        """Change the watchdog timeout at run time (``WATCHDOG_USEC=``) and ping.

        Only when a watchdog is configured: sending ``WATCHDOG_USEC=`` to a unit without one
        would switch a watchdog on.  Restore with ``set_watchdog_timeout(n.watchdog_timeout)``.
        """
        if not self.watchdog_enabled:
            return False
        return self.send(f"WATCHDOG_USEC={_usec(seconds)}", "WATCHDOG=1")

    @contextlib.contextmanager
    def busy(self, seconds: float, status: str | None = None) -> Iterator[None]:
        """Cover one long, non-looping operation (a checkpoint load or write) of ~``seconds``.

        On entry: ``EXTEND_TIMEOUT_USEC`` (start-up/stop timeouts), and — if the operation may
        outlast the watchdog — a temporary ``WATCHDOG_USEC`` raise plus a ping; optional
        ``STATUS``.  On exit the original watchdog timeout is restored (with a ping).
        """
        if status is not None:
            self.status(status)
        self.extend_timeout(seconds)
        raised = False
        timeout = self.watchdog_timeout
        if timeout is not None:
            if seconds >= timeout / 2:
                raised = self.set_watchdog_timeout(max(seconds * 2, timeout))
            else:
                self.watchdog()
        try:
            yield
        finally:
            if raised and timeout is not None:
                self.set_watchdog_timeout(timeout)


class WatchdogPinger:
    """Rate-limited ``WATCHDOG=1``: call :meth:`maybe_ping` from the main loop as often as you like.

    It sends at most once per ``interval`` seconds (default: the notifier's
    :meth:`~SystemdNotifier.watchdog_interval`, half the watchdog timeout).  The first call
    pings immediately.  ``clock`` is injectable for tests (default ``time.monotonic``).
    """

    def __init__(
        self,
        notifier: SystemdNotifier,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.notifier = notifier
        self.interval = notifier.watchdog_interval() if interval is None else float(interval)
        self.clock = clock
        self._last: float | None = None

    @property
    def enabled(self) -> bool:
        return self.interval is not None and self.notifier.watchdog_enabled

    def due(self) -> bool:
        interval = self.interval
        if not self.enabled or interval is None:
            return False
        return self._last is None or self.clock() - self._last >= interval

    def maybe_ping(self) -> bool:
        """Send ``WATCHDOG=1`` if an interval has passed since the last ping; ``True`` if sent."""
        if not self.due():
            return False
        # Rate-limit attempts, not successes: a broken socket must not cost a syscall per cycle.
        self._last = self.clock()
        return self.notifier.watchdog()

    def ping(self) -> bool:
        """Ping now regardless of the interval (e.g. right before a long step)."""
        if not self.enabled:
            return False
        self._last = self.clock()
        return self.notifier.watchdog()
