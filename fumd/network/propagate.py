"""Event-driven spike propagation (SPEC §1: I(t) = w @ spikes(t-1) + I_encoded(t)).

Only the out-synapses of neurons that spiked are read: the cost is spikes x fan-out, never all
synapses. ``row_positions`` turns a set of presynaptic neurons into the positions of their
synapses in the CSR arrays; the caller gathers ``col``/``w`` there and scatter-adds into a
length-N current vector.
"""
from __future__ import annotations

import torch


def row_positions(indptr: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Positions of all synapses of ``rows`` (ascending rows give ascending positions)."""
    starts = indptr[rows]
    counts = indptr[rows + 1] - starts
    total = int(counts.sum())
    if total == 0:
        return torch.empty(0, dtype=torch.int64, device=indptr.device)
    offsets = torch.cumsum(counts, 0) - counts
    return torch.arange(total, device=indptr.device) + torch.repeat_interleave(starts - offsets, counts, output_size=total)


def recurrent_current(
    out: torch.Tensor, post: torch.Tensor, weight: torch.Tensor, n_exc_events: int, gain: float, inhib_gain: float
) -> None:
    """Add ``gain * w`` of each event into ``out[post]``; inhibitory events (the tail) also get
    the global inhibition gain (SPEC §1, controlled by §7)."""
    vals = weight * gain
    if inhib_gain != 1.0 and n_exc_events < vals.shape[0]:
        vals[n_exc_events:] *= inhib_gain
    out.index_add_(0, post.long(), vals)
