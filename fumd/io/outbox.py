"""Results in ``outbox/``: one ``<name>.results.jsonl`` per input file, one line per record.

While a file is being processed its lines are appended to ``outbox/.partial/<seq>.jsonl``. A
checkpoint records how many bytes of that partial file its state covers; after a crash the partial
file is cut back to that length and the replay appends the same lines again, so results are
rewritten, never duplicated. When the file is complete the partial content is published with an
atomic write; the partial file is removed only once a checkpoint covers the whole input.

Two inputs with the same name: the second one's results go to ``<name>.<seq>.results.jsonl``
(every line carries ``seq``, which is how the daemon tells the two apart).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .atomic import atomic_write_bytes, fsync_dir


class Outbox:
    def __init__(self, state_dir: Path):
        self.dir = state_dir / "outbox"
        self.partial_dir = self.dir / ".partial"
        self.partial_dir.mkdir(parents=True, exist_ok=True)
        self._open: tuple[int, Any] | None = None

    def partial_path(self, seq: int) -> Path:
        return self.partial_dir / f"{seq:010d}.jsonl"

    def begin(self, seq: int, name: str, keep_bytes: int) -> None:
        """Start (or resume, after a crash) the results of input ``seq``, keeping ``keep_bytes``.

        If the partial file is gone (it is dropped once a checkpoint covers the whole input, and
        that checkpoint may since have proved corrupt), the published results hold the same bytes.
        """
        self.close()
        path = self.partial_path(seq)
        if keep_bytes and (not path.exists() or path.stat().st_size < keep_bytes):
            published = self.results_path(seq, name)
            if published.exists() and published.stat().st_size >= keep_bytes:
                with open(published, "rb") as src:
                    path.write_bytes(src.read(keep_bytes))
        fh = open(path, "a+b")
        fh.truncate(keep_bytes)
        fh.seek(keep_bytes)
        self._open = (seq, fh)

    def append(self, line: dict[str, Any]) -> None:
        assert self._open is not None, "begin() first"
        self._open[1].write((json.dumps(line, sort_keys=True) + "\n").encode())

    def partial_bytes(self) -> int:
        """Flush and fsync the partial results; their length (recorded in a checkpoint)."""
        if self._open is None:
            return 0
        fh = self._open[1]
        fh.flush()
        os.fsync(fh.fileno())
        return fh.tell()

    def publish(self, seq: int, name: str) -> Path:
        """Atomically write the complete results of input ``seq``; returns the results path."""
        self.partial_bytes()
        data = self.partial_path(seq).read_bytes()
        target = self.results_path(seq, name)
        atomic_write_bytes(target, data)
        self.close()
        return target

    def results_path(self, seq: int, name: str) -> Path:
        plain = self.dir / f"{name}.results.jsonl"
        if not plain.exists() or _first_seq(plain) in (seq, None):
            return plain
        return self.dir / f"{name}.{seq:010d}.results.jsonl"

    def discard_partial(self, seq: int) -> None:
        if self._open is not None and self._open[0] == seq:
            self.close()
        self.partial_path(seq).unlink(missing_ok=True)

    def drop_partials_below(self, seq: int) -> None:
        """Partial files of inputs that a checkpoint fully covers are no longer needed."""
        removed = False
        for path in self.partial_dir.glob("*.jsonl"):
            if path.stem.isdigit() and int(path.stem) < seq:
                path.unlink(missing_ok=True)
                removed = True
        if removed:
            fsync_dir(self.partial_dir)

    def close(self) -> None:
        if self._open is not None:
            self._open[1].close()
            self._open = None


def _first_seq(path: Path) -> int | None:
    try:
        with open(path, "rb") as fh:
            first = fh.readline()
        return int(json.loads(first)["seq"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
