"""Population decoder, SPEC §2 (AMN §5.1 eq. 28: ``Phi(S)_i = mean_t S_i,t``).

Output neurons form one population per action/label. The population rate is the mean over its
neurons and the T steps; the action is the argmax over the populations in use (ties -> lowest
index), and ``confidence = (r_best - r_second) / r_best`` (0 when no output neuron fired).
"""
from __future__ import annotations

import torch


def population_rates(counts: torch.Tensor, output_idx: torch.Tensor, cycle_ms: float) -> torch.Tensor:
    """Rates in Hz of each population, [P], from the cycle's spike counts per neuron (int [N])
    over ``cycle_ms`` (T steps x dt)."""
    per_neuron = counts[output_idx.reshape(-1)].reshape(output_idx.shape).double()
    return per_neuron.mean(1) * (1000.0 / cycle_ms)


def decode(rates: torch.Tensor) -> tuple[int, float]:
    """Return (action index, confidence in [0, 1])."""
    best = int(torch.argmax(rates))
    top = float(rates[best])
    if top <= 0.0:
        return best, 0.0
    if rates.numel() < 2:
        return best, 1.0
    second = float(torch.topk(rates, 2).values[1])
    return best, (top - second) / top
