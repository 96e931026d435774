"""Compiled (numba) form of one cycle's per-synapse learning, SPEC §3 (seed 002 §5.A-§5.B).

Mirrors, operation for operation, ``TorchBackend.learn`` (``learning/stdp.py``,
``eligibility.py``, ``modulation.py``, ``readout.py``):

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

Instead of the PyTorch path's per-event lists (positions, targets, steps: 16 bytes per event
written and read again) and its synapse-sized float32 accumulator, the kernels read the cycle's
spike list and walk the rows of the neurons that spiked: memory traffic per cycle ~ events x 4
bytes (the table row is cache-resident) + synapses x 11 bytes.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .arrays import PostFactors, ReadoutUpdate, SpikeList, SpikeTrains, STDPWindow, Synapses, Traces, WeightUpdate
from .floats import fma, half_bits, half_value
from .memory import AHEAD, prefetch


@numba.njit(cache=True, nogil=True)
def spike_trains(counts: np.ndarray, spikes: SpikeList) -> SpikeTrains:  # pragma: no cover - compiled
    """The spike list regrouped by neuron (``counts``: int64 [N], spikes per neuron)."""
    step_ptr, neurons = spikes.step_ptr, spikes.neurons
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
            j = neurons[s]
            times[fill[j]] = t
            fill[j] += 1
    return SpikeTrains(ptr, times, active)


@numba.njit(cache=True, nogil=True, parallel=True)
def stdp_table(
    trains: SpikeTrains, window: STDPWindow, post: PostFactors, table: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Fill ``table`` (float32 [T, 2, N]).

    Every column first gets the rows of a neuron without spikes, (0, offset) x gate; then each
    neuron that spiked adds its kernels around its spikes in a float64 column (exact for float32
    kernel values, rounded once) and writes it. Blocks of neurons run in parallel."""
    ptr, times, active = trains.ptr, trains.times, trains.active
    kernels = window.kernels
    gate, use_gate, causal, use_causal = post.gate, post.use_gate, post.causal, post.use_causal
    steps, n = table.shape[0], table.shape[2]
    d_max = (kernels.shape[1] - 1) // 2
    off = np.float32(window.inh_offset)
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
    spikes: SpikeList, active: np.ndarray, syn: Synapses, table: np.ndarray, trace: Traces, gamma: float,
    acc: np.ndarray, parts: int,
) -> np.ndarray:  # pragma: no cover - compiled
    """This cycle's STDP per synapse of every row that spiked, summed in time order.

    Row ``active[a]``'s synapses get ``acc[slot:slot + fan-out]`` (``slot`` returned, int64 [N],
    -1 for rows that did not spike): ``0 + dw_1 + dw_2 ...`` for a float16 trace,
    ``gamma e + dw_1 + ...`` for a float32 one (``eligibility.update_trace``'s two orders).
    Each thread owns a range of rows and runs through the steps in order, so the table row
    ``table[t]`` (4N bytes per type) it reads stays in cache, and each row's sums are in time
    order whatever the thread count."""
    step_ptr, spike_neurons = spikes.step_ptr, spikes.neurons
    indptr, col, n_exc_synapses = syn.indptr, syn.col, syn.n_exc
    half_trace, e32 = trace.half, trace.e32
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
    syn: Synapses, trace: Traces, slot: np.ndarray, acc: np.ndarray, rule: WeightUpdate,
) -> None:  # pragma: no cover - compiled
    """Eligibility traces -> reward-modulated weights of every synapse, in place, rows in
    parallel (module doc; ``acc``/``slot``: ``stdp_sums``). Each row is one branch-free loop the
    compiler can vectorise."""
    indptr, w, persistent, n_exc_synapses = syn.indptr, syn.w, syn.persistent, syn.n_exc
    half_trace, e16, e32 = trace.half, trace.e16, trace.e32
    generic = rule.generic
    n = indptr.shape[0] - 1
    g = np.float32(rule.gamma)
    ps = np.float32(rule.persistent_scale)
    coef_exc = np.float32(rule.coef_exc)
    coef_inh = np.float32(rule.coef_inh)
    one = np.float32(1.0)
    hi = np.float32(rule.w_max)
    zero = np.float32(0.0)
    for i in prange(n):
        first, last = indptr[i], indptr[i + 1]
        m = last - first
        if m == 0:
            continue
        base = slot[i]
        inhibitory = first >= n_exc_synapses
        coef = coef_inh if inhibitory else coef_exc
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
    syn: Synapses, trace: Traces, readout: ReadoutUpdate, rule: WeightUpdate,
) -> None:  # pragma: no cover - compiled
    """``learning/readout.py::readout_update``: readout synapse ``pos[r]`` gets
    ``clip(w_before[r] + (e * coef[r]) * scale, 0, w_max)`` from its new trace."""
    w, persistent = syn.w, syn.persistent
    half_trace, e16, e32 = trace.half, trace.e16, trace.e32
    pos, w_before, coef = readout.pos, readout.w_before, readout.coef
    ps = np.float32(rule.persistent_scale)
    scaled = ps != np.float32(1.0)
    hi = np.float32(rule.w_max)
    for r in range(pos.shape[0]):
        k = pos[r]
        delta = (half_value(e16[k]) if half_trace else e32[k]) * coef[r]
        if scaled and persistent[k]:
            delta = delta * ps
        w[k] = min(max(w_before[r] + delta, np.float32(0.0)), hi)
