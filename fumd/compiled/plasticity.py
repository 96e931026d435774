"""Compiled (numba) form of one cycle's per-synapse learning, SPEC §3 (seed 002 §5.A-§5.B).

Mirrors, operation for operation, the PyTorch reference path of ``Engine._learn``:

1. ``stdp_table``: ``table[t, c, j]`` = weight change of one event at step ``t`` from a
   presynaptic neuron of type ``c`` (0 excitatory, 1 inhibitory) onto neuron ``j``::

       table[t, 0, j] = gate_j * sum_{u in spikes(j), |u - t| <= D} K_exc(u - t)      (K_causal for readout targets)
       table[t, 1, j] = gate_j * (sum_{u in spikes(j), |u - t| <= D} K_inh(u - t) + A_i alpha)

   exactly ``learning/stdp.py::event_updates``' table (sums in float64, rounded once), laid out
   ``[T, 2, N]`` so that the events of one presynaptic spike read one contiguous row.
2. ``stdp_sums``: this cycle's STDP of every synapse of a row that spiked, summed in time order
   (each thread owns a range of rows and walks the steps in order, so ``table[t]`` stays in
   cache)::

       s_k   = sum_{t in spikes(pre(k))} table[t, c(k), post(k)]

3. ``update_synapses``: one pass over every synapse, rows in parallel (each synapse is written
   by its own row only, so the result does not depend on the thread count)::

       e_k  <- gamma e_k + s_k                                            (eligibility.py)
       w_k  <- clip(w_k + coef_c * scale_k * e_k, sign range of c)        (modulation.py)

   with ``scale_k = persistent_eta_scale`` on persistent synapses; a float16 trace is summed in
   float32 and rounded once per cycle, as in ``update_trace``.
4. ``readout_update``: the readout synapses again, from their weights before step 3
   (``readout.py``)::

       w_k  <- clip(w_k(before) + (e_k * coef_readout) * scale_k, 0, w_max)

Instead of the reference's per-event lists (positions, targets, steps: 16 bytes per event written
and read again) and its synapse-sized float32 accumulator, the kernels read the cycle's spike list
and walk the rows of the neurons that spiked: memory traffic per cycle ~ events x 4 bytes (the table
row is cache-resident) + synapses x 11 bytes.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numba
import numpy as np
import torch
from numba import prange

from . import compiled_threads
from .floats import fma, half_bits, half_value
from .memory import AHEAD, prefetch

if TYPE_CHECKING:
    from ..learning.modulation import UpdateCoefficients
    from ..learning.stdp import STDPKernels
    from ..network.simulate import CycleSpikes
    from ..network.state import NetworkState


@numba.njit(cache=True, nogil=True)
def spike_lists(
    counts: np.ndarray, step_ptr: np.ndarray, spike_neurons: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """Per-neuron spike steps, ascending: CSR ``(ptr [N+1], steps [S])``, and the neurons that
    spiked (``active``, ascending), from the cycle's spikes in time order (``simulate_steps``)."""
    n = counts.shape[0]
    ptr = np.zeros(n + 1, dtype=np.int64)
    n_active = 0
    for j in range(n):
        ptr[j + 1] = ptr[j] + counts[j]
        n_active += counts[j] > 0
    active = np.empty(n_active, dtype=np.int64)
    a = 0
    for j in range(n):
        if counts[j] > 0:
            active[a] = j
            a += 1
    fill = ptr[:-1].copy()
    times = np.empty(ptr[n], dtype=np.int32)
    for t in range(step_ptr.shape[0] - 1):
        for s in range(step_ptr[t], step_ptr[t + 1]):
            j = spike_neurons[s]
            times[fill[j]] = t
            fill[j] += 1
    return ptr, times, active


