"""Files of a checkpoint: progress ticks, listing, hashing (and fsyncing) in parallel, removal.

Checkpoint files are created with mode 0644 (``FILE_MODE``); zarr's LocalStore does not fsync,
so every file is fsynced here while it is hashed.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Iterator

from . import CheckpointError

CHUNK_BYTES = 16 << 20  # zarr chunk / HDF5 write slice / hash block: one progress tick each
PROGRESS_INTERVAL_S = 0.25
IO_WORKERS = 4  # concurrent array writes / file hash+fsync jobs
FILE_MODE = 0o644


class Progress:
    """Calls ``fn`` at most every ``PROGRESS_INTERVAL_S`` (or when forced); a no-op for None."""

    def __init__(self, fn: Callable[[], None] | None):
        self.fn, self.last = fn, 0.0

    def __call__(self, force: bool = False) -> None:
        if self.fn is None:
            return
        now = time.monotonic()
        if force or now - self.last >= PROGRESS_INTERVAL_S:
            self.last = now
            self.fn()


def walk_files(root: Path) -> Iterator[Path]:
    """Every regular file under root (sorted, relative paths); symlinks are an error."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        d = Path(dirpath)
        for name in dirnames:
            if (d / name).is_symlink():
                raise CheckpointError(f"unexpected symlink {d / name}")
        for name in sorted(filenames):
            p = d / name
            if p.is_symlink() or not p.is_file():
                raise CheckpointError(f"unexpected non-regular file {p}")
            yield p.relative_to(root)


def _hash_file(path: Path, progress: Progress, *, fsync: bool) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            block = f.read(CHUNK_BYTES)
            if not block:
                break
            h.update(block)
            size += len(block)
            progress()
        if fsync:
            os.fsync(f.fileno())
    return h.hexdigest(), size


def hash_files(root: Path, rels: list[Path], progress: Progress, *, fsync: bool) -> dict[str, tuple[str, int]]:
    """sha256 and size of each file (fsynced too when asked), several at a time; the progress
    callback is called from this thread while the workers run."""
    out: dict[str, tuple[str, int]] = {}
    quiet = Progress(None)
    with concurrent.futures.ThreadPoolExecutor(IO_WORKERS) as pool:
        jobs = {pool.submit(_hash_file, root / rel, quiet, fsync=fsync): rel for rel in rels}
        pending = set(jobs)
        while pending:
            done, pending = concurrent.futures.wait(pending, timeout=PROGRESS_INTERVAL_S)
            for job in done:
                out[jobs[job].as_posix()] = job.result()
            progress()
    return out


def rmtree(path: Path) -> None:
    """Remove a directory tree or a file, whichever ``path`` is; a missing one is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
