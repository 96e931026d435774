"""Compiled (numba) form of one cycle of simulation, SPEC §1-§2: T steps of

    I(t)   = I_encoded(t) + sum over neurons i that spiked at t-1, synapses k of row i:
             gain * w[k] (* global inhibition if k is inhibitory), added into I[col[k]]
    V'     = max(V + (dt / tau_m) * ((I + V_rest) - V), v_min)   Norse's box-LIF Euler step, floored
    z      = V' > v_th;   V <- v_reset (per neuron) where z, else V'

in one call. The float32 operations and their order are exactly those of the PyTorch path
(``network/simulate.py``: ``index_put_`` of the drive, ``recurrent_current_`` event by event in
CSR order, then ``LIFStepper``, itself bit-identical to Norse's ``lif_box_feed_forward_step``),
so V and the spikes are bit-identical to it (``tests/test_backends.py`` checks both against
Norse). Fusing the T steps removes ~10 framework calls per step; each step's spike list is built
right after its LIF update, so propagation reads only the neurons that spiked: the cost per step
is N (the LIF update) + spikes x fan-out.
"""
from __future__ import annotations

import numba
import numpy as np

from .arrays import Currents, LIFNeurons, SpikeList, Synapses
from .memory import AHEAD, prefetch


@numba.njit(cache=True, nogil=True)
def simulate_steps(
    v: np.ndarray, lif: LIFNeurons, syn: Synapses, inputs: Currents, fired: np.ndarray, out: SpikeList,
) -> np.ndarray:  # pragma: no cover - compiled
    """Advance ``v`` (float32 [N]) by ``T = inputs.drive.shape[0]`` steps.

    ``fired`` (bool [N]) holds the spikes of the previous cycle's last step on entry and this
    cycle's last step on return. The spikes in time order are written to ``out``; the list is
    returned: ``out.neurons`` (int32) when it was large enough, else a larger copy."""
    indptr, col, w, n_exc_synapses = syn.indptr, syn.col, syn.w, syn.n_exc
    drive, input_idx = inputs.drive, inputs.input_idx
    dt_tau_inv, v_th, v_reset = lif.dt_tau_inv, lif.v_th, lif.v_reset
    step_ptr, spike_neurons = out.step_ptr, out.neurons
    steps, n = drive.shape[0], v.shape[0]
    current = np.empty(n, dtype=np.float32)
    spiking = np.empty(n, dtype=np.int64)  # this step's spiking neurons
    g = np.float32(inputs.gain)
    h = np.float32(inputs.inhibition)
    scale_inh = h != np.float32(1.0)
    leak = np.float32(lif.v_leak)
    floor = np.float32(lif.v_min)
    step_ptr[0] = 0
    n_spiking = 0
    for j in range(n):  # spikes of the previous cycle's last step
        if fired[j]:
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
        for j in range(n):
            vj = max(v[j] + ((current[j] + leak) - v[j]) * dt_tau_inv[j], floor)
            z = vj > v_th[j]
            fired[j] = z
            v[j] = v_reset[j] if z else vj
        n_spiking = 0
        for j in range(n):
            if fired[j]:
                spiking[n_spiking] = j
                n_spiking += 1
        spike_neurons = record_step(spiking, n_spiking, t, step_ptr, spike_neurons)
    return spike_neurons


@numba.njit(cache=True, nogil=True)
def record_step(  # pragma: no cover - compiled
    spiking: np.ndarray, n_spiking: int, t: int, step_ptr: np.ndarray, spike_neurons: np.ndarray,
) -> np.ndarray:
    """Append step ``t``'s ``spiking[:n_spiking]`` to the cycle's spike list; returns the list
    (``spike_neurons``, or a copy twice as large when it was full)."""
    start = step_ptr[t]
    if start + n_spiking > spike_neurons.shape[0]:
        bigger = np.empty(max(2 * spike_neurons.shape[0], start + n_spiking), dtype=np.int32)
        bigger[:start] = spike_neurons[:start]
        spike_neurons = bigger
    spike_neurons[start : start + n_spiking] = spiking[:n_spiking]
    step_ptr[t + 1] = start + n_spiking
    return spike_neurons
