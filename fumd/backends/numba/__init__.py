"""The numba backend: the per-cycle hot path as compiled CPU kernels.

Each kernel mirrors the PyTorch code of the torch backend, which stays the reference, the CUDA
path and the fallback, and gives bit-identical results: ``propagation.simulate_steps`` <-
``network/simulate.py`` (the T steps of a cycle: event-driven input current and Norse's LIF step),
``plasticity`` <- ``learning/stdp.py`` + ``eligibility.py`` + ``modulation.py`` + ``readout.py``. They exist because
at T steps per cycle the PyTorch form pays per-op dispatch and materialises per-event lists
(positions, targets, steps) that the kernels never need (docs/mechanisms.md, "Compiled kernels").
``floats.py`` has the float arithmetic they need to match PyTorch bit for bit (fma, float16),
``memory.py`` the prefetch, ``arrays.py`` the NamedTuple bundles they take.

The kernels work on numpy views of the state's CPU tensors; this class holds only reused buffers
(the STDP table, the per-cycle sums) and derives nothing from the synapse structure, so structure
edits and state loads need no notice.
"""
from __future__ import annotations

import numba
import numpy as np
import torch

from ...config import LIFConfig
from ...learning.eligibility import EligibilityUpdate
from ...learning.modulation import UpdateCoefficients
from ...learning.stdp import STDPKernels
from ...network.lif import LIFStepper, neuron_parameters
from ...network.spikes import CycleSpikes
from ...network.state import NetworkState
from .arrays import (
    Currents,
    LIFNeurons,
    ReadoutUpdate,
    SpikeList,
    STDPWindow,
    WeightUpdate,
    post_factors,
    synapses,
    traces,
)
from .plasticity import readout_update, spike_trains, stdp_sums, stdp_table, update_synapses
from .propagation import simulate_steps


def compiled_threads() -> int:
    """Threads for the numba kernels: torch's thread count (``torch.set_num_threads``), which
    they follow, within numba's pool; also sets numba's count for this thread's parallel loops."""
    pool = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]  # numba sets its config from the environment
    threads = max(1, min(torch.get_num_threads(), pool))
    numba.set_num_threads(threads)
    return threads


class NumbaBackend:
    """``Backend`` in numba kernels (CPU tensors only)."""

    name = "numba"

    def __init__(self, lif: LIFConfig, kernels: STDPKernels):
        self.lif = lif
        causal = kernels.causal if kernels.causal is not None else kernels.excitatory
        self.window = STDPWindow(torch.stack([kernels.excitatory, kernels.inhibitory, causal]).double().cpu().numpy(),
                                 float(kernels.inhibitory_offset))
        self.table = np.empty((0, 2, 0), dtype=np.float32)
        self.acc = np.empty(0, dtype=np.float32)

    def simulate(self, state: NetworkState, input_spikes: torch.Tensor) -> CycleSpikes:
        lif, n = self.lif, state.n
        params = neuron_parameters(state, lif)
        stepper = LIFStepper(params, lif.dt_ms)
        drive = input_spikes.to(state.v.dtype) * lif.input_current
        # callers may hold the old V and spikes (checkpoints): never write into them
        v = state.v.clone()
        fired = state.last_spikes.clone()
        out = SpikeList(np.empty(input_spikes.shape[0] + 1, dtype=np.int64),
                        np.empty(max(n, 1024), dtype=np.int32))  # (a first guess; the kernel grows it)
        neurons = simulate_steps(
            v.numpy(),
            LIFNeurons(stepper.dt_tau_inv.numpy(), stepper.v_th.numpy(), float(stepper.v_leak), stepper.v_reset.numpy(),
                       float(lif.v_min)),
            synapses(state),
            Currents(drive.numpy(), state.input_idx.numpy(), float(lif.synaptic_gain), float(state.global_inhibition)),
            fired.numpy(), out,
        )
        state.v, state.last_spikes = v, fired
        step_ptr = torch.from_numpy(out.step_ptr)
        return CycleSpikes(step_ptr=step_ptr, neurons=torch.from_numpy(neurons[: out.step_ptr[-1]]), n=n)

    def learn(self, state: NetworkState, spikes: CycleSpikes, eligibility: EligibilityUpdate,
              coefficients: UpdateCoefficients) -> None:
        threads = compiled_threads()
        steps, n = spikes.steps, state.n
        syn, trace, c = synapses(state), traces(state.e), coefficients
        rule = WeightUpdate(eligibility.gamma, c.generic, c.excitatory, c.inhibitory, c.persistent_scale, c.w_max)
        # 1. the STDP table of this cycle's postsynaptic spikes (plasticity.py, module doc)
        cycle = SpikeList(spikes.step_ptr.numpy(), spikes.neurons.numpy())
        trains = spike_trains(spikes.counts.numpy(), cycle)
        if self.table.shape != (steps, 2, n):
            self.table = np.empty((steps, 2, n), dtype=np.float32)
        stdp_table(trains, self.window, post_factors(eligibility.post_gate, eligibility.causal_post, n), self.table)
        # 2. the STDP sums of the rows that spiked
        need = int((syn.indptr[1:] - syn.indptr[:-1])[trains.active].sum())
        if self.acc.shape[0] < need:
            self.acc = np.empty(max(need, 2 * self.acc.shape[0]), dtype=np.float32)
        slot = stdp_sums(cycle, trains.active, syn, self.table, trace, eligibility.gamma, self.acc, threads)
        # 3. traces and weights of every synapse; 4. the readout synapses again, from their weights before 3
        pos = c.readout_pos.numpy()
        readout = ReadoutUpdate(pos, syn.w[pos], c.readout.numpy()) if c.apply_readout else None
        update_synapses(syn, trace, slot, self.acc, rule)
        if readout is not None:
            readout_update(syn, trace, readout, rule)
