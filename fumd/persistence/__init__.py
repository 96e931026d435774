"""Persistence: crash-safe checkpoints of the full state (SPEC §9). The public entry points are in
``checkpoint.py``; its docstring describes the on-disk layout and the write protocol."""
from __future__ import annotations

from ..errors import FumdError


class CheckpointError(FumdError):
    """A checkpoint could not be written, or is missing/corrupt/incomplete (the message says how)."""
