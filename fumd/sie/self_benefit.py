"""Self-benefit, SPEC §4 (seed 002 §5.C.2: "self_benefit using complexity/impact"). The seeds do
not define the terms (their §2.C is missing); fumd uses (docs/mechanisms.md)::

    complexity = H(c) / log(K)   normalised entropy of the response's spike distribution over
                                 the K clusters (0: silent or one cluster; 1: evenly spread)
    impact     = confidence      decision margin of the decoded action, in [0, 1]
    self_benefit = complexity * impact        in [0, 1]

i.e. a response that recruits a rich, distributed pattern *and* commits to an action benefits
the system; a silent, monolithic or undecided one does not.
"""
from __future__ import annotations

import math

import torch


def complexity(cluster_spikes: torch.Tensor) -> float:
    k = cluster_spikes.numel()
    total = float(cluster_spikes.sum())
    if k < 2 or total <= 0:
        return 0.0
    p = cluster_spikes.double() / total
    p = p[p > 0]
    return float(-(p * p.log()).sum()) / math.log(k)


def self_benefit(cluster_spikes: torch.Tensor, confidence: float) -> tuple[float, float]:
    """Return (self_benefit, complexity)."""
    c = complexity(cluster_spikes)
    return c * max(0.0, min(1.0, confidence)), c
