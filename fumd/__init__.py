"""fumd: the FUM phase-3 perception-action loop on a sparse, continuously learning spiking network."""
from .config import EngineConfig
from .engine import CycleResult, Engine

__all__ = ["Engine", "EngineConfig", "CycleResult"]
__version__ = "0.1.0"
