"""Durable file operations: write-to-temp, fsync, rename, fsync the directory.

A rename is atomic on POSIX but only durable once the directory itself is fsynced; without it a
power loss can bring back the old name. Everything the daemon must not lose goes through here.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until all of ``data`` is written. Every byte the daemon must not lose goes
    through here (one code path: a full disk, ENOSPC, surfaces here as an OSError)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def write_file_durably(path: Path, data: bytes, mode: int = 0o666) -> None:
    """Create/replace the file ``path`` with ``data`` and fsync it (not its directory); ``mode``
    (less the umask) applies when the file is created."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a reader (or a crash) sees the old or the new file.
    On failure (a full disk) the temporary file is removed and ``path`` is untouched."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write_file_durably(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def durable_rename(src: Path, dst: Path) -> None:
    os.replace(src, dst)
    fsync_dir(dst.parent)
    if src.parent != dst.parent:
        fsync_dir(src.parent)
