"""Writing a checkpoint, crash-safely (the protocol is in ``checkpoint.py``'s docstring): validate
and split the state, then, holding the directory's lock, write everything into a temporary
directory, make it durable, rename it into place, swap ``LATEST`` and prune."""
from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from ..io.atomic import fsync_dir
from . import CheckpointError
from .directory import TMP_PREFIX, checkpoint_name, clean_stale, locked, next_sequence, prune, swap_latest
from .encoding import json_value, state_digest, to_cpu
from .files import IO_WORKERS, Progress, hash_files, rmtree, walk_files
from .manifest import build_manifest, total_bytes, write_manifest
from .stores import FORMATS, Arrays, hashed_node_name, node_name, write_arrays


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    step: int
    format: str
    bytes: int
    seconds: float


def write_checkpoint(
    directory: Path,
    state: Mapping[str, Any],
    meta: Mapping[str, Any],
    *,
    step: int,
    fmt: str = "zarr",
    keep: int = 3,
    progress: Callable[[], None] | None = None,
) -> CheckpointInfo:
    """Write ``state`` (+ JSON-able ``meta``) as a new checkpoint in ``directory``, crash-safely;
    swap ``LATEST`` to it and prune to the newest ``keep``. Raises CheckpointError on failure
    (the previous checkpoints are then untouched). CPU tensors are read in place while writing:
    pass a ``snapshot()`` when the live loop keeps running. Writers of one directory are
    serialised by an flock on ``directory/.lock``."""
    t0 = time.perf_counter()
    _check_arguments(fmt, keep, step)
    tick = Progress(progress)
    directory = Path(directory)
    # validate and split the state before touching the disk
    arrays, scalars = _split_state(state)
    meta_json = _meta_to_json(meta)
    tick(force=True)

    with contextlib.ExitStack() as lock:
        _open_locked(directory, lock)
        name, tmp = f"ckpt-{step:012d}", None
        try:
            clean_stale(directory)
            seq = next_sequence(directory)
            name = checkpoint_name(step, seq)
            final = directory / name
            tmp = directory / f"{TMP_PREFIX}{name}-{os.getpid()}"
            tmp.mkdir()
            files = _write_contents(tmp, fmt, arrays, scalars, meta_json, step=step, seq=seq, name=name, tick=tick)
            _publish(directory, tmp, final)
        except BaseException as exc:
            if tmp is not None:
                rmtree(tmp)
            if isinstance(exc, CheckpointError) or not isinstance(exc, Exception):
                raise
            raise CheckpointError(f"writing checkpoint {name} failed: {type(exc).__name__}: {exc}") from exc
        with contextlib.suppress(OSError):  # a failed prune never fails the checkpoint
            prune(directory, keep, protect=name)
    total = total_bytes(final, files)
    tick(force=True)
    return CheckpointInfo(path=final, step=step, format=fmt, bytes=total, seconds=time.perf_counter() - t0)


def _check_arguments(fmt: str, keep: int, step: int) -> None:
    if fmt not in FORMATS:
        raise CheckpointError(f"checkpoint format {fmt!r} is not one of {FORMATS}")
    if not isinstance(keep, int) or isinstance(keep, bool) or keep < 1:
        raise CheckpointError(f"keep must be an integer >= 1, got {keep!r}")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"step must be an integer >= 0, got {step!r}")


def _split_state(state: Mapping[str, Any]) -> tuple[Arrays, dict[str, Any]]:
    """Tensors (CPU, each with a unique node name in the store) and JSON values, in key order."""
    arrays: Arrays = {}
    scalars: dict[str, Any] = {}
    nodes: set[str] = set()
    for key in state:
        if not isinstance(key, str) or not key:
            raise CheckpointError(f"state keys must be non-empty strings, got {key!r}")
    for key in sorted(state):
        value = state[key]
        if torch.is_tensor(value):
            if value.layout != torch.strided:
                raise CheckpointError(f"state entry {key!r}: {value.layout} tensors are not supported (store CSR "
                                      "arrays)")
            node = node_name(key)
            if node in nodes:
                node = hashed_node_name(key)
            nodes.add(node)
            arrays[key] = (node, to_cpu(value))
        else:
            scalars[key] = json_value(key, value)
    return arrays, scalars


def _meta_to_json(meta: Mapping[str, Any]) -> Any:
    try:
        return json.loads(json.dumps(dict(meta), allow_nan=True))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint meta is not JSON-serialisable: {exc}") from exc


def _open_locked(directory: Path, stack: contextlib.ExitStack) -> None:
    """Create ``directory`` durably if needed and take its writers' lock (released by ``stack``)."""
    try:
        if not directory.is_dir():
            directory.mkdir(parents=True, exist_ok=True)
            fsync_dir(directory.parent)
        stack.enter_context(locked(directory))
    except OSError as exc:
        raise CheckpointError(f"cannot use checkpoint directory {directory}: {exc}") from exc


def _write_contents(tmp: Path, fmt: str, arrays: Arrays, scalars: dict[str, Any], meta: Any, *, step: int, seq: int,
                    name: str, tick: Progress) -> dict[str, dict[str, Any]]:
    """Write the arrays and then the manifest into the temporary directory ``tmp``, every file and
    directory fsynced, the manifest last; returns the manifest's file list."""
    write_arrays(fmt, tmp, arrays, tick)
    tick(force=True)
    digest = state_digest({k: t for k, (_, t) in arrays.items()} | scalars)
    tick()
    hashed = hash_files(tmp, list(walk_files(tmp)), tick, fsync=True)
    files = {rel: {"sha256": sha, "bytes": size} for rel, (sha, size) in sorted(hashed.items())}
    with concurrent.futures.ThreadPoolExecutor(IO_WORKERS) as pool:  # new dirs' entries
        list(pool.map(fsync_dir, [Path(dirpath) for dirpath, _, _ in os.walk(tmp)]))
    manifest = build_manifest(fmt=fmt, step=step, seq=seq, name=name, files=files, arrays=arrays, scalars=scalars,
                              meta=meta, digest=digest)
    write_manifest(tmp, manifest)
    fsync_dir(tmp)
    tick(force=True)
    return files


def _publish(directory: Path, tmp: Path, final: Path) -> None:
    """Rename the finished temporary directory into place, durably, and point ``LATEST`` at it."""
    os.rename(tmp, final)  # final never exists: the sequence is unique in this directory
    fsync_dir(directory)
    swap_latest(directory, final.name)
