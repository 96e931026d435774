"""A shard's synaptic learning: the single process's per-synapse rule on the synapses onto the
shard's neurons, bit-identical (issue #12).

Every quantity of the cycle's update of synapse ``k`` (``backends/numba/plasticity.py``) belongs
to the synapse, its postsynaptic neuron or its presynaptic neuron's spike times::

    table[t, c, j] = gate_j * sum_{u in spikes(j)} K_c(u - t)          j: postsynaptic, local
    s_k            = sum_{t in spikes(pre(k))} table[t, c(k), post(k)]
    e_k <- gamma e_k + s_k;   w_k <- clip(w_k + coef_c * scale_k * e_k)
    readout k:     w_k <- clip(w_k(before) + (e_k * coef_k) * scale_k, 0, w_max)

A shard owns the synapses onto its neurons (``shard.py``), so it builds the table from its own
neurons' spikes and reads the presynaptic spike times from the cycle's full spike list (which the
coordinator gathers anyway, O(spikes) per cycle). The kernels are the single process's own, run
on the shard's arrays: the same operations in the same order per synapse, so its weights and
traces equal the single process's at the same synapses, bit for bit
(``tests/test_sharded_simulation.py``). The coefficients (the SIE's and the readout's third
factors, a few numbers per cycle) come from the coordinator.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backends.numba.arrays import PostFactors, ReadoutUpdate, SpikeList, STDPWindow, Synapses, Traces, WeightUpdate
from ..backends.numba.plasticity import readout_update, spike_trains, stdp_sums, stdp_table, update_synapses
from .shard import Shard


@dataclass
class ShardTrace:
    """The eligibility trace of the shard's synapses (float16 as its bit pattern, or float32)."""

    half: bool
    values: np.ndarray  # uint16 or float32 [nnz_local]

    def traces(self) -> Traces:
        empty16, empty32 = np.empty(0, dtype=np.uint16), np.empty(0, dtype=np.float32)
        return Traces(True, self.values, empty32) if self.half else Traces(False, empty16, self.values)


def shard_trace(shard: Shard, e: np.ndarray) -> ShardTrace:
    """The shard's part of the network's trace ``e`` (float16 or float32 [nnz])."""
    part = np.ascontiguousarray(e[shard.synapse_index])
    if part.dtype == np.float16:
        return ShardTrace(True, part.view(np.uint16))
    return ShardTrace(False, part.astype(np.float32, copy=False))


def local_spikes(shard: Shard, cycle: SpikeList) -> SpikeList:
    """The cycle's spikes of the shard's own neurons, as local indices, step by step."""
    steps = cycle.step_ptr.shape[0] - 1
    local = shard.local_of[cycle.neurons[: cycle.step_ptr[-1]]]
    mine = local >= 0
    step_of = np.repeat(np.arange(steps), np.diff(cycle.step_ptr))
    ptr = np.zeros(steps + 1, dtype=np.int64)
    np.cumsum(np.bincount(step_of[mine], minlength=steps), out=ptr[1:])
    return SpikeList(ptr, local[mine].astype(np.int32))


def local_readout(shard: Shard, pos: np.ndarray, coef: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The readout synapses (global CSR positions ``pos``, coefficients ``coef``) onto the shard's
    neurons, as local positions with their coefficients, in the order given."""
    at = np.searchsorted(shard.synapse_index, pos)
    at = np.minimum(at, max(shard.synapse_index.shape[0] - 1, 0))
    here = shard.synapse_index[at] == pos if shard.synapse_index.shape[0] else np.zeros(pos.shape[0], dtype=bool)
    return at[here].astype(np.int64), np.ascontiguousarray(coef[here], dtype=np.float32)


def shard_learn(
    shard: Shard, trace: ShardTrace, window: STDPWindow, cycle: SpikeList, counts: np.ndarray,
    gate: np.ndarray | None, causal: np.ndarray | None, rule: WeightUpdate,
    readout: tuple[np.ndarray, np.ndarray] | None, threads: int = 1,
) -> None:
    """One cycle's learning of the shard's synapses, in place on ``shard.synapses.w`` and
    ``trace``: ``NumbaBackend.learn``'s four steps (module doc). ``cycle``/``counts``: the whole
    network's spikes (global indices) and spike counts; ``gate``/``causal``: the postsynaptic
    factors of the shard's neurons (None: not used); ``readout``: ``local_readout``'s positions
    and coefficients when the readout update applies."""
    syn: Synapses = shard.synapses
    steps, n_local = cycle.step_ptr.shape[0] - 1, shard.n_local
    pre = spike_trains(counts, cycle)
    post = spike_trains(np.ascontiguousarray(counts[shard.neurons]), local_spikes(shard, cycle))
    factors = PostFactors(gate if gate is not None else np.ones(1, dtype=np.float32), gate is not None,
                          causal if causal is not None else np.zeros(n_local, dtype=np.bool_), causal is not None)
    table = np.empty((steps, 2, n_local), dtype=np.float32)
    stdp_table(post, window, factors, table)
    need = int((syn.indptr[1:] - syn.indptr[:-1])[pre.active].sum())
    acc = np.empty(max(need, 1), dtype=np.float32)
    traces = trace.traces()
    slot = stdp_sums(cycle, pre.active, syn, table, traces, rule.gamma, acc, threads)
    update = ReadoutUpdate(readout[0], syn.w[readout[0]], readout[1]) if readout is not None else None
    update_synapses(syn, traces, slot, acc, rule)
    if update is not None:
        readout_update(syn, traces, update, rule)
