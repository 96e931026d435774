"""``[jobs.<name>]`` sections of the config: one frozen dataclass per job, and ``JobsConfig``.

They live here, not next to each job, so that loading and validating a config (``fumd run``
before its heavy imports, ``fumd config``, a SIGHUP reload) imports neither torch nor scipy,
scikit-learn or scikit-optimize (issue #14: fast start; ``tests/test_light_commands.py``).
Each job module re-exports its class (``fumd.jobs.clustering.ClusteringConfig`` still works).

Each key is declared once with its default, doc and allowed range (``fumd/settings.py``);
``validate()`` checks those, then the constraints between keys.

``[jobs.tagging]`` (the persistence-tagging job) was called ``[jobs.persistence]``; that name is
still read, with a ``config_deprecated`` warning. The job itself keeps its name ``persistence``
(``TaggingJob.name``): its metrics, log lines and checkpointed state (``jobs.persistence.*``)
are unchanged."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, Protocol, Sequence

from ..errors import ConfigError
from ..settings import fraction, section, setting, validate_section

_CLUSTERING = "jobs.clustering"
_DECAY = "jobs.decay"
_TAGGING = "jobs.tagging"
_TUNING = "jobs.tuning"
_STRUCTURAL = "jobs.structural"
_CRITICALITY = "jobs.criticality"
TAGGING_JOB = "persistence"  # NAME in fumd/jobs/tagging.py: the name the runner, metrics and checkpoints use
SIE_WEIGHTS = ("w_td", "w_novelty", "w_habituation", "w_self_benefit")  # tunable SIE weights (tuning.py)

Bound = tuple[str, float, float, str]  # name, low, high, prior ("uniform" | "log-uniform")

# The cadence of the clustering, decay, tagging and structural jobs (two clocks; 0 turns one off).
CLOCK_OFF = "0: this clock off"
MAX_SECONDS, MAX_CYCLES = 365 * 86400.0, 10**12


def check_clock(section_name: str, cfg: ClusteringConfig | DecayConfig | TaggingConfig | StructuralConfig) -> None:
    if cfg.enabled and cfg.every_seconds == 0 and cfg.every_cycles == 0:
        raise ConfigError(f"{section_name}.every_cycles = 0 and {section_name}.every_seconds = 0: "
                          "an enabled job needs one clock > 0")


class JobSection(Protocol):
    """What every ``[jobs.<name>]`` section has: its switch and its two clocks."""

    @property
    def enabled(self) -> bool: ...
    @property
    def every_seconds(self) -> float: ...
    @property
    def every_cycles(self) -> int: ...


@dataclass(frozen=True)
class ClusteringConfig:
    """``jobs.clustering.*``. SPEC §8: every 1,000 cycles (seed §5.B.2: "every 1000 steps")."""

    enabled: bool = setting(True)
    every_seconds: float = setting(0.0, CLOCK_OFF, low=0.0, high=MAX_SECONDS)
    every_cycles: int = setting(1000, CLOCK_OFF, low=0, high=MAX_CYCLES)
    k_min: int = setting(8, "seed §5.A.2 / §5.B: k_min = 8", low=2, high=100_000)
    k_max: int = setting(24, "upper bound of the silhouette search (seeds silent; docs/mechanisms.md)",
                         low=lambda c: c.k_min, high=100_000)
    max_fit_neurons: int = setting(5000, "seed §5.D.5: fit on a sample, assign everyone",
                                   low=lambda c: c.k_max + 1, high=100_000_000)
    silhouette_sample: int = setting(2000, "points used to score each k", low=lambda c: c.k_max + 1, high=1_000_000)
    n_init: int = setting(3, low=1, high=100)
    max_iter: int = setting(100, low=1, high=10_000)
    threads: int = setting(1, "OpenMP/BLAS threads for k-means (1: bit-reproducible)", low=1, high=1024)
    warm_start: bool = setting(True, "k-means starts from the current partition's centroids (issue #9)")
    profile: Literal["receptive_field", "activity"] = setting(
        "receptive_field", "receptive_field: input-triggered average | activity: the activity ring (seed)")
    profile_dims: int = setting(
        32, "receptive fields are randomly projected to this many dimensions (if fewer inputs: none)", low=1, high=4096)
    profile_decay: float = fraction(0.5, "per run: weight kept by the evidence gathered before the last run")
    min_profile_spikes: float = setting(
        5.0, "fewer (decayed) spikes behind a receptive field: the neuron counts as silent", low=0.0, high=1e9)
    input_mean_alpha: float = setting(
        0.01, "EMA rate of the mean input-neuron counts that centre the receptive fields", low=1e-6, high=1.0)
    k_switch_margin: float = setting(
        0.05, "another k replaces the current one only if its silhouette is this much higher", low=0.0, high=2.0)
    assign_hysteresis: float = setting(
        0.1, "a neuron keeps its cluster unless another centroid is (1 + this) x closer (squared)", low=0.0, high=100.0)

    def validate(self) -> None:
        validate_section(self, _CLUSTERING)
        check_clock(_CLUSTERING, self)


@dataclass(frozen=True)
class DecayConfig:
    """``jobs.decay.*`` (seed 002 §5.E.4)."""

    enabled: bool = setting(True)
    every_seconds: float = setting(0.0, CLOCK_OFF, low=0.0, high=MAX_SECONDS)
    every_cycles: int = setting(200, "10,000 steps at T = 50", low=0, high=MAX_CYCLES)
    factor: float = setting(0.99, "seed: w *= 0.99 every 10k steps", low=1e-6, high=1.0)
    low_activity_factor: float = setting(0.995, "seed: slower for low-activity clusters", low=1e-6, high=1.0)
    low_reward_factor: float = setting(0.965, "seed: faster for low-reward clusters", low=1e-6, high=1.0)
    low_activity_hz: float = setting(2.0, "seed 0.1 Hz; departure, see module docstring", low=0.0, high=1000.0)
    low_reward_threshold: float = setting(0.0, "seed: 0.5; departure, docs/mechanisms.md", low=-100.0, high=100.0)
    reward_window: int = setting(
        200, "rewards of the cluster averaged (10k steps of one cluster's inputs)", low=1, high=10_000_000)
    min_window_rewards: int = setting(20, 'fewer: no evidence, the cluster is not "low reward"', low=1,
                                      high=lambda c: c.reward_window)
    prune_below: float = fraction(0.01, "seed: prune |w| < 0.01")
    prune_floor: float = fraction(
        0.9, "never prune below this fraction of the target synapse count (recurrent synapses when the readout "
        "is protected; 0: no floor, the seed)")
    low_reward_margin: float = setting(
        0.5, "... and this far below the network's mean window reward (issue #9)", low=0.0, high=100.0)
    protect_readout: bool = setting(True, "synapses onto output neurons are never decayed or pruned (issue #9)")

    def validate(self) -> None:
        validate_section(self, _DECAY)
        check_clock(_DECAY, self)


@dataclass(frozen=True)
class TaggingConfig:
    """``jobs.tagging.*``: persistence tagging (seed 002 §5.E.4); formerly ``[jobs.persistence]``."""

    enabled: bool = setting(True)
    every_seconds: float = setting(0.0, CLOCK_OFF, low=0.0, high=MAX_SECONDS)
    every_cycles: int = setting(
        200, '"periodic": every 10,000 steps, the length of the standard window', low=0, high=MAX_CYCLES)
    # standard criteria
    w_min: float = fraction(0.8)
    reward_min: float = setting(0.9, low=-100.0, high=100.0)
    reward_var_max: float = setting(0.1, low=0.0, high=1e6)
    window: int = setting(200, "rewards of the cluster (10,000 steps)", low=2, high=10_000_000)
    min_window_rewards: int = setting(20, "fewer: no evidence either way", low=2,
                                      high=lambda c: min(c.window, c.low_activity_window))
    min_rate_hz: float = setting(0.1, "sustained activity: mean of pre/post rates", low=0.0, high=1000.0)
    # low-activity clusters (relaxed)
    low_activity_hz: float = setting(2.0, "seed 0.1 Hz; departure (module docstring)", low=0.0, high=1000.0)
    low_activity_w_min: float = fraction(0.7)
    low_activity_reward_min: float = setting(0.8, low=-100.0, high=100.0)
    low_activity_window: int = setting(2000, "100,000 steps", low=2, high=10_000_000)
    # activity-independent tagging
    high_reward: float = setting(1.0, "total_reward > 1", low=-100.0, high=100.0)
    high_reward_window_cycles: int = setting(20_000, "1M steps", low=0, high=10**12)
    independent_w_min: float = fraction(0.8)
    # de-tagging
    detag_reward_below: float = setting(0.5, low=-100.0, high=100.0)
    detag_reward_margin: float = setting(
        0.5, "... and this far below the network's mean window reward (issue #9)", low=0.0, high=100.0)
    detag_after_cycles: int = setting(2000, "100,000 steps", low=0, high=10**12)
    negative_reward: float = setting(-1.0, low=-100.0, high=100.0)
    negative_streak: int = setting(3, low=1, high=1_000_000)
    retag_cooldown_cycles: int = setting(200, low=0, high=10**12)

    def validate(self) -> None:
        validate_section(self, _TAGGING)
        check_clock(_TAGGING, self)


@dataclass(frozen=True)
class TuningConfig:
    enabled: bool = setting(True)
    every_seconds: float = setting(
        5.0, "wall-clock polling; a window only switches once it is full", low=0.0, high=1e7)
    every_cycles: int = setting(20, "polling in cycles: the run that finds a full window switches it", low=1,
                                high=10**9)
    # windows
    window_task_cycles: int = setting(
        100, "scored cycles (with a label or reward) per window (SD of accuracy ~0.05)", low=2, high=10**7)
    settle_cycles: int = setting(
        10, "cycles after a switch that are not scored (the new value takes effect)", low=0, high=10**7)
    max_window_cycles: int = setting(
        5000, "a candidate window without enough task signal by then is abandoned", low=1, high=10**9)
    warmup_cycles: int = setting(
        500, "no tuning before this many cycles (the learning curve's steep start)", low=0, high=10**12)
    # sessions
    n_trials: int = setting(10, "candidates per session", low=1, high=10_000)
    n_initial_points: int = setting(4, "Latin-hypercube points before the GP takes over", low=1, high=10_000)
    rest_cycles: int = setting(2000, "incumbent held this long between sessions", low=0, high=10**9)
    rest_growth: float = setting(
        2.0, "each session in a row that accepts nothing multiplies the next rest by this (1: fixed)",
        low=1.0, high=100.0)
    rest_max_cycles: int = setting(32000, "longest rest between sessions (cycles)", low=0, high=10**12)
    # acceptance: d > max(accept_margin, accept_z x se)
    accept_margin: float = setting(
        0.02, "external-reward units (+-1 per labelled input: 0.01 of accuracy)", low=0.0, high=2.0)
    accept_z: float = setting(2.0, low=0.0, high=100.0)
    acq_func: Literal["EI", "PI", "LCB", "gp_hedge"] = setting("EI")
    acq_optimizer: Literal["lbfgs", "sampling"] = setting("lbfgs")
    # trust region around the incumbent (TuRBO, Eriksson et al. 2019; docs/mechanisms.md)
    trust_shrink: float = setting(
        0.5, "a candidate that scored below the incumbent shrinks the search region around it by this (1: whole range)",
        low=0.01, high=1.0)
    trust_grow: float = setting(2.0, "an accepted candidate widens it by this (up to the whole range)",
                                low=1.0, high=100.0)
    trust_min: float = setting(0.125, "smallest region, as a fraction of the whole range's half-width",
                               low=0.001, high=1.0)
    # search space
    eta_range: float = setting(2.0, "eta in [eta0 / r, eta0 x r], eta0 = learning.eta", low=1.0, high=1000.0)
    eta_min: float = fraction(0.0, "both > 0: absolute bounds instead of eta_range")
    eta_max: float = fraction(0.0)
    tune_gamma: bool = setting(False)
    gamma_min: float = fraction(0.0)
    gamma_max: float = fraction(0.5)
    tune_sie_weights: bool = setting(False)
    sie_weight_min: float = setting(0.5, low=0.0, high=10.0)
    sie_weight_max: float = setting(2.0, low=0.0, high=10.0)

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
        validate_section(self, _TUNING)
        if (self.eta_min > 0) != (self.eta_max > 0):
            raise ConfigError(f"{_TUNING}.eta_min and {_TUNING}.eta_max: set both (absolute bounds) or neither")
        pairs = [("gamma_min", "gamma_max"), ("sie_weight_min", "sie_weight_max")]
        if self.eta_min > 0:
            pairs.insert(0, ("eta_min", "eta_max"))
        for low, high in pairs:
            if not getattr(self, low) < getattr(self, high):
                raise ConfigError(f"{_TUNING}.{low} must be < {_TUNING}.{high}")
        if self.settle_cycles + self.window_task_cycles > self.max_window_cycles:
            raise ConfigError(f"{_TUNING}.max_window_cycles must be >= settle_cycles + window_task_cycles")


@dataclass(frozen=True)
class StructuralConfig:
    enabled: bool = setting(True)
    every_seconds: float = setting(0.0, "wall-clock cadence (0: off)", low=0.0, high=MAX_SECONDS)
    every_cycles: int = setting(
        1000, 'seed §5.B.2: growth is triggered on avg_reward "over 1000 steps"', low=0, high=MAX_CYCLES)
    slow_factor: float = fraction(0.5, "per-event caps x this while ``slow`` (criticality index > 0.2)")
    # growth
    growth: bool = setting(True)
    growth_reward_threshold: float = setting(0.0, "seed: 0.5; departure, docs/mechanisms.md")
    growth_reward_margin: float = setting(
        0.5, "... and this far below the network's mean window reward (issue #9)", low=0.0, high=100.0)
    growth_window: int = setting(1000, "reward samples of the cluster averaged for the trigger", low=1, high=10**9)
    growth_min_samples: int = setting(100, "a cluster needs this much evidence before it grows", low=0, high=10**9)
    growth_cap: float = fraction(0.01, "new neurons per event, fraction of N")
    neuron_cap: float = setting(1.5, "global cap, x network.neurons (the target size)", low=1.0, high=1000.0)
    # pruning
    pruning: bool = setting(True)
    prune_rate_hz: float = setting(1.0, 'seed §5.E.4: "inactive neurons (rate < 1 Hz)"', low=0.0, high=10_000.0)
    prune_cap: float = fraction(0.01)
    prune_floor: float = fraction(0.5, "never prune below this x network.neurons")
    grace_cycles: int = setting(
        0, "new neurons are not pruned for this long (0: network.activity_history)", low=0, high=10**9)
    ei_tolerance: float = fraction(0.02, "excitatory fraction kept within target +- this by pruning")
    compensation: float = setting(1.0, "downstream v_th compensation strength (0: off)", low=0.0, high=10.0)
    compensation_max_mv: float = setting(2.0, "per neuron per event", low=0.0, high=100.0)
    # rewiring
    rewiring: bool = setting(True)
    rewire_weak_threshold: float = setting(0.05, '|w| below this is "weak"', low=0.0, high=2.0)
    rewire_cap: float = fraction(0.01, "rewired + inhibitory added, fraction of synapses per event")
    rewire_pair_cap: int = setting(3, "rewires per (pre, post) pair over its lifetime", low=1, high=255)
    rewire_inh_per_100: float = setting(
        20.0, "inhibitory connections added per 100 excitatory new ones", low=0.0, high=1000.0)
    rewire_tries: int = setting(8, "distance-biased target proposals per synapse", low=1, high=1000)
    integrity_threshold: float = setting(
        0.5, "intra-cluster density / network density below this: halt", low=0.0, high=1e6)
    # sparsity
    target_density: float = fraction(
        0.0, "0: the initial density implied by the network config (of the recurrent synapses alone while "
        "protect_readout)")
    density_tolerance: float = fraction(0.05, "relative band around the target left alone")
    density_cap: float = fraction(
        0.05, "synapses added or removed for density, fraction per event (docs/mechanisms.md)")
    # the readout
    protect_readout: bool = setting(True, "module docstring (issue #9)")

    def validate(self) -> None:
        """Raise ConfigError naming the first ``jobs.structural.*`` key out of range."""
        validate_section(self, _STRUCTURAL)
        check_clock(_STRUCTURAL, self)


@dataclass(frozen=True)
class CriticalityConfig:
    enabled: bool = setting(True)
    every_seconds: float = setting(60.0, low=0.0, high=1e7)
    every_cycles: int = setting(
        100, "the seed gives none; 500 reacted too slowly to a hot network (docs/mechanisms.md)", low=1, high=10**9)
    # avalanche detection
    electrodes: int = setting(64, "recorded neurons (Beggs & Plenz 2003: 60-electrode array)", low=1, high=10**7)
    bin_steps: int = setting(0, "0: automatic, mean inter-event interval of the electrode train", low=0, high=10**6)
    iei_alpha: float = setting(
        0.02, "EMA weight of the per-cycle electrode event rate (automatic bin)", low=1e-6, high=1.0)
    max_bin_steps: int = setting(50, low=1, high=10**6)
    ring_size: int = setting(10_000, "avalanche sizes kept for the fit", low=10, high=10**7)
    # power-law fit, criticality index
    min_avalanches: int = setting(500, "fewer: no fit, no criticality action", low=10, high=10**7)
    min_tail: int = setting(50, "samples required at or above x_min", low=5, high=10**7)
    min_tail_fraction: float = fraction(
        0.1, "... and at least this fraction of all sizes (fit the bulk, not the cutoff)")
    max_xmin_candidates: int = setting(100, low=1, high=10**6)
    target_tau: float = setting(1.5, low=1.0, high=10.0)
    index_threshold: float = setting(0.2, low=0.0, high=10.0)
    inhibition_mode: Literal["both", "seed", "signed"] = setting("both", "both | seed | signed (docs/mechanisms.md)")
    inhibition_factor: float = setting(1.1, low=1.0, high=10.0)
    inhibition_range: float = setting(
        2.0, "global_inhibition stays in [g0 / range, g0 x range], g0 = lif.global_inhibition", low=1.0, high=1000.0)
    inhibition_max: float = setting(
        100.0, "absolute bounds on top of the range (= lif.global_inhibition's valid range)", low=0.0, high=1000.0)
    inhibition_min: float = setting(0.0, low=0.0, high=1000.0)
    rate_low_hz: float = setting(
        2.0, '"both": recurrent rate below this = too quiet -> less inhibition', low=0.0, high=10_000.0)
    rate_high_hz: float = setting(
        40.0, "\"both\": above this = too hot -> more inhibition (fumd's 2-40 Hz band)", low=0.0, high=10_000.0)
    # large avalanches
    large_fraction: float = fraction(0.1, "of N, estimated from the electrodes: s * N / m > 0.1 N  <=>  s > 0.1 m")
    sustain_window: int = setting(
        20, "cycles: the median avalanche (and the mean rate) of the last 20 cycles", low=1, high=10**6)
    # rate variance -> eta scale
    variance_window: int = setting(200, "cycles of population rate (seed: spike_rates[-1000:])", low=2, high=10**7)
    variance_measure: Literal["cv2_blocks", "cv2", "hz2"] = setting(
        "cv2_blocks", "cv2_blocks: cv2 of 20-cycle block means | cv2: var / mean^2 | hz2: var in Hz^2")
    variance_block: int = setting(20, "cycles per block (cv2_blocks)", low=1, high=10**6)
    variance_threshold: float = setting(
        0.1, "seed 0.1 (§5.C.3), read as a squared CV (docs/mechanisms.md)", low=0.0, high=1e9)
    eta_factor: float = fraction(0.9, "eta scale x this on high variance, / this (up to 1) otherwise")
    eta_min_scale: float = setting(
        0.5, "the scale never goes below this: engine.eta >= 0.5 x the value set for it", low=1e-6, high=1.0)
    eta_min: float = fraction(0.0, "absolute floor on engine.eta (0: none)")
    # anomalies
    anomaly_variance_threshold: float = setting(
        0.2, '"excessive": 2x the control threshold, so control acts first', low=0.0, high=1e9)
    reward_window: int = setting(50, "cycles", low=1, high=10**7)
    reward_extreme: float = setting(2.0, low=0.0, high=1e9)

    def validate(self) -> None:
        validate_section(self, _CRITICALITY)
        if self.inhibition_min > self.inhibition_max:
            raise ConfigError(f"{_CRITICALITY}.inhibition_min must be <= {_CRITICALITY}.inhibition_max")
        if self.rate_low_hz >= self.rate_high_hz:
            raise ConfigError(f"{_CRITICALITY}.rate_low_hz must be < {_CRITICALITY}.rate_high_hz")
        if self.min_tail > self.min_avalanches:
            raise ConfigError(f"{_CRITICALITY}.min_tail must be <= {_CRITICALITY}.min_avalanches")
        if self.min_avalanches > self.ring_size:
            raise ConfigError(f"{_CRITICALITY}.min_avalanches must be <= {_CRITICALITY}.ring_size")


@dataclass(frozen=True)
class JobsConfig:
    """Scheduled self-regulation jobs (SPEC §6-§8); cadences in seconds or (deterministic) cycles."""

    clustering: ClusteringConfig = section(ClusteringConfig)
    decay: DecayConfig = section(DecayConfig)
    tagging: TaggingConfig = section(TaggingConfig, old_name="persistence")
    tuning: TuningConfig = section(TuningConfig)
    structural: StructuralConfig = section(StructuralConfig)
    criticality: CriticalityConfig = section(CriticalityConfig)

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            getattr(self, f.name).validate()

    def items(self) -> list[tuple[str, JobSection]]:
        """(job name, section) of every job: the names the runner, metrics and checkpoints use
        (a section's own name, except ``tagging``, whose job is named ``persistence``)."""
        return [(TAGGING_JOB if f.name == "tagging" else f.name, getattr(self, f.name))
                for f in dataclasses.fields(self)]
