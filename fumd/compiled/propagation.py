"""Compiled (numba) form of one cycle of simulation, SPEC §1-§2: T steps of

    I(t)   = I_encoded(t) + sum over neurons i that spiked at t-1, synapses k of row i:
             gain * w[k] (* global inhibition if k is inhibitory), added into I[col[k]]
    V'     = max(V + (dt / tau_m) * ((I + V_rest) - V), v_min)   Norse's box-LIF Euler step, floored
    z      = V' > v_th;   V <- v_reset where z, else V'

in one call. The float32 operations and their order are exactly those of the PyTorch path
(``network/simulate.py``: ``index_put_`` of the drive, ``recurrent_current_`` event by event in
CSR order, then ``LIFStepper``, itself bit-identical to Norse's ``lif_box_feed_forward_step``),
so V and the raster are bit-identical to it (``tests/test_compiled.py`` checks both against
Norse). Fusing the 50 steps removes ~10 framework calls per step; the spike list of each step is
built while its raster row is written, so propagation reads only the neurons that spiked: the
cost per step is N (the LIF update) + spikes x fan-out.
"""
from __future__ import annotations

import numba
import numpy as np

from .memory import AHEAD, prefetch


@numba.njit(cache=True, nogil=True)
def simulate_steps(
    v: np.ndarray, dt_tau_inv: np.ndarray, v_leak: float, v_th: np.ndarray, v_reset: float,
    drive: np.ndarray, input_idx: np.ndarray, last_spikes: np.ndarray,
    indptr: np.ndarray, col: np.ndarray, w: np.ndarray, n_exc_synapses: int, gain: float, inhib: float, v_min: float,
    raster: np.ndarray, current: np.ndarray, spiking: np.ndarray, step_ptr: np.ndarray, spike_neurons: np.ndarray,
) -> np.ndarray:  # pragma: no cover - compiled
    """Advance ``v`` (float32 [N]) by ``T = drive.shape[0]`` steps, writing ``raster`` (bool [T, N]).

    The cycle's spikes in time order are also written as a list: step ``t``'s neurons are
    ``spike_neurons[step_ptr[t]:step_ptr[t + 1]]`` (``step_ptr`` int64 [T + 1]). The list is
    returned: ``spike_neurons`` (int32) when it was large enough, else a larger copy.
    ``current`` (float32 [N]) and ``spiking`` (int64 [N]) are scratch."""
    steps, n = raster.shape
    g = np.float32(gain)
    h = np.float32(inhib)
    scale_inh = h != np.float32(1.0)
    leak = np.float32(v_leak)
    reset = np.float32(v_reset)
    floor = np.float32(v_min)
    step_ptr[0] = 0
    n_spiking = 0
    for j in range(n):  # spikes of the previous cycle's last step
        if last_spikes[j]:
            spiking[n_spiking] = j
            n_spiking += 1
    for t in range(steps):
        current[:] = np.float32(0.0)
        drive_t = drive[t]
        for a in range(input_idx.shape[0]):
            current[input_idx[a]] = drive_t[a]
        for s in range(n_spiking):
            if s + AHEAD < n_spiking:  # the row AHEAD spikes on: start loading it now
                ahead = indptr[spiking[s + AHEAD]]
                prefetch(col, ahead)
                prefetch(w, ahead)
            i = spiking[s]
            first, last = indptr[i], indptr[i + 1]
            cols, ws = col[first:last], w[first:last]
            if scale_inh and first >= n_exc_synapses:
                for k in range(last - first):
                    current[cols[k]] += (ws[k] * g) * h
            else:
                for k in range(last - first):
                    current[cols[k]] += ws[k] * g
        row = raster[t]
        for j in range(n):
            vj = max(v[j] + ((current[j] + leak) - v[j]) * dt_tau_inv[j], floor)
            z = vj > v_th[j]
            row[j] = z
            v[j] = reset if z else vj
        n_spiking = 0
        for j in range(n):
            if row[j]:
                spiking[n_spiking] = j
                n_spiking += 1
        start = step_ptr[t]
        if start + n_spiking > spike_neurons.shape[0]:
            bigger = np.empty(max(2 * spike_neurons.shape[0], start + n_spiking), dtype=np.int32)
            bigger[:start] = spike_neurons[:start]
            spike_neurons = bigger
        spike_neurons[start : start + n_spiking] = spiking[:n_spiking]
        step_ptr[t + 1] = start + n_spiking
    return spike_neurons
