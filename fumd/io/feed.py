"""``fumd feed FILES...``: copy files into the inbox the safe way (temporary dot-file, fsync,
rename), so the daemon never sees a half-written file."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from ..errors import FumdError
from .atomic import fsync_dir


def feed_files(files: list[Path], inbox: Path) -> list[Path]:
    if not inbox.is_dir():
        raise FumdError(f"{inbox}: no such inbox (start the daemon once, or create it)")
    missing = [str(f) for f in files if not Path(f).is_file()]
    if missing:
        raise FumdError(f"not a file: {', '.join(missing)}")
    show_progress = len(files) > 1 and sys.stderr.isatty()
    placed = []
    for i, src in enumerate(files, start=1):
        src = Path(src)
        tmp = inbox / f".{src.name}.feed-{os.getpid()}"
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
            fout.flush()
            os.fsync(fout.fileno())
        target = _free_name(inbox, src.name)
        os.rename(tmp, target)
        placed.append(target)
        if show_progress:
            width = 30
            done = width * i // len(files)
            print(f"\r[{'#' * done}{'.' * (width - done)}] {i}/{len(files)} {src.name[:40]:<40}", end="", file=sys.stderr, flush=True)
    fsync_dir(inbox)
    if show_progress:
        print(file=sys.stderr)
    return placed


def _free_name(inbox: Path, name: str) -> Path:
    """``name``, or ``name-1``, ``name-2``... if a file of that name still waits in the inbox."""
    target = inbox / name
    stem, suffix = Path(name).stem, Path(name).suffix
    n = 1
    while target.exists():
        target = inbox / f"{stem}-{n}{suffix}"
        n += 1
    return target
