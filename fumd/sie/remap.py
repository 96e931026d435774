"""Moving per-cluster state onto a new partition of the neurons (the clustering job, SPEC §8).

Pure functions of the overlap matrix ``M[a, b]`` (neurons in old cluster ``a`` and new cluster
``b``): the SIE's TD values and reward statistics (``SelfImprovementEngine.remap_clusters``) and
the tagging job's per-cluster counters follow the neurons they were learned on.
"""
from __future__ import annotations

import torch


def overlap_matrix(old: torch.Tensor, new: torch.Tensor, k_old: int, k_new: int) -> torch.Tensor:
    """``M[a, b]`` = number of neurons in old cluster ``a`` and new cluster ``b`` (int64 [k_old, k_new])."""
    flat = old.to(torch.int64) * k_new + new.to(torch.int64)
    return torch.bincount(flat, minlength=k_old * k_new).reshape(k_old, k_new)


def remap_mean(values: torch.Tensor, overlap: torch.Tensor) -> torch.Tensor:
    """Membership-weighted mean: ``v_new[b] = sum_a M[a, b] v[a] / sum_a M[a, b]`` (0 for an empty b)."""
    m = overlap.to(values.dtype)
    return (m * values[:, None]).sum(0) / m.sum(0).clamp(min=1)


def dominant_predecessor(overlap: torch.Tensor) -> torch.Tensor:
    """``argmax_a M[a, b]`` for every new cluster ``b`` (the old cluster most of it came from)."""
    return overlap.argmax(dim=0)
