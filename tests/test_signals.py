"""Issue 14 item 3: signals at any moment. ``fumd run`` takes over SIGHUP/SIGTERM/SIGINT/SIGUSR1
before its heavy imports and defers what arrives until its loop runs: a reload storm through
start-up and shutdown never kills it, and a SIGTERM during start-up is a clean stop (exit 0,
state intact)."""
from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from tests.daemon_harness import (
    drop,
    inspect,
    labelled_files,
    log_events,
    run_to_idle,
    running,
    start,
    wait_for,
    write_config,
)


def _catches(pid: int, sig: int) -> bool:
    """Whether the process has a handler for ``sig`` (SigCgt in /proc/PID/status)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    mask = int(next(line.split()[1] for line in text.splitlines() if line.startswith("SigCgt:")), 16)
    return bool(mask >> (sig - 1) & 1)


def _storm(proc: subprocess.Popen, sig: int, until, every: float = 0.1, limit: float = 120) -> int:
    sent, deadline = 0, time.monotonic() + limit
    while not until() and proc.poll() is None and time.monotonic() < deadline:
        proc.send_signal(sig)
        sent += 1
        time.sleep(every)
    return sent


def test_sighup_every_100_ms_through_start_up_and_shutdown_never_kills(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "fumd.toml", every_cycles=1000)
    state = tmp_path / "state"
    drop(labelled_files(tmp_path / "src", 2, 5), state / "inbox")
    proc = start(state, cfg)
    try:
        handled_after = time.monotonic()
        wait_for(lambda: _catches(proc.pid, signal.SIGHUP) or proc.poll() is not None, timeout=30, what="handlers")
        window = time.monotonic() - handled_after
        assert window < 1.0, f"signal handlers installed only after {window:.2f} s"
        sent = _storm(proc, signal.SIGHUP, lambda: running(state, proc)
                      and len(list((state / "outbox").glob("*.results.jsonl"))) == 2)
        assert proc.poll() is None and sent >= 5
        proc.send_signal(signal.SIGTERM)
        sent += _storm(proc, signal.SIGHUP, lambda: False, limit=60)  # until it has exited
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    events = log_events(tmp_path / "state.log")
    names = [e["event"] for e in events]
    assert "config_reloaded" in names and names[-1] == "stopped"
    assert names.index("config_reloaded") > names.index("started")  # deferred until the loop ran
    assert not [e for e in events if e["level"] == "error"]
    assert inspect(state)["step"] == 10


def test_sigterm_at_any_moment_of_start_up_is_a_clean_stop(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "fumd.toml", every_cycles=1000)
    state = tmp_path / "state"
    drop(labelled_files(tmp_path / "src", 1, 4), state / "inbox")
    run_to_idle(state, cfg)
    before = inspect(state)
    for delay in (0.0, 0.4, 0.9, 1.6, 2.5):  # during imports, restore, the first turns of the loop
        proc = start(state, cfg)
        try:
            spawned = time.monotonic()
            wait_for(lambda proc=proc: _catches(proc.pid, signal.SIGTERM) or proc.poll() is not None, timeout=30,
                     what="handlers")
            assert time.monotonic() - spawned < 1.0, "SIGTERM handled only after the heavy imports"
            time.sleep(delay)
            _storm(proc, signal.SIGTERM, lambda: False, limit=60)  # every 100 ms until it exits
            assert proc.wait(60) == 0, delay
        finally:
            if proc.poll() is None:
                proc.kill()
    after = inspect(state)
    assert after["state_sha256"] == before["state_sha256"] and after["step"] == 4
    events = log_events(tmp_path / "state.log")
    assert not [e for e in events if e["level"] == "error"]
