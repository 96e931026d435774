"""sd_notify over a real AF_UNIX datagram socket (path and abstract namespace)."""
from __future__ import annotations

import os
import socket
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from fumd.ops import sdnotify
from fumd.ops.sdnotify import SystemdNotifier, WatchdogPinger

PID = os.getpid()


class Receiver:
    """The service manager's end: a bound SOCK_DGRAM socket that we read datagrams from."""

    def __init__(self, address: str | bytes, notify_socket: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.notify_socket = notify_socket

    def recv(self, timeout: float = 2.0) -> str:
        self.sock.settimeout(timeout)
        return self.sock.recv(65536).decode()

    def pending(self) -> list[str]:
        """Everything queued right now, without waiting."""
        self.sock.setblocking(False)
        out = []
        try:
            while True:
                out.append(self.sock.recv(65536).decode())
        except BlockingIOError:
            return out

    def environ(self, **extra: str) -> dict[str, str]:
        env = {"NOTIFY_SOCKET": self.notify_socket, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(PID)}
        env.update(extra)
        return env


@pytest.fixture
def path_receiver(tmp_path: Path):
    base = tmp_path
    short = None
    if len(str(base / "notify.sock")) > 100:  # sun_path holds 108 bytes
        short = tempfile.TemporaryDirectory(prefix="sdn")
        base = Path(short.name)
    path = str(base / "notify.sock")
    r = Receiver(path, path)
    yield r
    r.sock.close()
    if short is not None:
        short.cleanup()


@pytest.fixture
def abstract_receiver():
    name = f"fumd-test-{uuid.uuid4().hex}"
    r = Receiver(b"\0" + name.encode(), "@" + name)
    yield r
    r.sock.close()


def _sequence(r: Receiver) -> None:
    n = SystemdNotifier(environ=r.environ())
    assert n.enabled and n.watchdog_enabled
    assert n.ready("loaded checkpoint") is True
    assert n.status("cycle 10, 3.2 ms/cycle") is True
    assert n.watchdog() is True
    assert n.extend_timeout(2.5) is True
    assert n.stopping("checkpointing") is True
    assert [r.recv() for _ in range(5)] == [
        f"READY=1\nSTATUS=loaded checkpoint\nMAINPID={PID}",
        "STATUS=cycle 10, 3.2 ms/cycle",
        "WATCHDOG=1",
        "EXTEND_TIMEOUT_USEC=2500000",
        "STOPPING=1\nSTATUS=checkpointing",
    ]
    assert r.pending() == []


def test_sequence_over_path_socket(path_receiver):
    _sequence(path_receiver)


def test_sequence_over_abstract_socket(abstract_receiver):
    _sequence(abstract_receiver)


def test_ready_and_stopping_without_status(path_receiver):
    n = SystemdNotifier(environ=path_receiver.environ())
    assert n.ready() and n.stopping()
    assert [path_receiver.recv(), path_receiver.recv()] == [f"READY=1\nMAINPID={PID}", "STOPPING=1"]


def test_reloading_carries_monotonic_usec(path_receiver):
    n = SystemdNotifier(environ=path_receiver.environ())
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert n.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    first, second = path_receiver.recv().split("\n")
    assert first == "RELOADING=1"
    key, value = second.split("=")
    assert key == "MONOTONIC_USEC" and before <= int(value) <= after


def test_send_joins_fields(path_receiver):
    n = SystemdNotifier(environ=path_receiver.environ())
    assert n.send("STATUS=x", "ERRNO=5", "BUSERROR=a=b")
    assert path_receiver.recv() == "STATUS=x\nERRNO=5\nBUSERROR=a=b"


def test_status_is_kept_on_one_line(path_receiver):
    n = SystemdNotifier(environ=path_receiver.environ())
    n.status("line one\nREADY=1\r\n")
    assert path_receiver.recv() == "STATUS=line one READY=1"


@pytest.mark.parametrize("bad", ["READY", "=1", "A=1\nB=2"])
def test_malformed_fields_are_rejected(path_receiver, bad):
    n = SystemdNotifier(environ=path_receiver.environ())
    with pytest.raises(ValueError):
        n.send(bad)
    assert path_receiver.pending() == []


def test_extend_timeout_rounds_up_and_validates(path_receiver):
    n = SystemdNotifier(environ=path_receiver.environ())
    n.extend_timeout(1e-9)
    n.extend_timeout(0.0000015)
    n.extend_timeout(90)
    assert [path_receiver.recv() for _ in range(3)] == [
        "EXTEND_TIMEOUT_USEC=1", "EXTEND_TIMEOUT_USEC=2", "EXTEND_TIMEOUT_USEC=90000000"]
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            n.extend_timeout(bad)


def test_watchdog_interval_is_half_the_timeout(path_receiver):
    n = SystemdNotifier(environ=path_receiver.environ())
    assert n.watchdog_timeout == 2.0
    assert n.watchdog_interval() == 1.0


def test_watchdog_pid_absent_means_ours(path_receiver):
    env = path_receiver.environ()
    del env["WATCHDOG_PID"]
    assert SystemdNotifier(environ=env).watchdog_interval() == 1.0


def test_watchdog_pid_of_another_process_disables_watchdog(path_receiver):
    n = SystemdNotifier(environ=path_receiver.environ(WATCHDOG_PID=str(PID + 1)))
    assert n.enabled and not n.watchdog_enabled
    assert n.watchdog_interval() is None
    assert n.watchdog() is False
    assert n.set_watchdog_timeout(30) is False
    assert WatchdogPinger(n).maybe_ping() is False
    assert path_receiver.pending() == []
    assert n.status("still notifies") is True  # only the watchdog is not ours
    assert path_receiver.recv() == "STATUS=still notifies"


@pytest.mark.parametrize("usec", ["0", "", "garbage", "-5"])
def test_bad_or_zero_watchdog_usec_disables_watchdog(path_receiver, usec):
    n = SystemdNotifier(environ=path_receiver.environ(WATCHDOG_USEC=usec))
    assert n.watchdog_interval() is None and n.watchdog() is False


def test_disabled_when_notify_socket_unset(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    for n in (SystemdNotifier(), SystemdNotifier(environ={"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(PID)})):
        assert n.enabled is False
        assert n.watchdog_interval() is None
        assert not any([n.ready("x"), n.status("x"), n.watchdog(), n.stopping(), n.reloading(),
                        n.extend_timeout(1), n.send("STATUS=x")])
        with n.busy(100, status="loading"):
            pass
        assert WatchdogPinger(n).maybe_ping() is False


def test_reads_os_environ_by_default(monkeypatch, abstract_receiver):
    monkeypatch.setenv("NOTIFY_SOCKET", abstract_receiver.notify_socket)
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    n = SystemdNotifier()
    assert n.watchdog_interval() == 15.0
    assert n.status("env")
    assert abstract_receiver.recv() == "STATUS=env"


@pytest.mark.parametrize("value", ["relative/path.sock", "@", "vsock:2:1234"])
def test_unsupported_notify_socket_disables(value):
    n = SystemdNotifier(environ={"NOTIFY_SOCKET": value})
    assert not n.enabled and n.ready() is False


def test_send_failure_returns_false(tmp_path):
    missing = SystemdNotifier(environ={"NOTIFY_SOCKET": str(tmp_path / "nobody-here.sock")})
    assert missing.enabled
    assert missing.ready("x") is False
    # A socket file whose owner went away: ECONNREFUSED.
    path = str(tmp_path / "gone.sock") if len(str(tmp_path)) < 90 else None
    if path:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(path)
        s.close()
        assert SystemdNotifier(environ={"NOTIFY_SOCKET": path}).status("x") is False
    unbound = SystemdNotifier(environ={"NOTIFY_SOCKET": f"@fumd-test-{uuid.uuid4().hex}"})
    assert unbound.watchdog() is False


def test_full_queue_does_not_stall_the_caller(path_receiver, monkeypatch):
    """The manager not reading: a send gives up after SEND_TIMEOUT_S instead of blocking."""
    monkeypatch.setattr(sdnotify, "SEND_TIMEOUT_S", 0.02)
    n = SystemdNotifier(environ=path_receiver.environ())
    for i in range(10_000):  # the kernel queues max_dgram_qlen datagrams per receiver
        started = time.monotonic()
        if not n.status(f"{i}"):
            break
    else:
        pytest.fail("the receive queue never filled up")
    assert i > 0
    assert time.monotonic() - started < 1.0  # the failing send gave up, it did not block
    assert path_receiver.pending()[0] == "STATUS=0"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_pinger_rate_limits_with_injected_clock(path_receiver):
    n = SystemdNotifier(environ=path_receiver.environ())
    clock = FakeClock()
    p = WatchdogPinger(n, clock=clock)
    assert p.interval == 1.0 and p.enabled
    sent = []
    for t in [100.0, 100.0, 100.3, 100.99, 101.0, 101.5, 101.999, 102.0, 105.0, 105.2]:
        clock.now = t
        sent.append(p.maybe_ping())
    assert sent == [True, False, False, False, True, False, False, True, True, False]
    assert path_receiver.pending() == ["WATCHDOG=1"] * 4


def test_pinger_forced_ping_restarts_the_interval(path_receiver):
    clock = FakeClock()
    p = WatchdogPinger(SystemdNotifier(environ=path_receiver.environ()), interval=10, clock=clock)
    assert p.maybe_ping()
    clock.now += 5
    assert p.ping()
    clock.now += 9
    assert not p.maybe_ping()
    clock.now += 1
    assert p.maybe_ping()
    assert len(path_receiver.pending()) == 3


def test_pinger_rate_limits_failed_attempts_too():
    clock = FakeClock()
    n = SystemdNotifier(environ={"NOTIFY_SOCKET": f"@fumd-test-{uuid.uuid4().hex}", "WATCHDOG_USEC": "2000000"})
    p = WatchdogPinger(n, clock=clock)
    calls = []
    n.send = lambda *f: calls.append(f) or False  # type: ignore[method-assign]
    for _ in range(100):
        p.maybe_ping()
    assert len(calls) == 1


def test_pinger_disabled_without_watchdog(path_receiver):
    env = path_receiver.environ()
    del env["WATCHDOG_USEC"]
    p = WatchdogPinger(SystemdNotifier(environ=env), clock=FakeClock())
    assert not p.enabled and p.interval is None
    assert p.maybe_ping() is False and p.ping() is False
    assert path_receiver.pending() == []


def test_busy_raises_and_restores_watchdog_for_long_operations(path_receiver):
    n = SystemdNotifier(environ=path_receiver.environ())  # watchdog 2 s
    with n.busy(5, status="writing checkpoint"):
        assert path_receiver.pending() == [
            "STATUS=writing checkpoint",
            "EXTEND_TIMEOUT_USEC=5000000",
            "WATCHDOG_USEC=10000000\nWATCHDOG=1",
        ]
    assert path_receiver.pending() == ["WATCHDOG_USEC=2000000\nWATCHDOG=1"]


def test_busy_restores_watchdog_on_error(path_receiver):
    n = SystemdNotifier(environ=path_receiver.environ())
    with pytest.raises(RuntimeError):
        with n.busy(5):
            raise RuntimeError("disk full")
    assert path_receiver.pending()[-1] == "WATCHDOG_USEC=2000000\nWATCHDOG=1"


def test_busy_short_operation_only_pings(path_receiver):
    n = SystemdNotifier(environ=path_receiver.environ())
    with n.busy(0.1):
        pass
    assert path_receiver.pending() == ["EXTEND_TIMEOUT_USEC=100000", "WATCHDOG=1"]


def test_busy_without_watchdog_never_enables_one(path_receiver):
    env = path_receiver.environ()
    del env["WATCHDOG_USEC"]
    with SystemdNotifier(environ=env).busy(600):
        pass
    assert path_receiver.pending() == ["EXTEND_TIMEOUT_USEC=600000000"]
