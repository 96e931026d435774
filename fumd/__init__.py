"""fumd: the FUM phase-3 perception-action loop on a sparse, continuously learning spiking network."""
from __future__ import annotations

from typing import Any

__all__ = ["Engine", "EngineConfig", "CycleResult"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Lazy: `fumd status`, `fumd feed` and config validation should not pay for importing torch.
    if name in ("Engine", "CycleResult"):
        from . import engine

        return getattr(engine, name)
    if name == "EngineConfig":
        from .config import EngineConfig

        return EngineConfig
    raise AttributeError(f"module 'fumd' has no attribute {name!r}")
