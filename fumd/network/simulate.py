"""One cycle of simulation: T steps of LIF dynamics with event-driven recurrence (SPEC §1-§2).

Per step: ``I(t) = gain * w @ spikes(t-1) + I_encoded(t)`` computed from the neurons that spiked
at t-1 only, then Norse's LIF step (in its in-place, bit-identical form ``LIFStepper``). V and the
last step's spikes carry over between cycles: the daemon runs one continuous simulated time line.
The synapse positions read for propagation are kept as the cycle's *events*; STDP reuses them
instead of searching for spike pairs again.

Speed: the loop allocates nothing of size N or of size events per step. Event positions are
written straight into growing per-cycle buffers (no concatenation at the end), the spike raster
rows are written by the LIF step itself, and the per-step scratch vectors are reused.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from .lif import LIFStepper, lif_parameters
from .propagate import recurrent_current_, row_positions
from .state import NetworkState


@dataclass
class CycleSpikes:
    raster: torch.Tensor  # bool [T, N]
    event_pos: torch.Tensor  # int64 [E] synapse positions, one per (presynaptic spike, out-synapse)
    event_post: torch.Tensor  # int32 [E] postsynaptic neuron of each event
    event_step: torch.Tensor  # int32 [E] step of the presynaptic spike
    # compiled backend (no event lists): the spikes in time order, step t's neurons are
    # spike_neurons[step_ptr[t]:step_ptr[t + 1]]
    step_ptr: torch.Tensor | None = None  # int64 [T + 1]
    spike_neurons: torch.Tensor | None = None  # int32 [S]

    @functools.cached_property
    def counts(self) -> torch.Tensor:
        """Spikes per neuron in this cycle (int64 [N]); from the spike list when there is one."""
        if self.spike_neurons is not None:
            return torch.bincount(self.spike_neurons, minlength=self.raster.shape[1])
        return self.raster.sum(0)

    @property
    def total(self) -> int:
        return int(self.step_ptr[-1]) if self.step_ptr is not None else int(self.raster.sum())


class _Growing:
    """A 1-D buffer that doubles when full; ``take(k)`` hands out the next ``k`` entries."""

    def __init__(self, capacity: int, dtype: torch.dtype, device: torch.device):
        self.buf = torch.empty(max(capacity, 16), dtype=dtype, device=device)
        self.size = 0

    def take(self, k: int) -> torch.Tensor:
        need = self.size + k
        if need > self.buf.numel():
            bigger = torch.empty(max(need, 2 * self.buf.numel()), dtype=self.buf.dtype, device=self.buf.device)
            bigger[: self.size] = self.buf[: self.size]
            self.buf = bigger
        view = self.buf[self.size : need]
        self.size = need
        return view

    def used(self) -> torch.Tensor:
        return self.buf[: self.size]


def simulate_cycle(
    state: NetworkState,
    input_spikes: torch.Tensor,
    *,
    dt_ms: float,
    v_rest: float,
    v_reset: float,
    synaptic_gain: float,
    input_current: float,
    v_min: float | None = None,
    record_events: bool = True,
    backend: str = "torch",
) -> CycleSpikes:
    """Run ``T = input_spikes.shape[0]`` steps on ``state`` (replaces V and last_spikes).

    ``backend = "numba"`` (CPU) runs the steps in ``compiled.propagation.simulate_steps`` (the
    same operations, bit-identical; no event lists: ``record_events`` is then ignored, the events
    come back empty and the spike list in ``step_ptr``/``spike_neurons`` instead).

    The threshold is ``v_th + theta`` (``theta``: the output neurons' adaptive threshold); V is
    floored at ``v_min`` when given (``LIFStepper``)."""
    if backend == "numba":
        return _simulate_compiled(state, input_spikes, dt_ms=dt_ms, v_rest=v_rest, v_reset=v_reset,
                                  synaptic_gain=synaptic_gain, input_current=input_current, v_min=v_min)
    steps, n = input_spikes.shape[0], state.n
    device = state.device
    lif = LIFStepper(lif_parameters(state.tau_mem, state.v_th + state.theta, v_rest, v_reset), dt_ms, v_min)
    n_exc_syn = torch.tensor([state.n_exc_synapses], device=device)
    drive = input_spikes.to(state.v.dtype) * input_current  # [T, n_in]
    raster = torch.empty(steps, n, dtype=torch.bool, device=device)
    current = torch.empty(n, device=device)
    v = state.v.clone()  # callers may hold the old V (checkpoints); never write into it
    inhib = state.global_inhibition
    indptr, col, w, input_idx = state.indptr, state.col, state.w, state.input_idx
    # per-step scratch, sized for the largest step seen so far
    pos_scratch = torch.empty(0, dtype=torch.int64, device=device)
    vals = torch.empty(0, device=device)
    post_scratch = torch.empty(0, dtype=torch.int32, device=device)
    # this cycle's events (estimate: every neuron spikes once)
    guess = min(state.nnz, 1 << 20) if record_events else 0
    ev_pos = _Growing(guess + 1, torch.int64, device)
    ev_post = _Growing(guess, torch.int32, device)
    ev_step = _Growing(guess, torch.int32, device)

    def propagate_from(spikes: torch.Tensor, t_pre: int, inject: bool) -> None:
        nonlocal pos_scratch, vals, post_scratch
        rows = spikes.nonzero().squeeze(1)
        if rows.numel() == 0:
            return
        record = record_events and t_pre >= 0
        if record:
            # positions go straight into the event buffer (one spare entry for row_positions)
            total = int((indptr[rows + 1] - indptr[rows]).sum())
            if total == 0:
                return
            slot = ev_pos.take(total + 1)
            ev_pos.size -= 1
            pos = row_positions(indptr, rows, out=slot)
            post = torch.index_select(col, 0, pos, out=ev_post.take(total))
            ev_step.take(total).fill_(t_pre)
        else:
            total = int((indptr[rows + 1] - indptr[rows]).sum())
            if total == 0:
                return
            if pos_scratch.numel() < total + 1:
                pos_scratch = torch.empty(2 * total + 1, dtype=torch.int64, device=device)
                post_scratch = torch.empty(2 * total, dtype=torch.int32, device=device)
            pos = row_positions(indptr, rows, out=pos_scratch)
            post = torch.index_select(col, 0, pos, out=post_scratch[:total]) if inject else None
        if inject:
            if vals.numel() < total:
                vals = torch.empty(2 * total, device=device)
            weight = torch.index_select(w, 0, pos, out=vals[:total])
            n_exc_events = int(torch.searchsorted(pos, n_exc_syn))
            recurrent_current_(current, post, weight, n_exc_events, synaptic_gain, inhib)

    spikes = state.last_spikes
    for t in range(steps):
        current.zero_()
        current.index_put_((input_idx,), drive[t])
        # spikes of step t-1 (at t = 0: the previous cycle's last step, recorded there)
        propagate_from(spikes, t - 1, inject=True)
        spikes = raster[t]
        lif.step(current, v, spikes)

    if record_events:  # the last step's spikes propagate next cycle, but pair with this cycle's
        propagate_from(spikes, steps - 1, inject=False)
    state.v, state.last_spikes = v, spikes.clone()

    return CycleSpikes(
        raster=raster,
        event_pos=ev_pos.used(),
        event_post=ev_post.used(),
        event_step=ev_step.used(),
    )


def _simulate_compiled(
    state: NetworkState, input_spikes: torch.Tensor, *, dt_ms: float, v_rest: float, v_reset: float,
    synaptic_gain: float, input_current: float, v_min: float | None,
) -> CycleSpikes:
    from ..compiled.propagation import simulate_steps

    steps, n = input_spikes.shape[0], state.n
    lif = LIFStepper(lif_parameters(state.tau_mem, state.v_th + state.theta, v_rest, v_reset), dt_ms)
    drive = input_spikes.to(state.v.dtype) * input_current
    raster = torch.empty(steps, n, dtype=torch.bool)
    v = state.v.clone()  # callers may hold the old V (checkpoints); never write into it
    step_ptr = np.empty(steps + 1, dtype=np.int64)
    spike_neurons = simulate_steps(
        v.numpy(), lif.dt_tau_inv.numpy(), float(lif.v_leak), lif.v_th.numpy(), float(lif.v_reset),
        drive.numpy(), state.input_idx.numpy(), state.last_spikes.numpy(),
        state.indptr.numpy(), state.col.numpy(), state.w.numpy(), state.n_exc_synapses,
        float(synaptic_gain), float(state.global_inhibition), float("-inf") if v_min is None else float(v_min),
        raster.numpy(), np.empty(n, dtype=np.float32), np.empty(n, dtype=np.int64),
        step_ptr, np.empty(max(n, 1024), dtype=np.int32),  # (a first guess; the kernel grows it)
    )
    state.v, state.last_spikes = v, raster[steps - 1].clone()
    empty = torch.empty(0, dtype=torch.int32)
    return CycleSpikes(raster=raster, event_pos=empty.long(), event_post=empty, event_step=empty,
                       step_ptr=torch.from_numpy(step_ptr), spike_neurons=torch.from_numpy(spike_neurons[: step_ptr[-1]]))
