"""Issue 14 item 7: a backlog of many files. Admission is bounded (``inbox.max_queued_files``): the
backlog waits in the inbox, in arrival order, and what the daemon holds per scan stays small."""
from __future__ import annotations

import json
import os
import time
import tracemalloc
from pathlib import Path

from fumd.io.inbox import Inbox
from tests.daemon_harness import kill, running, start, status, wait_for, write_config


def _fill(inbox_dir: Path, n: int) -> list[str]:
    names = []
    for i in range(n):
        name = f"r{i:05d}.jsonl"
        tmp = inbox_dir / f".{name}.tmp"
        tmp.write_text(json.dumps({"id": i, "x": [0.5] * 16}) + "\n")
        os.rename(tmp, inbox_dir / name)
        names.append(name)
    return names


def test_admission_of_2000_files_is_bounded_and_keeps_arrival_order(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path, max_file_bytes=10_000, settle_seconds=0)
    names = _fill(inbox.inbox, 2000)
    order: list[str] = []
    tracemalloc.start()
    try:
        while True:
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            admitted, rejected = inbox.admit(limit=50)
            peak = tracemalloc.get_traced_memory()[1] - before
            assert not rejected and len(admitted) <= 50
            assert peak < 4 << 20, f"one scan of the backlog held {peak} bytes"
            assert len(inbox.queued()) <= 50
            assert len(inbox._stable) + len(inbox._events) <= 2000  # per-name state only for names present
            if not admitted:
                break
            for qf in inbox.queued():  # learned and checkpointed
                order.append(qf.name)
                inbox.finish(qf)
    finally:
        tracemalloc.stop()
    assert order == sorted(names) and not inbox.pending_names()  # arrival order (they were renamed in in order)


def test_daemon_keeps_its_queue_bounded_and_reports_the_backlog(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "fumd.toml", every_cycles=5)
    cfg.write_text(cfg.read_text().replace("rescan_seconds = 0.2", "rescan_seconds = 0.2\nmax_queued_files = 8"))
    state = tmp_path / "state"
    (state / "inbox").mkdir(parents=True)
    _fill(state / "inbox", 60)
    proc = start(state, cfg)
    most = 0
    try:
        wait_for(lambda: running(state, proc), what="daemon start")
        import urllib.request

        url = status(state)["metrics_url"]
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        assert "fumd_queue_oldest_age_seconds" in text
        deadline = time.monotonic() + 120
        while len(list((state / "outbox").glob("*.results.jsonl"))) < 60 and time.monotonic() < deadline:
            published = {p.name[: -len(".results.jsonl")] for p in (state / "outbox").glob("*.results.jsonl")}
            unlearned = [p for p in (state / "queue").iterdir() if p.name.split("-", 1)[1] not in published]
            most = max(most, len(unlearned))
            time.sleep(0.02)
        assert len(list((state / "outbox").glob("*.results.jsonl"))) == 60
    finally:
        kill(proc)
    # admitted and not yet learned: never more than max_queued_files (learned files wait in
    # queue/ for a checkpoint too, but they are not the backlog)
    assert 0 < most <= 8
