"""Intrinsic plasticity, SPEC §5 (seed 002 §5.A.2, §5.E.4).

Each neuron tracks its rate ``r`` (Hz, exponential average over cycles). Outside the target band
``[r_lo, r_hi]`` the excess ``err = r - clip(r, r_lo, r_hi)`` moves the threshold and the membrane
time constant against it::

    v_th <- clip(v_th + eta_v * err, v_th_min, v_th_max)
    tau  <- clip(tau  + eta_tau * err, tau_min, tau_max)

(a neuron firing too much gets a higher threshold and a *longer* membrane time constant: in the
box LIF each input moves V by ``dt/tau * R I``, so a longer tau means smaller jumps and a lower
rate — 55 / 27 / 16 Hz at tau = 10 / 20 / 30 ms for one neuron under the same Poisson drive; the
earlier shortening ran against homeostasis, issue #9). The seed's
band of 0.1-0.5 Hz means < 0.025 spikes in a 50 ms cycle: the default band is 2-40 Hz
(docs/mechanisms.md).
"""
from __future__ import annotations

import torch

from ..config import IntrinsicConfig


def update_rate(rate_ema: torch.Tensor, counts: torch.Tensor, cycle_ms: float, alpha: float) -> torch.Tensor:
    rate = counts.to(rate_ema.dtype) * (1000.0 / cycle_ms)
    return rate_ema + alpha * (rate - rate_ema)


def intrinsic_update(
    rate_ema: torch.Tensor, v_th: torch.Tensor, tau: torch.Tensor, cfg: IntrinsicConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return new (v_th, tau) for the given rate estimate."""
    err = rate_ema - rate_ema.clamp(cfg.target_low_hz, cfg.target_high_hz)
    new_v_th = (v_th + cfg.eta_v_th * err).clamp(cfg.v_th_min, cfg.v_th_max)
    new_tau = (tau + cfg.eta_tau * err).clamp(cfg.tau_min, cfg.tau_max)
    return new_v_th, new_tau
