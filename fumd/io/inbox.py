"""The watched inbox and the daemon's queue of admitted files.

Life of an input file (all moves are renames inside the state directory, fsynced):

    inbox/NAME ──admit (link + unlink)──> queue/SEQ-NAME ──learned + covered by a checkpoint──> done/SEQ-NAME
         └──────────────── rejected ───────────────> failed/SEQ-NAME + failed/SEQ-NAME.error.json

* Producers write elsewhere (or to a dot-file) and *rename* into ``inbox/``: a rename is atomic, so
  the daemon never sees half a file. Dot-files and temporary names (``*.tmp``, ``*.part``,
  ``*.partial``, ``*~``, ``*.swp``) are ignored.
* Admission gives every file a sequence number in arrival order (inode change time, then name):
  the queue order is fixed once, so a replay after a crash takes the inputs in the same order.
* Filesystem events (watchdog/inotify) only wake the loop early; the start-up scan plus a periodic
  rescan is the truth, because inotify drops events when its queue overflows.
* Nothing in the inbox is ever followed or opened before it is known to be a regular file: a
  symlink is moved (the link itself, never its target), like a directory or a FIFO, to ``failed/``.
"""
from __future__ import annotations

import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import InputFileError
from .atomic import atomic_write_json, durable_rename, fsync_dir
from .readers import SUPPORTED_EXTENSIONS, extension_of

