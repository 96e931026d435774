"""Criticality and stability control, SPEC §7 (seed 002 §5.C.3, §5.D.2, §5.E.2, §5.E.4, §5.E.7).

Per cycle (``observe``, on the loop thread, O(T * electrodes)):

* **Avalanches** are detected on a fixed random set of ``electrodes`` neurons, binned by the
  mean inter-event interval, carried across cycle boundaries (``fumd/analysis/avalanches.py``,
  after Beggs & Plenz 2003 and Priesemann et al. 2009: the sizes are *electrode* sizes).
* A **large avalanche** is one whose estimated network size ``s * N / m`` exceeds
  ``large_fraction * N`` (seed: 0.1 N), i.e. ``s > 0.1 m``. **Sustained** = the *median* size of
  the avalanches of the last ``sustain_window`` cycles (the still-open one included) is large.
* The population rate (``CycleResult.rate_hz``) and ``total_reward`` go into bounded rings.

Per run (``snapshot -> compute -> apply``):

* ``tau``: discrete power-law MLE of the avalanche sizes with ``x_min`` chosen by the KS distance
  (Clauset, Shalizi & Newman 2009; ``fumd/analysis/powerlaw.py``), ``criticality_index = |tau - 1.5|``.
* **Inhibition acts in both directions** (``inhibition_mode = "both"``, default; issue #9): more
  (``x inhibition_factor``) when the network is supercritical (index > ``index_threshold`` with
  tau < 1.5, or sustained large avalanches) or too hot (mean *recurrent* rate of the last
  ``sustain_window`` cycles, input and output neurons left out, above ``rate_high_hz``); less
  (``/ inhibition_factor``) when it is subcritical (index > threshold, tau > 1.5) or too quiet
  (rate below ``rate_low_hz``) and neither of the first two. One step per run, always inside
  ``[g0 / inhibition_range, g0 x inhibition_range]`` (``g0`` = ``lif.global_inhibition``, the
  configured network) and the absolute ``[inhibition_min, inhibition_max]``. ``seed``: seed
  §5.C.3 literally (index > 0.2 or large avalanches -> more, never less); ``signed``: tau alone.
  index > threshold also sets ``slow_structural`` (read by the structural job).
* variability of the population rate over the last ``variance_window`` cycles (squared CV of
  20-cycle block means by default, see ``rate_variance``) > ``variance_threshold`` -> the learning-rate scale
  ``eta_scale *= eta_factor`` (the ``eta`` knob with it), never below ``eta_min_scale``; below the
  threshold the scale recovers by ``/ eta_factor`` per run up to 1. The tuning job multiplies its
  own eta by this scale (so the two jobs compose instead of undoing each other).
* anomalies (seed §5.E.2): excessive variance (> ``anomaly_variance_threshold``), sustained
  extreme reward (mean over ``reward_window`` cycles outside ±``reward_extreme``), silent clusters
  (clusters with neurons but zero spikes over the activity window ``state.activity``). Counted per
  run and in total, returned as outputs and listed in ``last_anomalies`` for the log.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..analysis.avalanches import AvalancheDetector, avalanches_from_bins, large_sustained
from ..analysis.powerlaw import PowerLawFit, criticality_index, fit_discrete_power_law
from ..analysis.ring import Ring
from .base import Applied
from .config import CriticalityConfig  # noqa: F401 - the [jobs.criticality] section, defined in config.py (light to import)
from .state import Counters, Nested, Persist, PersistentJob, RingOf, Scalar

if TYPE_CHECKING:
    from ..engine import CycleResult, Engine

NAME = "criticality"


# ---------------------------------------------------------------------------------------------
# the control rules
def rate_variance(rates: np.ndarray, measure: str = "cv2", block: int = 20) -> float:
    """Temporal variability of the population firing rate over the recorded cycles (seed §5.D.2
    ``variance = torch.var(spike_rates[-1000:])``), unbiased (n - 1) as torch.var:

        hz2:        var(r)            (Hz^2)
        cv2:        var(r) / mean(r)^2   (squared coefficient of variation, dimensionless)
        cv2_blocks: the cv2 of the means of consecutive blocks of ``block`` cycles (the newest
                    whole blocks): slow swings of the network's rate, without the per-input
                    variation (different inputs drive different numbers of neurons), which is
                    not instability and alone exceeded 0.1 on a learning network (issue #9)

    The seed's thresholds (0.05-0.1 "Hz") are far below the Poisson sampling floor of a rate
    measured in one 50 ms cycle (``1000 r / (N T)`` Hz^2, 0.3 Hz^2 for N = 1000 at 15 Hz) and of
    the input-driven variation, so the default reads them as a squared CV (docs/mechanisms.md).
    """
    if measure == "cv2_blocks":
        m = rates.size // max(block, 1)
        if m < 2:
            return 0.0
        rates = rates[rates.size - m * block:].reshape(m, block).mean(axis=1)
    if rates.size < 2:
        return 0.0
    var = float(np.var(rates, ddof=1))
    if measure == "hz2":
        return var
    mean = float(np.mean(rates))
    return var / (mean * mean) if mean > 0 else 0.0


def silent_clusters(activity_per_neuron: torch.Tensor, cluster: torch.Tensor, n_clusters: int) -> list[int]:
    """Clusters that have neurons but no spike in the activity window (seed §5.E.2 ``num_inputs == 0``)."""
    cl = cluster.to(torch.int64).cpu()
    spikes = torch.bincount(cl, weights=activity_per_neuron.to(torch.float64).cpu(), minlength=n_clusters)
    members = torch.bincount(cl, minlength=n_clusters)
    return [int(c) for c in torch.nonzero((members > 0) & (spikes == 0)).flatten()]


def inhibition_bounds(initial: float, cfg: CriticalityConfig) -> tuple[float, float]:
    """``[g0 / inhibition_range, g0 x inhibition_range]`` intersected with the absolute
    ``[inhibition_min, inhibition_max]``: the controller moves the gain around the configured
    network's value, never far from it (issue #9: an unbounded up-only rule reached 25 = 5 x g0, where
    one inhibitory spike moved V by ~-37 mV)."""
    lo = max(initial / cfg.inhibition_range, cfg.inhibition_min)
    hi = min(initial * cfg.inhibition_range, cfg.inhibition_max)
    return (lo, hi) if lo <= hi else (hi, hi)


def next_inhibition(current: float, tau: float | None, index: float | None, sustained_large: bool,
                    cfg: CriticalityConfig, rate_hz: float | None = None,
                    bounds: tuple[float, float] | None = None) -> tuple[float, bool, str]:
    """New global inhibition gain, whether structural plasticity should slow down, and why.

    ``both`` (default): more inhibition when the network is *supercritical* (sustained large
    avalanches, or index > 0.2 with tau < 1.5) or *too hot* (mean recurrent rate of the last
    ``sustain_window`` cycles above ``rate_high_hz``); less when it is *subcritical* (index > 0.2
    with tau > 1.5) or *too quiet* (rate below ``rate_low_hz``) and not supercritical or hot. The
    rate guard matters: at high rates the electrode estimate reads tau > 1.5 (docs/mechanisms.md),
    so tau alone would lower inhibition in a saturated network.
    ``seed``: seed §5.C.3 literally, index > 0.2 or sustained large avalanches -> more inhibition
    (never less). ``signed``: tau alone sets the direction, large avalanches raise.
    At most one step (x or / ``inhibition_factor``) per run, clamped to ``bounds`` (default: the
    absolute ``[inhibition_min, inhibition_max]``); a value outside the bounds moves into them.
    """
    lo, hi = bounds if bounds is not None else (cfg.inhibition_min, cfg.inhibition_max)
    off_critical = index is not None and index > cfg.index_threshold
    up, down, reasons = False, False, []
    if sustained_large:
        up = True
        reasons.append("large_avalanches")
    if cfg.inhibition_mode == "seed":
        if off_critical:
            up = True
            reasons.append("criticality")
    else:
        if off_critical and tau is not None and tau < cfg.target_tau:
            up = True
            reasons.append("supercritical")
        if cfg.inhibition_mode == "both" and rate_hz is not None and rate_hz > cfg.rate_high_hz:
            up = True
            reasons.append("hot")
        if not up:
            if off_critical and tau is not None and tau > cfg.target_tau:
                down = True
                reasons.append("subcritical")
            if cfg.inhibition_mode == "both" and rate_hz is not None and rate_hz < cfg.rate_low_hz:
                down = True
                reasons.append("quiet")
    new = current
    if up:
        new = current * cfg.inhibition_factor
    elif down:
        new = current / cfg.inhibition_factor
    new = min(max(new, lo), hi)
    if not math.isfinite(new):
        new = lo
    return new, off_critical, "+".join(reasons)


def next_eta_scale(scale: float, variance: float, cfg: CriticalityConfig) -> float:
    """seed §5.C.3/§5.D.2: rate variance above threshold -> ``eta *= 0.9``; here as a scale on the
    learning rate, bounded below by ``eta_min_scale`` and recovering (``/ 0.9`` per run, up to 1)
    while the variance is below the threshold, so a burst of variability never leaves the
    network learning slowly for good."""
    if variance > cfg.variance_threshold:
        return max(scale * cfg.eta_factor, cfg.eta_min_scale)
    return min(scale / cfg.eta_factor, 1.0)


def next_eta(eta: float, variance: float, cfg: CriticalityConfig, scale: float = 1.0) -> tuple[float, float]:
    """``(new eta knob, new scale)``: the live rate is rescaled by ``new_scale / scale`` (so a
    value another job or the operator set is kept, times the scale), never below ``eta_min``
    unless it already was."""
    new_scale = next_eta_scale(scale, variance, cfg)
    new = eta * new_scale / scale if scale > 0 else eta
    return max(new, min(eta, cfg.eta_min)), new_scale


# ---------------------------------------------------------------------------------------------
# the job
@dataclass
class CriticalitySnapshot:
    sizes: np.ndarray
    recent_sizes: np.ndarray  # avalanches of the last sustain_window cycles, the open one included
    electrodes: int
    rates: np.ndarray
    rewards: np.ndarray
    activity: torch.Tensor  # spikes per neuron over the activity window
    cluster: torch.Tensor
    n_clusters: int
    recent_rate: float | None = None  # mean recurrent rate (Hz) of the last sustain_window cycles


@dataclass
class CriticalityPlan:
    fit: PowerLawFit | None
    index: float | None
    sustained_large: bool
    variance: float
    mean_reward: float | None
    silent: list[int]
    n_avalanches: int
    recent_rate: float | None = None


class CriticalityJob(PersistentJob):
    name = NAME
    STATE = (
        Persist("avalanches", Nested()), Persist("rates", RingOf()), Persist("rewards", RingOf()),
        Persist("slow_structural", Scalar(bool)), Persist("eta_scale", Scalar(float)),
        Persist("inhibition_initial", Scalar(float)), Persist("totals", Counters("totals.{}", int)),
    )

    def __init__(self, config: CriticalityConfig | None = None, seed: int = 0):
        self.config = config or CriticalityConfig()
        self.config.validate()
        c = self.config
        self.avalanches = AvalancheDetector(
            electrodes=c.electrodes, bin_steps=c.bin_steps, max_bin_steps=c.max_bin_steps, iei_alpha=c.iei_alpha,
            large_fraction=c.large_fraction, ring_size=c.ring_size, sustain_window=c.sustain_window,
            seed=seed)  # electrode placement: a private stream, so the engine's RNG is untouched
        self.rates = Ring(c.variance_window, np.float64)
        self.rewards = Ring(c.reward_window, np.float64)
        self.slow_structural = False
        self.totals = {"variance": 0, "reward": 0, "silent_clusters": 0}
        self.last_anomalies: list[str] = []
        self.last_tau = float("nan")
        self.last_reason = ""  # why inhibition moved at the last run (for the log line)
        self.eta_scale = 1.0  # factor on the learning rate from rate variance (read by the tuner)
        self.inhibition_initial = -1.0  # g0: lif.global_inhibition (or the first value seen); < 0: not yet
        self._recurrent: tuple[int, int, torch.Tensor] | None = None  # (version, n, mask) cache

    # -- per cycle --------------------------------------------------------------------------
    def recurrent_rate_hz(self, engine: Engine, result: CycleResult) -> float:
        """Mean rate (Hz) of the recurrent neurons in this cycle: the designated input neurons
        (driven by the encoder) and output neurons are left out, so "quiet" and "hot" describe the
        network the inhibition acts on. Falls back to ``result.rate_hz`` (all neurons) when the
        cycle's spike record is gone or holds no count per neuron."""
        st, spikes = engine.state, engine.last_cycle_spikes
        if spikes is None or spikes.counts.numel() != st.n:
            return float(result.rate_hz)
        counts = spikes.counts
        version = int(st.structure_version)
        if self._recurrent is None or self._recurrent[0] != version or self._recurrent[1] != st.n:
            mask = torch.ones(st.n, dtype=torch.bool, device=counts.device)
            mask[st.input_idx.reshape(-1).long()] = False
            mask[st.output_idx.reshape(-1).long()] = False
            self._recurrent = (version, st.n, mask)
        mask = self._recurrent[2]
        n_rec = int(mask.sum())
        if n_rec == 0:
            return float(result.rate_hz)
        return float(counts[mask].sum()) / n_rec / (spikes.steps * float(engine.config.lif.dt_ms) / 1000.0)

    def observe(self, engine: Engine, result: CycleResult) -> None:
        spikes = engine.last_cycle_spikes
        if spikes is not None:
            st = engine.state
            self.avalanches.place_electrodes(st.n, int(st.structure_version))
            self.avalanches.observe_spikes(spikes)
        self.rates.extend([self.recurrent_rate_hz(engine, result)])
        self.rewards.extend([float(result.total_reward)])

    # -- snapshot -> compute -> apply ---------------------------------------------------------
    def snapshot(self, engine: Engine) -> CriticalitySnapshot:
        st = engine.state
        if self.inhibition_initial < 0:
            self.inhibition_initial = float(engine.config.lif.global_inhibition)
        rates = self.rates.values()
        recent = rates[-self.config.sustain_window:]
        return CriticalitySnapshot(
            sizes=self.avalanches.sizes.values(), recent_sizes=self.avalanches.recent_sizes(),
            electrodes=self.avalanches.n_electrodes(),
            rates=self.rates.values(),
            rewards=self.rewards.values(), activity=st.activity.sum(1, dtype=torch.int64).cpu(),
            cluster=st.cluster.clone().cpu(), n_clusters=int(st.n_clusters),
            recent_rate=float(recent.mean()) if recent.size else None,
        )

    def compute(self, snap: CriticalitySnapshot) -> CriticalityPlan:
        c = self.config
        fit = None
        if snap.sizes.size >= c.min_avalanches:
            fit = fit_discrete_power_law(snap.sizes, c.min_tail, c.max_xmin_candidates, c.min_tail_fraction)
        index = criticality_index(fit.tau, c.target_tau) if fit is not None else None
        sustained = large_sustained(snap.recent_sizes, c.large_fraction * snap.electrodes)
        rewards = snap.rewards
        mean_reward = float(rewards.mean()) if rewards.size >= c.reward_window else None
        return CriticalityPlan(
            fit=fit, index=index, sustained_large=bool(sustained),
            variance=rate_variance(snap.rates, c.variance_measure, c.variance_block),
            mean_reward=mean_reward, silent=silent_clusters(snap.activity, snap.cluster, snap.n_clusters),
            n_avalanches=int(snap.sizes.size), recent_rate=snap.recent_rate,
        )

    def apply(self, engine: Engine, plan: CriticalityPlan) -> Applied:
        c = self.config
        knobs = engine.knobs
        fit = plan.fit
        tau = fit.tau if fit is not None else None
        before = float(knobs.global_inhibition)
        initial = self.inhibition_initial if self.inhibition_initial > 0 else before
        bounds = inhibition_bounds(initial, c)
        inhibition, self.slow_structural, self.last_reason = next_inhibition(
            before, tau, plan.index, plan.sustained_large, c, plan.recent_rate, bounds)
        eta_before = float(knobs.eta)
        eta, self.eta_scale = next_eta(eta_before, plan.variance, c, self.eta_scale)

        anomalies: list[str] = []
        if plan.variance > c.anomaly_variance_threshold:
            anomalies.append(f"rate_variance={plan.variance:.3g}Hz^2")
            self.totals["variance"] += 1
        if plan.mean_reward is not None and abs(plan.mean_reward) > c.reward_extreme:
            anomalies.append(f"extreme_reward={plan.mean_reward:.3g}")
            self.totals["reward"] += 1
        if plan.silent:
            anomalies.append("silent_clusters=" + ",".join(map(str, plan.silent)))
            self.totals["silent_clusters"] += len(plan.silent)
        self.last_anomalies = anomalies
        self.last_tau = tau if tau is not None else float("nan")
        nan = float("nan")
        return Applied({
            "tau": self.last_tau,
            "criticality_index": plan.index if plan.index is not None else nan,
            "x_min": float(fit.x_min) if fit is not None else nan,
            "ks": fit.ks if fit is not None else nan,
            "loglik_ratio_exp": fit.loglik_ratio_exp if fit is not None else nan,
            "avalanches": float(plan.n_avalanches),
            "bin_steps": float(self.avalanches.bin_width()),
            "large_avalanches_sustained": float(plan.sustained_large),
            "global_inhibition": float(inhibition),
            "inhibition_changed": float(inhibition != before),
            "inhibition_direction": float(np.sign(inhibition - before)),
            "inhibition_low": bounds[0], "inhibition_high": bounds[1],
            "recurrent_rate_hz": plan.recent_rate if plan.recent_rate is not None else nan,
            "slow_structural": float(self.slow_structural),
            "rate_variance": plan.variance,
            "eta": float(eta),
            "eta_reduced": float(eta < eta_before),
            "eta_scale": float(self.eta_scale),
            "anomaly_variance": float(plan.variance > c.anomaly_variance_threshold),
            "anomaly_reward": float(plan.mean_reward is not None and abs(plan.mean_reward) > c.reward_extreme),
            "silent_clusters": float(len(plan.silent)),
            "anomalies": float(len(anomalies)),
            "anomalies_total": float(sum(self.totals.values())),
        }, knobs.replace(global_inhibition=inhibition, eta=eta))


__all__ = [
    "CriticalityConfig", "CriticalityJob", "PowerLawFit", "fit_discrete_power_law", "criticality_index",
    "avalanches_from_bins", "large_sustained", "rate_variance", "silent_clusters", "next_inhibition", "next_eta",
    "next_eta_scale", "inhibition_bounds",
]
