"""TD(0) over cluster states, SPEC §4 (seed 002 §5.B.3).

    TD = r + gamma * V(next) - V(current);   V(current) += alpha * TD,   gamma = 0.9, alpha = 0.1

The state of a cycle is the cluster with the highest mean firing rate. The transition of cycle n
goes from the previous cycle's state (``current``) to this cycle's (``next``), and ``r`` is the
external reward received on it, so each cycle's TD error is available to that cycle's learning.
"""
from __future__ import annotations

import torch


def td_update(values: torch.Tensor, current: int, nxt: int, reward: float, gamma: float,
              alpha: float) -> tuple[float, torch.Tensor]:
    """Return (TD error, updated copy of ``values``)."""
    td = reward + gamma * float(values[nxt]) - float(values[current])
    out = values.clone()
    out[current] += alpha * td
    return td, out


def dominant_cluster(counts: torch.Tensor, cluster: torch.Tensor, n_clusters: int,
                     fallback: int) -> tuple[int, torch.Tensor]:
    """Cluster with the highest mean spike count per neuron (``fallback`` if nothing spiked);
    also returns spikes per cluster."""
    per_cluster = torch.bincount(cluster, weights=counts.double(), minlength=n_clusters)
    sizes = torch.bincount(cluster, minlength=n_clusters).clamp(min=1)
    if float(per_cluster.sum()) == 0.0:
        return fallback, per_cluster
    return int(torch.argmax(per_cluster / sizes)), per_cluster
