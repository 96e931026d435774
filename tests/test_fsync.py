"""fsync is part of the crash-safety contract, so it is tested (issue 10): ``os.fsync`` and
``os.rename``/``os.replace`` are recorded (path of each fsynced descriptor, in call order, from
every thread) while a checkpoint and the durable file helpers run, and the log must show each
step of the protocol (``fumd/persistence/checkpoint.py``, ``fumd/io/atomic.py``) with its fsync
in the right place. Dropping any one of those fsyncs from the code makes a test here fail.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest
import torch

from fumd.io.atomic import atomic_write_bytes, durable_rename
from fumd.io.outbox import Outbox
from fumd.persistence.checkpoint import LATEST, MANIFEST, write_checkpoint


class Recorder:
    """Records ("fsync", path) and ("rename", src, dst) events in the order they happen."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[tuple[str, ...]] = []
        self._lock = threading.Lock()
        real_fsync, real_rename, real_replace = os.fsync, os.rename, os.replace

        def fsync(fd: Any) -> None:
            fileno = fd if isinstance(fd, int) else fd.fileno()
            path = os.readlink(f"/proc/self/fd/{fileno}")
            real_fsync(fd)
            with self._lock:
                self.events.append(("fsync", path))

        def rename(src: Any, dst: Any, *a: Any, **k: Any) -> None:
            real_rename(src, dst, *a, **k)
            with self._lock:
                self.events.append(("rename", os.path.abspath(src), os.path.abspath(dst)))

        def replace(src: Any, dst: Any, *a: Any, **k: Any) -> None:
            real_replace(src, dst, *a, **k)
            with self._lock:
                self.events.append(("rename", os.path.abspath(src), os.path.abspath(dst)))

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "rename", rename)
        monkeypatch.setattr(os, "replace", replace)

    def fsyncs(self, path: Path | str, before: int | None = None, after: int = -1) -> list[int]:
        """Indices of fsyncs of ``path`` strictly between ``after`` and ``before``."""
        path = os.path.abspath(path)
        end = len(self.events) if before is None else before
        return [i for i, e in enumerate(self.events) if after < i < end and e == ("fsync", path)]

    def rename_index(self, src_pred: Any, dst: Path | str) -> int:
        dst = os.path.abspath(dst)
        hits = [i for i, e in enumerate(self.events) if e[0] == "rename" and e[2] == dst and src_pred(e[1])]
        assert len(hits) == 1, f"expected one rename onto {dst}: {hits}"
        return hits[0]


def _state() -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    return {"network.w": torch.rand(1000, generator=g), "network.col": torch.arange(1000, dtype=torch.int32),
            "network.persistent": torch.rand(1000, generator=g) > 0.5, "encoder.count": 3, "sie.names": ["a", "b"]}


@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
def test_every_step_of_the_checkpoint_protocol_is_fsynced_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   fmt: str) -> None:
    directory = tmp_path / "state" / "checkpoints"  # does not exist yet: its creation must be durable too
    rec = Recorder(monkeypatch)
    info = write_checkpoint(directory, _state(), {"ledger": {}}, step=7, fmt=fmt, keep=3)
    final = info.path

    # 1. the temporary directory is renamed into place (exactly once)
    r = rec.rename_index(lambda src: os.path.basename(src).startswith(".tmp-"), final)
    tmp = Path(rec.events[r][1])
    # 2. before that: every file (arrays and the manifest) and every directory of it is fsynced
    files = [p for p in final.rglob("*") if p.is_file()]
    dirs = [final] + [p for p in final.rglob("*") if p.is_dir()]
    assert any(p.name == MANIFEST for p in files) and len(files) >= 2
    for p in files:
        assert rec.fsyncs(tmp / p.relative_to(final),
                          before=r), f"{p.relative_to(final)} never fsynced before the rename"
    for d in dirs:
        assert rec.fsyncs(tmp / d.relative_to(final),
                          before=r), f"directory {d.relative_to(final) or '.'} never fsynced before the rename"
    # ... the manifest last of all files, and the directory after it (its entry is durable)
    manifest_sync = max(rec.fsyncs(tmp / MANIFEST, before=r))
    for p in files:
        if p.name != MANIFEST:
            assert max(rec.fsyncs(tmp / p.relative_to(final), before=r)) < manifest_sync
    assert rec.fsyncs(tmp, before=r, after=manifest_sync), "temporary directory not fsynced after the manifest"
    # 3. the new name is durable (parent fsynced) before LATEST points at it
    latest = rec.rename_index(lambda src: os.path.basename(src).startswith(f".{LATEST}.tmp-"), directory / LATEST)
    assert r < latest
    assert rec.fsyncs(directory, before=latest, after=r), "checkpoints/ not fsynced after the rename into place"
    # 4. LATEST: its temporary file fsynced before the swap, the directory after it
    assert rec.fsyncs(rec.events[latest][1], before=latest), "LATEST's temporary file not fsynced before os.replace"
    assert rec.fsyncs(directory, after=latest), "checkpoints/ not fsynced after LATEST was swapped"
    # 5. the checkpoints directory was created: its entry in the parent is durable
    assert rec.fsyncs(directory.parent, before=r), "state/ not fsynced after checkpoints/ was created"


def test_atomic_write_and_durable_rename_fsync_file_then_directory(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    rec = Recorder(monkeypatch)
    target = tmp_path / "status.json"
    atomic_write_bytes(target, b"{}")
    r = rec.rename_index(lambda src: True, target)
    assert rec.fsyncs(rec.events[r][1], before=r), "the data is not fsynced before the rename"
    assert rec.fsyncs(tmp_path, after=r), "the directory is not fsynced after the rename"

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "f").write_bytes(b"x")
    durable_rename(tmp_path / "a" / "f", tmp_path / "b" / "f")
    r = rec.rename_index(lambda src: src.endswith("/a/f"), tmp_path / "b" / "f")
    assert rec.fsyncs(tmp_path / "b", after=r) and rec.fsyncs(tmp_path / "a", after=r), \
        "both directories must be fsynced"


def test_partial_results_are_fsynced_before_a_checkpoint_records_their_length(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    outbox = Outbox(tmp_path)
    outbox.begin(3, "in.jsonl", 0)
    outbox.append({"seq": 3, "record": 0})
    rec = Recorder(monkeypatch)
    assert outbox.partial_bytes() > 0
    assert rec.fsyncs(outbox.partial_path(3)), "partial results not fsynced when their length is taken"
    outbox.close()
