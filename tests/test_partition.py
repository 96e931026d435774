"""Issue #12, partitioning: neurons over K shards, the cut (synapses crossing shards) and balance."""
from __future__ import annotations

import numpy as np
import pytest

from fumd.engine import Engine
from fumd.sharding.partition import (
    PartitionError,
    contiguous_assignment,
    cut_fraction,
    metis_assignment,
    partition,
    undirected_graph,
)
from tests.conftest import small_config

pytest.importorskip("pymetis")


def test_contiguous_blocks_and_cut_on_a_toy_graph() -> None:
    assert contiguous_assignment(10, 3).tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    # two 4-cliques {0, 2, 4, 6} and {1, 3, 5, 7} joined by one synapse 6 -> 7; numbered alternately
    a, b = [0, 2, 4, 6], [1, 3, 5, 7]
    pairs = [(i, j) for c in (a, b) for i in c for j in c if i != j] + [(6, 7)]
    pre, post = (np.array(x, dtype=np.int64) for x in zip(*pairs, strict=True))
    assert cut_fraction(contiguous_assignment(8, 2), pre, post) == pytest.approx(16 / 25)
    metis = metis_assignment(8, pre, post, 2)
    assert cut_fraction(metis, pre, post) == pytest.approx(1 / 25)  # only the bridge crosses
    assert len(set(metis[a].tolist())) == 1 and len(set(metis[b].tolist())) == 1


def test_undirected_graph_is_symmetric_and_weighted() -> None:
    pre, post = np.array([0, 1, 0, 2, 2]), np.array([1, 0, 1, 2, 0])  # a double synapse, a self loop
    xadj, adjncy, weights = undirected_graph(3, pre, post)
    rows = {i: dict(zip(adjncy[xadj[i]:xadj[i + 1]].tolist(), weights[xadj[i]:xadj[i + 1]].tolist(), strict=True))
            for i in range(3)}
    assert rows == {0: {1: 3, 2: 1}, 1: {0: 3}, 2: {0: 1}}


def test_metis_beats_the_numbering_on_a_real_network_and_is_reproducible() -> None:
    # a random index order (no locality in the numbering): the case a graph partitioner is for
    engine = Engine(small_config(network={"index_order": "random"}))
    base = partition(engine.state, 4, "contiguous")
    metis = partition(engine.state, 4, "metis")
    assert metis.cut_fraction < 0.8 * base.cut_fraction
    assert metis.neuron_imbalance <= 1.05 and sorted(set(metis.assignment.tolist())) == [0, 1, 2, 3]
    again = partition(engine.state, 4, "metis")
    assert np.array_equal(again.assignment, metis.assignment)
    one = partition(engine.state, 1, "metis")
    assert one.cut_fraction == 0.0 and not one.assignment.any()
    with pytest.raises(PartitionError, match="shards = 0"):
        partition(engine.state, 0)
    with pytest.raises(PartitionError, match="method"):
        partition(engine.state, 2, "spectral")  # type: ignore[arg-type]
