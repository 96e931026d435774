"""Rate encoder, SPEC §2 (seed 002 §5.A.2 "Poisson process with 5 ms refractory period",
§5.E.5 "low-pass filter (moving average over 5 steps) on input frequencies").

1. Features -> rates: ``rate_i = max_rate * u_i`` with ``u`` the features scaled to [0, 1]
   (``minmax`` per record by default, or ``clip01``).
2. Low-pass: the rate seen at step t is the mean of the target rates of the last 5 steps, where
   steps before the cycle hold the previous input's rates. A change of input therefore ramps in
   over 5 ms instead of jumping (and a one-step glitch would be averaged away).
3. Poisson spikes with dead time: a neuron that spiked at step s cannot spike before
   s + refractory; otherwise it spikes with probability ``p`` per step. In discrete time the mean
   interval is ``(n_ref - 1) + 1/p`` steps, so ``p = lambda / (1 - lambda (n_ref - 1))``
   (``lambda`` in spikes per step, ``n_ref`` = refractory steps) makes the output rate equal the
   requested rate. The refractory clock carries over between cycles.
"""
from __future__ import annotations

import numpy as np
import torch

from ..config import EncoderConfig


def features_to_unit(x: np.ndarray, mode: str) -> np.ndarray:
    """Scale a feature vector into [0, 1]."""
    if mode == "clip01":
        return np.clip(x, 0.0, 1.0)
    lo, hi = float(x.min()), float(x.max())
    if hi - lo <= 0.0:
        return np.full_like(x, 1.0 if hi > 0 else 0.0)
    return (x - lo) / (hi - lo)


def lowpass_rates(previous: torch.Tensor, target: torch.Tensor, steps: int, window: int) -> torch.Tensor:
    """[T, n] rates: causal moving average over ``window`` steps of (previous..., target...)."""
    t = torch.arange(steps, device=target.device, dtype=target.dtype)
    w_new = torch.clamp((t + 1) / window, max=1.0)[:, None]
    return w_new * target[None, :] + (1.0 - w_new) * previous[None, :]


def poisson_refractory(
    rates_hz: torch.Tensor, since_spike: torch.Tensor, dt_ms: float, refractory_ms: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes [T, n] (bool) and the updated steps-since-last-spike counter."""
    steps = rates_hz.shape[0]
    lam = rates_hz * (dt_ms / 1000.0)  # spikes per step
    ref_steps = refractory_ms / dt_ms
    p = (lam / (1.0 - lam * max(ref_steps - 1.0, 0.0)).clamp(min=1e-6)).clamp(max=1.0)
    draws = torch.rand(rates_hz.shape, generator=gen, device=rates_hz.device, dtype=rates_hz.dtype)
    candidates = draws < p
    if rates_hz.device.type == "cpu":  # the same loop in NumPy: ~10x less per-step overhead
        return refractory_numpy(candidates, since_spike, ref_steps)
    return refractory_torch(candidates, since_spike, ref_steps)


def refractory_torch(candidates: torch.Tensor, since_spike: torch.Tensor, ref_steps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the candidate spikes [T, n] that come ``ref_steps`` or more after the previous spike."""
    spikes = torch.zeros(candidates.shape, dtype=torch.bool, device=candidates.device)
    since = since_spike.clone()
    for t in range(candidates.shape[0]):
        since += 1
        s = candidates[t] & (since >= ref_steps)
        spikes[t] = s
        since = torch.where(s, torch.zeros_like(since), since)
    return spikes, since


def refractory_numpy(candidates: torch.Tensor, since_spike: torch.Tensor, ref_steps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``refractory_torch`` for CPU tensors, in NumPy."""
    spikes = candidates.numpy().copy()
    since = since_spike.numpy().copy()
    for t in range(spikes.shape[0]):
        since += 1
        row = spikes[t]
        row &= since >= ref_steps
        since[row] = 0
    return torch.from_numpy(spikes), torch.from_numpy(since)


class RateEncoder:
    """Stateful wrapper: remembers the previous input's rates and the refractory clocks."""

    def __init__(self, cfg: EncoderConfig, size: int, device: torch.device):
        self.cfg = cfg
        self.prev_rates = torch.zeros(size, device=device)
        self.since_spike = torch.full((size,), 1_000_000, dtype=torch.int64, device=device)

    def rates(self, unit: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(unit, dtype=torch.float32, device=self.prev_rates.device) * self.cfg.max_rate_hz

    def encode(self, target_rates: torch.Tensor, steps: int, dt_ms: float, gen: torch.Generator) -> torch.Tensor:
        rates = lowpass_rates(self.prev_rates, target_rates, steps, self.cfg.lowpass_steps)
        spikes, self.since_spike = poisson_refractory(rates, self.since_spike, dt_ms, self.cfg.refractory_ms, gen)
        self.prev_rates = target_rates.clone()
        return spikes

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"prev_rates": self.prev_rates, "since_spike": self.since_spike}

    def load_state_dict(self, data: dict) -> None:
        self.prev_rates = data["prev_rates"].to(self.prev_rates)
        self.since_spike = data["since_spike"].to(self.since_spike)
