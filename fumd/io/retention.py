"""Retention: what the daemon deletes so that months of unattended running fit on the disk.

Without it outbox/ and done/ grow by about 1 KB per record forever (120 MB and 78 MB after 200,000
records: GBs a day at 100 records/s). Each pruned directory has three limits (age, total bytes,
file count; 0 = none); entries go oldest first until all three hold. What may go:

* ``outbox/``: published results files (``*.results.jsonl``) only; never the daemon's
  dot-directories, never anything else a consumer may have put there. Age is the file's mtime.
* ``done/``: learned inputs, only those below ``safe_done_below`` (the oldest checkpoint's ledger
  position): a newer checkpoint that proves corrupt sends the daemon back to an older one, which
  replays the inputs after it from done/.
* ``failed/``: a rejected input together with its ``.error.json`` report (one entry, one seq).

``measure`` gives the bytes of each state subdirectory (the ``fumd_state_dir_bytes`` metric).
Deletion is plain ``unlink``: freeing space must itself never need space.
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

_SEQ = re.compile(r"^(\d{10})-")
RESULTS_SUFFIX = ".results.jsonl"
ERROR_SUFFIX = ".error.json"


@dataclass(frozen=True)
class Limits:
    max_age_s: float = 0.0
    max_bytes: int = 0
    max_files: int = 0


@dataclass
class _Entry:
    key: tuple[float, str]  # sort key, oldest first
    paths: list[Path] = field(default_factory=list)
    bytes: int = 0
    mtime: float = 0.0  # age is measured from this


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _outbox_entries(directory: Path) -> list[_Entry]:
    out = []
    for e in os.scandir(directory):
        if e.name.startswith(".") or not e.name.endswith(RESULTS_SUFFIX):
            continue
        st = _lstat(e.path)
        if st is not None and stat.S_ISREG(st.st_mode):
            out.append(_Entry((st.st_mtime, e.name), [Path(e.path)], st.st_size, max(st.st_mtime, st.st_ctime)))
    return out


def _seq_entries(directory: Path, below: int | None) -> list[_Entry]:
    """Entries grouped by sequence number (an input and its report), oldest (lowest seq) first."""
    groups: dict[int, _Entry] = {}
    for e in os.scandir(directory):
        m = _SEQ.match(e.name)
        if not m:
            continue
        seq = int(m.group(1))
        if below is not None and seq >= below:
            continue
        st = _lstat(e.path)
        if st is None:
            continue
        entry = groups.setdefault(seq, _Entry((float(seq), "")))
        entry.paths.append(Path(e.path))
        entry.bytes += st.st_size
        entry.mtime = max(entry.mtime, st.st_mtime, st.st_ctime)  # ctime: when it was moved here
    return list(groups.values())


def _remove(path: Path) -> None:
    st = _lstat(str(path))
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):  # a rejected directory moved to failed/
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _prune(entries: list[_Entry], limits: Limits, now: float) -> tuple[int, int]:
    entries.sort(key=lambda e: e.key)
    total_bytes = sum(e.bytes for e in entries)
    count = len(entries)
    removed = freed = 0
    for entry in entries:
        too_old = limits.max_age_s > 0 and now - entry.mtime > limits.max_age_s
        too_big = limits.max_bytes > 0 and total_bytes > limits.max_bytes
        too_many = limits.max_files > 0 and count > limits.max_files
        if not (too_old or too_big or too_many):
            break  # oldest first: once the oldest may stay, all newer may too
        for path in entry.paths:
            _remove(path)
        total_bytes -= entry.bytes
        count -= 1
        removed += 1
        freed += entry.bytes
    return removed, freed


def prune_outbox(directory: Path, limits: Limits, now: float | None = None) -> tuple[int, int]:
    """Delete the oldest published results files beyond the limits; (files removed, bytes freed)."""
    return _prune(_outbox_entries(directory), limits, time.time() if now is None else now)


def prune_by_seq(directory: Path, limits: Limits, below: int | None = None,
                 now: float | None = None) -> tuple[int, int]:
    """done/ or failed/: delete the lowest sequence numbers beyond the limits (and only below
    ``below`` when given); (entries removed, bytes freed)."""
    return _prune(_seq_entries(directory, below), limits, time.time() if now is None else now)


def measure(directory: Path) -> int:
    """Bytes of the regular files under ``directory`` (not following links)."""
    total = 0
    stack = [str(directory)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for e in entries:
            try:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                else:
                    total += e.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                continue
    return total
