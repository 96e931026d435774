"""``[jobs.<name>]`` sections of the config: one frozen dataclass per job, defined next to it."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .clustering import ClusteringConfig
from .criticality import CriticalityConfig
from .decay import DecayConfig
from .structural import StructuralConfig
from .tagging import TaggingConfig
from .tuning import TuningConfig


@dataclass(frozen=True)
class JobsConfig:
    """Scheduled self-regulation jobs (SPEC §6-§8); cadences in seconds or (deterministic) cycles."""

    clustering: ClusteringConfig = field(default_factory=ClusteringConfig)
    decay: DecayConfig = field(default_factory=DecayConfig)
    persistence: TaggingConfig = field(default_factory=TaggingConfig)
    tuning: TuningConfig = field(default_factory=TuningConfig)
    structural: StructuralConfig = field(default_factory=StructuralConfig)
    criticality: CriticalityConfig = field(default_factory=CriticalityConfig)

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            getattr(self, f.name).validate()

    def items(self) -> list[tuple[str, object]]:
        return [(f.name, getattr(self, f.name)) for f in dataclasses.fields(self)]
