"""Results in ``outbox/``: one ``<name>.results.jsonl`` per input file, one line per record.

Delivery contract (what a consumer may rely on): **once a results file is visible in outbox/ it is
final, byte for byte**, and no input's results are published twice, whatever happens to the
daemon (SIGKILL, power loss, a replay after a crash). A consumer may read, move or delete a
results file as soon as it appears; the daemon never writes it again.

How that holds although the state is checkpointed only every few minutes (a crash replays the
inputs learned since, and in the default non-deterministic mode a replay computes different
values):

* While a file is being processed its lines are appended to ``outbox/.partial/<seq>.jsonl``. A
  checkpoint records how many bytes of that partial file its state covers; after a crash the
  partial file is cut back to that length and the replay appends again. Nothing there is visible.
* Publication is a small two-phase commit (``publish``): the complete bytes are staged durably in
  ``outbox/.published/<seq>.staged``, then the record ``outbox/.published/<seq>.json`` (target
  name, size, sha256) is written durably, then the staged file is renamed to its public name. The
  record is the commit point: a crash before it leaves nothing visible (the replay publishes
  afresh); a crash after it is finished at the next start (``recover``: the staged bytes, the
  ones committed to, are renamed into place).
* An input whose record exists is *published*: a replay re-learns its records (the network must)
  but its results go nowhere (``begin`` returns in replay mode) and ``publish`` changes nothing.
* Records are kept while any checkpoint on disk could send the daemon back before that input
  (``prune_records_below``, with the oldest kept checkpoint's ledger position).

Two inputs with the same name: the second one's results go to ``<name>.<seq>.results.jsonl``
(every line carries ``seq``, which is how the daemon tells the two apart).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .atomic import atomic_write_json, fsync_dir, write_all, write_file_durably

RESULTS_SUFFIX = ".results.jsonl"


class Outbox:
    def __init__(self, state_dir: Path):
        self.dir = state_dir / "outbox"
        self.partial_dir = self.dir / ".partial"
        self.published_dir = self.dir / ".published"
        self.partial_dir.mkdir(parents=True, exist_ok=True)
        self.published_dir.mkdir(parents=True, exist_ok=True)
        self._open: tuple[int, int | None] | None = None  # (seq, partial file's fd; None: replay of a published input)
        self._pending = bytearray()  # lines not yet written (kept while the disk is full)
        self._written = 0  # the partial file's length up to the last complete write

    def partial_path(self, seq: int) -> Path:
        return self.partial_dir / f"{seq:010d}.jsonl"

    def _record_path(self, seq: int) -> Path:
        return self.published_dir / f"{seq:010d}.json"

    def _staged_path(self, seq: int) -> Path:
        return self.published_dir / f"{seq:010d}.staged"

    # -- writing one input's results ------------------------------------------------------
    def begin(self, seq: int, name: str, keep_bytes: int) -> bool:
        """Start (or resume, after a crash) the results of input ``seq``, keeping ``keep_bytes``.

        Returns False when input ``seq`` was already published: the caller re-learns it, but its
        lines are dropped (the published bytes are final). If the partial file is gone (it is
        dropped once a checkpoint covers the whole input, and that checkpoint may since have
        proved corrupt), the published results hold the same bytes.
        """
        self.close()
        if self.published(seq) is not None:
            self._open = (seq, None)
            return False
        path = self.partial_path(seq)
        if keep_bytes and (not path.exists() or path.stat().st_size < keep_bytes):
            published = self.results_path(seq, name)
            if published.exists() and published.stat().st_size >= keep_bytes:
                with open(published, "rb") as src:
                    path.write_bytes(src.read(keep_bytes))
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        os.ftruncate(fd, keep_bytes)
        os.lseek(fd, keep_bytes, os.SEEK_SET)
        self._open, self._written = (seq, fd), keep_bytes
        return True

    def append(self, line: dict[str, Any]) -> None:
        """Queue one results line; ``flush`` writes it (call it after every record)."""
        assert self._open is not None, "begin() first"
        if self._open[1] is not None:
            self._pending += (json.dumps(line, sort_keys=True) + "\n").encode()

    def flush(self) -> None:
        """Write the queued lines. On failure (ENOSPC) the file is cut back to its last complete
        line and the lines stay queued, to be written by the next call: never a torn line."""
        if self._open is None or self._open[1] is None or not self._pending:
            return
        fd = self._open[1]
        try:
            write_all(fd, bytes(self._pending))
        except OSError:
            os.ftruncate(fd, self._written)  # shrinking needs no space
            os.lseek(fd, self._written, os.SEEK_SET)
            raise
        self._written += len(self._pending)
        self._pending.clear()

    def partial_bytes(self) -> int:
        """Write and fsync the partial results; their length (recorded in a checkpoint). Lines
        still queued (the disk is full) are not counted: a replay recomputes them."""
        if self._open is None or self._open[1] is None:
            return 0
        try:
            self.flush()
        except OSError:
            pass  # disk full: the lines stay queued and are not counted (flush cut the file back)
        os.fsync(self._open[1])
        return self._written

    # -- publication ----------------------------------------------------------------------
    def published(self, seq: int) -> dict[str, Any] | None:
        """The durable publication record of input ``seq``, or None if it was never published."""
        try:
            return json.loads(self._record_path(seq).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            # torn records cannot exist (written atomically); an unreadable one still means
            # "published": never risk a second, different publication
            return {"seq": seq, "file": None}

    def publish(self, seq: int, name: str) -> Path | None:
        """Make the complete results of input ``seq`` visible, exactly once (see the module
        docstring); returns the results path (None if a replay finds it published under an
        unknown name)."""
        record = self.published(seq)
        if record is not None:  # a replay (the first publication stands), or a retried exposure
            if record.get("file") and self._staged_path(seq).exists():
                self._expose(self._staged_path(seq), self.dir / record["file"])
            self.close()
            return self.dir / record["file"] if record.get("file") else None
        self.flush()  # raises while the disk is full: nothing is published yet
        if self._open is not None and self._open[1] is not None:
            os.fsync(self._open[1])
        data = self.partial_path(seq).read_bytes()
        target = self.results_path(seq, name)
        staged = self._staged_path(seq)
        write_file_durably(staged, data)  # phase 1: the bytes, durable but invisible
        record = {"seq": seq, "input": name, "file": target.name, "bytes": len(data),
                  "sha256": hashlib.sha256(data).hexdigest()}
        atomic_write_json(self._record_path(seq), record)  # the commit point (fsyncs .published/)
        self._expose(staged, target)  # phase 2
        self.close()
        return target

    def _expose(self, staged: Path, target: Path) -> None:
        os.replace(staged, target)
        fsync_dir(self.dir)
        fsync_dir(self.published_dir)

    def recover(self) -> list[Path]:
        """At start-up: finish publications committed before a crash (their staged bytes are
        renamed into place) and drop staged files that were never committed. Returns the paths
        published now."""
        finished = []
        for staged in sorted(self.published_dir.glob("*.staged")):
            seq = int(staged.stem) if staged.stem.isdigit() else None
            record = self.published(seq) if seq is not None else None
            if record is None or not record.get("file"):
                staged.unlink(missing_ok=True)
                continue
            target = self.dir / record["file"]
            self._expose(staged, target)
            finished.append(target)
        for tmp in self.published_dir.glob(".*.tmp-*"):  # an interrupted record write
            tmp.unlink(missing_ok=True)
        return finished

    def prune_records_below(self, seq: int) -> int:
        """Forget publication records of inputs below ``seq``: no checkpoint on disk can send the
        daemon back before ``seq`` any more, so no replay can reach them."""
        removed = 0
        for path in self.published_dir.glob("*.json"):
            if path.stem.isdigit() and int(path.stem) < seq:
                path.unlink(missing_ok=True)
                removed += 1
        if removed:
            fsync_dir(self.published_dir)
        return removed

    def results_path(self, seq: int, name: str) -> Path:
        plain = self.dir / f"{name}{RESULTS_SUFFIX}"
        if not plain.exists() or _first_seq(plain) in (seq, None):
            return plain
        return self.dir / f"{name}.{seq:010d}{RESULTS_SUFFIX}"

    # -- partial files --------------------------------------------------------------------
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
            if self._open[1] is not None:
                os.close(self._open[1])
            self._open = None
        self._pending.clear()


def _first_seq(path: Path) -> int | None:
    try:
        with open(path, "rb") as fh:
            first = fh.readline()
        return int(json.loads(first)["seq"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
