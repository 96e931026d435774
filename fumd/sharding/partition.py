"""Assigning neurons to K shards so that few synapses cross (issue #12; seed 002 §5.D.1:
"partition the graph to minimise cross-shard synapses (METIS)").

Every synapse whose two neurons sit on different shards costs a spike message whenever its
presynaptic neuron fires, so the *cut fraction* (crossing synapses / all synapses) is the share of
spike traffic that leaves a shard. Two partitions:

* ``contiguous``: neuron ``i`` goes to shard ``floor(i K / N)`` (the numbering ``build_network``
  gives, spatial along the grid within the excitatory and the inhibitory block): the baseline.
* ``metis``: METIS's multilevel k-way partition (Karypis & Kumar 1998, through ``pymetis``) of the
  undirected synapse graph (a synapse in either direction joins two neurons; edge weight = the
  number of synapses between them), balancing neurons (METIS's default 3 % imbalance). Its seed is
  fixed, so the same network gives the same partition.

``pymetis`` is an optional dependency (``pip install fumd[shard]``); the contiguous partition
needs nothing.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..errors import FumdError
from ..network.state import NetworkState

Method = Literal["contiguous", "metis"]


class PartitionError(FumdError):
    """A partition that cannot be made (the message says why)."""


@dataclass(frozen=True)
class Partition:
    method: str
    shards: int
    assignment: np.ndarray  # int64 [N]: the shard of every neuron
    cut_fraction: float  # synapses whose two neurons are on different shards / all synapses
    neuron_imbalance: float  # largest shard's neurons / the mean
    synapse_imbalance: float  # largest shard's incoming synapses / the mean (the integration work)
    seconds: float

    def summary(self) -> dict[str, float | int | str]:
        return {"method": self.method, "shards": self.shards, "cut_fraction": self.cut_fraction,
                "neuron_imbalance": self.neuron_imbalance, "synapse_imbalance": self.synapse_imbalance,
                "seconds": self.seconds}


def synapse_pairs(state: NetworkState) -> tuple[np.ndarray, np.ndarray]:
    """(pre, post) of every synapse (int64 [nnz] each)."""
    return state.pre_index().cpu().numpy().astype(np.int64), state.col.cpu().numpy().astype(np.int64)


def contiguous_assignment(n: int, shards: int) -> np.ndarray:
    """Neuron ``i`` -> shard ``floor(i shards / n)``."""
    return (np.arange(n, dtype=np.int64) * shards) // max(n, 1)


def undirected_graph(n: int, pre: np.ndarray, post: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The synapse graph as METIS reads it: symmetric CSR (``xadj``, ``adjncy``) without self
    loops, and edge weights = synapses between the two neurons (either direction)."""
    keep = pre != post
    a, b = np.concatenate((pre[keep], post[keep])), np.concatenate((post[keep], pre[keep]))
    keys, weights = np.unique(a * n + b, return_counts=True)  # sorted by (a, b): CSR order
    src, dst = keys // n, keys % n
    xadj = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=n), out=xadj[1:])
    return xadj, dst.astype(np.int64), weights.astype(np.int64)


def metis_assignment(n: int, pre: np.ndarray, post: np.ndarray, shards: int, seed: int = 0) -> np.ndarray:
    """METIS k-way partition of the undirected synapse graph (module docstring)."""
    try:
        import pymetis
    except ImportError:
        raise PartitionError("the metis partition needs pymetis (pip install 'fumd[shard]' or pip install "
                             "pymetis); the contiguous partition does not") from None
    xadj, adjncy, weights = undirected_graph(n, pre, post)
    options = pymetis.Options(seed=seed)
    _cut, membership = pymetis.part_graph(shards, pymetis.CSRAdjacency(adj_starts=xadj, adjacent=adjncy),
                                          eweights=weights, options=options)
    return np.asarray(membership, dtype=np.int64)


def cut_fraction(assignment: np.ndarray, pre: np.ndarray, post: np.ndarray) -> float:
    """Synapses whose two neurons are on different shards, as a fraction of all synapses."""
    if pre.size == 0:
        return 0.0
    return float(np.mean(assignment[pre] != assignment[post]))


def partition(state: NetworkState, shards: int, method: Method = "metis", seed: int = 0) -> Partition:
    """``shards`` shards of ``state``'s neurons by ``method``, with the cut and the balance."""
    n = state.n
    if not 1 <= shards <= n:
        raise PartitionError(f"shards = {shards}: must be between 1 and the {n} neurons")
    pre, post = synapse_pairs(state)
    started = time.perf_counter()
    if method == "contiguous" or shards == 1:
        assignment = contiguous_assignment(n, shards)
    elif method == "metis":
        assignment = metis_assignment(n, pre, post, shards, seed)
    else:
        raise PartitionError(f"method {method!r}: expected contiguous or metis")
    seconds = time.perf_counter() - started
    neurons = np.bincount(assignment, minlength=shards)
    incoming = np.bincount(assignment[post], minlength=shards)
    return Partition(
        method=method if shards > 1 else "contiguous", shards=shards, assignment=assignment,
        cut_fraction=cut_fraction(assignment, pre, post),
        neuron_imbalance=float(neurons.max() / neurons.mean()),
        synapse_imbalance=float(incoming.max() / max(incoming.mean(), 1e-12)),
        seconds=seconds,
    )

