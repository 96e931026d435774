"""``fumd feed FILES...``: copy files into the inbox the safe way (temporary dot-file, fsync,
rename), so the daemon never sees a half-written file.

The copy is handed over so that the daemon can own it: run as root (``sudo fumd feed`` into a
``DynamicUser=`` daemon's 0700 state directory), the copy is given to the owner of the inbox
directory; run as anyone else, it is made readable (mode 0644; the state directory's own
permissions still keep other users out). The temporary file is created with ``O_EXCL`` under a
random name, so nothing planted in the inbox can redirect the write.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from ..errors import FumdError
from .atomic import fsync_dir


def feed_files(files: list[Path], inbox: Path) -> list[Path]:
    if not inbox.is_dir():
        raise FumdError(f"{inbox}: no such inbox (start the daemon once, or create it)")
    missing = [str(f) for f in files if not Path(f).is_file()]
    if missing:
        raise FumdError(f"not a file: {', '.join(missing)}")
    owner = os.stat(inbox)
    show_progress = len(files) > 1 and sys.stderr.isatty()
    placed = []
    for i, src in enumerate(files, start=1):
        src = Path(src)
        try:
            placed.append(_feed_one(src, inbox, owner))
        except OSError as exc:
            raise FumdError(f"{src}: cannot copy into {inbox}: {exc.strerror or exc}") from None
        if show_progress:
            width = 30
            done = width * i // len(files)
            print(f"\r[{'#' * done}{'.' * (width - done)}] {i}/{len(files)} {src.name[:40]:<40}", end="",
                  file=sys.stderr, flush=True)
    if show_progress:
        print(file=sys.stderr)
    return placed


def _feed_one(src: Path, inbox: Path, owner: os.stat_result) -> Path:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{src.name[:100]}.", suffix=".feed", dir=inbox)
    tmp = Path(tmp_name)
    try:
        with open(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
            fout.flush()
            if os.geteuid() == 0 and (owner.st_uid, owner.st_gid) != (0, 0):
                os.fchown(fout.fileno(), owner.st_uid, owner.st_gid)  # the daemon's file from now on
                os.fchmod(fout.fileno(), 0o600)
            elif os.geteuid() != owner.st_uid:
                os.fchmod(fout.fileno(), 0o644)
            os.fsync(fout.fileno())
        target = _free_name(inbox, src.name)
        os.rename(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(inbox)
    return target


def _free_name(inbox: Path, name: str) -> Path:
    """``name``, or ``name-1``, ``name-2``... if a file of that name still waits in the inbox."""
    target = inbox / name
    stem, suffix = Path(name).stem, Path(name).suffix
    n = 1
    while os.path.lexists(target):
        target = inbox / f"{stem}-{n}{suffix}"
        n += 1
    return target
