"""Which jobs the daemon runs, and on which clocks."""
from __future__ import annotations

from typing import Any

from .base import Job
from .clustering import ClusteringJob
from .config import JobsConfig
from .criticality import CriticalityJob
from .decay import DecayJob
from .structural import StructuralJob
from .tagging import TaggingJob
from .tuning import TuningJob


def build_jobs(config: JobsConfig, seed: int = 0) -> list[Job[Any, Any]]:
    """The enabled jobs. The structural job slows down while criticality says the network is off
    its critical point (SPEC §7: criticality index > 0.2 -> slower structural plasticity); the
    tuner's learning rate is multiplied by the criticality job's ``eta_scale`` (1 while that job is
    off), so the two never undo each other's setting of the ``eta`` knob."""
    criticality = CriticalityJob(config.criticality, seed=seed)
    candidates: list[tuple[Any, Job[Any, Any]]] = [
        (config.clustering, ClusteringJob(config.clustering, seed=seed)),
        (config.decay, DecayJob(config.decay)),
        (config.tagging, TaggingJob(config.tagging)),
        (config.tuning, TuningJob(config.tuning, eta_scale_source=lambda: criticality.eta_scale, seed=seed)),
        (config.structural,
         StructuralJob(config.structural, slow_source=lambda: criticality.slow_structural, seed=seed)),
        (config.criticality, criticality),
    ]
    return [job for cfg, job in candidates if cfg.enabled]


def job_cadences(config: JobsConfig, deterministic: bool) -> dict[str, tuple[int, float]]:
    """name -> (every_cycles, every_seconds); a job runs on each clock that is > 0. Deterministic
    mode uses cycles only; a job given no cycle cadence there gets ``every_seconds`` x 20 cycles."""
    out = {}
    for name, cfg in config.items():
        cycles, seconds = int(cfg.every_cycles), float(cfg.every_seconds)
        out[name] = (cycles or max(1, int(round(seconds * 20))), 0.0) if deterministic else (cycles, seconds)
    return out
