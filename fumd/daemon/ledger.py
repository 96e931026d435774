"""The input ledger: which inputs the network state has learned (SPEC §9 "input-queue position").

Files are processed strictly in sequence order, so one cursor says it all: every file with a
sequence number below ``seq`` is fully learned, and the first ``record`` records of file ``seq``
are. ``partial_bytes`` is the length of that file's partial results at the same moment, and
``next_seq`` the next sequence number admission will hand out. A checkpoint stores the ledger
with the state it describes, so after a crash the daemon replays exactly the records learned
after the checkpoint: nothing lost, nothing learned twice.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping


@dataclass(frozen=True)
class Ledger:
    seq: int = 0
    record: int = 0
    partial_bytes: int = 0
    next_seq: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Ledger":
        return cls(**{k: int(data[k]) for k in ("seq", "record", "partial_bytes", "next_seq")})

    def covers_file(self, seq: int) -> bool:
        """True when the state holding this ledger has learned every record of file ``seq``."""
        return seq < self.seq


def oldest_ledger_seq(checkpoints_dir: Path) -> int | None:
    """The lowest ledger position among the checkpoints on disk: no restore (not even a fallback
    past a corrupt newer checkpoint) can take the daemon back before it. None when there is no
    readable checkpoint. Reads the manifests only (small JSON)."""
    from ..persistence.directory import list_checkpoints
    from ..persistence.manifest import MANIFEST

    seqs = []
    for path in list_checkpoints(checkpoints_dir):
        try:
            meta = json.loads((path / MANIFEST).read_text()).get("meta", {})
            seqs.append(int(meta["ledger"]["seq"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # an unreadable manifest cannot be restored from: it sends nobody back
    return min(seqs) if seqs else None
