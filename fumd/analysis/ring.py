"""A fixed-capacity ring buffer of numbers (numpy), saved in a checkpoint as a tensor + a count."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch


def chronological(buf: np.ndarray, count: int) -> np.ndarray:
    """What a ring with storage ``buf`` holds after ``count`` values were ever written, oldest
    first (a copy)."""
    cap = buf.size
    if count < cap:
        return buf[:count].copy()
    pos = count % cap
    return np.concatenate((buf[pos:], buf[:pos]))


class Ring:
    """Fixed-capacity ring of numbers: keeps the newest ``capacity`` values written."""

    def __init__(self, capacity: int, dtype: Any = np.float64):
        self.buf = np.zeros(capacity, dtype=dtype)
        self.count = 0  # total ever written

    def extend(self, values: Any) -> None:
        values = np.asarray(values, dtype=self.buf.dtype).ravel()
        cap, size = self.buf.size, values.size
        keep = values[-cap:] if size > cap else values
        positions = (self.count + size - keep.size + np.arange(keep.size)) % cap
        self.buf[positions] = keep
        self.count += size

    def values(self) -> np.ndarray:
        """Chronological copy of what is held."""
        return chronological(self.buf, self.count)

    def __len__(self) -> int:
        return min(self.count, self.buf.size)

    def state_dict(self, prefix: str) -> dict[str, Any]:
        """``{prefix}.buf`` (a tensor copy of the storage) and ``{prefix}.count``."""
        return {f"{prefix}.buf": torch.from_numpy(self.buf.copy()), f"{prefix}.count": int(self.count)}

    def load_state_dict(self, data: dict[str, Any], prefix: str) -> None:
        """Restore what ``state_dict(prefix)`` saved; a ring saved with another capacity (changed
        in the config) keeps its newest values."""
        buf = data[f"{prefix}.buf"].cpu().numpy().astype(self.buf.dtype)
        if buf.size != self.buf.size:
            self.buf[:] = 0
            self.count = 0
            self.extend(chronological(buf, int(data[f"{prefix}.count"])))
        else:
            self.buf[:] = buf
            self.count = int(data[f"{prefix}.count"])
