"""Admission: arrival order, crash remnants, hard links, vanishing files, long names, files the
daemon cannot hard-link (another user's, under ``fs.protected_hardlinks``), files written in place."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

import fumd.io.inbox as inbox_module
from fumd.errors import InputFileError
from fumd.io.feed import feed_files
from fumd.io.inbox import Inbox, QueuedFile
from tests.nonroot import NOBODY, as_nobody, needs_root

GOOD = b'{"text": "hello"}\n'


def _wait_admitted(inbox: Inbox, timeout: float = 10.0) -> list[QueuedFile]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        admitted, rejected = inbox.admit()
        assert not rejected
        if admitted:
            return admitted
        time.sleep(0.05)
    raise AssertionError("nothing admitted")


def test_admission_moves_files_in_arrival_order_and_survives_a_crash_between_link_and_unlink(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path, max_file_bytes=1000, settle_seconds=0)
    for name in ("b.txt", "a.txt"):
        (inbox.inbox / name).write_text("hello")
    order = sorted(os.scandir(inbox.inbox), key=lambda e: (e.stat().st_ctime_ns, e.name))
    admitted, rejected = inbox.admit()
    assert [q.name for q in admitted] == [e.name for e in order]
    assert not rejected and not list(inbox.inbox.iterdir())
    assert [q.seq for q in inbox.queued()] == [0, 1]
    # a crash after os.link and before os.unlink leaves the same inode in inbox/ and queue/
    (inbox.inbox / "c.txt").write_text("again")
    os.link(inbox.inbox / "c.txt", inbox.queue / "0000000002-c.txt")
    events: list[tuple[str, dict]] = []
    # settle_seconds: the remnant is recognised at the first scan even though its link just changed its ctime
    restarted = Inbox(tmp_path, max_file_bytes=1000, settle_seconds=30,
                      on_problem=lambda e, **kw: events.append((e, kw)))
    assert restarted.next_seq == 3
    admitted, rejected = restarted.admit()
    assert admitted == [] and rejected == [] and not (restarted.inbox / "c.txt").exists()
    assert [q.name for q in restarted.queued()] == [e.name for e in order] + ["c.txt"]
    assert events and events[0][0] == "admission_completed"  # logged, not silent


def test_dot_files_and_temporary_names_are_left_alone(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path, max_file_bytes=1000, settle_seconds=0)
    for name in (".hidden.jsonl", "x.jsonl.tmp", "y.part", "z~"):
        (inbox.inbox / name).write_text("{}")
    assert inbox.admit() == ([], [])
    assert sorted(p.name for p in inbox.inbox.iterdir()) == [".hidden.jsonl", "x.jsonl.tmp", "y.part", "z~"]


def test_a_hard_link_dropped_twice_is_two_inputs_and_never_silently_removed(tmp_path: Path) -> None:
    """Issue 10 item 5: ``ln src inbox/a.jsonl``, admitted; ``ln src inbox/b.jsonl`` before a
    checkpoint: b is a second input (it used to be unlinked as a 'crash remnant')."""
    src = tmp_path / "src.jsonl"
    src.write_bytes(GOOD)
    inbox = Inbox(tmp_path / "state", max_file_bytes=1000, settle_seconds=0)
    os.link(src, inbox.inbox / "a.jsonl")
    assert [q.name for q in inbox.admit()[0]] == ["a.jsonl"]
    os.link(src, inbox.inbox / "b.jsonl")
    assert [q.name for q in inbox.admit()[0]] == ["b.jsonl"]
    # after a restart too, and under the same name as the newest queued file
    restarted = Inbox(tmp_path / "state", max_file_bytes=1000, settle_seconds=0)
    os.link(src, restarted.inbox / "b.jsonl")
    admitted, rejected = restarted.admit()
    assert [(q.seq, q.name) for q in admitted] == [(2, "b.jsonl")] and not rejected
    assert [q.name for q in restarted.queued()] == ["a.jsonl", "b.jsonl", "b.jsonl"]
    assert all(q.path.read_bytes() == GOOD for q in restarted.queued())


def test_a_file_deleted_during_admission_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 10 item 3: the producer deletes a file between the scan and the link (or the rename
    fallback, or the move of a rejected file to failed/): skipped, no number used, no crash."""
    inbox = Inbox(tmp_path, max_file_bytes=1000, settle_seconds=0)
    for name in ("gone-before-link.jsonl", "gone-before-rename.jsonl", "bad\\gone.jsonl", "kept.jsonl"):
        (inbox.inbox / name).write_bytes(GOOD)
    real_link, real_rename = os.link, os.rename

    def link(src: Any, dst: Any, **kw: Any) -> None:
        if "gone-before-link" in str(src):
            os.unlink(src)
        if "gone-before-rename" in str(src):
            raise PermissionError(1, "Operation not permitted")  # -> the rename fallback
        return real_link(src, dst, **kw)

    def rename(src: Any, dst: Any) -> None:
        if "gone" in str(src) and Path(src).parent == inbox.inbox:
            os.unlink(src)
        return real_rename(src, dst)

    monkeypatch.setattr(inbox_module.os, "link", link)
    monkeypatch.setattr(inbox_module.os, "rename", rename)
    monkeypatch.setattr(inbox_module.os, "replace", rename)
    admitted, rejected = inbox.admit()
    assert [(q.seq, q.name) for q in admitted] == [(0, "kept.jsonl")] and rejected == []
    assert sorted(os.listdir(inbox.failed)) == [] and sorted(os.listdir(inbox.inbox)) == []
    assert inbox.next_seq == 1


