"""One shard's part of the network: the neurons it owns and every synapse onto them (issue #12).

A shard owns the neurons ``assignment == rank`` (ascending global index) and, for the simulation,
every synapse whose *postsynaptic* neuron it owns: integrating a neuron's input needs its incoming
synapses, and (as the learning rule's updates are local to a synapse and its two neurons' traces)
that is where the synapse would learn. The synapses are kept in the global CSR order, by
presynaptic row over all ``N`` neurons, with the postsynaptic column renumbered to the shard's
local index:

    keep_k   = owned[col_k]
    indptr'  = cumulative count of kept synapses per global row
    col'_k   = local(col_k),   w'_k = w_k   (k kept, in CSR order)

So a shard adds, into each of its neurons, the same weights in the same order as the single
process does (presynaptic neurons ascending, then CSR order inside a row): float32 sums are
bit-identical (``step.py``). A row that is empty on this shard costs nothing, so spikes of
neurons with no synapse here need not be sent here (``boundary``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backends.numba.arrays import Synapses
from ..network.state import NetworkState


@dataclass(frozen=True)
class Shard:
    rank: int
    shards: int
    n: int  # neurons in the whole network
    neurons: np.ndarray  # int64 [n_local]: global index of each local neuron, ascending
    synapses: Synapses  # rows: all n presynaptic neurons; col: local postsynaptic index
    input_positions: np.ndarray  # int64: which of the network's input neurons (columns of the drive) are here
    input_local: np.ndarray  # int64: their local index
    boundary: np.ndarray  # int64: local neurons with a synapse onto another shard (their spikes are sent)
    synapse_index: np.ndarray  # int64 [nnz_local]: each local synapse's position in the network's CSR, ascending
    local_of: np.ndarray  # int64 [n]: a neuron's local index here, -1 if another shard owns it

    @property
    def n_local(self) -> int:
        return int(self.neurons.shape[0])


def make_shard(state: NetworkState, assignment: np.ndarray, rank: int) -> Shard:
    """Rank ``rank``'s shard of ``state`` under ``assignment`` (int [N]: every neuron's shard)."""
    assignment = np.asarray(assignment, dtype=np.int64)
    n = state.n
    if assignment.shape != (n,):
        raise ValueError(f"assignment has shape {assignment.shape}, the network {n} neurons")
    shards = int(assignment.max()) + 1 if n else 1
    owned = assignment == rank
    neurons = np.flatnonzero(owned).astype(np.int64)
    local = np.full(n, -1, dtype=np.int64)
    local[neurons] = np.arange(neurons.shape[0])
    indptr = state.indptr.numpy()
    col = state.col.numpy()
    keep = owned[col]
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
    counts = np.bincount(rows[keep], minlength=n)
    new_indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=new_indptr[1:])
    n_exc = int(keep[: state.n_exc_synapses].sum())
    synapses = Synapses(new_indptr, local[col[keep]].astype(np.int32), np.ascontiguousarray(state.w.numpy()[keep]),
                        np.ascontiguousarray(state.persistent.numpy()[keep]), n_exc)
    input_idx = state.input_idx.numpy().astype(np.int64)
    positions = np.flatnonzero(owned[input_idx]).astype(np.int64)
    crossing = ~owned[col] & owned[rows]  # synapses from this shard's neurons onto another shard's
    boundary = np.unique(local[rows[crossing]]).astype(np.int64)
    return Shard(rank, shards, n, neurons, synapses, positions, local[input_idx[positions]], boundary,
                 np.flatnonzero(keep).astype(np.int64), local)
