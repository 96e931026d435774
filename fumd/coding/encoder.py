"""Rate encoder, SPEC §2 (seed 002 §5.A.2 "Poisson process with 5 ms refractory period",
§5.E.5 "low-pass filter (moving average over 5 steps) on input frequencies").

1. Features -> rates: ``rate_i = max_rate * u_i`` with ``u`` in [0, 1]. By default
   (``normalize = standardize``, ``channels = on_off``) each feature is standardised online by
   running statistics, ``z = (x - mu) / sigma``, and drives two input neurons, an ON and an OFF
   channel (retinal ON/OFF cells; with excitatory-only weights the OFF channel lets "feature
   below its mean" be evidence too)::

       u_on = clip(z / z_scale, 0, 1),   u_off = clip(-z / z_scale, 0, 1)

   ``mu`` and ``sigma^2`` are exponential running averages with rate ``max(1/n, ln 2 / halflife)``
   (the plain mean and variance for the first inputs, then forgetting over ``stats_halflife``
   inputs so drifting streams stay scaled); they are updated with the input before it is scaled
   and are part of the checkpointed state. ``minmax`` (per record, the seed-era default) and
   ``clip01`` remain options; with ``channels = single`` one neuron per feature gets ``u``
   (``standardize`` then uses ``u = clip(0.5 + z / (2 z_scale), 0, 1)``).
2. Low-pass: the rate seen at step t is the mean of the target rates of the last 5 steps, where
   steps before the cycle hold the previous input's rates. A change of input therefore ramps in
   over 5 ms instead of jumping (and a one-step glitch would be averaged away).
3. Spike trains (``spike_train``). ``regular`` (default, issue #15): a phase accumulator per
   channel, starting at a random phase each cycle; the count is the expected count to within one
   spike (``regular_spikes``). A departure from the seed's Poisson process: Poisson count noise
   (sd = sqrt(count)) was the largest noise a readout of 200 ms had to average (docs/mechanisms.md
   "Feature pathway and regular spike trains"). ``poisson``: Poisson spikes with dead time: a
   neuron that spiked at step s cannot spike before s + refractory; otherwise it spikes with
   probability ``p`` per step. In discrete time the mean interval is ``(n_ref - 1) + 1/p``
   steps, so ``p = lambda / (1 - lambda (n_ref - 1))`` (``lambda`` in spikes per step, ``n_ref``
   = refractory steps) makes the output rate equal the requested rate. The refractory clock
   carries over between cycles.
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


def standardize_update(
    mean: np.ndarray, var: np.ndarray, count: int, x: np.ndarray, halflife: float
) -> tuple[np.ndarray, np.ndarray]:
    """Running per-feature mean and variance after one more input ``x`` (``count`` inputs seen
    before it): rate ``a = max(1 / (count + 1), ln 2 / halflife)``, ``mu += a d``,
    ``var = (1 - a) (var + a d^2)`` with ``d = x - mu`` (West 1979's weighted update)."""
    a = max(1.0 / (count + 1), float(np.log(2.0)) / halflife)
    d = x - mean
    new_mean = mean + a * d
    new_var = (1.0 - a) * (var + a * d * d)
    return new_mean, new_var


def standardized_unit(x: np.ndarray, mean: np.ndarray, var: np.ndarray, z_scale: float, channels: str) -> np.ndarray:
    """``u`` in [0, 1] from standardised features: [ON..., OFF...] (on_off) or one per feature."""
    z = (x - mean) / np.sqrt(np.maximum(var, 1e-12))
    z = np.where(var > 1e-12, z, 0.0)  # a constant feature carries no information
    if channels == "on_off":
        return np.clip(np.concatenate([z, -z]) / z_scale, 0.0, 1.0)
    return np.clip(0.5 + z / (2.0 * z_scale), 0.0, 1.0)


def lowpass_rates(previous: torch.Tensor, target: torch.Tensor, steps: int, window: int) -> torch.Tensor:
    """[T, n] rates: causal moving average over ``window`` steps of (previous..., target...)."""
    t = torch.arange(steps, device=target.device, dtype=target.dtype)
    w_new = torch.clamp((t + 1) / window, max=1.0)[:, None]
    return w_new * target[None, :] + (1.0 - w_new) * previous[None, :]


def poisson_refractory(
    rates_hz: torch.Tensor, since_spike: torch.Tensor, dt_ms: float, refractory_ms: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes [T, n] (bool) and the updated steps-since-last-spike counter."""
    lam = rates_hz * (dt_ms / 1000.0)  # spikes per step
    ref_steps = refractory_ms / dt_ms
    p = (lam / (1.0 - lam * max(ref_steps - 1.0, 0.0)).clamp(min=1e-6)).clamp(max=1.0)
    draws = torch.rand(rates_hz.shape, generator=gen, device=rates_hz.device, dtype=rates_hz.dtype)
    candidates = draws < p
    if rates_hz.device.type == "cpu":  # the same loop in NumPy: ~10x less per-step overhead
        return refractory_numpy(candidates, since_spike, ref_steps)
    return refractory_torch(candidates, since_spike, ref_steps)


def regular_spikes(rates_hz: torch.Tensor, since_spike: torch.Tensor, dt_ms: float, gen: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes [T, n] (bool) of a phase accumulator (integrate-and-fire encoding): each channel's
    phase starts at a random ``U(0, 1)`` and advances by ``rate x dt`` per step, and the channel
    spikes whenever it crosses an integer. A channel's count over the cycle is its expected count
    rounded up or down (error < 1 spike), where a Poisson train's varies by its square root; the
    random start keeps the channels from spiking in lockstep. Returns the updated
    steps-since-last-spike counter too (as ``poisson_refractory``)."""
    lam = rates_hz * (dt_ms / 1000.0)
    phase0 = torch.rand(lam.shape[1], generator=gen, device=lam.device, dtype=lam.dtype)
    level = torch.floor(phase0[None, :] + torch.cumsum(lam, 0))
    spikes = torch.diff(level, dim=0, prepend=torch.floor(phase0)[None, :]) > 0
    steps = spikes.shape[0]
    t = torch.arange(1, steps + 1, device=lam.device)[:, None]
    last = (spikes * t).amax(0)  # 1-based step of the last spike, 0 for none
    since = torch.where(last > 0, (steps - last).to(since_spike.dtype), since_spike + steps)
    return spikes, since


def refractory_torch(candidates: torch.Tensor, since_spike: torch.Tensor,
                     ref_steps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the candidate spikes [T, n] that come ``ref_steps`` or more after the previous spike."""
    spikes = torch.zeros(candidates.shape, dtype=torch.bool, device=candidates.device)
    since = since_spike.clone()
    for t in range(candidates.shape[0]):
        since += 1
        s = candidates[t] & (since >= ref_steps)
        spikes[t] = s
        since = torch.where(s, torch.zeros_like(since), since)
    return spikes, since


def refractory_numpy(candidates: torch.Tensor, since_spike: torch.Tensor,
                     ref_steps: float) -> tuple[torch.Tensor, torch.Tensor]:
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
    """Stateful wrapper: the running feature statistics, the previous input's rates and the
    refractory clocks (``size`` features; input neurons = size x channels)."""

    def __init__(self, cfg: EncoderConfig, size: int, device: torch.device):
        self.cfg = cfg
        neurons = size * (2 if cfg.channels == "on_off" else 1)
        self.prev_rates = torch.zeros(neurons, device=device)
        self.since_spike = torch.full((neurons,), 1_000_000, dtype=torch.int64, device=device)
        self.mean = np.zeros(size, dtype=np.float64)
        self.var = np.zeros(size, dtype=np.float64)
        self.count = 0

    def unit(self, features: np.ndarray) -> np.ndarray:
        """Features -> ``u`` in [0, 1] per input neuron; updates the running statistics."""
        cfg = self.cfg
        x = np.asarray(features, dtype=np.float64)
        if cfg.normalize == "standardize":
            self.mean, self.var = standardize_update(self.mean, self.var, self.count, x, cfg.stats_halflife)
            self.count += 1
        return self.unit_frozen(x)

    def unit_frozen(self, features: np.ndarray) -> np.ndarray:
        """``unit`` with the current statistics, leaving them unchanged (replayed inputs)."""
        cfg = self.cfg
        x = np.asarray(features, dtype=np.float64)
        if cfg.normalize == "standardize":
            return standardized_unit(x, self.mean, self.var, cfg.z_scale, cfg.channels)
        u = features_to_unit(x, cfg.normalize)
        return np.concatenate([u, 1.0 - u]) if cfg.channels == "on_off" else u

    def rates(self, unit: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(unit, dtype=torch.float32, device=self.prev_rates.device) * self.cfg.max_rate_hz

    def encode(self, target_rates: torch.Tensor, steps: int, dt_ms: float, gen: torch.Generator) -> torch.Tensor:
        rates = lowpass_rates(self.prev_rates, target_rates, steps, self.cfg.lowpass_steps)
        if self.cfg.spike_train == "regular":
            spikes, self.since_spike = regular_spikes(rates, self.since_spike, dt_ms, gen)
        else:
            spikes, self.since_spike = poisson_refractory(rates, self.since_spike, dt_ms, self.cfg.refractory_ms, gen)
        self.prev_rates = target_rates.clone()
        return spikes

    def state_dict(self) -> dict[str, torch.Tensor | int]:
        return {"prev_rates": self.prev_rates, "since_spike": self.since_spike,
                "feature_mean": torch.from_numpy(self.mean.copy()), "feature_var": torch.from_numpy(self.var.copy()),
                "feature_count": self.count}

    def load_state_dict(self, data: dict) -> None:
        self.prev_rates = data["prev_rates"].to(self.prev_rates)
        self.since_spike = data["since_spike"].to(self.since_spike)
        if "feature_mean" in data:
            self.mean = torch.as_tensor(data["feature_mean"]).double().cpu().numpy().copy()
            self.var = torch.as_tensor(data["feature_var"]).double().cpu().numpy().copy()
            self.count = int(data["feature_count"])
