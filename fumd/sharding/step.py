"""One shard's simulation step, and the cycle of T steps around a spike exchange (issue #12).

Per step ``t`` a shard computes, for its own neurons only, exactly what the single-process kernel
(``backends/numba/propagation.simulate_steps``) computes for them::

    I_j   = drive_j(t) for an input neuron, else 0
    I_j  += gain * w_k (* inhibition for an inhibitory synapse)   for every spike i of step t-1,
            i ascending, and every synapse k of row i onto j, in CSR order
    V_j'  = max(V_j + ((I_j + V_rest) - V_j) * dt / tau_j, v_min);  z_j = V_j' > v_th_j

with the same float32 operations in the same order, so V and the spikes are bit-identical to the
single process. The spikes of step t-1 it needs are its own and the *boundary* spikes of the
other shards (neurons with a synapse onto it); the exchange after every step supplies them, merged
in ascending order (the order of the sums).

``sharded_steps`` is the same arithmetic for shards that share one process's memory (the
``sharded`` backend, ``backend.py``): one compiled call per cycle, the shards of each step in
parallel (``prange``), and the step's spike list, built from the shared ``fired`` flags, as the
exchange.
"""
from __future__ import annotations

from typing import NamedTuple, Protocol

import numba
import numpy as np

from ..backends.numba.arrays import LIFNeurons, SpikeList, Synapses
from ..backends.numba.propagation import record_step
from .shard import Shard


@numba.njit(cache=True, nogil=True)
def shard_step(  # pragma: no cover - compiled
    v: np.ndarray, lif: LIFNeurons, syn: Synapses, drive_t: np.ndarray, input_local: np.ndarray, gain: float,
    inhibition: float, spiking: np.ndarray, fired: np.ndarray, out: np.ndarray,
) -> int:
    """Advance the shard's ``v`` (float32 [n_local]) one step, given the step's input current of
    its input neurons (``drive_t``, float32, at ``input_local``) and the spikes of the step before
    (``spiking``: global indices, ascending). Writes ``fired`` (bool [n_local]) and the local
    indices of the neurons that fired to ``out``; returns their count."""
    indptr, col, w, n_exc_synapses = syn.indptr, syn.col, syn.w, syn.n_exc
    n = v.shape[0]
    current = np.zeros(n, dtype=np.float32)
    g = np.float32(gain)
    h = np.float32(inhibition)
    scale_inh = h != np.float32(1.0)
    leak = np.float32(lif.v_leak)
    floor = np.float32(lif.v_min)
    dt_tau_inv, v_th, v_reset = lif.dt_tau_inv, lif.v_th, lif.v_reset
    for a in range(input_local.shape[0]):
        current[input_local[a]] = drive_t[a]
    for s in range(spiking.shape[0]):
        i = spiking[s]
        first, last = indptr[i], indptr[i + 1]
        if scale_inh and first >= n_exc_synapses:
            for k in range(first, last):
                current[col[k]] += (w[k] * g) * h
        else:
            for k in range(first, last):
                current[col[k]] += w[k] * g
    count = 0
    for j in range(n):
        vj = max(v[j] + ((current[j] + leak) - v[j]) * dt_tau_inv[j], floor)
        z = vj > v_th[j]
        fired[j] = z
        v[j] = v_reset[j] if z else vj
        if z:
            out[count] = j
            count += 1
    return count


class SpikeExchange(Protocol):
    """Gives every shard the spikes of the step that concern it."""

    def exchange(self, sent: np.ndarray) -> list[np.ndarray]:
        """Send this shard's ``sent`` (int64 global indices); return what every shard sent (this
        one's included), one array per rank."""
        ...


class ShardSimulator:
    """A shard's neurons through the cycles: V and the last step's spikes (the state a cycle
    carries to the next), the LIF parameters, and the per-step kernel."""

    def __init__(self, shard: Shard, v: np.ndarray, fired: np.ndarray, lif: LIFNeurons, gain: float,
                 inhibition: float):
        self.shard = shard
        self.v = np.ascontiguousarray(v, dtype=np.float32)
        self.fired = np.ascontiguousarray(fired, dtype=np.bool_)
        self.lif = lif
        self.gain = float(gain)
        self.inhibition = float(inhibition)
        self._out = np.empty(max(shard.n_local, 1), dtype=np.int64)
        is_boundary = np.zeros(shard.n_local, dtype=np.bool_)
        is_boundary[shard.boundary] = True
        self._is_boundary = is_boundary

    def cycle(self, drive: np.ndarray, exchange: SpikeExchange) -> list[np.ndarray]:
        """``T = drive.shape[0]`` steps (``drive``: float32 [T, n_in], the input current of every
        input neuron of the network); returns the local neurons that fired at each step (local
        indices). The spikes of the previous cycle's last step drive step 0, as in one process."""
        drive_local = np.ascontiguousarray(drive[:, self.shard.input_positions], dtype=np.float32)
        spiking = self._merge(exchange, np.flatnonzero(self.fired))
        steps: list[np.ndarray] = []
        for t in range(drive.shape[0]):
            count = shard_step(self.v, self.lif, self.shard.synapses, drive_local[t], self.shard.input_local,
                               self.gain, self.inhibition, spiking, self.fired, self._out)
            local = self._out[:count].copy()
            steps.append(local)
            spiking = self._merge(exchange, local)
        return steps

    def _merge(self, exchange: SpikeExchange, local: np.ndarray) -> np.ndarray:
        """Send the boundary spikes among ``local``; the spikes this shard integrates next: its own
        and the others' boundary spikes, as global indices, ascending."""
        neurons = self.shard.neurons
        parts = exchange.exchange(neurons[local[self._is_boundary[local]]])
        parts[self.shard.rank] = neurons[local]
        merged = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
        merged.sort(kind="stable")
        return merged


