"""Reading checkpoints back: every load is verified (the manifest's checksum, every file's size
and sha256, then the decoded state's digest), and ``load_latest`` falls back to older
checkpoints past unusable newer ones, naming each and why."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import CheckpointError
from .directory import TMP_PREFIX, latest_candidates
from .encoding import state_digest
from .files import Progress
from .manifest import read_manifest, verify_files
from .stores import read_arrays


@dataclass(frozen=True)
class LoadedCheckpoint:
    path: Path
    state: dict[str, Any]
    meta: dict[str, Any]
    skipped: list[tuple[Path, str]]  # (newer checkpoint, why it was unusable), newest first


def load_verified(path: Path, tick: Progress) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``(state, meta, manifest)`` of checkpoint ``path``, verified; raises CheckpointError."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a checkpoint directory" + ("" if path.exists() else " (missing)"))
    try:
        manifest = read_manifest(path)
        tick(force=True)
        verify_files(path, manifest, tick)
        tensors = read_arrays(manifest["format"], path, manifest["arrays"], tick)
    except CheckpointError:
        raise
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path.name}: {type(exc).__name__}: {exc}") from exc
    state: dict[str, Any] = dict(tensors)
    overlap = set(state) & set(manifest["scalars"])
    if overlap:
        raise CheckpointError(f"{path.name}: keys both array and scalar: {sorted(overlap)[:3]}")
    state.update(manifest["scalars"])
    state = {k: state[k] for k in sorted(state)}
    tick()
    if state_digest(state) != manifest["state_sha256"]:
        raise CheckpointError(f"{path.name}: decoded state does not match the manifest's state_sha256")
    tick(force=True)
    return state, manifest["meta"], manifest


def load_checkpoint(path: Path, *, progress: Callable[[], None] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify (manifest checksum, every file's size and sha256, the state digest) and load one
    checkpoint. Tensors come back on CPU with their exact dtype/shape. Raises CheckpointError."""
    state, meta, _ = load_verified(Path(path), Progress(progress))
    return state, meta


# (path, state, meta, manifest, skipped) of the newest valid checkpoint
Found = tuple[Path, dict[str, Any], dict[str, Any], dict[str, Any], list[tuple[Path, str]]]


def find_latest(directory: Path, tick: Progress) -> Found | None:
    """The newest valid checkpoint with its manifest, as ``load_latest`` (which see)."""
    candidates, skipped = latest_candidates(directory)
    for path in candidates:
        try:
            state, meta, manifest = load_verified(path, tick)
        except CheckpointError as exc:
            skipped.append((path, str(exc)))
            continue
        return path, state, meta, manifest, skipped
    unusable = [(p, r) for p, r in skipped if not p.name.startswith(TMP_PREFIX)]
    if not unusable:
        return None
    reasons = "; ".join(f"{p.name}: {r}" for p, r in unusable)
    raise CheckpointError(f"no usable checkpoint in {directory} ({reasons})")


def load_latest(directory: Path, *, progress: Callable[[], None] | None = None) -> LoadedCheckpoint | None:
    """The newest valid checkpoint in ``directory``; newer unusable ones are listed in
    ``skipped`` with the reason. None when there is no checkpoint at all (fresh start). Raises
    CheckpointError when checkpoints exist (or ``LATEST`` names one) but none is usable, so a
    damaged state directory is never silently replaced by a fresh network."""
    found = find_latest(Path(directory), Progress(progress))
    if found is None:
        return None
    path, state, meta, _, skipped = found
    return LoadedCheckpoint(path=path, state=state, meta=meta, skipped=skipped)