_TEMP_SUFFIXES = (".tmp", ".part", ".partial", "~", ".swp", ".crdownload")
_SEQ_NAME = re.compile(r"^(\d{10})-(.+)$")
_MAX_NAME_BYTES = 200


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
    """Scans ``inbox/``, admits files into ``queue/``, moves them on to ``done/`` or ``failed/``."""

    def __init__(self, state_dir: Path, max_file_bytes: int, min_seq: int = 0):
        self.inbox = state_dir / "inbox"
        self.queue = state_dir / "queue"
        self.done = state_dir / "done"
        self.failed = state_dir / "failed"
        for d in (self.inbox, self.queue, self.done, self.failed):
            d.mkdir(parents=True, exist_ok=True)
        self.max_file_bytes = max_file_bytes
        self.next_seq = max(min_seq, self._highest_seq() + 1)
        self._observer: Any = None

    # -- admission ------------------------------------------------------------------------
    def pending_names(self) -> list[str]:
        return [e.name for e in os.scandir(self.inbox) if not is_ignored(e.name)]

    def admit(self) -> tuple[list[QueuedFile], list[Rejection]]:
        """Move every eligible file from inbox/ into queue/ (or failed/), in arrival order."""
        entries = []
        for entry in os.scandir(self.inbox):
            if is_ignored(entry.name):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:  # raced with its producer
                continue
            entries.append((st.st_ctime_ns, entry.name, st))
        admitted, rejected = [], []
        queued_inodes = None
        for _, name, st in sorted(entries):
            if st.st_nlink > 1 and stat.S_ISREG(st.st_mode):
                # a crash between link and unlink (see below) leaves the file in both places
                if queued_inodes is None:
                    queued_inodes = {e.stat(follow_symlinks=False).st_ino for e in os.scandir(self.queue)}
                if st.st_ino in queued_inodes:
                    os.unlink(self.inbox / name)
                    fsync_dir(self.inbox)
                    continue
            seq = self.next_seq
            self.next_seq += 1
            problem = self._check(name, st)
            if problem is not None:
                rejected.append(self._reject(self.inbox / name, seq, name, problem, st.st_size))
                continue
            target = self.queue / f"{seq:010d}-{name}"
            # link + unlink rather than rename: a rename out of the watched inbox is an
            # IN_MOVED_FROM, which watchdog holds back 0.5 s (to pair moves) and which delays every
            # later inbox event behind it (measured: 300 ms median latency instead of 50 ms).
            os.link(self.inbox / name, target, follow_symlinks=False)
            fsync_dir(self.queue)
            os.unlink(self.inbox / name)
            fsync_dir(self.inbox)
            admitted.append(QueuedFile(seq, name, target, time.time()))
        return admitted, rejected

    def _check(self, name: str, st: os.stat_result) -> InputFileError | None:
        if not _safe_name(name):
            return InputFileError("bad_name", f"{name!r}: file names must be printable UTF-8 without '\\' or control characters, at most {_MAX_NAME_BYTES} bytes")
        if stat.S_ISLNK(st.st_mode):
            return InputFileError("symlink", f"{name}: symbolic links are never followed; move the file itself into the inbox")
        if stat.S_ISDIR(st.st_mode):
            return InputFileError("directory", f"{name}: is a directory; put files, not directories, in the inbox")
        if not stat.S_ISREG(st.st_mode):
            return InputFileError("not_regular_file", f"{name}: not a regular file")
        if extension_of(name) not in SUPPORTED_EXTENSIONS:
            return InputFileError("unsupported_extension", f"{name}: unsupported extension {extension_of(name) or '(none)'}; allowed: {', '.join(SUPPORTED_EXTENSIONS)}")
        if st.st_size == 0:
            return InputFileError("empty", f"{name}: the file is empty")
        if st.st_size > self.max_file_bytes:
            return InputFileError("oversized", f"{name}: {st.st_size} bytes exceeds inbox.max_file_bytes = {self.max_file_bytes}")
        return None

    # -- the queue ------------------------------------------------------------------------
    def queued(self) -> list[QueuedFile]:
        """Admitted files not yet done, in sequence order."""
        return self._listing(self.queue)

    def done_files(self) -> list[QueuedFile]:
        return self._listing(self.done)

    def requeue(self, qf: QueuedFile) -> None:
        """Back from done/ to queue/: the state that had learned it was lost (corrupt checkpoint)."""
        durable_rename(qf.path, self.queue / qf.path.name)

    def _listing(self, directory: Path) -> list[QueuedFile]:
        files = []
        for entry in os.scandir(directory):
            match = _SEQ_NAME.match(entry.name)
            if match:
                st = entry.stat(follow_symlinks=False)
                files.append(QueuedFile(int(match.group(1)), match.group(2), Path(entry.path), st.st_ctime))
        return sorted(files, key=lambda f: f.seq)

    def read(self, qf: QueuedFile) -> bytes:
        """The file's bytes; refuses anything but a regular file within the size limit."""
        fd = os.open(qf.path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise InputFileError("not_regular_file", f"{qf.name}: not a regular file")
            if st.st_size > self.max_file_bytes:
                raise InputFileError("oversized", f"{qf.name}: {st.st_size} bytes exceeds inbox.max_file_bytes = {self.max_file_bytes}")
            with os.fdopen(fd, "rb", closefd=False) as fh:
                return fh.read(self.max_file_bytes + 1)
        finally:
            os.close(fd)

    def finish(self, qf: QueuedFile) -> None:
        durable_rename(qf.path, self.done / qf.path.name)

    def fail(self, qf: QueuedFile, error: InputFileError) -> Rejection:
        return self._reject(qf.path, qf.seq, qf.name, error, None)

    def _reject(self, path: Path, seq: int, name: str, error: InputFileError, size: int | None) -> Rejection:
        safe = _sanitize(name)
        target = self.failed / f"{seq:010d}-{safe}"
        report = {"file": name, "seq": seq, "reason": error.reason, "message": str(error), "where": error.where,
                  "size_bytes": size, "failed_at": time.time(), "moved_to": str(target.name)}
        atomic_write_json(self.failed / f"{seq:010d}-{safe}.error.json", report)
        durable_rename(path, target)  # for a symlink or directory this moves the entry itself
        return Rejection(seq, name, error.reason, str(error))

    def _highest_seq(self) -> int:
        highest = -1
        for d in (self.queue, self.done, self.failed):
            for entry in os.scandir(d):
                match = _SEQ_NAME.match(entry.name)
                if match:
                    highest = max(highest, int(match.group(1)))
        return highest

    # -- filesystem events (hints only) ---------------------------------------------------
    def watch(self, wake: Callable[[], None]) -> bool:
        """Wake the loop on inbox events; returns False (rescan only) if watching is unavailable."""
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:
            return False

        class _Wake(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                if event.event_type in ("created", "moved", "closed"):
                    wake()

        try:
            observer = Observer()
            observer.daemon = True
            observer.schedule(_Wake(), str(self.inbox), recursive=False)
            observer.start()
        except (OSError, RuntimeError):  # e.g. inotify watch limit reached
            return False
        self._observer = observer
        return True

    def close(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None


def _safe_name(name: str) -> bool:
    try:
        raw = name.encode("utf-8")  # surrogate-escaped (non-UTF-8) names fail here
    except UnicodeEncodeError:
        return False
    return len(raw) <= _MAX_NAME_BYTES and name.isprintable() and "\\" not in name and name not in (".", "..")


def _sanitize(name: str) -> str:
    safe = "".join(c if c.isprintable() and c not in "\\/" else "_" for c in name.encode("utf-8", "replace").decode("utf-8", "replace"))
    return safe[:_MAX_NAME_BYTES] or "_"
