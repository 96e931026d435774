"""``[jobs.<name>]`` sections of the config: one frozen dataclass per job, and ``JobsConfig``.

They live here, not next to each job, so that loading and validating a config (``fumd run``
before its heavy imports, ``fumd config``, a SIGHUP reload) imports neither torch nor scipy,
scikit-learn or scikit-optimize (issue #14: fast start; ``tests/test_light_commands.py``).
Each job module re-exports its class (``fumd.jobs.clustering.ClusteringConfig`` still works)."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Sequence

from ..errors import ConfigError

_CLUSTERING = "clustering"  # NAME in fumd/jobs/clustering.py
_DECAY = "decay"  # NAME in fumd/jobs/decay.py
_TAGGING = "persistence"  # NAME in fumd/jobs/tagging.py
_TUNING = "tuning"  # NAME in fumd/jobs/tuning.py
_STRUCTURAL = "structural"  # NAME in fumd/jobs/structural.py
_CRITICALITY = "criticality"  # NAME in fumd/jobs/criticality.py
SIE_WEIGHTS = ("w_td", "w_novelty", "w_habituation", "w_self_benefit")  # tunable SIE weights (tuning.py)

Bound = tuple[str, float, float, str]  # name, low, high, prior ("uniform" | "log-uniform")


# -- shared validation helpers ------------------------------------------------------------------
def _check_range(job: str, key: str, value: float, low: float | None, high: float | None) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"jobs.{job}.{key} = {value!r} must be finite")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ConfigError(f"jobs.{job}.{key} = {value!r} is outside the allowed range [{low}, {high}]")


def _check_cadence(job: str, every_seconds: float, every_cycles: int, enabled: bool) -> None:
    _check_range(job, "every_seconds", every_seconds, 0.0, 365 * 86400.0)
    _check_range(job, "every_cycles", every_cycles, 0, 10**12)
    if enabled and every_seconds == 0 and every_cycles == 0:
        raise ConfigError(
            f"jobs.{job}.every_cycles = 0 and jobs.{job}.every_seconds = 0: an enabled job needs one clock > 0"
        )


@dataclass(frozen=True)
class ClusteringConfig:
    """``jobs.clustering.*``. SPEC §8: every 1,000 cycles (seed §5.B.2: "every 1000 steps")."""

    enabled: bool = True
    every_seconds: float = 0.0  # 0: this clock off
    every_cycles: int = 1000  # 0: this clock off
    k_min: int = 8  # seed §5.A.2 / §5.B: k_min = 8
    k_max: int = 24  # upper bound of the silhouette search (seeds silent; docs/mechanisms.md)
    max_fit_neurons: int = 5000  # seed §5.D.5: fit on a sample, assign everyone
    silhouette_sample: int = 2000  # points used to score each k
    n_init: int = 3
    max_iter: int = 100
    threads: int = 1  # OpenMP/BLAS threads for k-means (1: bit-reproducible)
    warm_start: bool = True  # k-means starts from the current partition's centroids (issue #9)
    profile: str = "receptive_field"  # receptive_field: input-triggered average | activity: the activity ring (seed)
    profile_dims: int = 32  # receptive fields are randomly projected to this many dimensions (if fewer inputs: none)
    profile_decay: float = 0.5  # per run: weight kept by the evidence gathered before the last run
    min_profile_spikes: float = 5.0  # fewer (decayed) spikes behind a receptive field: the neuron counts as silent
    input_mean_alpha: float = 0.01  # EMA rate of the mean input-neuron counts that centre the receptive fields
    k_switch_margin: float = 0.05  # another k replaces the current one only if its silhouette is this much higher
    assign_hysteresis: float = 0.1  # a neuron keeps its cluster unless another centroid is (1 + this) x closer (squared)

    def validate(self) -> None:
        _check_cadence(_CLUSTERING, self.every_seconds, self.every_cycles, self.enabled)
        _check_range(_CLUSTERING, "k_min", self.k_min, 2, 100_000)
        _check_range(_CLUSTERING, "k_max", self.k_max, self.k_min, 100_000)
        _check_range(_CLUSTERING, "max_fit_neurons", self.max_fit_neurons, self.k_max + 1, 100_000_000)
        _check_range(_CLUSTERING, "silhouette_sample", self.silhouette_sample, self.k_max + 1, 1_000_000)
        _check_range(_CLUSTERING, "n_init", self.n_init, 1, 100)
        _check_range(_CLUSTERING, "max_iter", self.max_iter, 1, 10_000)
        _check_range(_CLUSTERING, "threads", self.threads, 1, 1024)
        _check_range(_CLUSTERING, "k_switch_margin", self.k_switch_margin, 0.0, 2.0)
        _check_range(_CLUSTERING, "assign_hysteresis", self.assign_hysteresis, 0.0, 100.0)
        if self.profile not in ("receptive_field", "activity"):
            raise ConfigError(f"jobs.{_CLUSTERING}.profile = {self.profile!r}: allowed values are receptive_field, activity")
        _check_range(_CLUSTERING, "profile_dims", self.profile_dims, 1, 4096)
        _check_range(_CLUSTERING, "profile_decay", self.profile_decay, 0.0, 1.0)
        _check_range(_CLUSTERING, "min_profile_spikes", self.min_profile_spikes, 0.0, 1e9)
        _check_range(_CLUSTERING, "input_mean_alpha", self.input_mean_alpha, 1e-6, 1.0)


@dataclass(frozen=True)
class DecayConfig:
    """``jobs.decay.*`` (seed 002 §5.E.4)."""

    enabled: bool = True
    every_seconds: float = 0.0  # 0: this clock off
    every_cycles: int = 200  # 10,000 steps at T = 50
    factor: float = 0.99  # seed: w *= 0.99 every 10k steps
    low_activity_factor: float = 0.995  # seed: slower for low-activity clusters
    low_reward_factor: float = 0.965  # seed: faster for low-reward clusters
    low_activity_hz: float = 2.0  # seed 0.1 Hz; departure, see module docstring
    low_reward_threshold: float = 0.0  # seed: 0.5; departure, docs/mechanisms.md
    reward_window: int = 200  # rewards of the cluster averaged (10k steps of one cluster's inputs)
    min_window_rewards: int = 20  # fewer: no evidence, the cluster is not "low reward"
    prune_below: float = 0.01  # seed: prune |w| < 0.01
    prune_floor: float = 0.9  # never prune below this fraction of the target synapse count (0: no floor, the seed)
    low_reward_margin: float = 0.5  # ... and this far below the network's mean window reward (issue #9)
    protect_readout: bool = True  # synapses onto output neurons are never decayed or pruned (issue #9)

    def validate(self) -> None:
        _check_cadence(_DECAY, self.every_seconds, self.every_cycles, self.enabled)
        for key in ("factor", "low_activity_factor", "low_reward_factor"):
            _check_range(_DECAY, key, getattr(self, key), 1e-6, 1.0)
        _check_range(_DECAY, "low_activity_hz", self.low_activity_hz, 0.0, 1000.0)
        _check_range(_DECAY, "low_reward_threshold", self.low_reward_threshold, -100.0, 100.0)
        _check_range(_DECAY, "reward_window", self.reward_window, 1, 10_000_000)
        _check_range(_DECAY, "min_window_rewards", self.min_window_rewards, 1, self.reward_window)
        _check_range(_DECAY, "prune_below", self.prune_below, 0.0, 1.0)
        _check_range(_DECAY, "prune_floor", self.prune_floor, 0.0, 1.0)
        _check_range(_DECAY, "low_reward_margin", self.low_reward_margin, 0.0, 100.0)


@dataclass(frozen=True)
class TaggingConfig:
    """``jobs.persistence.*`` (seed 002 §5.E.4)."""

    enabled: bool = True
    every_seconds: float = 0.0  # 0: this clock off
    every_cycles: int = 200  # "periodic": every 10,000 steps, the length of the standard window
    # standard criteria
    w_min: float = 0.8
    reward_min: float = 0.9
    reward_var_max: float = 0.1
    window: int = 200  # rewards of the cluster (10,000 steps)
    min_window_rewards: int = 20  # fewer: no evidence either way
    min_rate_hz: float = 0.1  # sustained activity: mean of pre/post rates
    # low-activity clusters (relaxed)
    low_activity_hz: float = 2.0  # seed 0.1 Hz; departure (module docstring)
    low_activity_w_min: float = 0.7
    low_activity_reward_min: float = 0.8
    low_activity_window: int = 2000  # 100,000 steps
    # activity-independent tagging
    high_reward: float = 1.0  # total_reward > 1
    high_reward_window_cycles: int = 20_000  # 1M steps
    independent_w_min: float = 0.8
    # de-tagging
    detag_reward_below: float = 0.5
    detag_reward_margin: float = 0.5  # ... and this far below the network's mean window reward (issue #9)
    detag_after_cycles: int = 2000  # 100,000 steps
    negative_reward: float = -1.0
    negative_streak: int = 3
    retag_cooldown_cycles: int = 200

    def validate(self) -> None:
        _check_cadence(_TAGGING, self.every_seconds, self.every_cycles, self.enabled)
        for key in ("w_min", "low_activity_w_min", "independent_w_min"):
            _check_range(_TAGGING, key, getattr(self, key), 0.0, 1.0)
        for key in ("reward_min", "low_activity_reward_min", "high_reward", "detag_reward_below", "negative_reward"):
            _check_range(_TAGGING, key, getattr(self, key), -100.0, 100.0)
        _check_range(_TAGGING, "reward_var_max", self.reward_var_max, 0.0, 1e6)
        _check_range(_TAGGING, "window", self.window, 2, 10_000_000)
        _check_range(_TAGGING, "low_activity_window", self.low_activity_window, 2, 10_000_000)
        _check_range(_TAGGING, "min_window_rewards", self.min_window_rewards, 2, min(self.window, self.low_activity_window))
        _check_range(_TAGGING, "min_rate_hz", self.min_rate_hz, 0.0, 1000.0)
        _check_range(_TAGGING, "low_activity_hz", self.low_activity_hz, 0.0, 1000.0)
        _check_range(_TAGGING, "high_reward_window_cycles", self.high_reward_window_cycles, 0, 10**12)
        _check_range(_TAGGING, "detag_after_cycles", self.detag_after_cycles, 0, 10**12)
        _check_range(_TAGGING, "detag_reward_margin", self.detag_reward_margin, 0.0, 100.0)
        _check_range(_TAGGING, "negative_streak", self.negative_streak, 1, 1_000_000)
        _check_range(_TAGGING, "retag_cooldown_cycles", self.retag_cooldown_cycles, 0, 10**12)


@dataclass(frozen=True)
class TuningConfig:
    enabled: bool = True
    every_seconds: float = 5.0  # wall-clock polling; a window only switches once it is full
    every_cycles: int = 20  # polling in cycles: the run that finds a full window switches it
    # windows
    window_task_cycles: int = 100  # scored cycles (with a label or reward) per window (SD of accuracy ~0.05)
    settle_cycles: int = 10  # cycles after a switch that are not scored (the new value takes effect)
    max_window_cycles: int = 5000  # a candidate window without enough task signal by then is abandoned
    warmup_cycles: int = 500  # no tuning before this many cycles (the learning curve's steep start)
    # sessions
    n_trials: int = 10  # candidates per session
    n_initial_points: int = 4  # Latin-hypercube points before the GP takes over
    rest_cycles: int = 2000  # incumbent held this long between sessions
    # acceptance: d > max(accept_margin, accept_z x se)
    accept_margin: float = 0.02  # external-reward units (+-1 per labelled input: 0.01 of accuracy)
    accept_z: float = 2.0
    acq_func: str = "EI"
    acq_optimizer: str = "lbfgs"
    # search space
    eta_range: float = 2.0  # eta in [eta0 / r, eta0 x r], eta0 = learning.eta
    eta_min: float = 0.0  # both > 0: absolute bounds instead of eta_range
    eta_max: float = 0.0
    tune_gamma: bool = False
    gamma_min: float = 0.0
    gamma_max: float = 0.5
    tune_sie_weights: bool = False
    sie_weight_min: float = 0.5
    sie_weight_max: float = 2.0

    def names(self) -> tuple[str, ...]:
        return ("eta",) + (("gamma",) if self.tune_gamma else ()) + (SIE_WEIGHTS if self.tune_sie_weights else ())

    def bounds(self, eta0: float, names: Sequence[str] | None = None) -> list[Bound]:
        """The search space for a configured learning rate ``eta0``."""
        if self.eta_min > 0 and self.eta_max > 0:
            eta = (self.eta_min, self.eta_max)
        else:
            eta = (eta0 / self.eta_range, eta0 * self.eta_range)
        table: dict[str, Bound] = {"eta": ("eta", *eta, "log-uniform" if eta[0] > 0 else "uniform"),
                                   "gamma": ("gamma", self.gamma_min, self.gamma_max, "uniform")}
        table.update({w: (w, self.sie_weight_min, self.sie_weight_max, "uniform") for w in SIE_WEIGHTS})
        return [table[n] for n in (names if names is not None else self.names())]

    def validate(self) -> None:
        ranges: dict[str, tuple[float, float]] = {
            "every_seconds": (0.0, 1e7), "every_cycles": (1, 10**9), "window_task_cycles": (2, 10**7),
            "settle_cycles": (0, 10**7), "max_window_cycles": (1, 10**9), "warmup_cycles": (0, 10**12),
            "n_trials": (1, 10_000), "n_initial_points": (1, 10_000), "rest_cycles": (0, 10**9),
            "accept_margin": (0.0, 2.0), "accept_z": (0.0, 100.0), "eta_range": (1.0, 1000.0),
            "eta_min": (0.0, 1.0), "eta_max": (0.0, 1.0), "gamma_min": (0.0, 1.0), "gamma_max": (0.0, 1.0),
            "sie_weight_min": (0.0, 10.0), "sie_weight_max": (0.0, 10.0),
        }
        for key, (low, high) in ranges.items():
            value = getattr(self, key)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high):
                raise ConfigError(f"jobs.{_TUNING}.{key} = {value!r} is outside the allowed range [{low}, {high}]")
        if (self.eta_min > 0) != (self.eta_max > 0):
            raise ConfigError(f"jobs.{_TUNING}.eta_min and jobs.{_TUNING}.eta_max: set both (absolute bounds) or neither")
        pairs = [("gamma_min", "gamma_max"), ("sie_weight_min", "sie_weight_max")]
        if self.eta_min > 0:
            pairs.insert(0, ("eta_min", "eta_max"))
        for low, high in pairs:
            if not getattr(self, low) < getattr(self, high):
                raise ConfigError(f"jobs.{_TUNING}.{low} must be < jobs.{_TUNING}.{high}")
        if self.settle_cycles + self.window_task_cycles > self.max_window_cycles:
            raise ConfigError(f"jobs.{_TUNING}.max_window_cycles must be >= settle_cycles + window_task_cycles")
        if self.acq_func not in ("EI", "PI", "LCB", "gp_hedge"):
            raise ConfigError(f"jobs.{_TUNING}.acq_func = {self.acq_func!r}: allowed values are EI, PI, LCB, gp_hedge")
        if self.acq_optimizer not in ("lbfgs", "sampling"):
            raise ConfigError(f"jobs.{_TUNING}.acq_optimizer = {self.acq_optimizer!r}: allowed values are lbfgs, sampling")


@dataclass(frozen=True)
class StructuralConfig:
    enabled: bool = True
    every_seconds: float = 0.0  # wall-clock cadence (0: off)
    every_cycles: int = 1000  # seed §5.B.2: growth is triggered on avg_reward "over 1000 steps"
    slow_factor: float = 0.5  # per-event caps x this while ``slow`` (criticality index > 0.2)
    # growth
    growth: bool = True
    growth_reward_threshold: float = 0.0  # seed: 0.5; departure, docs/mechanisms.md
    growth_reward_margin: float = 0.5  # ... and this far below the network's mean window reward (issue #9)
    growth_window: int = 1000  # reward samples of the cluster averaged for the trigger
    growth_min_samples: int = 100  # a cluster needs this much evidence before it grows
    growth_cap: float = 0.01  # new neurons per event, fraction of N
    neuron_cap: float = 1.5  # global cap, x network.neurons (the target size)
    # pruning
    pruning: bool = True
    prune_rate_hz: float = 1.0  # seed §5.E.4: "inactive neurons (rate < 1 Hz)"
    prune_cap: float = 0.01
    prune_floor: float = 0.5  # never prune below this x network.neurons
    grace_cycles: int = 0  # new neurons are not pruned for this long (0: network.activity_history)
    ei_tolerance: float = 0.02  # excitatory fraction kept within target +- this by pruning
    compensation: float = 1.0  # downstream v_th compensation strength (0: off)
    compensation_max_mv: float = 2.0  # per neuron per event
    # rewiring
    rewiring: bool = True
    rewire_weak_threshold: float = 0.05  # |w| below this is "weak"
    rewire_cap: float = 0.01  # rewired + inhibitory added, fraction of synapses per event
    rewire_pair_cap: int = 3  # rewires per (pre, post) pair over its lifetime
    rewire_inh_per_100: float = 20.0  # inhibitory connections added per 100 excitatory new ones
    rewire_tries: int = 8  # distance-biased target proposals per synapse
    integrity_threshold: float = 0.5  # intra-cluster density / network density below this: halt
    # sparsity
    target_density: float = 0.0  # 0: the initial density implied by the network config
    density_tolerance: float = 0.05  # relative band around the target left alone
    density_cap: float = 0.05  # synapses added or removed for density, fraction per event (docs/mechanisms.md)
    # the readout
    protect_readout: bool = True  # module docstring (issue #9)

    def validate(self) -> None:
        """Raise ConfigError naming the first ``jobs.structural.*`` key out of range."""
        _check_cadence(_STRUCTURAL, self.every_seconds, self.every_cycles, self.enabled)
        for key in ("slow_factor", "growth_cap", "prune_cap", "prune_floor", "ei_tolerance", "rewire_cap",
                    "density_tolerance", "density_cap"):
            _check_range(_STRUCTURAL, key, getattr(self, key), 0.0, 1.0)
        _check_range(_STRUCTURAL, "neuron_cap", self.neuron_cap, 1.0, 1000.0)
        _check_range(_STRUCTURAL, "growth_window", self.growth_window, 1, 10**9)
        _check_range(_STRUCTURAL, "growth_min_samples", self.growth_min_samples, 0, 10**9)
        _check_range(_STRUCTURAL, "prune_rate_hz", self.prune_rate_hz, 0.0, 10_000.0)
        _check_range(_STRUCTURAL, "grace_cycles", self.grace_cycles, 0, 10**9)
        _check_range(_STRUCTURAL, "compensation", self.compensation, 0.0, 10.0)
        _check_range(_STRUCTURAL, "compensation_max_mv", self.compensation_max_mv, 0.0, 100.0)
        _check_range(_STRUCTURAL, "rewire_weak_threshold", self.rewire_weak_threshold, 0.0, 2.0)
        _check_range(_STRUCTURAL, "rewire_pair_cap", self.rewire_pair_cap, 1, 255)
        _check_range(_STRUCTURAL, "rewire_inh_per_100", self.rewire_inh_per_100, 0.0, 1000.0)
        _check_range(_STRUCTURAL, "rewire_tries", self.rewire_tries, 1, 1000)
        _check_range(_STRUCTURAL, "integrity_threshold", self.integrity_threshold, 0.0, 1e6)
        _check_range(_STRUCTURAL, "target_density", self.target_density, 0.0, 1.0)
        _check_range(_STRUCTURAL, "growth_reward_margin", self.growth_reward_margin, 0.0, 100.0)


@dataclass(frozen=True)
class CriticalityConfig:
    enabled: bool = True
    every_seconds: float = 60.0
    every_cycles: int = 100  # the seed gives none; 500 reacted too slowly to a hot network (docs/mechanisms.md)
    # avalanche detection
    electrodes: int = 64  # recorded neurons (Beggs & Plenz 2003: 60-electrode array)
    bin_steps: int = 0  # 0: automatic, mean inter-event interval of the electrode train
    iei_alpha: float = 0.02  # EMA weight of the per-cycle electrode event rate (automatic bin)
    max_bin_steps: int = 50
    ring_size: int = 10_000  # avalanche sizes kept for the fit
    # power-law fit, criticality index
    min_avalanches: int = 500  # fewer: no fit, no criticality action
    min_tail: int = 50  # samples required at or above x_min
    min_tail_fraction: float = 0.1  # ... and at least this fraction of all sizes (fit the bulk, not the cutoff)
    max_xmin_candidates: int = 100
    target_tau: float = 1.5
    index_threshold: float = 0.2
    inhibition_mode: str = "both"  # both | seed | signed (docs/mechanisms.md)
    inhibition_factor: float = 1.1
    inhibition_range: float = 2.0  # global_inhibition stays in [g0 / range, g0 x range], g0 = lif.global_inhibition
    inhibition_max: float = 100.0  # absolute bounds on top of the range (= lif.global_inhibition's valid range)
    inhibition_min: float = 0.0
    rate_low_hz: float = 2.0  # "both": recurrent rate below this = too quiet -> less inhibition
    rate_high_hz: float = 40.0  # "both": above this = too hot -> more inhibition (fumd's 2-40 Hz band)
    # large avalanches
    large_fraction: float = 0.1  # of N, estimated from the electrodes: s * N / m > 0.1 N  <=>  s > 0.1 m
    sustain_window: int = 20  # cycles: the median avalanche (and the mean rate) of the last 20 cycles
    # rate variance -> eta scale
    variance_window: int = 200  # cycles of population rate (seed: spike_rates[-1000:])
    variance_measure: str = "cv2_blocks"  # cv2_blocks: cv2 of 20-cycle block means | cv2: var / mean^2 | hz2: var in Hz^2
    variance_block: int = 20  # cycles per block (cv2_blocks)
    variance_threshold: float = 0.1  # seed 0.1 (§5.C.3), read as a squared CV (docs/mechanisms.md)
    eta_factor: float = 0.9  # eta scale x this on high variance, / this (up to 1) otherwise
    eta_min_scale: float = 0.5  # the scale never goes below this: engine.eta >= 0.5 x the value set for it
    eta_min: float = 0.0  # absolute floor on engine.eta (0: none)
    # anomalies
    anomaly_variance_threshold: float = 0.2  # "excessive": 2x the control threshold, so control acts first
    reward_window: int = 50  # cycles
    reward_extreme: float = 2.0

    def validate(self) -> None:
        ranges: dict[str, tuple[float, float]] = {
            "every_seconds": (0.0, 1e7), "every_cycles": (1, 10**9), "electrodes": (1, 10**7),
            "bin_steps": (0, 10**6), "iei_alpha": (1e-6, 1.0), "max_bin_steps": (1, 10**6),
            "ring_size": (10, 10**7), "min_avalanches": (10, 10**7), "min_tail": (5, 10**7),
            "max_xmin_candidates": (1, 10**6), "target_tau": (1.0, 10.0), "index_threshold": (0.0, 10.0),
            "inhibition_factor": (1.0, 10.0), "inhibition_max": (0.0, 1000.0), "inhibition_min": (0.0, 1000.0),
            "inhibition_range": (1.0, 1000.0), "rate_low_hz": (0.0, 10_000.0), "rate_high_hz": (0.0, 10_000.0),
            "eta_min_scale": (1e-6, 1.0), "variance_block": (1, 10**6),
            "large_fraction": (0.0, 1.0), "sustain_window": (1, 10**6), "min_tail_fraction": (0.0, 1.0),
            "variance_window": (2, 10**7), "variance_threshold": (0.0, 1e9), "eta_factor": (0.0, 1.0),
            "eta_min": (0.0, 1.0), "anomaly_variance_threshold": (0.0, 1e9), "reward_window": (1, 10**7),
            "reward_extreme": (0.0, 1e9),
        }
        for key, (low, high) in ranges.items():
            value = getattr(self, key)
            if not (low <= value <= high) or (isinstance(value, float) and not math.isfinite(value)):
                raise ConfigError(f"jobs.{_CRITICALITY}.{key} = {value!r} is outside the allowed range [{low}, {high}]")
        if self.variance_measure not in ("cv2_blocks", "cv2", "hz2"):
            raise ConfigError(f"jobs.{_CRITICALITY}.variance_measure = {self.variance_measure!r}: allowed values are cv2_blocks, cv2, hz2")
        if self.inhibition_mode not in ("both", "seed", "signed"):
            raise ConfigError(f"jobs.{_CRITICALITY}.inhibition_mode = {self.inhibition_mode!r}: allowed values are both, seed, signed")
        if self.inhibition_min > self.inhibition_max:
            raise ConfigError(f"jobs.{_CRITICALITY}.inhibition_min must be <= jobs.{_CRITICALITY}.inhibition_max")
        if self.rate_low_hz >= self.rate_high_hz:
            raise ConfigError(f"jobs.{_CRITICALITY}.rate_low_hz must be < jobs.{_CRITICALITY}.rate_high_hz")
        if self.min_tail > self.min_avalanches:
            raise ConfigError(f"jobs.{_CRITICALITY}.min_tail must be <= jobs.{_CRITICALITY}.min_avalanches")
        if self.min_avalanches > self.ring_size:
            raise ConfigError(f"jobs.{_CRITICALITY}.min_avalanches must be <= jobs.{_CRITICALITY}.ring_size")


@dataclass(frozen=True)
class JobsConfig:
    """Scheduled self-regulation jobs (SPEC §6-§8); cadences in seconds or (deterministic) cycles."""

    clustering: ClusteringConfig = field(default_factory=ClusteringConfig)
    decay: DecayConfig = field(default_factory=DecayConfig)
    persistence: TaggingConfig = field(default_factory=TaggingConfig)
    tuning: TuningConfig = field(default_factory=TuningConfig)
    structural: StructuralConfig = field(default_factory=StructuralConfig)
    criticality: CriticalityConfig = field(default_factory=CriticalityConfig)

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            getattr(self, f.name).validate()

    def items(self) -> list[tuple[str, object]]:
        return [(f.name, getattr(self, f.name)) for f in dataclasses.fields(self)]
