import os
from pathlib import Path

from fumd.io.inbox import Inbox


def test_admission_moves_files_in_arrival_order_and_survives_a_crash_between_link_and_unlink(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path, max_file_bytes=1000)
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
    restarted = Inbox(tmp_path, max_file_bytes=1000)
    assert restarted.next_seq == 3
    admitted, rejected = restarted.admit()
    assert admitted == [] and rejected == [] and not (restarted.inbox / "c.txt").exists()
    assert [q.name for q in restarted.queued()] == [e.name for e in order] + ["c.txt"]


def test_dot_files_and_temporary_names_are_left_alone(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path, max_file_bytes=1000)
    for name in (".hidden.jsonl", "x.jsonl.tmp", "y.part", "z~"):
        (inbox.inbox / name).write_text("{}")
    assert inbox.admit() == ([], [])
    assert sorted(p.name for p in inbox.inbox.iterdir()) == [".hidden.jsonl", "x.jsonl.tmp", "y.part", "z~"]
