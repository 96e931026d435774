"""The kernels' arguments, bundled as NamedTuples of numpy arrays and scalars (numba passes a
NamedTuple as one struct; the arrays are views of the state's tensors, so a kernel writing
``w`` or ``e`` writes the state).

Each kernel unpacks the fields it uses into local names before its first ``prange`` loop: with
``parallel=True``, numba (0.68 and before) silently drops writes made through a tuple's array
field inside a parallel loop (numba issues #5872, #7135, #10338); through a local name they land.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from ...network.state import NetworkState

_EMPTY_HALF = np.empty(0, dtype=np.uint16)
_EMPTY_FLOAT = np.empty(0, dtype=np.float32)


class Synapses(NamedTuple):
    """The CSR synapse arrays, by presynaptic neuron (``network/state.py``)."""

    indptr: np.ndarray  # int64 [N + 1]: row i is [indptr[i], indptr[i + 1])
    col: np.ndarray  # int32 [nnz]: postsynaptic neuron
    w: np.ndarray  # float32 [nnz]: weight (written by learning)
    persistent: np.ndarray  # bool [nnz]: learns at persistent_eta_scale
    n_exc: int  # synapses [0, n_exc) are excitatory, the rest inhibitory (rows of E neurons first)


class Traces(NamedTuple):
    """The eligibility trace ``e``: float16 (its bit pattern, through a uint16 view: numba has no
    float16 on the CPU) or float32; the other array is empty."""

    half: bool
    e16: np.ndarray  # uint16 [nnz] (half) or [0]
    e32: np.ndarray  # float32 [nnz] or [0] (half)


class LIFNeurons(NamedTuple):
    """The box-LIF step's parameters, as ``LIFStepper`` holds them (``network/lif.py``)."""

    dt_tau_inv: np.ndarray  # float32 [N]: dt * (1000 / tau_mem), Norse's first product
    v_th: np.ndarray  # float32 [N]: v_th + theta
    v_leak: float  # V_rest (mV)
    v_reset: np.ndarray  # float32 [N]: reset potential (mV)
    v_min: float  # floor on V after the Euler step (mV)


class Currents(NamedTuple):
    """What drives the neurons: the encoder's current per step and the recurrent gains."""

    drive: np.ndarray  # float32 [T, n_in]: input current of each input neuron per step
    input_idx: np.ndarray  # int64 [n_in]
    gain: float  # lif.synaptic_gain: current of a spike through a weight of 1
    inhibition: float  # state.global_inhibition: extra gain on inhibitory synapses


class SpikeList(NamedTuple):
    """A cycle's spikes in time order (``network/spikes.py``): step t's neurons are
    ``neurons[step_ptr[t]:step_ptr[t + 1]]``."""

    step_ptr: np.ndarray  # int64 [T + 1]
    neurons: np.ndarray  # int32 [S] (or a longer buffer, filled to step_ptr[-1])


class SpikeTrains(NamedTuple):
    """The same spikes by neuron: neuron j's steps are ``times[ptr[j]:ptr[j + 1]]``, ascending."""

    ptr: np.ndarray  # int64 [N + 1]
    times: np.ndarray  # int32 [S]
    active: np.ndarray  # int64 [A]: the neurons that spiked, ascending


class STDPWindow(NamedTuple):
    """The STDP kernels (``learning/stdp.py``), indexed ``D + (t_post - t_pre)``."""

    kernels: np.ndarray  # float64 [3, 2D + 1]: excitatory, inhibitory, causal
    inh_offset: float  # +A_i alpha per inhibitory presynaptic spike


class PostFactors(NamedTuple):
    """Per postsynaptic neuron: the eligibility gate and the causal-kernel mark (``stdp.event_updates``)."""

    gate: np.ndarray  # float32 [N] (use_gate) or [1]
    use_gate: bool
    causal: np.ndarray  # bool [N] (use_causal) or [N] of False
    use_causal: bool


class WeightUpdate(NamedTuple):
    """One cycle's trace decay and reward-modulated weight update (``learning/modulation.py``)."""

    gamma: float  # e <- gamma e + STDP
    generic: bool  # apply w <- clip(w + coef * scale * e) at all
    coef_exc: float  # eta_eff * delta of excitatory synapses
    coef_inh: float  # of inhibitory synapses
    persistent_scale: float  # scale of a persistent synapse's change
    w_max: float  # |w| <= w_max, sign by type


class ReadoutUpdate(NamedTuple):
    """The readout synapses' own update (``learning/readout.py``)."""

    pos: np.ndarray  # int64 [R]: their positions
    w_before: np.ndarray  # float32 [R]: their weights before the generic update
    coef: np.ndarray  # float32 [R]: their population's eta_eff * m_p


def synapses(state: NetworkState) -> Synapses:
    return Synapses(state.indptr.numpy(), state.col.numpy(), state.w.numpy(), state.persistent.numpy(),
                    state.n_exc_synapses)


def traces(e: torch.Tensor) -> Traces:
    values = e.numpy()
    if e.dtype == torch.float16:
        return Traces(True, values.view(np.uint16), _EMPTY_FLOAT)
    return Traces(False, _EMPTY_HALF, values)


def post_factors(gate: torch.Tensor | None, causal: torch.Tensor | None, n: int) -> PostFactors:
    """``PostFactors`` of ``EligibilityUpdate.post_gate`` / ``causal_post`` (None: not used)."""
    return PostFactors(gate.numpy() if gate is not None else np.ones(1, dtype=np.float32), gate is not None,
                       causal.numpy() if causal is not None else np.zeros(n, dtype=np.bool_), causal is not None)