def test_deleting_files_while_they_are_admitted(tmp_path: Path) -> None:
    """Issue 10 item 3 as reported: 300 files renamed in, the last 100 deleted as soon as the
    first reaches queue/. Every file is admitted exactly once or was deleted; nothing raises."""
    inbox = Inbox(tmp_path, max_file_bytes=1000, settle_seconds=0)
    for i in range(300):
        (inbox.inbox / f"f{i:03d}.jsonl").write_bytes(GOOD)
    stop = threading.Event()
    deleted: set[str] = set()

    def deleter() -> None:
        while not os.listdir(inbox.queue) and not stop.is_set():
            time.sleep(0.0005)
        for i in range(200, 300):
            try:
                os.unlink(inbox.inbox / f"f{i:03d}.jsonl")
                deleted.add(f"f{i:03d}.jsonl")
            except FileNotFoundError:
                pass

    thread = threading.Thread(target=deleter)
    thread.start()
    try:
        admitted, rejected = inbox.admit()
        admitted += inbox.admit()[0]
    finally:
        stop.set()
        thread.join()
    names = [q.name for q in admitted]
    assert not rejected and len(names) == len(set(names))
    assert set(names) | deleted == {f"f{i:03d}.jsonl" for i in range(300)} and not set(names) & deleted
    assert [q.seq for q in inbox.queued()] == list(range(len(names)))  # no gaps, no crash


def test_a_long_multibyte_name_is_rejected_not_fatal(tmp_path: Path) -> None:
    """Issue 10 item 2: 246 bytes of '€' (80 characters): bad_name, and the names in failed/ fit
    NAME_MAX (the old code cut to 200 *characters* = 600 bytes and crashed)."""
    inbox = Inbox(tmp_path, max_file_bytes=1000, settle_seconds=0)
    name = "€" * 80 + ".jsonl"
    (inbox.inbox / name).write_bytes(GOOD)
    admitted, rejected = inbox.admit()
    assert admitted == [] and [r.reason for r in rejected] == ["bad_name"]
    files = os.listdir(inbox.failed)
    assert len(files) == 2 and all(len(os.fsencode(f)) <= 255 for f in files)
    report = json.loads((inbox.failed / next(f for f in files if f.endswith(".error.json"))).read_text())
    assert report["file"] == name and report["reason"] == "bad_name" and "200 bytes" in report["message"]


def test_a_file_removed_from_queue_by_hand_fails_without_a_crash(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path, max_file_bytes=1000, settle_seconds=0)
    (inbox.inbox / "a.jsonl").write_bytes(GOOD)
    (qf,) = inbox.admit()[0]
    os.unlink(qf.path)
    with pytest.raises(FileNotFoundError):
        inbox.read(qf)
    rejection = inbox.fail(qf, InputFileError("unreadable", "a.jsonl: cannot read: gone"))
    report = json.loads((inbox.failed / "0000000000-a.jsonl.error.json").read_text())
    assert rejection.reason == "unreadable" and report["moved_to"] is None and "gone" in report["message"]
    inbox.finish(qf)  # nothing to move: no error either
    inbox.requeue(qf)


