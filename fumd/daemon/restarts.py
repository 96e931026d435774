"""Crash-loop detection: starts that restored the same checkpoint as the previous start, which
did not stop cleanly, made no progress.

systemd's ``Restart=on-failure`` hides a crash loop: each start looks healthy for a few seconds.
A restart that restores the checkpoint the previous start restored, after that start died
without writing a newer one, has lost all the work in between; counting them in a row gives the
``fumd_restarts_without_progress`` gauge (and its alert). The record is one small JSON file,
``STATE_DIR/restarts.json``, rewritten atomically at start, after every checkpoint and at a
clean stop.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..io.atomic import atomic_write_json

RESTARTS_FILE = "restarts.json"


class RestartTracker:
    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / RESTARTS_FILE
        self.without_progress = 0
        self._checkpoint: str | None = None

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def started(self, restored: str | None) -> int:
        """Record a start from checkpoint ``restored`` (None: fresh); returns how many starts in a
        row made no progress (0 after a clean stop or a newer checkpoint)."""
        previous = self._read()
        same = previous.get("checkpoint") == restored and restored is not None
        if same and not previous.get("clean", True):
            self.without_progress = int(previous.get("without_progress", 0)) + 1
        else:
            self.without_progress = 0
        self._checkpoint = restored
        self._write(clean=False)
        return self.without_progress

    def progressed(self, checkpoint: str) -> None:
        """A newer checkpoint is on disk: the work since the start is safe."""
        self._checkpoint, self.without_progress = checkpoint, 0
        self._write(clean=False)

    def stopped_cleanly(self) -> None:
        self.without_progress = 0
        self._write(clean=True)

    def _write(self, clean: bool) -> None:
        try:
            atomic_write_json(self.path, {"checkpoint": self._checkpoint, "clean": clean,
                                          "without_progress": self.without_progress})
        except OSError:
            pass  # a full disk must not stop the daemon over a diagnostic
