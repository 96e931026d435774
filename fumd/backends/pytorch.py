"""The torch backend: the reference form of the per-cycle hot path, on any device (the CUDA path,
and the fallback where numba is unavailable).

It composes the mechanisms where they are defined, formulas and seeds in their docstrings:
``network/simulate.py`` (the T steps of a cycle), ``learning/stdp.py`` (one weight change per
propagation event, ``network/propagate.py::cycle_events``), ``learning/eligibility.py`` (the
trace), ``learning/modulation.py`` (the reward-modulated weight update, optionally through
``torch.compile``, setting ``compile``) and ``learning/readout.py`` (the readout synapses' own
update).

(Named ``pytorch`` and not ``torch``: a submodule ``fumd.backends.torch`` would rebind the name
``torch`` in its package's namespace.)
"""
from __future__ import annotations

from typing import Callable

import torch

from ..config import LIFConfig
from ..learning.eligibility import EligibilityUpdate, update_trace
from ..learning.modulation import UpdateCoefficients, synapse_update
from ..learning.readout import readout_update
from ..learning.stdp import STDPKernels, event_updates
from ..network.propagate import cycle_events
from ..network.simulate import simulate_cycle
from ..network.spikes import CycleSpikes
from ..network.state import NetworkState


class TorchBackend:
    """``Backend`` in PyTorch operations."""

    name = "torch"

    def __init__(self, lif: LIFConfig, kernels: STDPKernels, compile_mode: str = "off"):
        self.lif = lif
        self.kernels = kernels
        self.synapse_update = _maybe_compile(synapse_update, compile_mode)

    def simulate(self, state: NetworkState, input_spikes: torch.Tensor) -> CycleSpikes:
        return simulate_cycle(state, input_spikes, self.lif)

    def learn(self, state: NetworkState, spikes: CycleSpikes, eligibility: EligibilityUpdate,
              coefficients: UpdateCoefficients) -> None:
        events = cycle_events(state.indptr, state.col, spikes)
        is_inh = events.pos >= state.n_exc_synapses
        dw = event_updates(spikes.raster, events.post, events.step, is_inh, self.kernels,
                           eligibility.post_gate, eligibility.causal_post)
        update_trace(state.e, events.pos, dw, eligibility.gamma)
        c = coefficients
        w_before = torch.index_select(state.w, 0, c.readout_pos) if c.apply_readout else None
        if c.generic:
            self.synapse_update(state.w, state.e, state.persistent, state.n_exc_synapses, c.excitatory, c.inhibitory,
                                c.persistent_scale, c.w_max)
        if c.apply_readout:
            assert w_before is not None  # taken above whenever apply_readout
            readout_update(state.w, state.e, state.persistent, c.readout_pos, w_before, c.readout, c.persistent_scale,
                           c.w_max)


def _maybe_compile(fn: Callable[..., None], mode: str) -> Callable[..., None]:
    if mode == "off":
        return fn
    try:
        return torch.compile(fn, dynamic=True)
    except Exception:  # noqa: BLE001 - compilation is an optimisation; eager always works
        if mode == "on":
            raise
        return fn