def test_a_file_that_cannot_be_hard_linked_is_renamed_into_the_queue(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 10 item 1 without root: os.link refused (EPERM, as under fs.protected_hardlinks for
    another user's file) -> the file is renamed into queue/ instead."""
    inbox = Inbox(tmp_path, max_file_bytes=1000, settle_seconds=0)
    (inbox.inbox / "root-owned.jsonl").write_bytes(GOOD)

    def refuse(*_a: Any, **_k: Any) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(inbox_module.os, "link", refuse)
    admitted, rejected = inbox.admit()
    assert [q.name for q in admitted] == ["root-owned.jsonl"] and not rejected
    assert admitted[0].path.read_bytes() == GOOD and not os.listdir(inbox.inbox)


@pytest.fixture
def nobody_state() -> Any:
    """A state directory owned by uid 65534, mode 0700, on a path that uid can reach."""
    base = Path(tempfile.mkdtemp(prefix="fumd-nobody-", dir="/tmp"))
    os.chmod(base, 0o755)
    state = base / "state"
    state.mkdir(mode=0o700)
    os.chown(state, NOBODY, NOBODY)
    yield state
    shutil.rmtree(base)


@needs_root
def test_root_owned_files_are_admitted_by_a_non_root_daemon(nobody_state: Path) -> None:
    """Issue 10 item 1 as shipped: the daemon runs as another uid (DynamicUser=), root drops files
    (``sudo cp``, ``sudo fumd feed``). With fs.protected_hardlinks = 1 os.link fails for root's
    files: they are renamed in instead. A file the daemon cannot read fails as unreadable; `fumd
    feed` run as root hands its copy to the inbox's owner."""
    state = nobody_state

    def setup() -> None:
        Inbox(state, max_file_bytes=1000, settle_seconds=0)

    as_nobody(setup)
    inbox_dir = state / "inbox"
    for name, mode in (("root-readable.jsonl", 0o644), ("root-private.jsonl", 0o600)):
        tmp = inbox_dir / f".{name}.tmp"
        tmp.write_bytes(GOOD)
        os.chmod(tmp, mode)
        os.rename(tmp, inbox_dir / name)  # root-owned, like `sudo cp` would leave it
    src = state.parent / "fed.jsonl"
    src.write_bytes(GOOD)
    (placed,) = feed_files([src], inbox_dir)
    assert (placed.stat().st_uid, placed.stat().st_gid) == (NOBODY, NOBODY)

    def daemon_side() -> dict[str, Any]:
        inbox = Inbox(state, max_file_bytes=1000, settle_seconds=0)
        admitted, rejected = inbox.admit()
        out: dict[str, Any] = {"admitted": sorted(q.name for q in admitted), "rejected": [r.reason for r in rejected],
                               "read": {}}
        for qf in inbox.queued():
            try:
                out["read"][qf.name] = inbox.read(qf).decode()
                inbox.finish(qf)
            except PermissionError as exc:
                out["read"][qf.name] = "PermissionError"
                inbox.fail(qf, InputFileError("unreadable", f"{qf.name}: cannot read: {exc.strerror}"))
        out["inbox"] = sorted(os.listdir(inbox.inbox))
        out["failed"] = sorted(os.listdir(inbox.failed))
        out["done"] = sorted(os.listdir(inbox.done))
        return out

    got = as_nobody(daemon_side)
    assert got["admitted"] == ["fed.jsonl", "root-private.jsonl", "root-readable.jsonl"] and got["rejected"] == []
    assert got["read"] == {"root-readable.jsonl": GOOD.decode(), "root-private.jsonl": "PermissionError",
                           "fed.jsonl": GOOD.decode()}
    assert got["inbox"] == [] and len(got["done"]) == 2
    assert [f for f in got["failed"]
            if f.endswith(".error.json")] == [f for f in got["failed"] if "root-private" in f and f.endswith(".json")]


def test_feed_as_the_inbox_owner_keeps_the_file_private_and_renames_it_in(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "state", max_file_bytes=1000, settle_seconds=0)
    src = tmp_path / "x.jsonl"
    src.write_bytes(GOOD)
    first, second = feed_files([src, src], inbox.inbox)
    assert (first.name, second.name) == ("x.jsonl", "x-1.jsonl")
    assert first.read_bytes() == GOOD and not [p for p in inbox.inbox.iterdir() if p.name.startswith(".")]


# -- files written in place (issue 10 item 10) ---------------------------------------------------

def _slow_write(path: Path, chunks: list[bytes], pause: float, during: Callable[[], None]) -> None:
    with open(path, "wb") as fh:
        for chunk in chunks:
            fh.write(chunk)
            fh.flush()
            time.sleep(pause)
            during()


def test_a_file_written_in_place_waits_for_its_writer_to_close_it(tmp_path: Path) -> None:
    """``cp big.jsonl inbox/`` with a slow writer: inotify says it is being written, so nothing is
    admitted until it is closed, even across pauses far longer than settle_seconds."""
    inbox = Inbox(tmp_path, max_file_bytes=10**6, settle_seconds=0.1)
    assert inbox.watch(lambda: None), "inotify is needed for this test"
    try:
        lines = [json.dumps({"id": i, "text": f"record {i}"}).encode() + b"\n" for i in range(5)]

        def nothing_yet() -> None:
            assert inbox.admit() == ([], [])

        _slow_write(inbox.inbox / "slow.jsonl", lines, 0.4, nothing_yet)
        (qf,) = _wait_admitted(inbox)
        assert qf.path.read_bytes() == b"".join(lines)
    finally:
        inbox.close()


def test_renamed_and_hard_linked_files_are_admitted_at_once_when_watching(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "state", max_file_bytes=10**6, settle_seconds=30)
    assert inbox.watch(lambda: None)
    try:
        src = tmp_path / "src.jsonl"
        src.write_bytes(GOOD)
        feed_files([src], inbox.inbox)  # a rename inside the inbox
        assert [q.name for q in _wait_admitted(inbox, timeout=5)] == ["src.jsonl"]
        os.link(src, inbox.inbox / "linked.jsonl")
        assert [q.name for q in _wait_admitted(inbox, timeout=5)] == ["linked.jsonl"]
        shutil.copy(src, tmp_path / "outside.jsonl")
        os.rename(tmp_path / "outside.jsonl", inbox.inbox / "moved.jsonl")  # from outside the inbox
        assert [q.name for q in _wait_admitted(inbox, timeout=5)] == ["moved.jsonl"]
    finally:
        inbox.close()


def test_without_events_a_file_is_admitted_once_it_has_settled(tmp_path: Path) -> None:
    """Polling only (no inotify): a file still growing is left alone until its size and times have
    not changed for settle_seconds."""
    inbox = Inbox(tmp_path, max_file_bytes=10**6, settle_seconds=1.0)
    lines = [json.dumps({"id": i, "text": f"record {i}"}).encode() + b"\n" for i in range(8)]

    def nothing_yet() -> None:
        assert inbox.admit() == ([], [])

    _slow_write(inbox.inbox / "slow.jsonl", lines, 0.1, nothing_yet)
    assert inbox.admit() == ([], []) and inbox.pending_names() == ["slow.jsonl"]
    assert 0 < (inbox.next_check_in() or 0) <= 1.0
    started = time.monotonic()
    (qf,) = _wait_admitted(inbox)
    assert time.monotonic() - started >= 0.5 and qf.path.read_bytes() == b"".join(lines)


def test_a_file_that_cannot_be_moved_at_all_stays_and_is_reported_once(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A sticky inbox with another user's file: neither link+unlink nor rename can move it. It
    stays in the inbox, is reported once, no longer counts as pending, and nothing raises."""
    events: list[tuple[str, dict]] = []
    inbox = Inbox(tmp_path, max_file_bytes=1000, settle_seconds=0, on_problem=lambda e, **kw: events.append((e, kw)))
    (inbox.inbox / "stuck.jsonl").write_bytes(GOOD)
    (inbox.inbox / "bad name\\.jsonl").write_bytes(GOOD)
    real_unlink, real_replace = os.unlink, os.replace

    def unlink(path: Any, *a: Any, **k: Any) -> None:
        if Path(path).parent == inbox.inbox:
            raise PermissionError(1, "Operation not permitted")
        return real_unlink(path, *a, **k)

    def replace(src: Any, dst: Any) -> None:
        if Path(src).parent == inbox.inbox:
            raise PermissionError(1, "Operation not permitted")
        return real_replace(src, dst)

    monkeypatch.setattr(inbox_module.os, "unlink", unlink)
    monkeypatch.setattr(inbox_module.os, "replace", replace)
    for _ in range(3):
        assert inbox.admit() == ([], [])
    assert [e for e, _ in events] == ["input_stuck", "input_stuck"]  # once per file, not per scan
    assert inbox.pending_names() == [] and not os.listdir(inbox.queue) and not os.listdir(inbox.failed)
    assert sorted(os.listdir(inbox.inbox)) == ["bad name\\.jsonl", "stuck.jsonl"]
    monkeypatch.undo()
    admitted, rejected = inbox.admit()  # fixed (permissions): admitted on the next scan
    assert [q.name for q in admitted] == ["stuck.jsonl"] and [r.reason for r in rejected] == ["bad_name"]
