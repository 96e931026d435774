"""Compiled CPU kernels (numba) for the per-cycle hot path.

Each kernel mirrors PyTorch code that stays the reference, the CUDA path and the fallback, and
gives bit-identical results: ``propagation.simulate_steps`` <- ``network/simulate.py`` (the 50
steps of a cycle: event-driven input current and Norse's LIF step), ``plasticity`` <-
``learning/stdp.py`` + ``eligibility.py`` + ``modulation.py`` + ``readout.py``.
They exist because at 50 steps per cycle the PyTorch form pays per-op dispatch and writes event
lists (positions, targets, steps) that the kernels never materialise (docs/mechanisms.md, "Compiled
kernels"). ``engine.backend`` chooses: ``auto`` = numba on CPU when it imports, else torch.
"""
from __future__ import annotations

import warnings

import torch

def resolve_backend(name: str, device: torch.device) -> str:
    """``numba`` or ``torch`` for the configured ``name`` on ``device``."""
    if name == "torch":
        return "torch"
    if device.type != "cpu":
        if name == "numba":
            raise RuntimeError(f"backend 'numba' runs on the CPU only, not on {device}; use 'auto' or 'torch'")
        return "torch"
    try:  # importing compiles nothing yet, but checks numba and its cache directory
        from . import plasticity, propagation  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - numba missing or unusable: the PyTorch path always works
        if name == "numba":
            raise
        warnings.warn(f"numba kernels unavailable ({type(exc).__name__}: {exc}); using the PyTorch path", RuntimeWarning, stacklevel=2)
        return "torch"
    return "numba"


def compiled_threads() -> int:
    """Threads for the numba kernels: torch's thread count (``torch.set_num_threads``), which
    they follow, within numba's pool; also sets numba's count for this thread's parallel loops."""
    import numba

    threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(threads)
    return threads
