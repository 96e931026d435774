"""Per-synapse eligibility trace, SPEC §3 (seed 002 §5.B.3): ``e_ij <- gamma * e_ij + dw_ij``.

Updated once per cycle: the whole trace decays by ``gamma`` and this cycle's STDP changes are
added at the synapses that carried events (duplicates accumulate).
"""
from __future__ import annotations

import torch


def update_trace(e: torch.Tensor, event_pos: torch.Tensor, dw: torch.Tensor, gamma: float) -> None:
    """In place: ``e = gamma * e + scatter_add(event_pos, dw)``."""
    e.mul_(gamma)
    if event_pos.numel():
        e.index_add_(0, event_pos, dw.to(e.dtype))
