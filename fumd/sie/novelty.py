"""Novelty, SPEC §4 (seed 002 §5.C.2, §5.E.3): ``novelty = 1 - max_k cos(p, h_k)`` over a bounded
history of at most 50 patterns (the seed's ``max_comparisons``).

``p`` is the input's encoded rate pattern (one rate per input neuron). It is a deterministic
function of the input, so a repeated input has novelty exactly 0 and the cost is
O(history x input_size) whatever the network size (docs/mechanisms.md). Rates are >= 0, so
novelty lies in [0, 1]; with an empty history (or an all-zero pattern) it is 1.
"""
from __future__ import annotations

import torch


def cosine_to_history(pattern: torch.Tensor, history: torch.Tensor, count: int) -> torch.Tensor:
    """Cosine similarity of ``pattern`` to the first ``count`` rows of ``history``."""
    if count == 0:
        return torch.zeros(0, dtype=torch.float64, device=pattern.device)
    h = history[:count].double()
    p = pattern.double()
    denom = h.norm(dim=1) * p.norm()
    return torch.where(denom > 0, (h @ p) / denom.clamp(min=1e-300), torch.zeros_like(denom))


def novelty(similarities: torch.Tensor) -> tuple[float, int]:
    """Return (novelty in [0, 1], index of the most similar pattern or -1)."""
    if similarities.numel() == 0:
        return 1.0, -1
    best = int(torch.argmax(similarities))
    return float(min(1.0, max(0.0, 1.0 - float(similarities[best])))), best
