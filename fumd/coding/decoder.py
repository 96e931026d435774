"""Population decoder, SPEC §2 (AMN §5.1 eq. 28: ``Phi(S)_i = mean_t S_i,t``).

Output neurons form one population per action/label. The population rate is the mean over its
neurons and the T steps; the action is the argmax over the populations in use (ties -> lowest
index), and ``confidence = (r_best - r_second) / r_best`` (0 when no output neuron fired). With
``learning.readout_decision = potential`` the populations' mean membrane potentials decide instead
(``learning/readout.py::population_potentials``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PopulationScores:
    """What the output populations decide by, float64 [P]: their rates (Hz; ``free`` None) or
    their mean potentials relative to threshold (mV; ``free``: each population's mean free
    potential, ``learning/readout.py::population_potentials``)."""

    values: torch.Tensor
    free: torch.Tensor | None = None

    def first(self, k: int) -> tuple[torch.Tensor, float | None]:
        """The first ``k`` populations' scores and the scale of their margins: None for rates
        (``decode`` and the error then use the rates themselves), the populations' mean free
        potential for potentials."""
        if self.free is None:
            return self.values[:k], None
        return self.values[:k], float(self.free[:k].mean()) if k > 0 else 0.0


def population_rates(counts: torch.Tensor, output_idx: torch.Tensor, cycle_ms: float) -> torch.Tensor:
    """Rates in Hz of each population, [P], from the cycle's spike counts per neuron (int [N])
    over ``cycle_ms`` (T steps x dt)."""
    per_neuron = counts[output_idx.reshape(-1)].reshape(output_idx.shape).double()
    return per_neuron.mean(1) * (1000.0 / cycle_ms)


def decode(scores: torch.Tensor, scale: float | None = None) -> tuple[int, float]:
    """Return (action index, confidence in [0, 1]) from the populations' ``scores``: their rates
    (``scale`` None: confidence ``(r_best - r_second) / r_best``), or their potentials
    (``learning.readout_decision = potential``, ``readout.population_potentials``: confidence
    ``(u_best - u_second) / scale``, clipped to 1)."""
    best = int(torch.argmax(scores))
    top = float(scores[best])
    if scale is None:
        scale = top
    if scale <= 0.0:
        return best, 0.0
    if scores.numel() < 2:
        return best, 1.0
    second = float(torch.topk(scores, 2).values[1])
    return best, min(1.0, (top - second) / scale)
