"""LIF step through Norse's functional box-LIF (SPEC §1, AMN §2.1 eq. 3).

``V(t+dt) = V(t) + dt/tau_m * (-(V(t) - V_rest) + R I(t))``; spike when V crosses ``v_th``,
then ``V <- v_reset``. Norse's ``lif_box_feed_forward_step`` is exactly this Euler step and is
element-wise, so per-neuron ``tau_mem_inv`` and ``v_th`` tensors broadcast. Norse's
``tau_*_inv`` are per second with ``dt`` in seconds; we convert from ms here. Norse's threshold is
strict (``V > v_th``); for a continuous V the difference from ``>=`` has probability zero.
"""
from __future__ import annotations

import torch
from norse.torch.functional.lif_box import (
    LIFBoxFeedForwardState,
    LIFBoxParameters,
    lif_box_feed_forward_step,
)


def lif_parameters(tau_mem_ms: torch.Tensor, v_th: torch.Tensor, v_rest: float, v_reset: float) -> LIFBoxParameters:
    """Per-neuron Norse parameters (tau in ms -> 1/s)."""
    return LIFBoxParameters(
        tau_mem_inv=1000.0 / tau_mem_ms,
        v_leak=torch.tensor(v_rest, device=tau_mem_ms.device),
        v_th=v_th,
        v_reset=torch.tensor(v_reset, device=tau_mem_ms.device),
        method="heaviside",
    )


def lif_step(current: torch.Tensor, v: torch.Tensor, params: LIFBoxParameters, dt_ms: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One Euler step; returns (spikes as bool, new V)."""
    z, state = lif_box_feed_forward_step(current, LIFBoxFeedForwardState(v=v), params, dt_ms / 1000.0)
    return z > 0, state.v
