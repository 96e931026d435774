"""``fumd inspect``: a JSON-able, verified summary of a checkpoint."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

from . import CheckpointError
from .directory import parse_name
from .files import Progress
from .manifest import MANIFEST, total_bytes
from .read import find_latest, load_verified


def _meta_summary(meta: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in meta.items():
        if isinstance(v, list):
            out[k] = {"type": "list", "length": len(v)}
        elif isinstance(v, dict):
            out[k] = {"type": "object", "keys": len(v)}
        elif isinstance(v, str) and len(v) > 200:
            out[k] = v[:200] + "…"
        else:
            out[k] = v
    return out


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


def inspect_checkpoint(path: Path) -> dict[str, Any]:
    """A JSON-able summary of one checkpoint (verified). ``path`` is a checkpoint directory, or a
    checkpoints directory / state directory (containing ``checkpoints/``): then the newest valid
    one, with the newer unusable ones under ``skipped``."""
    path = Path(path)
    skipped: list[tuple[Path, str]] = []
    if (path / MANIFEST).exists() or parse_name(path.name) is not None:
        target = path
        state, meta, manifest = load_verified(target, Progress(None))
    else:
        directory = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        if not directory.is_dir():
            raise CheckpointError(f"{path}: no such checkpoint or directory")
        found = find_latest(directory, Progress(None))
        if found is None:
            raise CheckpointError(f"{directory}: no checkpoints")
        target, state, meta, manifest, skipped = found
    files = manifest["files"]
    scalars = {k: v for k, v in manifest["scalars"].items()}
    return _json_safe({
        "path": str(target.resolve()),
        "name": target.name,
        "format": manifest["format"],
        "step": manifest["step"],
        "sequence": manifest.get("sequence"),
        "created": manifest.get("created"),
        "bytes": total_bytes(target, files),
        "files": len(files) + 1,
        "arrays": {k: {"dtype": a["dtype"], "shape": a["shape"]} for k, a in manifest["arrays"].items()},
        "array_bytes": sum(a["bytes"] for a in manifest["arrays"].values()),
        "scalars": {k: (v if not isinstance(v, list) or len(v) <= 64 else {"type": "list", "length": len(v)})
                    for k, v in scalars.items()},
        "neurons": manifest.get("neurons"),
        "synapses": manifest.get("synapses"),
        "state_sha256": manifest["state_sha256"],
        "verified": True,
        "meta_keys": sorted(meta),
        "meta": _meta_summary(meta),
        "skipped": [{"path": str(p), "reason": r} for p, r in skipped],
    })
