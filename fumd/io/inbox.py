"""The watched inbox and the daemon's queue of admitted files.

Life of an input file (all moves are renames or links inside the state directory, fsynced):

    inbox/NAME ──admit (link + unlink, or rename)──> queue/SEQ-NAME ──learned + covered by a checkpoint──> done/SEQ-NAME
         └──────────────────── rejected ────────────────────> failed/SEQ-NAME + failed/SEQ-NAME.error.json

* A file is admitted once it is complete:
  - renamed into the inbox (the safe way: ``fumd feed``, or write a dot-file / ``*.tmp`` and rename
    it), or closed by the process that wrote it in place (``cp big.jsonl inbox/``): inotify's
    IN_MOVED_TO / IN_CLOSE_WRITE, reported by watchdog, admit it at once;
  - where no such event is known (no inotify, files already there at start-up, events lost): once
    its size, modification and change times have stayed the same for ``settle_seconds``;
  - a file seen being written whose close never arrives (inotify queue overflow) after
    ``STALE_WRITE_FACTOR`` x ``settle_seconds`` (at least 60 s) without change.
  Dot-files and temporary names (``*.tmp``, ``*.part``, ``*.partial``, ``*~``, ``*.swp``,
  ``*.crdownload``) are never admitted.
* Admission gives every file a sequence number in arrival order (inode change time, then name):
  the queue order is fixed once, so a replay after a crash takes the inputs in the same order.
* Filesystem events only wake the loop early and say whether a file is still being written; the
  start-up scan plus a periodic rescan is the truth, because inotify drops events when its queue
  overflows.
* Nothing in the inbox is ever followed or opened before it is known to be a regular file: a
  symlink is moved (the link itself, never its target), like a directory or a FIFO, to ``failed/``.
* Files the daemon cannot hard-link (owned by another user under ``fs.protected_hardlinks = 1``,
  the default on most distributions: ``sudo fumd feed`` into a ``DynamicUser=`` daemon) are
  renamed into the queue instead. A file it cannot read fails as ``unreadable``; one it cannot
  even move (a sticky inbox) is left where it is and reported once in the log.
* A file that vanishes while it is being admitted (deleted by its producer) is skipped.
"""
from __future__ import annotations

import os
import re
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import InputFileError
from .atomic import atomic_write_json, durable_rename, fsync_dir
from .readers import SUPPORTED_EXTENSIONS, extension_of

_TEMP_SUFFIXES = (".tmp", ".part", ".partial", "~", ".swp", ".crdownload")
_SEQ_NAME = re.compile(r"^(\d{10})-(.+)$")
_MAX_NAME_BYTES = 200  # + "SEQ-" (11) + ".error.json" (11) stays under NAME_MAX (255 bytes)
STALE_WRITE_FACTOR = 30  # a file seen being written but never closed: admitted after this x settle_seconds unchanged
_STALE_WRITE_MIN_S = 60.0

# what the inotify events say about a name in the inbox
_CREATED, _WRITING, _COMPLETE = "created", "writing", "complete"


@dataclass(frozen=True)
class QueuedFile:
    seq: int
    name: str  # the name the producer gave it
    path: Path  # where it is now (queue/)
    admitted_at: float  # wall time of admission (for latency)


@dataclass(frozen=True)
class Rejection:
    seq: int
    name: str
    reason: str
    message: str


def is_ignored(name: str) -> bool:
    return name.startswith(".") or name.endswith(_TEMP_SUFFIXES)