class ShardedSynapses(NamedTuple):
    """Every shard's synapses for ``sharded_steps``, one block per shard: shard ``s`` holds its
    synapses at ``[syn_ptr[s], syn_ptr[s + 1])`` in the network's CSR order, with row pointers
    ``indptr[s]`` (over all N presynaptic neurons, relative to the block) and *global* columns."""

    indptr: np.ndarray  # int64 [K, N + 1]
    col: np.ndarray  # int32 [nnz]: postsynaptic neuron, global index
    w: np.ndarray  # float32 [nnz]
    syn_ptr: np.ndarray  # int64 [K + 1]
    n_exc: np.ndarray  # int64 [K]: a block's first n_exc synapses are excitatory
    neurons: np.ndarray  # int64 [N]: the shards' neurons, shard by shard (ascending within a shard)
    neuron_ptr: np.ndarray  # int64 [K + 1]
    input_shard: np.ndarray  # int64 [n_in]: the shard owning each input neuron


@numba.njit(cache=True, nogil=True, parallel=True)
def sharded_steps(  # pragma: no cover - compiled
    v: np.ndarray, lif: LIFNeurons, syn: ShardedSynapses, drive: np.ndarray, input_idx: np.ndarray, gain: float,
    inhibition: float, fired: np.ndarray, out: SpikeList,
) -> np.ndarray:
    """``propagation.simulate_steps`` with each step's integration and LIF update run shard by
    shard in parallel (``prange``; shards write only their own neurons' entries of ``v``,
    ``fired`` and the current), then the step's spike list built from ``fired`` (the exchange:
    the shards share memory). Each neuron gets the same float32 terms in the same order as in one
    process (drive, then spikes ascending, CSR order inside a row), so V and the spikes are
    bit-identical to it."""
    steps, n = drive.shape[0], v.shape[0]
    shards = syn.syn_ptr.shape[0] - 1
    current = np.zeros(n, dtype=np.float32)
    spiking = np.empty(n, dtype=np.int64)
    g = np.float32(gain)
    h = np.float32(inhibition)
    scale_inh = h != np.float32(1.0)
    leak = np.float32(lif.v_leak)
    floor = np.float32(lif.v_min)
    dt_tau_inv, v_th, v_reset = lif.dt_tau_inv, lif.v_th, lif.v_reset
    step_ptr, spike_neurons = out.step_ptr, out.neurons
    step_ptr[0] = 0
    n_spiking = 0
    for j in range(n):
        if fired[j]:
            spiking[n_spiking] = j
            n_spiking += 1
    for t in range(steps):
        for s in numba.prange(shards):
            first_n, last_n = syn.neuron_ptr[s], syn.neuron_ptr[s + 1]
            for a in range(first_n, last_n):
                current[syn.neurons[a]] = np.float32(0.0)
            for a in range(input_idx.shape[0]):
                if syn.input_shard[a] == s:
                    current[input_idx[a]] = drive[t, a]
            base, n_exc = syn.syn_ptr[s], syn.n_exc[s]
            for q in range(n_spiking):
                i = spiking[q]
                first, last = syn.indptr[s, i], syn.indptr[s, i + 1]
                if scale_inh and first >= n_exc:
                    for k in range(base + first, base + last):
                        current[syn.col[k]] += (syn.w[k] * g) * h
                else:
                    for k in range(base + first, base + last):
                        current[syn.col[k]] += syn.w[k] * g
            for a in range(first_n, last_n):
                j = syn.neurons[a]
                vj = max(v[j] + ((current[j] + leak) - v[j]) * dt_tau_inv[j], floor)
                z = vj > v_th[j]
                fired[j] = z
                v[j] = v_reset[j] if z else vj
        n_spiking = 0
        for j in range(n):
            if fired[j]:
                spiking[n_spiking] = j
                n_spiking += 1
        spike_neurons = record_step(spiking, n_spiking, t, step_ptr, spike_neurons)
    return spike_neurons


def sharded_synapses(shards: "list[Shard]", input_owner: np.ndarray) -> ShardedSynapses:
    """The blocks of ``shards`` (``make_shard``'s, one network) for ``sharded_steps``;
    ``input_owner``: the shard owning each input neuron (in the order of ``state.input_idx``)."""
    n = shards[0].n if shards else 0
    counts = [int(s.synapse_index.shape[0]) for s in shards]
    syn_ptr = np.zeros(len(shards) + 1, dtype=np.int64)
    np.cumsum(counts, out=syn_ptr[1:])
    neuron_ptr = np.zeros(len(shards) + 1, dtype=np.int64)
    np.cumsum([s.n_local for s in shards], out=neuron_ptr[1:])
    indptr = np.stack([s.synapses.indptr for s in shards]) if shards else np.zeros((0, n + 1), dtype=np.int64)
    col = np.concatenate([s.neurons[s.synapses.col] for s in shards]).astype(np.int32) if shards \
        else np.empty(0, dtype=np.int32)
    w = np.concatenate([s.synapses.w for s in shards]) if shards else np.empty(0, dtype=np.float32)
    return ShardedSynapses(np.ascontiguousarray(indptr, dtype=np.int64), col, np.ascontiguousarray(w, dtype=np.float32),
                           syn_ptr, np.array([s.synapses.n_exc for s in shards], dtype=np.int64),
                           np.concatenate([s.neurons for s in shards]).astype(np.int64), neuron_ptr,
                           np.asarray(input_owner, dtype=np.int64))
