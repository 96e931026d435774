"""Compiled (numba) form of the readout's per-cycle work (``learning/readout.py``, issue #15).

The readout synapses of the feature pathway are ~660 x outputs (84,480 at 128 output neurons),
and the PyTorch form of their three per-cycle passes is a dozen gathers, scatters and temporaries
over all of them. Each kernel here is one pass in the same order as the PyTorch code, with the same
float32 roundings, so the results are bit-identical to ``learning/readout.py`` (tests/test_readout_kernels.py):

1. ``readout_drive``: ``d_j = sum_r w[pos_r] * n[pre_r]`` over the readout synapses ``r`` of output
   neuron ``j``, summed in ``r`` order (``index_add_`` on the CPU adds sequentially) -- the input of
   ``population_potentials``.
2. ``presynaptic_update``: ``w[pos_r] <- clip(w_before_r + (n[pre_r] * scale) * coef[p(r)] (* persistent
   scale), 0, w_max)`` with ``p(r)`` the synapse's output population -- ``presynaptic_eligibility``
   followed by ``readout_update`` (and ``weights``, the gather of ``w_before``) -- and, in the same
   pass, the scaling of 3.
3. ``normalize``: each output neuron's readout weights scaled back to their target sum --
   ``normalize_readout``.

Serial loops: at this size one pass is ~0.1 ms, below a fork-join's worth of parallel work.
"""
from __future__ import annotations

import numba
import numpy as np
import torch

from ...learning.readout import ReadoutIndex


@numba.njit(cache=True, nogil=True)
def _drive(w: np.ndarray, pos: np.ndarray, pre: np.ndarray, post: np.ndarray, counts: np.ndarray,
           out: np.ndarray) -> None:  # pragma: no cover - compiled
    out[:] = 0.0
    for r in range(pos.shape[0]):
        out[post[r]] += w[pos[r]] * np.float32(counts[pre[r]])


@numba.njit(cache=True, nogil=True)
def _gather(w: np.ndarray, pos: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    out = np.empty(pos.shape[0], dtype=w.dtype)
    for r in range(pos.shape[0]):
        out[r] = w[pos[r]]
    return out


@numba.njit(cache=True, nogil=True)
def _presynaptic_update(w: np.ndarray, pos: np.ndarray, pre: np.ndarray, population: np.ndarray, post: np.ndarray,
                        counts: np.ndarray, w_before: np.ndarray, coef: np.ndarray, persistent: np.ndarray,
                        persistent_scale: np.float32, scale: np.float32, w_max: np.float32, target: np.ndarray,
                        normalize: bool) -> None:  # pragma: no cover - compiled
    scaled = persistent_scale != np.float32(1.0)
    updated = np.empty(pos.shape[0], dtype=np.float32)
    sums = np.zeros(target.shape[0], dtype=np.float32)
    for r in range(pos.shape[0]):
        delta = (np.float32(counts[pre[r]]) * scale) * coef[population[r]]
        if scaled and persistent[pos[r]]:
            delta = delta * persistent_scale
        v = min(max(w_before[r] + delta, np.float32(0.0)), w_max)
        updated[r] = v
        sums[post[r]] += v
    if not normalize:
        for r in range(pos.shape[0]):
            w[pos[r]] = updated[r]
        return
    factor = _factors(sums, target)
    for r in range(pos.shape[0]):
        w[pos[r]] = min(max(updated[r] * factor[post[r]], np.float32(0.0)), w_max)


@numba.njit(cache=True, nogil=True)
def _factors(sums: np.ndarray, target: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """``normalize_readout``'s scale per output neuron: ``S / sum`` (1 for a neuron without input)."""
    factor = np.ones(target.shape[0], dtype=np.float32)
    for j in range(target.shape[0]):
        if sums[j] > 0:
            factor[j] = target[j] / max(sums[j], np.float32(1e-12))
    return factor


@numba.njit(cache=True, nogil=True)
def _normalize(w: np.ndarray, pos: np.ndarray, post: np.ndarray, target: np.ndarray,
               w_max: np.float32) -> None:  # pragma: no cover - compiled
    sums = np.zeros(target.shape[0], dtype=np.float32)
    for r in range(pos.shape[0]):
        sums[post[r]] += w[pos[r]]
    factor = _factors(sums, target)
    for r in range(pos.shape[0]):
        v = w[pos[r]] * factor[post[r]]
        w[pos[r]] = min(max(v, np.float32(0.0)), w_max)


class CompiledReadout:
    """The readout passes on CPU tensors (numpy views: the kernels write ``w`` in place)."""

    name = "numba"

    @staticmethod
    def drive(w: torch.Tensor, counts: torch.Tensor, index: ReadoutIndex) -> torch.Tensor:
        out = np.empty(index.target_sum.shape[0], dtype=np.float32)
        _drive(w.numpy(), index.pos.numpy(), index.pre.numpy(), index.post_local.numpy(), counts.numpy(), out)
        return torch.from_numpy(out)

    @staticmethod
    def weights(w: torch.Tensor, index: ReadoutIndex) -> torch.Tensor:
        return torch.from_numpy(_gather(w.numpy(), index.pos.numpy()))

    @staticmethod
    def presynaptic_update(w: torch.Tensor, counts: torch.Tensor, index: ReadoutIndex, w_before: torch.Tensor,
                           coef: torch.Tensor, persistent: torch.Tensor, persistent_scale: float, scale: float,
                           w_max: float, normalize: bool) -> None:
        _presynaptic_update(w.numpy(), index.pos.numpy(), index.pre.numpy(), index.population.numpy(),
                            index.post_local.numpy(), counts.numpy(), w_before.numpy(), coef.numpy(),
                            persistent.numpy(), np.float32(persistent_scale), np.float32(scale), np.float32(w_max),
                            index.target_sum.numpy(), normalize)

    @staticmethod
    def normalize(w: torch.Tensor, index: ReadoutIndex, w_max: float) -> None:
        _normalize(w.numpy(), index.pos.numpy(), index.post_local.numpy(), index.target_sum.numpy(),
                   np.float32(w_max))
