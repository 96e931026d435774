"""Spike-timing-dependent plasticity on existing synapses (SPEC §3; AMN §3.1 eq. 10, table 7.2).

Excitatory presynaptic neuron, with ``dt = t_post - t_pre`` in steps and ``|dt| <= tau_max``::

    W(dt) =  A+ exp(-dt / tau+)    dt > 0  (pre before post: potentiation)
    W(dt) = -A- exp( dt / tau-)    dt < 0  (post before pre: depression)
    W(0)  = 0

summed over all spike pairs of the cycle (all-to-all pairing inside the window). The seeds'
discrete formulas (AMN eq. 12-13, 49) pair pre-before-post in *both* terms, which would make
every causal pair net-depressing; SPEC's standard window is used (docs/mechanisms.md).

Inhibitory presynaptic neuron (the seeds name a separate rule but do not give it): the
symmetric rule of Vogels et al. 2011, which balances excitation by steering each postsynaptic
neuron toward a target rate ``rho0``::

    d|w| = A_i * ( sum_{|dt| <= tau_max} exp(-|dt| / tau_i) - alpha )   per presynaptic spike
    alpha = p0 * (1 + 2 sum_{d=1..tau_max} exp(-d / tau_i)),   p0 = rho0 * dt

so the expected change is zero when the postsynaptic neuron fires at ``rho0``. A stronger
inhibitory synapse is a more negative weight, hence ``dw = -d|w|``.

Readout synapses (excitatory synapses onto output neurons, ``learning.readout_window = causal``):
only the pre-before-post half of the window, ``W_c(dt) = A+ exp(-dt / tau+)`` for
``0 < dt <= tau_max`` and 0 otherwise. Their eligibility then counts the pairs in which the input
spike can have contributed to the output spike (a Hebbian "pre active and post followed" signal,
always >= 0); the reward's sign alone decides potentiation or depression. With the full window and
A- > A+, the many uncorrelated pairs of Poisson inputs at tens of Hz make the eligibility a net
depression whatever the input's role, and R-STDP then learns against the reward (measured,
docs/mechanisms.md).

Implementation: each presynaptic spike at step ``t`` with out-synapse to ``j`` contributes
``K(t, j) = sum_d kernel[d] S_j(t + d)``. ``K`` is one 1-D correlation of the spike raster of the
*active* neurons with the window kernel, then one gather per propagation event: cost
O(active x T x window + events), no neuron-pair search, no all-synapse pass.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import STDPConfig


@dataclass(frozen=True)
class STDPKernels:
    excitatory: torch.Tensor  # [2D+1], index D + dt
    inhibitory: torch.Tensor  # [2D+1], signed (-A_i exp(-|dt|/tau_i))
    inhibitory_offset: float  # +A_i * alpha per inhibitory presynaptic spike
    window: int
    causal: torch.Tensor | None = None  # [2D+1] pre-before-post half of ``excitatory`` (readout synapses)


def stdp_window(dt: torch.Tensor, cfg: STDPConfig) -> torch.Tensor:
    """W(dt) of the excitatory rule for integer steps ``dt = t_post - t_pre`` (dt_ms = 1)."""
    dt = dt.double()
    ltp = cfg.a_plus * torch.exp(-dt / cfg.tau_plus_ms)
    ltd = -cfg.a_minus * torch.exp(dt / cfg.tau_minus_ms)
    w = torch.where(dt > 0, ltp, ltd)
    return torch.where((dt == 0) | (dt.abs() > cfg.window_steps), torch.zeros_like(w), w)


def make_kernels(cfg: STDPConfig, dt_ms: float, device: torch.device) -> STDPKernels:
    d = cfg.window_steps
    lags = torch.arange(-d, d + 1, device=device)
    exc = stdp_window(lags * dt_ms, cfg) if dt_ms == 1.0 else _scaled_window(lags, cfg, dt_ms)
    decay = torch.exp(-lags.abs().double() * dt_ms / cfg.inh_tau_ms)
    p0 = cfg.inh_target_rate_hz * dt_ms / 1000.0
    alpha = p0 * float(decay.sum())
    exc = exc.float()
    return STDPKernels(
        excitatory=exc,
        inhibitory=(-cfg.inh_amplitude * decay).float(),
        inhibitory_offset=cfg.inh_amplitude * alpha,
        window=d,
        causal=torch.where(lags > 0, exc, torch.zeros_like(exc)),
    )


def _scaled_window(lags: torch.Tensor, cfg: STDPConfig, dt_ms: float) -> torch.Tensor:
    t = lags.double() * dt_ms
    w = torch.where(t > 0, cfg.a_plus * torch.exp(-t / cfg.tau_plus_ms), -cfg.a_minus * torch.exp(t / cfg.tau_minus_ms))
    return torch.where(lags == 0, torch.zeros_like(w), w)


def event_updates(
    raster: torch.Tensor,
    event_post: torch.Tensor,
    event_step: torch.Tensor,
    event_is_inhibitory: torch.Tensor,
    kernels: STDPKernels,
    post_eligible: torch.Tensor | None = None,
    causal_post: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weight change of every propagation event (one presynaptic spike through one synapse).

    ``post_eligible`` (float [N], optional) scales events onto each neuron: 0 for neurons that may
    not learn this cycle (the output populations that lost the action competition, see engine).
    ``causal_post`` (bool [N], optional) marks the neurons whose excitatory in-synapses use the
    causal (pre-before-post) kernel ``kernels.causal`` instead of the full window."""
    if event_post.numel() == 0:
        return torch.zeros(0, device=raster.device)
    steps = raster.shape[0]
    active = raster.any(0).nonzero().squeeze(1)
    local = torch.full((raster.shape[1],), active.numel(), dtype=torch.int64, device=raster.device)
    local[active] = torch.arange(active.numel(), device=raster.device)
    # [A, 1, T] spike trains of active neurons, correlated with both kernels -> [A + 1, 2, T]
    trains = raster[:, active].T.unsqueeze(1).float()
    weight = torch.stack([kernels.excitatory, kernels.inhibitory]).unsqueeze(1)
    pairing = F.conv1d(trains, weight, padding=kernels.window)
    if causal_post is not None and kernels.causal is not None:
        rows = causal_post[active].nonzero().squeeze(1)
        if rows.numel():  # few (output neurons): recompute their excitatory channel
            causal = F.conv1d(trains[rows], kernels.causal.view(1, 1, -1), padding=kernels.window)
            pairing[rows, 0:1] = causal
    pairing = torch.cat([pairing, pairing.new_zeros(1, 2, steps)])  # row for inactive neurons
    flat = (local[event_post.long()] * 2 + event_is_inhibitory.long()) * steps + event_step
    dw = torch.index_select(pairing.reshape(-1), 0, flat)
    dw = dw + event_is_inhibitory.to(dw.dtype) * kernels.inhibitory_offset
    if post_eligible is not None:
        dw = dw * post_eligible[event_post.long()]
    return dw


def pair_sum_reference(pre_times: list[int], post_times: list[int], cfg: STDPConfig) -> float:
    """Hand-checkable all-to-all sum of W(t_post - t_pre) (excitatory rule), for tests and docs."""
    total = 0.0
    for tp in pre_times:
        for tq in post_times:
            dt = tq - tp
            if dt == 0 or abs(dt) > cfg.window_steps:
                continue
            total += cfg.a_plus * math.exp(-dt / cfg.tau_plus_ms) if dt > 0 else -cfg.a_minus * math.exp(dt / cfg.tau_minus_ms)
    return total
