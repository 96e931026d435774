"""One cycle of simulation: T steps of LIF dynamics with event-driven recurrence (SPEC §1-§2).

Per step: ``I(t) = gain * w @ spikes(t-1) + I_encoded(t)`` computed from the neurons that spiked
at t-1 only, then Norse's LIF step. V and the last step's spikes carry over between cycles: the
daemon runs one continuous simulated time line. The synapse positions read for propagation are
kept as the cycle's *events*; STDP reuses them instead of searching for spike pairs again.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .lif import lif_parameters, lif_step
from .propagate import recurrent_current, row_positions
from .state import NetworkState


@dataclass
class CycleSpikes:
    raster: torch.Tensor  # bool [T, N]
    event_pos: torch.Tensor  # int64 [E] synapse positions, one per (presynaptic spike, out-synapse)
    event_post: torch.Tensor  # int32 [E] postsynaptic neuron of each event
    event_step: torch.Tensor  # int64 [E] step of the presynaptic spike

    @property
    def counts(self) -> torch.Tensor:
        """Spikes per neuron in this cycle (int64 [N])."""
        return self.raster.sum(0)

    @property
    def total(self) -> int:
        return int(self.raster.sum())


def simulate_cycle(
    state: NetworkState,
    input_spikes: torch.Tensor,
    *,
    dt_ms: float,
    v_rest: float,
    v_reset: float,
    synaptic_gain: float,
    input_current: float,
    record_events: bool = True,
) -> CycleSpikes:
    """Run ``T = input_spikes.shape[0]`` steps in place on ``state`` (V, last_spikes)."""
    steps, n = input_spikes.shape[0], state.n
    device = state.device
    params = lif_parameters(state.tau_mem, state.v_th, v_rest, v_reset)
    n_exc_syn = torch.tensor([state.n_exc_synapses], device=device)
    drive = input_spikes.to(state.v.dtype) * input_current  # [T, n_in]
    raster = torch.zeros(steps, n, dtype=torch.bool, device=device)
    current = torch.zeros(n, device=device)
    positions, posts, times = [], [], []
    spikes, v = state.last_spikes, state.v
    inhib = state.global_inhibition

    for t in range(steps):
        current.zero_()
        current.index_put_((state.input_idx,), drive[t])
        rows = spikes.nonzero().squeeze(1)
        if rows.numel():
            pos = row_positions(state.indptr, rows)
            # index_select: a much faster 1-D gather than advanced indexing on CPU
            post = torch.index_select(state.col, 0, pos)
            n_exc_events = int(torch.searchsorted(pos, n_exc_syn))
            recurrent_current(current, post, torch.index_select(state.w, 0, pos), n_exc_events, synaptic_gain, inhib)
            if record_events and t > 0:  # spikes of step t-1 of *this* cycle
                positions.append(pos)
                posts.append(post)
                times.append(torch.full_like(pos, t - 1))
        spikes, v = lif_step(current, v, params, dt_ms)
        raster[t] = spikes

    if record_events:  # the last step's spikes propagate next cycle, but pair with this cycle's
        rows = spikes.nonzero().squeeze(1)
        if rows.numel():
            pos = row_positions(state.indptr, rows)
            positions.append(pos)
            posts.append(torch.index_select(state.col, 0, pos))
            times.append(torch.full_like(pos, steps - 1))
    state.v, state.last_spikes = v, spikes

    def cat(parts: list[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
        return torch.cat(parts) if parts else torch.empty(0, dtype=dtype, device=device)

    return CycleSpikes(
        raster=raster,
        event_pos=cat(positions, torch.int64),
        event_post=cat(posts, torch.int32),
        event_step=cat(times, torch.int64),
    )
