"""One cycle of simulation: T steps of LIF dynamics with event-driven recurrence (SPEC §1-§2).

Per step: ``I(t) = gain * w @ spikes(t-1) + I_encoded(t)`` computed from the neurons that spiked
at t-1 only, then Norse's LIF step (in its in-place, bit-identical form ``LIFStepper``). V and the
last step's spikes carry over between cycles: the daemon runs one continuous simulated time line.

This is the PyTorch form (the reference, the CUDA path and the fallback; ``backends/pytorch.py``);
``backends/numba/propagation.py`` is the same arithmetic fused into one compiled call.

Speed: the loop allocates nothing of size N or of size events per step. Each step's spiking
neurons are found once (``nonzero``): they are appended to the cycle's spike list and propagated in
the next step; the per-step scratch vectors are reused.
"""
from __future__ import annotations

import torch

from ..config import LIFConfig
from .lif import LIFStepper, neuron_parameters
from .propagate import recurrent_current_, row_positions
from .spikes import CycleSpikes
from .state import NetworkState


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


def simulate_cycle(state: NetworkState, input_spikes: torch.Tensor, lif: LIFConfig) -> CycleSpikes:
    """Run ``T = input_spikes.shape[0]`` steps on ``state`` (replaces V and last_spikes).

    ``input_spikes`` (bool [T, n_in]) drive the input neurons with ``lif.input_current`` each.
    The threshold is ``v_th + theta`` (``theta``: the output neurons' adaptive threshold); V is
    floored at ``lif.v_min`` (``LIFStepper``)."""
    steps, n = input_spikes.shape[0], state.n
    device = state.device
    stepper = LIFStepper(neuron_parameters(state, lif), lif.dt_ms, lif.v_min)
    n_exc_syn = torch.tensor([state.n_exc_synapses], device=device)
    drive = input_spikes.to(state.v.dtype) * lif.input_current  # [T, n_in]
    current = torch.empty(n, device=device)
    # callers may hold the old V and spikes (checkpoints): never write into them
    v = state.v.clone()
    fired = state.last_spikes.clone()
    inhib, gain = state.global_inhibition, lif.synaptic_gain
    indptr, col, w, input_idx = state.indptr, state.col, state.w, state.input_idx
    # per-step scratch, sized for the largest step seen so far
    pos_scratch = torch.empty(0, dtype=torch.int64, device=device)
    vals = torch.empty(0, device=device)
    post_scratch = torch.empty(0, dtype=torch.int32, device=device)
    spike_list = _Growing(n, torch.int32, device)  # (a first guess: every neuron spikes once)
    step_ptr = [0]

    def propagate(rows: torch.Tensor) -> None:
        nonlocal pos_scratch, vals, post_scratch
        if rows.numel() == 0:
            return
        total = int((indptr[rows + 1] - indptr[rows]).sum())
        if total == 0:
            return
        if pos_scratch.numel() < total + 1:  # (row_positions needs one spare entry)
            pos_scratch = torch.empty(2 * total + 1, dtype=torch.int64, device=device)
            post_scratch = torch.empty(2 * total, dtype=torch.int32, device=device)
            vals = torch.empty(2 * total, device=device)
        pos = row_positions(indptr, rows, out=pos_scratch)
        post = torch.index_select(col, 0, pos, out=post_scratch[:total])
        weight = torch.index_select(w, 0, pos, out=vals[:total])
        n_exc_events = int(torch.searchsorted(pos, n_exc_syn))
        recurrent_current_(current, post, weight, n_exc_events, gain, inhib)

    rows = fired.nonzero().squeeze(1)  # the previous cycle's last step
    for t in range(steps):
        current.zero_()
        current.index_put_((input_idx,), drive[t])
        propagate(rows)  # the spikes of step t - 1
        stepper.step(current, v, fired)
        rows = fired.nonzero().squeeze(1)
        spike_list.take(rows.numel()).copy_(rows)
        step_ptr.append(spike_list.size)
    state.v, state.last_spikes = v, fired
    return CycleSpikes(step_ptr=torch.tensor(step_ptr, dtype=torch.int64, device=device), neurons=spike_list.used(),
                       n=n)
