"""Event-driven spike propagation (SPEC §1: I(t) = w @ spikes(t-1) + I_encoded(t)).

Only the out-synapses of neurons that spiked are read: the cost is spikes x fan-out, never all
synapses. ``row_positions`` turns a set of presynaptic neurons into the positions of their
synapses in the CSR arrays; the caller gathers ``col``/``w`` there and scatter-adds into a
length-N current vector.

``cycle_events`` lists the same positions for a whole cycle's spikes at once: the *events* (one
presynaptic spike through one out-synapse) that the PyTorch STDP pairs with postsynaptic spikes.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from .spikes import CycleSpikes


def row_positions(indptr: torch.Tensor, rows: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Positions (int64) of all synapses of ``rows`` (ascending rows give ascending positions).

    One pass of ``cumsum`` over a vector of ones that jumps at each row start (with ``out``, a
    1-D int64 buffer with at least ``total + 1`` entries, nothing of size ``total`` is allocated;
    the result is then a view of ``out``). Rows without synapses are allowed: their jumps add up.
    """
    starts = indptr[rows]
    ends = indptr[rows + 1]
    counts = ends - starts
    total = int(counts.sum()) if rows.numel() else 0
    if total == 0:
        return torch.empty(0, dtype=torch.int64, device=indptr.device)
    if out is None:
        out = torch.empty(total + 1, dtype=torch.int64, device=indptr.device)
    step = out[: total + 1]
    step.fill_(1)
    # jump to each row's start from the previous row's end; the first row jumps from -1
    prev_ends = torch.empty_like(ends)
    prev_ends[0] = 1
    prev_ends[1:] = ends[:-1]
    offsets = torch.cumsum(counts, 0) - counts
    step.index_add_(0, offsets, starts - prev_ends)
    pos = step[:total]
    pos.cumsum_(0)
    return pos


def recurrent_current(
    out: torch.Tensor, post: torch.Tensor, weight: torch.Tensor, n_exc_events: int, gain: float, inhib_gain: float
) -> None:
    """Add ``gain * w`` of each event into ``out[post]``; inhibitory events (the tail) also get
    the global inhibition gain (SPEC §1, controlled by §7). ``weight`` is not modified."""
    vals = weight * gain
    if inhib_gain != 1.0 and n_exc_events < vals.shape[0]:
        vals[n_exc_events:] *= inhib_gain
    out.index_add_(0, post, vals)


def recurrent_current_(
    out: torch.Tensor, post: torch.Tensor, weight: torch.Tensor, n_exc_events: int, gain: float, inhib_gain: float
) -> None:
    """``recurrent_current`` that scales ``weight`` (a scratch gather of ``w``) in place."""
    weight.mul_(gain)
    if inhib_gain != 1.0 and n_exc_events < weight.shape[0]:
        weight[n_exc_events:].mul_(inhib_gain)
    out.index_add_(0, post, weight)


class Events(NamedTuple):
    """A cycle's propagation events, in the order the spikes were propagated (by step, then by
    presynaptic neuron, then by synapse)."""

    pos: torch.Tensor  # int64 [E] synapse position
    post: torch.Tensor  # int32 [E] postsynaptic neuron
    step: torch.Tensor  # int32 [E] step of the presynaptic spike


def cycle_events(indptr: torch.Tensor, col: torch.Tensor, spikes: CycleSpikes) -> Events:
    """The events of every spike of the cycle: all out-synapses of ``spikes.neurons``, in spike
    order (one ``row_positions`` over the whole spike list; the rows need not be ascending)."""
    rows = spikes.neurons.long()
    pos = row_positions(indptr, rows)
    post = torch.index_select(col, 0, pos)
    step = torch.repeat_interleave(spikes.spike_steps, indptr[rows + 1] - indptr[rows], output_size=pos.numel())
    return Events(pos=pos, post=post, step=step)
