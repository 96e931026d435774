"""``manifest.json``, the last file written into a checkpoint: format, step, sequence, created,
per-file sha256 and size, per-array dtype/shape/node, scalars, meta, the state digest and the
manifest's own sha256 (over its canonical JSON without that field). A checkpoint is valid when
its manifest checks out and every file it lists (and no other) has the listed size and sha256.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

import torch

from ..io.atomic import write_file_durably
from . import CheckpointError
from .encoding import canonical_json, dtype_name, storage_dtype
from .files import FILE_MODE, Progress, hash_files, walk_files
from .stores import FORMATS, Arrays

MANIFEST = "manifest.json"
VERSION = "fumd-checkpoint/1"


def _summary_counts(state: Mapping[str, Any]) -> dict[str, int | None]:
    def numel(key: str) -> int | None:
        v = state.get(key)
        return int(v.shape[0]) if torch.is_tensor(v) and v.dim() >= 1 else None

    indptr = numel("network.indptr")
    return {
        "neurons": numel("network.v") if numel("network.v") is not None else (indptr - 1 if indptr else None),
        "synapses": numel("network.col"),
    }


def build_manifest(*, fmt: str, step: int, seq: int, name: str, files: dict[str, dict[str, Any]], arrays: Arrays,
                   scalars: dict[str, Any], meta: Any, digest: str) -> dict[str, Any]:
    """The manifest of a checkpoint whose files are hashed (``files``: path -> sha256, bytes),
    stamped with the current time and its own sha256."""
    created = _dt.datetime.now(_dt.timezone.utc)
    manifest = {
        "version": VERSION,
        "format": fmt,
        "step": step,
        "sequence": seq,
        "name": name,
        "created": created.isoformat(timespec="microseconds"),
        "created_unix": created.timestamp(),
        "files": files,
        "arrays": {
            k: {"dtype": dtype_name(t.dtype), "shape": list(t.shape), "node": node,
                "stored_dtype": storage_dtype(t.dtype).str, "bytes": t.numel() * t.element_size()}
            for k, (node, t) in arrays.items()
        },
        "scalars": scalars,
        "meta": meta,
        "state_sha256": digest,
        "torch_version": torch.__version__,
        **_summary_counts({k: t for k, (_, t) in arrays.items()}),
    }
    manifest["manifest_sha256"] = hashlib.sha256(canonical_json(manifest)).hexdigest()
    return manifest


def write_manifest(directory: Path, manifest: Mapping[str, Any]) -> None:
    """Write ``manifest.json`` into ``directory`` and fsync it (not the directory)."""
    write_file_durably(directory / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True, allow_nan=True).encode(),
                       FILE_MODE)


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of checkpoint ``path``, its checksum, version, format and fields checked."""
    mpath = path / MANIFEST
    try:
        raw = mpath.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path.name}: manifest missing (incomplete or damaged checkpoint)") from None
    except OSError as exc:
        raise CheckpointError(f"{path.name}: manifest unreadable: {exc}") from exc
    try:
        manifest = json.loads(raw.decode("utf-8"))
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{path.name}: manifest is not valid JSON ({exc}); corrupt or truncated") from exc
    claimed = manifest.pop("manifest_sha256", None)
    if claimed != hashlib.sha256(canonical_json(manifest)).hexdigest():
        raise CheckpointError(f"{path.name}: manifest checksum mismatch (manifest corrupt)")
    if manifest.get("version") != VERSION:
        raise CheckpointError(f"{path.name}: unsupported checkpoint version {manifest.get('version')!r}")
    if manifest.get("format") not in FORMATS:
        raise CheckpointError(f"{path.name}: unknown format {manifest.get('format')!r}")
    for field in ("files", "arrays", "scalars", "meta", "state_sha256", "step"):
        if field not in manifest:
            raise CheckpointError(f"{path.name}: manifest lacks {field!r}")
    return manifest


def verify_files(path: Path, manifest: Mapping[str, Any], tick: Progress) -> None:
    """Checkpoint ``path`` holds exactly the files its manifest lists, each with its size and sha256."""
    expected: Mapping[str, Mapping[str, Any]] = manifest["files"]
    try:
        present = {p.as_posix() for p in walk_files(path)} - {MANIFEST}
    except OSError as exc:
        raise CheckpointError(f"{path.name}: cannot list files: {exc}") from exc
    missing = sorted(set(expected) - present)
    if missing:
        raise CheckpointError(f"{path.name}: {len(missing)} file(s) missing, e.g. {missing[0]}")
    extra = sorted(present - set(expected))
    if extra:
        raise CheckpointError(f"{path.name}: unexpected file(s) not in the manifest, e.g. {extra[0]}")
    for rel, want in expected.items():
        size = (path / rel).stat().st_size
        if size != want["bytes"]:
            kind = "truncated" if size < want["bytes"] else "has grown"
            raise CheckpointError(f"{path.name}: file {rel} {kind}: {size} bytes, manifest says {want['bytes']}")
    hashed = hash_files(path, [Path(rel) for rel in expected], tick, fsync=False)
    for rel, want in expected.items():
        if hashed[rel][0] != want["sha256"]:
            raise CheckpointError(f"{path.name}: file {rel} is corrupt (sha256 mismatch)")


def total_bytes(path: Path, files: Mapping[str, Mapping[str, Any]]) -> int:
    """Bytes on disk of checkpoint ``path``: its ``files`` (the manifest's list) plus the manifest."""
    return sum(f["bytes"] for f in files.values()) + (path / MANIFEST).stat().st_size
