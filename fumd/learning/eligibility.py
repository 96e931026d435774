"""Per-synapse eligibility trace, SPEC §3 (seed 002 §5.B.3): ``e_ij <- gamma * e_ij + dw_ij``.

Updated once per cycle: the whole trace decays by ``gamma`` and this cycle's STDP changes are
added at the synapses that carried events (duplicates accumulate).
"""
from __future__ import annotations

from typing import NamedTuple

import torch


class EligibilityUpdate(NamedTuple):
    """What one cycle's ``e <- gamma e + STDP`` needs besides the spikes and the STDP kernels
    (``Backend.learn``)."""

    gamma: float  # trace decay per cycle (learning.gamma; adaptive, the tuning job acts on it)
    post_gate: torch.Tensor | None  # float32 [N]: scales the STDP of events onto each neuron (0: may not learn)
    causal_post: torch.Tensor | None  # bool [N]: neurons whose excitatory in-synapses use the causal kernel


def update_trace(e: torch.Tensor, event_pos: torch.Tensor, dw: torch.Tensor, gamma: float) -> None:
    """In place: ``e = gamma * e + scatter_add(event_pos, dw)``.

    A float16 trace is updated through a float32 sum, rounded once per cycle:
    ``e <- fp16(gamma * e + sum dw)`` (PyTorch's float16 ``index_add_`` on CPU is ~6x slower than
    float32 and would round after every event; docs/mechanisms.md)."""
    if e.dtype == torch.float32 or event_pos.numel() == 0:
        e.mul_(gamma)
        if event_pos.numel():
            e.index_add_(0, event_pos, dw.to(e.dtype))
        return
    acc = torch.zeros(e.shape, dtype=torch.float32, device=e.device)
    acc.index_add_(0, event_pos, dw.to(torch.float32))
    acc.add_(e, alpha=gamma)
    e.copy_(acc)
