"""The input ledger: which inputs the network state has learned (SPEC §9 "input-queue position").

Files are processed strictly in sequence order, so one cursor says it all: every file with a
sequence number below ``seq`` is fully learned, and the first ``record`` records of file ``seq``
are. ``partial_bytes`` is the length of that file's partial results at the same moment, and
``next_seq`` the next sequence number admission will hand out. A checkpoint stores the ledger
with the state it describes, so after a crash the daemon replays exactly the records learned
after the checkpoint: nothing lost, nothing learned twice.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
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
