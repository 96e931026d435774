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
``K(t, j) = sum_d kernel[d] S_j(t + d)``. ``K`` is one correlation (a float64 matrix product) of the
spike raster of the *active* neurons with the window kernels, then one gather per propagation event: cost
O(active x T x window + N x T + events), no neuron-pair search, no all-synapse pass.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

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
    steps, n = raster.shape
    active = raster.any(0).nonzero().squeeze(1)
    # [A, T] spike trains of active neurons, correlated with both kernels -> [A, 2, T]
    trains = raster[:, active].T.double()
    pairing = (trains @ _correlation_matrix((kernels.excitatory, kernels.inhibitory), kernels.window,
                                            steps)).view(-1, 2, steps).float()
    if causal_post is not None and kernels.causal is not None:
        rows = causal_post[active].nonzero().squeeze(1)
        if rows.numel():  # few (output neurons): their excitatory channel uses the causal kernel
            pairing[rows, 0] = (trains[rows] @ _correlation_matrix((kernels.causal,), kernels.window, steps)).float()
    # Per-neuron table [N, 2, T] of the weight change of an event onto that neuron, with the
    # inhibitory offset and the eligibility gate folded in (the same float ops as applying them
    # per event: (K + offset) * gate), so each event is a single gather.
    table = torch.zeros(n, 2, steps, device=raster.device)
    table[active] = pairing
    table[:, 1, :] += kernels.inhibitory_offset
    if post_eligible is not None:
        table *= post_eligible.to(table.dtype)[:, None, None]
    # flat = post * 2T + is_inhibitory * T + step (int32 when it fits: half the memory traffic)
    idx = torch.int32 if n * 2 * steps < 2**31 else torch.int64
    flat = torch.mul(event_post.to(idx), 2 * steps)
    flat.add_(event_step.to(idx))
    flat.add_(event_is_inhibitory, alpha=steps)
    return torch.index_select(table.reshape(-1), 0, flat)


def _correlation_matrix(kernels: tuple[torch.Tensor, ...], d: int, steps: int) -> torch.Tensor:
    """[T, C T] float64 matrix ``M`` with ``(S @ M)[j, c T + t] = sum_d kernel_c[d] S_j(t + d - D)``
    (the same correlation as ``F.conv1d(S, kernel, padding=D)``). The sums are accumulated in
    float64 and rounded once to float32: for the default windows (all kernel values within 2^24 of
    each other, at most 2D + 1 terms) they are exact, so the result does not depend on the order of
    summation chosen by the BLAS (thread count, CPU). A matrix product is also ~2x faster than
    the 1-channel convolution on CPU."""
    lag = torch.arange(steps, device=kernels[0].device)
    k = lag[:, None] - lag[None, :] + d  # [s, t] -> kernel index
    valid = (k >= 0) & (k <= 2 * d)
    k = k.clamp(0, 2 * d)
    zero = torch.zeros((), dtype=torch.float64, device=k.device)
    return torch.cat([torch.where(valid, kern.double()[k], zero) for kern in kernels], 1)


def pair_sum_reference(pre_times: list[int], post_times: list[int], cfg: STDPConfig) -> float:
    """Hand-checkable all-to-all sum of W(t_post - t_pre) (excitatory rule), for tests and docs."""
    total = 0.0
    for tp in pre_times:
        for tq in post_times:
            dt = tq - tp
            if dt == 0 or abs(dt) > cfg.window_steps:
                continue
            total += (cfg.a_plus * math.exp(-dt / cfg.tau_plus_ms) if dt > 0
                      else -cfg.a_minus * math.exp(dt / cfg.tau_minus_ms))
    return total
