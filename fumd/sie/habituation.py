"""Habituation, SPEC §4 (seed 002 §5.B.2, §5.E.4): grows with repeated similar inputs and decays
otherwise.

Each remembered pattern ``k`` has a level ``h_k`` in [0, 1). Every cycle all levels decay,
``h <- decay * h``; if the input matches pattern ``k`` (cosine >= ``match_threshold``) its level
rises toward 1, ``h_k <- h_k + increment * (1 - h_k)``, and the cycle's habituation is ``h_k``;
an unmatched input has habituation 0 (and becomes a new remembered pattern).
"""
from __future__ import annotations

import torch


def habituation_update(levels: torch.Tensor, match: int, increment: float, decay: float) -> tuple[float, torch.Tensor]:
    """Return (habituation of this input, new levels)."""
    out = levels * decay
    if match < 0:
        return 0.0, out
    out[match] = out[match] + increment * (1.0 - out[match])
    return float(out[match]), out
