"""``state/status.json``: what ``fumd status`` prints, rewritten atomically by the daemon."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ..io.atomic import atomic_write_json

STATUS_FILE = "status.json"


def write_status(state_dir: Path, status: dict[str, Any]) -> None:
    atomic_write_json(state_dir / STATUS_FILE, {**status, "updated_at": time.time()})


def read_status(state_dir: Path) -> dict[str, Any]:
    """The daemon's last status, with ``running`` telling whether its process is still alive."""
    path = state_dir / STATUS_FILE
    try:
        status = json.loads(path.read_text())
    except FileNotFoundError:
        return {"state_dir": str(state_dir), "running": False, "error": "no status.json: the daemon has never run here"}
    pid = status.get("pid")
    alive = False
    if isinstance(pid, int):
        try:
            os.kill(pid, 0)
            alive = status.get("phase") != "stopped"
        except ProcessLookupError:
            alive = False
        except PermissionError:
            alive = True
    status["running"] = alive
    status["age_seconds"] = time.time() - float(status.get("updated_at", 0))
    return status
