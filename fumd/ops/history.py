"""``STATE_DIR/history/``: what ``fumd plot`` and people read back about the past.

- ``cycles.jsonl``: every ``history.every_cycles`` cycles one line (step, time, population rate and
  its variance across neurons, mean rate per cluster, reward and components, novelty, cluster).
- ``jobs.jsonl``: one line per job run (step, time, job, its key outputs).
- ``raster.npz``: the spike raster (bool [T, N], bit-packed) of the last cycle before a checkpoint.

Files are appended (a torn last line after a crash is skipped by readers) and rotated to
``*.1.jsonl`` past ``history.max_bytes``. History is a record, not state: it is not in checkpoints
and a replay after a crash may append lines for the same steps again (readers keep the last).
The directory is bounded: at most two files of each kind, each about ``history.max_bytes``. A write
that fails (a full disk) drops that line; history never stops the daemon.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from ..engine import CycleResult, Engine


class History:
    def __init__(self, state_dir: Path, every_cycles: int, max_bytes: int):
        self.dir = state_dir / "history"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.every_cycles = every_cycles
        self.max_bytes = max_bytes
        self.dropped = 0  # lines and rasters not written (disk full)

    def cycle(self, engine: Engine, result: CycleResult) -> None:
        if not self.every_cycles or result.step % self.every_cycles:
            return
        st = engine.state
        window_ms = engine.config.lif.steps * engine.config.lif.dt_ms
        counts = (engine.last_cycle_spikes.counts.double() if engine.last_cycle_spikes is not None
                  else torch.zeros(st.n, dtype=torch.float64))
        rates = counts * (1000.0 / window_ms)
        per_cluster = torch.bincount(st.cluster, weights=rates, minlength=st.n_clusters)
        sizes = torch.bincount(st.cluster, minlength=st.n_clusters).clamp(min=1)
        self._append("cycles.jsonl", {
            "step": result.step, "time": time.time(), "rate_hz": result.rate_hz,
            "rate_variance_hz2": float(rates.var()) if rates.numel() > 1 else 0.0,
            "cluster_rates_hz": [round(float(r), 3) for r in (per_cluster / sizes)],
            "total_reward": result.total_reward, "components": result.components, "novelty": result.novelty,
            "cluster": result.cluster, "correct": result.correct, "neurons": st.n, "synapses": st.nnz,
        })

    def job(self, step: int, name: str, outputs: dict[str, Any]) -> None:
        clean = {k: (float(v) if isinstance(v, (int, float, bool)) else str(v)) for k, v in outputs.items()}
        self._append("jobs.jsonl", {"step": step, "time": time.time(), "job": name, "outputs": clean})

    def raster(self, engine: Engine) -> None:
        if engine.last_cycle_spikes is None:
            return
        raster = engine.last_cycle_spikes.raster.cpu().numpy()
        tmp = self.dir / ".raster.npz.tmp"
        try:
            with open(tmp, "wb") as fh:
                np.savez(fh, bits=np.packbits(raster, axis=1), shape=np.array(raster.shape),
                         step=np.array(engine.steps_done))
            os.replace(tmp, self.dir / "raster.npz")
        except OSError:
            tmp.unlink(missing_ok=True)
            self.dropped += 1

    def _append(self, name: str, line: dict[str, Any]) -> None:
        path = self.dir / name
        try:
            if path.exists() and path.stat().st_size > self.max_bytes:
                os.replace(path, self.dir / name.replace(".jsonl", ".1.jsonl"))
            with open(path, "a") as fh:
                fh.write(json.dumps(_finite(line)) + "\n")
        except OSError:
            self.dropped += 1  # a record, not state: a full disk costs lines, never the daemon


def _finite(value: Any) -> Any:
    """NaN/inf -> None: history lines stay strict JSON (a criticality fit may be NaN early on)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Lines of a history file (older rotated file first); torn or NaN lines are skipped."""
    out = []
    for p in (path.with_name(path.name.replace(".jsonl", ".1.jsonl")), path):
        if not p.exists():
            continue
        for line in p.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out