class Inbox:
    """Scans ``inbox/``, admits files into ``queue/``, moves them on to ``done/`` or ``failed/``.

    ``on_problem(event, **fields)`` is told (once per file) about a file that cannot be admitted
    or rejected at all, and about crash-recovery actions; the daemon logs them."""

    def __init__(self, state_dir: Path, max_file_bytes: int, min_seq: int = 0, settle_seconds: float = 1.0,
                 on_problem: Callable[..., None] | None = None):
        self.inbox = state_dir / "inbox"
        self.queue = state_dir / "queue"
        self.done = state_dir / "done"
        self.failed = state_dir / "failed"
        for d in (self.inbox, self.queue, self.done, self.failed):
            d.mkdir(parents=True, exist_ok=True)
        self.max_file_bytes = max_file_bytes
        self.settle_seconds = settle_seconds
        self.on_problem = on_problem
        highest, self._link_remnant = self._scan_existing()
        self.next_seq = max(min_seq, highest + 1)
        self._observer: Any = None
        self._lock = threading.Lock()
        self._events: dict[str, tuple[str, float]] = {}  # name -> (what inotify said, monotonic time)
        self._tracks_writes = False  # True with inotify: created/modified/closed events are reported
        self._stable: dict[str, tuple[tuple[int, ...], float, float]] = {}  # name -> (stat key, unchanged since, wait)
        self._stuck: dict[str, tuple[int, ...]] = {}  # name -> content key of a file that cannot be moved

    # -- admission ------------------------------------------------------------------------
    def pending_names(self) -> list[str]:
        """Names in the inbox that will be admitted or rejected (complete or not yet)."""
        names = []
        for entry in self._scan_inbox():
            if is_ignored(entry.name):
                continue
            if entry.name in self._stuck:
                try:
                    if _content_key(entry.stat(follow_symlinks=False)) == self._stuck[entry.name]:
                        continue
                except FileNotFoundError:
                    continue
            names.append(entry.name)
        return names

    def waiting(self) -> tuple[int, float | None]:
        """How many files wait in the inbox (as ``pending_names``), and the change time of the
        oldest (the backlog's age when the queue is full)."""
        count, oldest = 0, None
        for name in self.pending_names():
            count += 1
            try:
                ctime = os.lstat(self.inbox / name).st_ctime
            except FileNotFoundError:
                continue
            oldest = ctime if oldest is None else min(oldest, ctime)
        return count, oldest

    def admit(self, limit: int | None = None) -> tuple[list[QueuedFile], list[Rejection]]:
        """Move complete files from inbox/ into queue/ (or failed/), in arrival order; at most
        ``limit`` into queue/ (a bounded queue: a backlog of thousands of files waits in the inbox,
        where it costs the daemon nothing, and arrival order is kept because the oldest go first)."""
        scan_started = time.monotonic()
        entries = []
        present = set()
        for entry in self._scan_inbox():
            if is_ignored(entry.name):
                continue
            present.add(entry.name)
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:  # raced with its producer
                continue
            entries.append((st.st_ctime_ns, entry.name, st))
        self._forget_absent(present, scan_started)
        if self._link_remnant is not None:  # only the first scan after a start can meet one
            entries = [e for e in entries if not self._is_link_remnant(e[1], e[2])]
            self._link_remnant = None
        admitted: list[QueuedFile] = []
        rejected: list[Rejection] = []
        for _, name, st in sorted(entries):
            if limit is not None and len(admitted) >= limit:
                break
            if not self._complete(name, st, scan_started):
                continue
            seq = self.next_seq
            problem = self._check(name, st)
            if problem is not None:
                rejection = self._reject(self.inbox / name, seq, name, problem, st.st_size, st=st)
                if rejection is not None:
                    self.next_seq += 1
                    rejected.append(rejection)
                continue
            queued = self._move_in(name, seq, st)
            if queued is not None:
                self.next_seq += 1
                admitted.append(queued)
        return admitted, rejected

    def _scan_inbox(self) -> list[os.DirEntry]:
        try:
            return list(os.scandir(self.inbox))
        except FileNotFoundError:  # removed by hand: recreated (a restart would do the same)
            self.inbox.mkdir(parents=True, exist_ok=True)
            self._tracks_writes = False  # the watch was on the old directory: settle by polling
            return []

    def _move_in(self, name: str, seq: int, st: os.stat_result) -> QueuedFile | None:
        src = self.inbox / name
        target = self.queue / f"{seq:010d}-{name}"
        # link + unlink rather than rename: a rename out of the watched inbox is an
        # IN_MOVED_FROM, which watchdog holds back 0.5 s (to pair moves) and which delays every
        # later inbox event behind it (measured: 300 ms median latency instead of 50 ms).
        try:
            os.link(src, target, follow_symlinks=False)
        except FileNotFoundError:
            return None  # deleted by its producer since the scan
        except FileExistsError:  # a stray entry with that number (put there by hand)
            self.next_seq += 1  # skip the number; the next scan tries again
            return None
        except OSError:
            # EPERM under fs.protected_hardlinks (a file of another user), EMLINK, a filesystem
            # without hard links: a rename works wherever the directories are writable
            try:
                os.rename(src, target)
            except FileNotFoundError:
                return None
            except OSError as exc:
                self._stuck_file(name, st, f"cannot move it into queue/: {exc.strerror or exc}")
                return None
            fsync_dir(self.queue)
            fsync_dir(self.inbox)
        else:
            fsync_dir(self.queue)
            try:
                os.unlink(src)
            except FileNotFoundError:
                pass
            except OSError as exc:  # e.g. another user's file in a sticky inbox: undo, report once
                os.unlink(target)
                fsync_dir(self.queue)
                self._stuck_file(name, st, f"cannot remove it from the inbox: {exc.strerror or exc}")
                return None
            fsync_dir(self.inbox)
        self._stuck.pop(name, None)
        with self._lock:
            self._events.pop(name, None)
        self._stable.pop(name, None)
        return QueuedFile(seq, name, target, time.time())

    def _complete(self, name: str, st: os.stat_result, now: float) -> bool:
        """Whether the writer of ``name`` is done with it (see the module docstring)."""
        if not stat.S_ISREG(st.st_mode):
            return True  # rejected at once: nothing to wait for
        with self._lock:
            said, _when = self._events.get(name, (None, 0.0))
        if said == _COMPLETE:
            return True
        if said == _CREATED and st.st_nlink > 1:
            return True  # a hard link to an existing file: nothing is written through it
        writing = self._tracks_writes and said in (_CREATED, _WRITING)
        wait = max(_STALE_WRITE_MIN_S, STALE_WRITE_FACTOR * self.settle_seconds) if writing else self.settle_seconds
        if wait <= 0:
            return True
        key = _key(st)
        previous = self._stable.get(name)
        since = now if previous is None or previous[0] != key else previous[1]
        self._stable[name] = (key, since, wait)
        unchanged_for = max(now - since, time.time() - max(st.st_mtime, st.st_ctime))
        return unchanged_for >= wait

    def next_check_in(self) -> float | None:
        """Seconds until a file waiting to settle may be complete (None: none is waiting)."""
        now = time.monotonic()
        due = [since + wait - now for name, (_k, since, wait) in self._stable.items() if name not in self._stuck]
        return max(0.05, min(due)) if due else None

    def _forget_absent(self, present: set[str], scan_started: float) -> None:
        for name in [n for n in self._stable if n not in present]:
            del self._stable[name]
        for name in [n for n in self._stuck if n not in present]:
            del self._stuck[name]
        with self._lock:
            for name in [n for n, (_, when) in self._events.items() if n not in present and when < scan_started]:
                del self._events[name]

    def _is_link_remnant(self, name: str, st: os.stat_result) -> bool:
        """A crash between ``os.link`` and ``os.unlink`` leaves the last admitted file both here and
        in queue/: same name, same inode, and no third link. Only then is its admission finished
        (and logged). Anything else with that inode, such as the same file hard-linked into the
        inbox again while the first copy waits in queue/ (``ln src inbox/b.jsonl``), is a new
        input: a doubt ends in learning a file twice, never in losing one."""
        remnant_name, ino, dev = self._link_remnant  # type: ignore[misc]
        if name != remnant_name or st.st_ino != ino or st.st_dev != dev or st.st_nlink != 2:
            return False
        try:
            os.unlink(self.inbox / name)
        except FileNotFoundError:
            pass
        fsync_dir(self.inbox)
        if self.on_problem is not None:
            self.on_problem("admission_completed", file=name,
                            hint="the daemon stopped between queueing the file and removing it from the inbox")
        return True

    def _stuck_file(self, name: str, st: os.stat_result, why: str) -> None:
        if self._stuck.get(name) != _content_key(st):  # (not the ctime: each attempt changes it)
            self._stuck[name] = _content_key(st)
            if self.on_problem is not None:
                self.on_problem("input_stuck", file=name, reason=why,
                                hint="the file stays in the inbox; fix its permissions or remove it")

    def _check(self, name: str, st: os.stat_result) -> InputFileError | None:
        if not _safe_name(name):
            return InputFileError("bad_name",
                                  f"{_printable(name)!r}: file names must be printable UTF-8 without '\\' or control "
                                  f"characters, at most {_MAX_NAME_BYTES} bytes")
        if stat.S_ISLNK(st.st_mode):
            return InputFileError("symlink",
                                  f"{name}: symbolic links are never followed; move the file itself into the inbox")
        if stat.S_ISDIR(st.st_mode):
            return InputFileError("directory", f"{name}: is a directory; put files, not directories, in the inbox")
        if not stat.S_ISREG(st.st_mode):
            return InputFileError("not_regular_file", f"{name}: not a regular file")
        if extension_of(name) not in SUPPORTED_EXTENSIONS:
            return InputFileError("unsupported_extension",
                                  f"{name}: unsupported extension {extension_of(name) or '(none)'}; allowed: "
                                  f"{', '.join(SUPPORTED_EXTENSIONS)}")
        if st.st_size == 0:
            return InputFileError("empty", f"{name}: the file is empty")
        if st.st_size > self.max_file_bytes:
            return InputFileError("oversized",
                                  f"{name}: {st.st_size} bytes exceeds inbox.max_file_bytes = {self.max_file_bytes}")
        return None

    # -- the queue ------------------------------------------------------------------------
    def queued(self) -> list[QueuedFile]:
        """Admitted files not yet done, in sequence order."""
        return self._listing(self.queue)

    def done_files(self) -> list[QueuedFile]:
        return self._listing(self.done)

    def requeue(self, qf: QueuedFile) -> None:
        """Back from done/ to queue/: the state that had learned it was lost (corrupt checkpoint)."""
        try:
            durable_rename(qf.path, self.queue / qf.path.name)
        except FileNotFoundError:
            pass  # removed from done/ by hand: nothing left to replay

    def _queued_names(self, skip: Callable[[int], bool]) -> list[tuple[int, str, os.DirEntry]]:
        names = []
        for entry in os.scandir(self.queue):
            match = _SEQ_NAME.match(entry.name)
            if match and not skip(int(match.group(1))):
                names.append((int(match.group(1)), match.group(2), entry))
        return sorted(names, key=lambda n: n[0])

    def count_queued_unless(self, skip: Callable[[int], bool]) -> tuple[int, float | None]:
        """How many admitted files ``skip`` does not leave out, and the admission time of the first
        (lowest sequence number = admitted first): one directory read and at most one stat."""
        names = self._queued_names(skip)
        for _seq, _name, entry in names:
            try:
                return len(names), entry.stat(follow_symlinks=False).st_ctime
            except FileNotFoundError:
                continue
        return len(names), None

    def queued_unless(self, skip: Callable[[int], bool]) -> Iterator[QueuedFile]:
        """Admitted files in sequence order, leaving out those for which ``skip(seq)`` is true,
        stat'ed one at a time as they are taken: with thousands of files in queue/ (learned ones
        wait there for a checkpoint), picking the next input stays one directory read."""
        for seq, name, entry in self._queued_names(skip):
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            yield QueuedFile(seq, name, Path(entry.path), st.st_ctime)

    def _listing(self, directory: Path) -> list[QueuedFile]:
        files = []
        for entry in os.scandir(directory):
            match = _SEQ_NAME.match(entry.name)
            if match and not entry.name.endswith(".error.json"):
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                files.append(QueuedFile(int(match.group(1)), match.group(2), Path(entry.path), st.st_ctime))
        return sorted(files, key=lambda f: f.seq)

    def read(self, qf: QueuedFile) -> bytes:
        """The file's bytes; refuses anything but a regular file within the size limit."""
        fd = os.open(qf.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise InputFileError("not_regular_file", f"{qf.name}: not a regular file")
            if st.st_size > self.max_file_bytes:
                raise InputFileError("oversized",
                                     f"{qf.name}: {st.st_size} bytes exceeds inbox.max_file_bytes = "
                                     f"{self.max_file_bytes}")
            with os.fdopen(fd, "rb", closefd=False) as fh:
                data = fh.read(self.max_file_bytes + 1)
        finally:
            os.close(fd)
        if len(data) > self.max_file_bytes:  # grew since the check (written to after admission)
            raise InputFileError("oversized",
                                 f"{qf.name}: more than inbox.max_file_bytes = {self.max_file_bytes} bytes")
        return data

    def finish(self, qf: QueuedFile) -> None:
        self.finish_many([qf])

    def finish_many(self, files: list[QueuedFile]) -> None:
        """Move learned, checkpointed files to done/; the two directories are fsynced once for the
        batch (a checkpoint covering thousands of small inputs would otherwise stall the loop on
        two fsyncs per file). A crash before the fsync leaves some in queue/: the next start
        finishes them, as it does any file the restored ledger covers."""
        moved = False
        for qf in files:
            try:
                os.replace(qf.path, self.done / qf.path.name)
                moved = True
            except FileNotFoundError:
                pass  # removed from queue/ by hand after it was learned: nothing to move
        if moved:
            fsync_dir(self.done)
            fsync_dir(self.queue)

    def fail(self, qf: QueuedFile, error: InputFileError) -> Rejection:
        rejection = self._reject(qf.path, qf.seq, qf.name, error, None)
        assert rejection is not None
        return rejection

    def _reject(self, path: Path, seq: int, name: str, error: InputFileError, size: int | None,
                st: os.stat_result | None = None) -> Rejection | None:
        """Move ``path`` to failed/ with a report. From the inbox (``st`` given): None, and nothing
        written, if the file vanished meanwhile or cannot be moved (then it is reported once)."""
        safe = _sanitize(name)
        target = self.failed / f"{seq:010d}-{safe}"
        report_path = self.failed / f"{seq:010d}-{safe}.error.json"
        report: dict[str, Any] = {"file": name, "seq": seq, "reason": error.reason, "message": str(error),
                                  "where": error.where, "size_bytes": size, "failed_at": time.time(),
                                  "moved_to": str(target.name)}
        atomic_write_json(report_path, report)
        try:
            durable_rename(path, target)  # for a symlink or directory this moves the entry itself
        except OSError as exc:
            if st is not None:  # still in the inbox: leave no trace of a rejection that did not happen
                report_path.unlink(missing_ok=True)
                if not isinstance(exc, FileNotFoundError):
                    self._stuck_file(name, st,
                                     f"rejected ({error.reason}) but cannot be moved to failed/: {exc.strerror or exc}")
                return None
            if not isinstance(exc, FileNotFoundError):
                raise
            report["moved_to"] = None
            report["message"] += " (the file itself was gone before it could be moved to failed/)"
            atomic_write_json(report_path, report)
        if st is not None:
            self._stable.pop(name, None)
            with self._lock:
                self._events.pop(name, None)
        return Rejection(seq, name, error.reason, str(error))

    def _scan_existing(self) -> tuple[int, tuple[str, int, int] | None]:
        """The highest sequence number in use, and the newest queue entry (a possible link remnant)."""
        highest, newest_queued = -1, None
        for d in (self.queue, self.done, self.failed):
            for entry in os.scandir(d):
                match = _SEQ_NAME.match(entry.name)
                if match:
                    seq = int(match.group(1))
                    if seq > highest:
                        highest, newest_queued = seq, None
                        if d == self.queue:
                            try:
                                st = entry.stat(follow_symlinks=False)
                            except FileNotFoundError:
                                continue
                            newest_queued = (match.group(2), st.st_ino, st.st_dev)
        return highest, newest_queued

    # -- filesystem events (hints only) ---------------------------------------------------
    def note_event(self, kind: str, path: str, dest: str = "") -> None:
        """Record what a filesystem event says about a name in the inbox: ``created``,
        ``modified``, ``closed`` (after writing), ``moved`` (``path`` -> ``dest``), ``deleted``."""
        now = time.monotonic()
        inbox = os.fspath(self.inbox)
        with self._lock:
            if kind == "moved":
                if path and os.path.dirname(path) == inbox:
                    self._events.pop(os.path.basename(path), None)
                if dest and os.path.dirname(dest) == inbox:
                    self._events[os.path.basename(dest)] = (_COMPLETE, now)  # renamed in: complete
                return
            if os.path.dirname(path) != inbox:
                return
            name = os.path.basename(path)
            if kind == "created":
                self._events[name] = (_CREATED, now)
            elif kind == "modified":
                self._events[name] = (_WRITING, now)
            elif kind == "closed":
                self._events[name] = (_COMPLETE, now)
            elif kind == "deleted":
                self._events.pop(name, None)

    def watch(self, wake: Callable[[], None]) -> bool:
        """Wake the loop on inbox events; returns False (rescan only) if watching is unavailable."""
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:
            return False
        try:  # inotify reports close-after-write and renames from outside the inbox
            from watchdog.observers.inotify import InotifyObserver

            def make_observer() -> Any:
                return InotifyObserver(generate_full_events=True)
            tracks_writes = True
        except ImportError:
            make_observer, tracks_writes = Observer, False
        inbox = self

        class _Handler(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                kind = event.event_type
                if kind not in ("created", "modified", "closed", "moved", "deleted"):
                    return
                if event.is_directory and kind == "modified":
                    return
                src = os.fsdecode(event.src_path) if event.src_path else ""
                dest = os.fsdecode(getattr(event, "dest_path", "") or "")
                inbox.note_event(kind, src, dest)
                if kind in ("created", "moved", "closed"):
                    wake()

        try:
            observer = make_observer()
            observer.daemon = True
            observer.schedule(_Handler(), str(self.inbox), recursive=False)
            observer.start()
        except (OSError, RuntimeError):  # e.g. inotify watch limit reached
            return False
        self._observer = observer
        self._tracks_writes = tracks_writes
        return True

    def close(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
        self._tracks_writes = False


def _key(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _content_key(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _safe_name(name: str) -> bool:
    try:
        raw = name.encode("utf-8")  # surrogate-escaped (non-UTF-8) names fail here
    except UnicodeEncodeError:
        return False
    return len(raw) <= _MAX_NAME_BYTES and name.isprintable() and "\\" not in name and name not in (".", "..")


def _printable(name: str) -> str:
    """The name as text that can be written anywhere (undecodable bytes as U+FFFD)."""
    return os.fsencode(name).decode("utf-8", "replace")


def _sanitize(name: str) -> str:
    """A file-name-safe form of ``name`` of at most ``_MAX_NAME_BYTES`` bytes (UTF-8)."""
    safe = "".join(c if c.isprintable() and c not in "\\/" else "_" for c in _printable(name))
    raw = safe.encode("utf-8")[:_MAX_NAME_BYTES]
    return raw.decode("utf-8", "ignore") or "_"
