"""LIF step through Norse's functional box-LIF (SPEC §1, AMN §2.1 eq. 3).

``V(t+dt) = V(t) + dt/tau_m * (-(V(t) - V_rest) + R I(t))``; spike when V crosses ``v_th``,
then ``V <- v_reset``. Norse's ``lif_box_feed_forward_step`` is exactly this Euler step and is
element-wise, so per-neuron ``tau_mem_inv`` and ``v_th`` tensors broadcast. Norse's
``tau_*_inv`` are per second with ``dt`` in seconds; we convert from ms here. Norse's threshold is
strict (``V > v_th``); for a continuous V the difference from ``>=`` has probability zero.

``lif_step`` calls Norse and is the reference. The simulation loop uses ``LIFStepper``, the same
arithmetic in place: Norse's step allocates ~10 temporaries of size N per step (the threshold is
computed as a float, the reset as ``(1 - z) v + z v_reset``), which at 50 steps per cycle costs
more than the recurrent propagation of a sparse network. ``LIFStepper`` performs the same float32
operations in the same order, so its V and spikes are bit-identical to Norse's
(``tests/test_network.py::test_fused_lif_equals_norse``):

- ``dv = (dt * tau_mem_inv) * ((I + v_leak) - V)``, ``V' = V + dv`` — the same ops, written into
  the input buffer;
- ``z = (V' - v_th) > 0`` equals ``V' > v_th`` for finite floats (with gradual underflow
  ``a - b`` is zero only when ``a == b`` and has the sign of ``a - b``);
- ``(1 - z) V' + z v_reset`` equals ``where(z, v_reset, V')``: ``1 * V' + 0 * v_reset = V'`` and
  ``0 * V' + 1 * v_reset = v_reset`` exactly (adding a signed zero changes no finite non-zero
  value, and ``+0 + -0 = +0``).

The reset potential is per neuron: the feature neurons reset to ``lif.feature_v_reset``, the rest
to ``lif.v_reset`` (``neuron_parameters``; docs/mechanisms.md "Partial reset of the features").
"""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch

if TYPE_CHECKING:
    from ..config import LIFConfig
    from .state import NetworkState


class LIFParameters(NamedTuple):
    """The four fields of Norse's ``LIFBoxParameters`` that the step reads (tau in 1/s, mV).

    Norse itself is imported only by ``lif_step``, the reference: ``import norse`` runs
    ``norse/__init__``, which imports matplotlib.pyplot, h5py and more (~0.5 s at daemon start-up,
    issue #14), and nothing on the daemon's path calls Norse."""

    tau_mem_inv: torch.Tensor
    v_leak: torch.Tensor
    v_th: torch.Tensor
    v_reset: torch.Tensor


def lif_parameters(tau_mem_ms: torch.Tensor, v_th: torch.Tensor, v_rest: float,
                   v_reset: float | torch.Tensor) -> LIFParameters:
    """Per-neuron LIF parameters, as Norse takes them (tau in ms -> 1/s); ``v_reset`` is one
    potential for all or float32 [N]."""
    return LIFParameters(
        tau_mem_inv=1000.0 / tau_mem_ms,
        v_leak=torch.tensor(v_rest, device=tau_mem_ms.device),
        v_th=v_th,
        v_reset=torch.as_tensor(v_reset, dtype=torch.float32, device=tau_mem_ms.device),
    )


def reset_potentials(n: int, feature_idx: torch.Tensor, lif: LIFConfig, device: torch.device) -> torch.Tensor:
    """The reset potential of each neuron (float32 [N]): ``lif.feature_v_reset`` for the feature
    neurons, ``lif.v_reset`` for the others."""
    v_reset = torch.full((n,), lif.v_reset, dtype=torch.float32, device=device)
    v_reset[feature_idx.long()] = lif.feature_v_reset
    return v_reset


def neuron_parameters(state: NetworkState, lif: LIFConfig) -> LIFParameters:
    """The LIF parameters of ``state``'s neurons now: threshold ``v_th + theta`` (``theta``: the
    adaptive offsets of the output and feature neurons) and the per-neuron reset."""
    return lif_parameters(state.tau_mem, state.v_th + state.theta, lif.v_rest,
                          reset_potentials(state.n, state.feature_idx, lif, state.v.device))


def lif_step(current: torch.Tensor, v: torch.Tensor, params: LIFParameters,
             dt_ms: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One Euler step through Norse (the reference); returns (spikes as bool, new V)."""
    from norse.torch.functional.lif_box import LIFBoxFeedForwardState, LIFBoxParameters, lif_box_feed_forward_step

    norse_params = LIFBoxParameters(tau_mem_inv=params.tau_mem_inv, v_leak=params.v_leak, v_th=params.v_th,
                                    v_reset=params.v_reset, method="heaviside")
    z, state = lif_box_feed_forward_step(current, LIFBoxFeedForwardState(v=v), norse_params, dt_ms / 1000.0)
    return z > 0, state.v


class LIFStepper:
    """Norse's box-LIF step, in place and allocation-free (bit-identical, see module doc).

    ``v_min`` (optional) floors V after the Euler step: with current-based synapses nothing else
    bounds how far inhibition pushes V (a reversal-potential stand-in, ``lif.v_min``; Norse has no
    floor, so the equality with Norse holds while V stays above it)."""

    def __init__(self, params: LIFParameters, dt_ms: float, v_min: float | None = None):
        dt = dt_ms / 1000.0
        self.dt_tau_inv = dt * params.tau_mem_inv  # exactly Norse's first product
        self.v_leak = params.v_leak
        self.v_th = params.v_th
        self.v_reset = params.v_reset
        self.v_min = v_min

    def step(self, current: torch.Tensor, v: torch.Tensor, spikes_out: torch.Tensor) -> None:
        """Advance ``v`` one step in place, write the spikes (bool) into ``spikes_out``;
        ``current`` is used as scratch and overwritten."""
        dv = current.add_(self.v_leak).sub_(v).mul_(self.dt_tau_inv)
        v.add_(dv)
        if self.v_min is not None:
            v.clamp_(min=self.v_min)
        torch.gt(v, self.v_th, out=spikes_out)
        if self.v_reset.dim() == 0:
            v.masked_fill_(spikes_out, self.v_reset)
        else:  # per neuron: the same values, element by element
            torch.where(spikes_out, self.v_reset, v, out=v)
