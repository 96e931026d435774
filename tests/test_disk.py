"""Issue 14 item 2: the disk stays bounded (retention) and a full disk pauses the daemon instead
of crashing it (ENOSPC on a results write, a checkpoint, an admission), with a fault-injection
shim on ``os.write``: every byte the daemon must not lose is written through it."""
from __future__ import annotations

import errno
import json
import os
import threading
import time
from pathlib import Path

import pytest

import fumd.daemon.diskspace as diskspace
from fumd.daemon.config import load_config
from fumd.daemon.service import Daemon
from fumd.daemon.signals import SignalLatch
from fumd.io.retention import Limits, measure, prune_by_seq, prune_outbox
from fumd.ops.logging import configure_logging
from fumd.persistence.checkpoint import inspect_checkpoint, list_checkpoints
from tests.daemon_harness import drop, labelled_files, wait_for, write_config


# -- retention ----------------------------------------------------------------------------------
def test_outbox_retention_removes_oldest_results_only(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    (outbox / ".partial").mkdir(parents=True)
    (outbox / ".partial" / "0000000001.jsonl").write_text("x" * 500)
    (outbox / "consumer-notes.txt").write_text("not ours")
    for i in range(10):
        p = outbox / f"f{i}.jsonl.results.jsonl"
        p.write_text("y" * 100)
        os.utime(p, (1000 + i, 1000 + i))
    assert prune_outbox(outbox, Limits(max_files=6)) == (4, 400)
    assert sorted(p.name for p in outbox.glob("*.results.jsonl"))[0] == "f4.jsonl.results.jsonl"
    assert prune_outbox(outbox, Limits(max_bytes=250)) == (4, 400)
    assert [p.name for p in outbox.glob("*.results.jsonl")] == ["f9.jsonl.results.jsonl", "f8.jsonl.results.jsonl"] or \
        sorted(p.name for p in outbox.glob("*.results.jsonl")) == ["f8.jsonl.results.jsonl", "f9.jsonl.results.jsonl"]
    # age counts from the later of mtime and ctime (when the file reached the directory)
    assert prune_outbox(outbox, Limits(max_age_s=3600), now=time.time() + 7200) == (2, 200)
    assert (outbox / "consumer-notes.txt").exists() and (outbox / ".partial" / "0000000001.jsonl").exists()


def test_done_and_failed_retention_by_sequence(tmp_path: Path) -> None:
    done, failed = tmp_path / "done", tmp_path / "failed"
    done.mkdir()
    failed.mkdir()
    for seq in range(6):
        (done / f"{seq:010d}-in{seq}.jsonl").write_text("z" * 10)
        (failed / f"{seq:010d}-bad{seq}.json").write_text("b" * 10)
        (failed / f"{seq:010d}-bad{seq}.json.error.json").write_text("{}")
    (failed / "0000000099-adir.jsonl").mkdir()  # a rejected directory
    # done/: never at or above the oldest checkpoint's ledger position
    assert prune_by_seq(done, Limits(max_files=1), below=3) == (2, 20)
    assert sorted(p.name[:10] for p in done.iterdir()) == ["0000000002", "0000000003", "0000000004", "0000000005"]
    # failed/: a file and its report go together
    assert prune_by_seq(failed, Limits(max_files=2))[0] == 5
    assert sorted(p.name for p in failed.iterdir()) == ["0000000005-bad5.json", "0000000005-bad5.json.error.json",
                                                        "0000000099-adir.jsonl"]
    assert measure(tmp_path) == 4 * 10 + 10 + 2


# -- disk full ----------------------------------------------------------------------------------
class _FullDisk:
    """``os.write`` raises ENOSPC for files under ``root`` while ``full`` is set."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch):
        self.root = str(root)
        self.full = threading.Event()
        self.refused = 0
        self.results_writes_until_full: int | None = None  # arm: full after this many results writes
        real = os.write

        def write(fd: int, data) -> int:
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                target = ""
            if self.results_writes_until_full is not None and "/outbox/.partial/" in target:
                self.results_writes_until_full -= 1
                if self.results_writes_until_full < 0:  # the last bytes that fit: a short write
                    self.results_writes_until_full = None
                    self.full.set()
                    return real(fd, bytes(data[: max(1, len(data) // 2)]))
            if self.full.is_set():
                if target.startswith(self.root):
                    self.refused += 1
                    raise OSError(errno.ENOSPC, "No space left on device")
            return real(fd, data)

        monkeypatch.setattr(os, "write", write)


def _events(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def test_disk_full_pauses_and_resumes_without_loss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    cfg_path = write_config(tmp_path / "fumd.toml", every_cycles=4)
    cfg_path.write_text(cfg_path.read_text().replace("[metrics]\nport = 0", "[metrics]\nenabled = false"))
    config = load_config(cfg_path)
    configure_logging("info", "json")
    state = tmp_path / "state"
    inputs = labelled_files(tmp_path / "src", 3, 6)
    drop(inputs, state / "inbox")
    disk = _FullDisk(state, monkeypatch)
    disk.results_writes_until_full = 5  # the disk fills up in the middle of the first file
    monkeypatch.setattr(diskspace.DiskGuard, "retry_seconds", 0.1)
    daemon = Daemon(state, config, None, environ={}, signals=SignalLatch())
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(daemon.run()), daemon=True)
    thread.start()
    try:
        # 1. results write and checkpoints: full in the middle of the stream
        wait_for(lambda: daemon.disk.paused, what="pause")
        held = daemon.engine.steps_done
        time.sleep(1.0)
        assert thread.is_alive() and daemon.engine.steps_done <= held + 1  # learning paused
        assert daemon.metrics.disk_full._value.get() == 1
        # a checkpoint write in flight when the disk filled fails and removes its temporary
        # directory (on a loaded machine that can take longer than the second above)
        wait_for(lambda: daemon.checkpoints.pending is None, what="the checkpoint in flight to end")
        assert not list((state / "checkpoints").glob(".tmp-*"))  # no torn checkpoint left
        disk.full.clear()
        wait_for(lambda: len(list((state / "outbox").glob("*.results.jsonl"))) == 3, what="all results after the pause")
        daemon.signals.checkpoint = True  # as SIGUSR1 does
        daemon.wake.set()
        wait_for(lambda: not list((state / "queue").iterdir()), what="a checkpoint covering everything")
        wait_for(lambda: daemon.checkpoints.pending is None and not daemon.signals.checkpoint,
                 what="no checkpoint in flight")
        assert daemon.metrics.disk_full._value.get() == 0

        # 2. admission: the report of a rejected input cannot be written
        disk.full.set()
        bad = state / "inbox" / "bad.exe"
        tmp = state / "inbox" / ".bad.tmp"
        tmp.write_text("{not json")
        os.rename(tmp, bad)
        wait_for(lambda: daemon.disk.paused or list((state / "failed").glob("*.error.json")), what="admission attempt")
        time.sleep(0.5)
        assert not list((state / "failed").glob("*.error.json"))
        disk.full.clear()
        wait_for(lambda: list((state / "failed").glob("*.error.json")), what="rejection after the pause")
    finally:
        daemon.signals.stop = True
        daemon.wake.set()
        thread.join(60)
    assert codes == [0] and disk.refused > 0
    events = _events(capsys.readouterr().out)
    full = [e for e in events if e["event"] == "disk_full"]
    assert [e["where"] for e in full] == ["results", "admission"]  # logged once per episode
    assert sum(e["event"] == "disk_space_returned" for e in events) == 2
    for path in inputs:
        lines = (state / "outbox" / f"{path.name}.results.jsonl").read_text().splitlines()
        assert [json.loads(line)["record"] for line in lines] == list(range(6))  # none lost, none torn
    newest = inspect_checkpoint(list_checkpoints(state / "checkpoints")[0])
    assert newest["step"] == 18
    assert json.loads(next((state / "failed").glob("*.error.json")).read_text())["reason"] == "unsupported_extension"