@numba.njit(cache=True, nogil=True, parallel=True)
def stdp_table(
    ptr: np.ndarray, times: np.ndarray, active: np.ndarray, kernels: np.ndarray,
    causal: np.ndarray, use_causal: bool, inh_offset: float, gate: np.ndarray, use_gate: bool, table: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Fill ``table`` (float32 [T, 2, N]); ``kernels`` (float64 [3, 2D + 1]: excitatory,
    inhibitory, causal) are indexed ``D + (u - t)``.

    Every column first gets the rows of a neuron without spikes, (0, offset) x gate; then each
    neuron that spiked adds its kernels around its spikes in a float64 column (exact for float32
    kernel values, rounded once) and writes it. Blocks of neurons run in parallel."""
    steps, n = table.shape[0], table.shape[2]
    d_max = (kernels.shape[1] - 1) // 2
    off = np.float32(inh_offset)
    for t in prange(steps):
        r_exc, r_inh = table[t, 0], table[t, 1]
        r_exc[:] = np.float32(0.0)
        if use_gate:
            for j in range(n):
                r_inh[j] = off * gate[j]
        else:
            r_inh[:] = off
    block = 512
    for b in prange((active.shape[0] + block - 1) // block):
        acc = np.empty((2, steps))
        for a in range(b * block, min((b + 1) * block, active.shape[0])):
            j = active[a]
            exc = 2 if use_causal and causal[j] else 0
            acc[:] = 0.0
            for q in range(ptr[j], ptr[j + 1]):
                u = times[q]
                for t in range(max(0, u - d_max), min(steps, u + d_max + 1)):
                    acc[0, t] += kernels[exc, u - t + d_max]
                    acc[1, t] += kernels[1, u - t + d_max]
            g = gate[j] if use_gate else np.float32(1.0)
            for t in range(steps):
                x_exc = np.float32(acc[0, t])
                x_inh = np.float32(acc[1, t]) + off
                if use_gate:
                    x_exc = x_exc * g
                    x_inh = x_inh * g
                table[t, 0, j] = x_exc
                table[t, 1, j] = x_inh


@numba.njit(cache=True, nogil=True, parallel=True)
def stdp_sums(
    step_ptr: np.ndarray, spike_neurons: np.ndarray, active: np.ndarray, indptr: np.ndarray, col: np.ndarray,
    n_exc_synapses: int, table: np.ndarray, half_trace: bool, e32: np.ndarray, gamma: float, acc: np.ndarray,
    parts: int,
) -> np.ndarray:  # pragma: no cover - compiled
    """This cycle's STDP per synapse of every row that spiked, summed in time order.

    Row ``active[a]``'s synapses get ``acc[slot:slot + fan-out]`` (``slot`` returned, int64 [N],
    -1 for rows that did not spike): ``0 + dw_1 + dw_2 ...`` for a float16 trace,
    ``gamma e + dw_1 + ...`` for a float32 one (``eligibility.update_trace``'s two orders).
    Each thread owns a range of rows and runs through the steps in order, so the table row
    ``table[t]`` (4N bytes per type) it reads stays in cache, and each row's sums are in time
    order whatever the thread count."""
    n = indptr.shape[0] - 1
    slot = np.full(n, -1, dtype=np.int64)
    offset = 0
    for a in range(active.shape[0]):
        i = active[a]
        slot[i] = offset
        offset += indptr[i + 1] - indptr[i]
    g = np.float32(gamma)
    for a in prange(active.shape[0]):
        i = active[a]
        first, base = indptr[i], slot[i]
        if half_trace:
            acc[base : base + indptr[i + 1] - first] = np.float32(0.0)
        else:
            for k in range(indptr[i + 1] - first):
                acc[base + k] = e32[first + k] * g
    for p in prange(parts):  # one parallel region; each thread owns a range of presynaptic rows
        lo, hi = p * n // parts, (p + 1) * n // parts
        for t in range(step_ptr.shape[0] - 1):
            end = step_ptr[t + 1]
            for s in range(step_ptr[t], end):
                i = spike_neurons[s]
                if i < lo or i >= hi:
                    continue
                if s + AHEAD < end:  # start loading a row a few spikes on (see memory.py)
                    ahead = spike_neurons[s + AHEAD]
                    if lo <= ahead < hi:
                        prefetch(col, indptr[ahead])
                        prefetch(acc, slot[ahead])
                first, last, base = indptr[i], indptr[i + 1], slot[i]
                row = table[t, 1 if first >= n_exc_synapses else 0]
                cols, sums = col[first:last], acc[base : base + last - first]  # (views vectorise)
                for k in range(last - first):
                    sums[k] += row[cols[k]]
    return slot


@numba.njit(cache=True, nogil=True, parallel=True)
def update_synapses(
    indptr: np.ndarray, slot: np.ndarray, acc: np.ndarray,
    half_trace: bool, e16: np.ndarray, e32: np.ndarray, w: np.ndarray, persistent: np.ndarray,
    n_exc_synapses: int, gamma: float, generic: bool, coef_exc: float, coef_inh: float,
    persistent_scale: float, w_max: float,
) -> None:  # pragma: no cover - compiled
    """Eligibility traces -> reward-modulated weights of every synapse, in place, rows in
    parallel (module doc; the readout synapses are redone by ``readout_update`` afterwards, as in
    the PyTorch path). Each row is one branch-free loop the compiler can vectorise."""
    n = indptr.shape[0] - 1
    g = np.float32(gamma)
    ps = np.float32(persistent_scale)
    one = np.float32(1.0)
    hi = np.float32(w_max)
    zero = np.float32(0.0)
    for i in prange(n):
        first, last = indptr[i], indptr[i + 1]
        m = last - first
        if m == 0:
            continue
        base = slot[i]
        inhibitory = first >= n_exc_synapses
        coef = np.float32(coef_inh) if inhibitory else np.float32(coef_exc)
        lo = -hi if inhibitory else zero
        up = zero if inhibitory else hi
        # row views and one loop per case: simple, branch-free loops the compiler vectorises
        # (a persistent synapse's change is scaled by ps, the others' by exactly 1)
        wr, pr = w[first:last], persistent[first:last]
        if half_trace:
            eh = e16[first:last]
            if base >= 0:  # e <- fp16(acc.add_(e, alpha=gamma)): one rounding
                sums = acc[base : base + m]
                for k in range(m):
                    eh[k] = half_bits(fma(g, half_value(eh[k]), sums[k]))
            else:
                for k in range(m):
                    eh[k] = half_bits(g * half_value(eh[k]))
            if generic:  # w.add_(delta, alpha=coef).clamp_(sign range): one rounding (fma)
                for k in range(m):
                    delta = half_value(eh[k]) * (ps if pr[k] else one)
                    wr[k] = min(max(fma(coef, delta, wr[k]), lo), up)
        else:
            er = e32[first:last]
            if base >= 0:
                er[:] = acc[base : base + m]
            else:
                for k in range(m):
                    er[k] = er[k] * g
            if generic:
                for k in range(m):
                    delta = er[k] * (ps if pr[k] else one)
                    wr[k] = min(max(fma(coef, delta, wr[k]), lo), up)


@numba.njit(cache=True, nogil=True)
def readout_update(
    pos: np.ndarray, w_before: np.ndarray, half_trace: bool, e16: np.ndarray, e32: np.ndarray, w: np.ndarray,
    persistent: np.ndarray, coef: np.ndarray, persistent_scale: float, w_max: float,
) -> None:  # pragma: no cover - compiled
    """``learning/readout.py::readout_update``: readout synapse ``pos[r]`` gets
    ``clip(w_before[r] + (e * coef[r]) * scale, 0, w_max)`` from its new trace."""
    ps = np.float32(persistent_scale)
    scaled = ps != np.float32(1.0)
    hi = np.float32(w_max)
    for r in range(pos.shape[0]):
        k = pos[r]
        delta = (half_value(e16[k]) if half_trace else e32[k]) * coef[r]
        if scaled and persistent[k]:
            delta = delta * ps
        w[k] = min(max(w_before[r] + delta, np.float32(0.0)), hi)


class CompiledPlasticity:
    """Thin stateful wrapper: numpy views of the state, reused buffers (the table, the per-cycle
    STDP sums), the thread count. It derives nothing from the synapse structure, so structure
    edits and state loads need no notice."""

    def __init__(self, kernels: STDPKernels):
        causal = kernels.causal if kernels.causal is not None else kernels.excitatory
        self.kernels = torch.stack([kernels.excitatory, kernels.inhibitory, causal]).double().cpu().numpy()
        self.inh_offset = float(kernels.inhibitory_offset)
        self.table = np.empty((0, 2, 0), dtype=np.float32)
        self.acc = np.empty(0, dtype=np.float32)
        self.no_gate = np.ones(1, dtype=np.float32)

    def learn(
        self, state: NetworkState, spikes: CycleSpikes, counts: torch.Tensor, gate: torch.Tensor | None,
        causal: torch.Tensor | None, readout_pos: torch.Tensor, gamma: float, coefs: UpdateCoefficients,
    ) -> None:
        """One cycle of STDP -> traces -> weights on ``state`` (CPU tensors, updated in place).

        ``spikes`` must come from the compiled simulation (its spike list); ``gate`` (float32 [N])
        and ``causal`` (bool [N]) as in ``stdp.event_updates``; ``readout_pos`` (int64) are the
        readout synapses' positions (``ReadoutIndex.pos``)."""
        threads = compiled_threads()
        steps, n = spikes.raster.shape
        if self.table.shape != (steps, 2, n):
            self.table = np.empty((steps, 2, n), dtype=np.float32)
        indptr, col, w, persistent = state.indptr.numpy(), state.col.numpy(), state.w.numpy(), state.persistent.numpy()
        ptr, times, active = spike_lists(counts.numpy(), spikes.step_ptr.numpy(), spikes.spike_neurons.numpy())
        is_output = causal.numpy() if causal is not None else np.zeros(n, dtype=np.bool_)
        stdp_table(ptr, times, active, self.kernels, is_output, causal is not None,
                   self.inh_offset, gate.numpy() if gate is not None else self.no_gate, gate is not None, self.table)
        half = state.e.dtype == torch.float16
        e = state.e.numpy()
        e16 = e.view(np.uint16) if half else np.empty(0, dtype=np.uint16)
        e32 = e if not half else np.empty(0, dtype=np.float32)
        need = int((indptr[1:] - indptr[:-1])[active].sum())
        if self.acc.shape[0] < need:
            self.acc = np.empty(max(need, 2 * self.acc.shape[0]), dtype=np.float32)
        slot = stdp_sums(spikes.step_ptr.numpy(), spikes.spike_neurons.numpy(), active, indptr, col,
                         state.n_exc_synapses, self.table, half, e32, gamma, self.acc, threads)
        pos = readout_pos.numpy()
        w_before = w[pos] if coefs.apply_readout else None
        update_synapses(indptr, slot, self.acc, half, e16, e32, w, persistent, state.n_exc_synapses, gamma,
                        coefs.generic, coefs.excitatory, coefs.inhibitory, coefs.persistent_scale, coefs.w_max)
        if coefs.apply_readout:
            readout_update(pos, w_before, half, e16, e32, w, persistent, coefs.readout.numpy(), coefs.persistent_scale, coefs.w_max)
