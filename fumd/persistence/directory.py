"""The checkpoints directory: names, the ``LATEST`` pointer, the writers' lock, leftovers of
interrupted writers, retention of the newest ``keep`` (the layout is in ``checkpoint.py``).

Names: ``ckpt-<step:012d>-<seq:06d>``. ``seq`` is a write sequence, 1 + the highest sequence in
the directory; it makes names unique even when a replaying run checkpoints the same step again,
and "newest" means highest sequence (the last one written), not highest step.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import re
from pathlib import Path
from typing import Iterator

from ..io.atomic import fsync_dir, write_file_durably
from . import CheckpointError
from .files import FILE_MODE, rmtree

LATEST = "LATEST"
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
LOCK_FILE = ".lock"
_NAME_RE = re.compile(r"^ckpt-(\d{1,20})(?:-(\d{1,20}))?$")


def checkpoint_name(step: int, seq: int) -> str:
    return f"ckpt-{step:012d}-{seq:06d}"


def parse_name(name: str) -> tuple[int, int] | None:
    """``(sequence, step)`` of a checkpoint's directory name (sequence 0 in names without one),
    None for any other name."""
    m = _NAME_RE.match(name)
    if not m:
        return None
    return int(m.group(2) or 0), int(m.group(1))  # (sequence, step)


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold the flock on ``directory/.lock`` that serialises the writers of one directory."""
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_latest(directory: Path) -> str | None:
    """The name ``LATEST`` holds; None when there is no such file."""
    try:
        text = (directory / LATEST).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"unreadable {LATEST} pointer: {exc}") from exc
    if parse_name(text) is None:
        raise CheckpointError(f"{LATEST} pointer holds {text[:80]!r}, not a checkpoint name")
    return text


def swap_latest(directory: Path, name: str) -> None:
    """Point ``LATEST`` at ``name`` atomically: temp file + fsync + ``os.replace`` + dir fsync."""
    tmp = directory / f".{LATEST}.tmp-{os.getpid()}"
    write_file_durably(tmp, (name + "\n").encode(), FILE_MODE)
    os.replace(tmp, directory / LATEST)
    fsync_dir(directory)


def next_sequence(directory: Path) -> int:
    """1 + the highest sequence of any checkpoint in ``directory`` or named by ``LATEST``."""
    seqs = [p[0] for p in (parse_name(e.name) for e in os.scandir(directory) if e.is_dir()) if p]
    with contextlib.suppress(CheckpointError):
        latest = read_latest(directory)
        if latest:
            parsed = parse_name(latest)
            assert parsed is not None  # read_latest returns only names that parse
            seqs.append(parsed[0])
    return max(seqs, default=0) + 1


def clean_stale(directory: Path) -> list[Path]:
    """Remove leftovers of interrupted writers/pruners (called with the directory lock held)."""
    removed = []
    for entry in os.scandir(directory):
        if entry.name.startswith((TMP_PREFIX, TRASH_PREFIX, f".{LATEST}.tmp-")):
            rmtree(Path(entry.path))
            removed.append(Path(entry.path))
    return removed


def clean_interrupted_writes(directory: Path) -> list[Path]:
    """Remove what a writer or pruner killed mid-way left behind (``.tmp-…``, ``.trash-…``) and
    return it. Such a leftover is the normal trace of a kill during a checkpoint write, not
    corruption: the previous checkpoints are complete. A daemon calls this at start-up, before it
    loads, so that only real damage is reported as unusable."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    with locked(directory):
        removed = clean_stale(directory)
    if removed:
        fsync_dir(directory)
    return removed


def prune(directory: Path, keep: int, protect: str) -> None:
    """Remove all but the newest ``keep`` checkpoints (never ``protect``): each is renamed to
    ``.trash-…`` first, so a pruner killed mid-way leaves no half-removed checkpoint."""
    for path in list_checkpoints(directory)[keep:]:
        if path.name == protect:
            continue
        trash = directory / f"{TRASH_PREFIX}{path.name}"
        try:
            os.rename(path, trash)
        except OSError:
            continue
        fsync_dir(directory)
        rmtree(trash)


def list_checkpoints(directory: Path) -> list[Path]:
    """Complete (renamed-into-place) checkpoint directories, newest (highest sequence) first.
    Validity is not checked here."""
    directory = Path(directory)
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    found = []
    for e in entries:
        parsed = parse_name(e.name)
        if parsed is not None and e.is_dir(follow_symlinks=False):
            found.append((parsed, Path(e.path)))
    found.sort(key=lambda x: x[0], reverse=True)
    return [p for _, p in found]


def latest_candidates(directory: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The checkpoints to try, newest first, and what is already known to be unusable (an
    interrupted write's ``.tmp-…``, a bad or dangling ``LATEST``) with the reason."""
    skipped: list[tuple[Path, str]] = []
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name, reverse=True)
    except FileNotFoundError:
        return [], []
    for e in entries:
        if e.name.startswith(TMP_PREFIX) and e.is_dir(follow_symlinks=False):
            skipped.append((Path(e.path),
                            "incomplete checkpoint: interrupted write (temporary directory never renamed into place)"))
    candidates = list_checkpoints(directory)
    try:
        latest = read_latest(directory)
    except CheckpointError as exc:
        skipped.append((directory / LATEST, str(exc)))
        latest = None
    if latest is not None and not (directory / latest).is_dir():
        skipped.append((directory / latest, f"{LATEST} points to {latest}, which is missing"))
    return candidates, skipped
