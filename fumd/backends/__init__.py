"""The backend seam: the two per-cycle hot paths behind one interface, chosen once.

A backend runs, on a ``NetworkState``::

    spikes = backend.simulate(state, input_spikes)                  # T steps -> CycleSpikes
    backend.learn(state, spikes, eligibility, coefficients)         # STDP -> traces -> weights

Everything else in a cycle (encoding, decoding, the SIE, the coefficients of the update, the
readout's synaptic scaling, thresholds, intrinsic plasticity; ``engine.py``) is
backend-independent PyTorch code, written once. The implementations give bit-identical states
(``tests/test_backends.py``; the engine and learning tests run on each through the ``backend``
fixture of ``tests/conftest.py``):

- ``pytorch.TorchBackend`` (``torch``): the reference, composed of the mechanisms in
  ``network/`` and ``learning/``; any device (the CUDA path).
- ``numba.NumbaBackend`` (``numba``): the same operations in the same order, as compiled CPU
  kernels (``backends/numba/``).

``make_backend`` picks one from the ``backend`` setting and the device (``resolve_backend``:
``auto`` = numba on the CPU when it imports, else torch); the engine calls the protocol and never
asks which one it has.
- ``sharding.backend.ShardedBackend`` (``sharded``): the network split into ``[sharding] shards``
  parts that simulate and learn in parallel in this process (issue #12); bit-identical too.
"""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch

    from ..config import EngineConfig
    from ..learning.eligibility import EligibilityUpdate
    from ..learning.modulation import UpdateCoefficients
    from ..learning.readout import ReadoutKernels
    from ..network.spikes import CycleSpikes
    from ..network.state import NetworkState


@runtime_checkable
class Backend(Protocol):
    name: str  # the resolved ``backend`` setting: torch | numba | sharded

    def simulate(self, state: NetworkState, input_spikes: torch.Tensor) -> CycleSpikes:
        """Run ``T = input_spikes.shape[0]`` steps (``input_spikes``: the encoder's bool
        [T, n_in]) on ``state``: replaces ``state.v`` and ``state.last_spikes`` (never writes
        into the old ones), reads the rest; returns the cycle's spikes."""
        ...

    def learn(self, state: NetworkState, spikes: CycleSpikes, eligibility: EligibilityUpdate,
              coefficients: UpdateCoefficients) -> None:
        """In place on ``state.e`` and ``state.w``: this cycle's STDP into the eligibility traces,
        ``e <- gamma e + sum dw`` (``learning/stdp.py``, ``eligibility.py``); then, when
        ``coefficients.generic``, ``w <- clip(w + coef * scale * e)`` on every synapse
        (``learning/modulation.py``); then, when ``coefficients.apply_readout``, the readout
        synapses again from their weights before that update, ``w <- clip(w_before + coef_r *
        scale * e, 0, w_max)`` (``learning/readout.py``)."""
        ...


def resolve_backend(name: str, device: torch.device) -> str:
    """``numba``, ``torch`` or ``sharded`` for the configured ``name`` on ``device``."""
    if name == "torch":
        return "torch"
    if device.type != "cpu":
        if name in ("numba", "sharded"):
            raise RuntimeError(f"backend {name!r} runs on the CPU only, not on {device}; use 'auto' or 'torch'")
        return "torch"
    try:  # importing compiles nothing yet, but checks numba and its cache directory
        from .numba import plasticity, propagation  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - numba missing or unusable: the PyTorch path always works
        if name in ("numba", "sharded"):
            raise
        warnings.warn(f"numba kernels unavailable ({type(exc).__name__}: {exc}); using the PyTorch path",
                      RuntimeWarning, stacklevel=2)
        return "torch"
    return "sharded" if name == "sharded" else "numba"


def readout_kernels(backend: str) -> ReadoutKernels:
    """The readout's per-cycle passes for a resolved backend: compiled with the CPU backends
    (``backends/numba/readout.py``, bit-identical), PyTorch with ``torch``."""
    if backend in ("numba", "sharded"):
        from .numba.readout import CompiledReadout

        return CompiledReadout()
    from ..learning.readout import TorchReadout

    return TorchReadout()


def make_backend(config: EngineConfig, device: torch.device) -> Backend:
    """The backend for ``config.backend`` on ``device`` (``resolve_backend``), with its STDP
    kernels (``config.stdp``) and LIF settings (``config.lif``)."""
    from ..learning.stdp import make_kernels

    kernels = make_kernels(config.stdp, config.lif.dt_ms, device)
    resolved = resolve_backend(config.backend, device)
    if resolved == "sharded":
        from ..sharding.backend import ShardedBackend

        return ShardedBackend(config.lif, kernels, config.sharding, config.network.seed)
    if resolved == "numba":
        from .numba import NumbaBackend  # (imported here: numba is loaded only where it is used)

        return NumbaBackend(config.lif, kernels)
    from .pytorch import TorchBackend

    return TorchBackend(config.lif, kernels, config.compile)
