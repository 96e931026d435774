"""Parameters of every mechanism, as frozen dataclasses (Norse style: parameters in, state out).

Every default is the seed value (SPEC.md, seeds/002 §5) unless ``docs/mechanisms.md`` records
a departure. ``EngineConfig.from_mapping`` builds a config from a nested dict (e.g. parsed
TOML) and rejects unknown keys and out-of-range values with an error naming the key.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Mapping

from .errors import ConfigError


@dataclass(frozen=True)
class NetworkConfig:
    """Network construction, SPEC §1 (seed 002 §5.A.2)."""

    neurons: int = 1000
    excitatory_fraction: float = 0.8
    synapses_per_neuron: int = 50  # fan-out; 50 of 1000 = 95 % sparsity
    sigma: float = 5.0  # distance bias exp(-d/sigma) on the virtual 2-D grid
    max_radius_sigmas: float = 6.0  # candidates beyond 6 sigma carry < 2 % of the mass
    index_order: str = "spatial"  # spatial | random: number E and I neurons along the grid (cache locality)
    init_weight_max: float = 0.3  # U(0, 0.3) excitatory, U(-0.3, 0) inhibitory
    input_size: int = 64  # input features; input neurons = input_size x encoder channels (2 for on_off)
    max_labels: int = 16  # output populations (vocabulary capacity)
    population_size: int = 32  # output neurons per population (more neurons: less count noise per decision)
    readout_fan_in: int = -1  # designated input->output synapses per output neuron (-1: every input neuron; 0: none)
    readout_isolated: bool = True  # input and output neurons receive no recurrent synapses (docs/mechanisms.md)
    seed: int = 0
    initial_clusters: int = 8  # k_min before the first clustering job
    activity_history: int = 32  # cycles of per-neuron spike counts kept (clustering, pruning)


@dataclass(frozen=True)
class LIFConfig:
    """LIF neuron, SPEC §1 / AMN §2.1: V += dt/tau (-(V - v_rest) + R I)."""

    dt_ms: float = 1.0
    steps: int = 200  # T per cycle (seed: 50; 200 averages out the Poisson count noise of a decision, docs)
    v_rest: float = -65.0
    v_reset: float = -70.0
    tau_mean: float = 20.0
    tau_std: float = 2.0  # N(20 ms, 2 ms^2) read as standard deviation 2 ms
    v_th_mean: float = -55.0
    v_th_std: float = 2.0
    synaptic_gain: float = 200.0  # R*I (mV) delivered by one spike through a weight of 1.0
    input_current: float = 400.0  # R*I (mV) of one encoder spike onto its input neuron
    global_inhibition: float = 12.0  # initial gain on inhibitory currents: a quiet 80/20 E/I network (docs)
    v_min: float = -90.0  # floor on V (mV): current-based inhibition cannot drive V below it (docs)


@dataclass(frozen=True)
class EncoderConfig:
    """Poisson rate encoder with refractoriness and low-pass, SPEC §2 (seed 002 §5.A.2, §5.E.5)."""

    max_rate_hz: float = 100.0
    refractory_ms: float = 5.0
    lowpass_steps: int = 5
    normalize: str = "standardize"  # standardize (online per feature) | minmax (per record) | clip01
    channels: str = "on_off"  # on_off: two input neurons per feature (z > 0, z < 0) | single
    z_scale: float = 2.0  # standardize: |z| at which a channel reaches max_rate_hz
    stats_halflife: float = 5000.0  # standardize: running mean/variance forget over this many inputs
    text_ngram_max: int = 3
    max_text_chars: int = 100_000


@dataclass(frozen=True)
class STDPConfig:
    """STDP windows, SPEC §3 (AMN §3.1, table 7.2)."""

    a_plus: float = 0.1
    a_minus: float = 0.12
    tau_plus_ms: float = 20.0
    tau_minus_ms: float = 20.0
    window_steps: int = 10  # tau_max
    # Inhibitory rule (Vogels et al. 2011 symmetric window), see docs/mechanisms.md.
    inh_amplitude: float = 0.05
    inh_tau_ms: float = 20.0
    inh_target_rate_hz: float = 10.0
    inh_modulation: str = "abs_reward"  # reward | abs_reward | none


@dataclass(frozen=True)
class LearningConfig:
    """Eligibility traces and reward-modulated update, SPEC §3 (seed 002 §5.B.3)."""

    enabled: bool = True
    eta: float = 0.01
    gamma: float = 0.0  # trace carried to the next input (seed 0.95; 0: one input's credit stays with it)
    w_max: float = 1.0
    persistent_eta_scale: float = 0.5
    novelty_boost_threshold: float = 0.5
    novelty_boost: float = 1.2
    action_credit: bool = True  # only the acting output population is eligible (docs/mechanisms.md)
    trace_dtype: str = "float16"  # float16 keeps state at 11 bytes/synapse; float32 for exactness
    # Learning from rewards (docs/mechanisms.md "Learning from labels"):
    reward_baseline: str = "action"  # none | global | action: delta = R - b (b per acting population)
    baseline_alpha: float = 0.05  # EMA rate of the reward baseline b
    eta_modulation: str = "magnitude"  # magnitude: eta (1 + (2 sig(|delta|) - 1)); signed: SPEC's sig(delta)
    readout_eta: float = 0.03  # eta of the excitatory synapses onto output neurons (the readout layer)
    readout_eta_fan_in: float = 32.0  # readout_eta x min(1, sqrt(this / fan-in)): wide inputs learn slower (0: off)
    readout_window: str = "causal"  # causal: only pre-before-post pairs onto output neurons; full: SPEC window
    readout_normalize: bool = True  # keep each output neuron's summed excitatory input weight fixed
    readout_weight_sum: float = 3.0  # each output neuron's readout weights sum to this x the fan-in factor (init U(0, 2 sum / fan-in); normalisation)
    readout_weight_fan_in: float = 32.0  # readout_weight_sum x max(1, sqrt(fan-in / this)): wide inputs get a larger sum (0: off)
    reserve_compete: bool = True  # label modulator: populations without a label yet compete (and learn to stay quiet)
    margin: float = 0.3  # label modulator: also learn from a right decision whose confidence is below this
    modulator: str = "label"  # label: population-addressed error when a label arrives, RPE otherwise | reward: RPE only
    internal_scale: float = 0.1  # share of the (centred) SIE reward that drives learning on unlabelled, unrewarded inputs
    # output homeostasis (Diehl & Cook 2015): an adaptive threshold theta on output neurons
    theta_plus_mv: float = 0.02  # theta += this per output spike
    theta_decay: float = 0.995  # theta *= this per input
    bias_mv: float = 0.2  # theta -= this x the population's modulator (error-driven bias, readout.py)
    # replay of recent labelled inputs between live ones (learning/replay.py): retention of absent classes
    replay_per_input: float = 0.0  # steady class-balanced replays per live labelled input (0: none)
    replay_restore: float = 2.0  # replays per unit of a label's frequency deficit (long-run - recent; 0: none)
    replay_recent_halflife: float = 100.0  # inputs: the recent label frequency
    replay_longrun_halflife: float = 20000.0  # inputs: the long-run label frequency (how long an absent class is rehearsed)
    replay_capacity: int = 16  # inputs kept per label (the newest; a ring buffer)


@dataclass(frozen=True)
class SIEConfig:
    """Self-Improvement Engine, SPEC §4 (seed 002 §5.B.2, §5.C.2, §5.E.3, §5.E.5)."""

    w_td: float = 1.0
    w_novelty: float = 1.0
    w_habituation: float = 1.0
    w_self_benefit: float = 1.0
    td_gamma: float = 0.9
    td_alpha: float = 0.1
    history_size: int = 50  # max novelty comparisons
    match_threshold: float = 0.95  # cosine at or above this = "the same input again"
    habituation_increment: float = 0.2
    habituation_decay: float = 0.99
    smoothing_window: int = 5
    novelty_cap_threshold: float = 0.9
    time_budget_ms: float = 5.0
    cluster_reward_alpha: float = 0.01  # EMA for avg_reward[c]
    cluster_history: int = 1000  # reward history kept per cluster
    internal_weight_with_external: float = 0.25  # bound on the internal terms when an external reward is present


@dataclass(frozen=True)
class IntrinsicConfig:
    """Intrinsic plasticity, SPEC §5. Target band departs from the seed's 0.1-0.5 Hz (see docs)."""

    enabled: bool = True
    target_low_hz: float = 2.0
    target_high_hz: float = 40.0
    rate_alpha: float = 0.1  # EMA of the per-cycle rate
    eta_v_th: float = 0.005  # mV per Hz of excess rate per cycle
    eta_tau: float = 0.002  # ms per Hz
    v_th_min: float = -62.0
    v_th_max: float = -40.0
    tau_min: float = 10.0
    tau_max: float = 30.0


@dataclass(frozen=True)
class EngineConfig:
    network: NetworkConfig = field(default_factory=NetworkConfig)
    lif: LIFConfig = field(default_factory=LIFConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    stdp: STDPConfig = field(default_factory=STDPConfig)
    learning: LearningConfig = field(default_factory=LearningConfig)
    sie: SIEConfig = field(default_factory=SIEConfig)
    intrinsic: IntrinsicConfig = field(default_factory=IntrinsicConfig)
    deterministic: bool = False  # True: no wall-clock effect on state (disables SIE time fallback)
    device: str = "auto"  # auto | cpu | cuda
    compile: str = "off"  # off | auto | on: torch.compile the fused synapse update (torch backend)
    backend: str = "auto"  # auto | numba | torch: compiled CPU kernels (numba) or the PyTorch path

    def __post_init__(self) -> None:
        validate(self)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "EngineConfig":
        return _from_mapping(cls, data, prefix="")

    def replace(self, **sections: Any) -> "EngineConfig":
        """Copy with some sections replaced; a section may be given as a dict of changed keys."""
        updates = {}
        for name, value in sections.items():
            current = getattr(self, name)
            if isinstance(value, Mapping) and is_dataclass(current):
                value = dataclasses.replace(current, **value)
            updates[name] = value
        return dataclasses.replace(self, **updates)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _from_mapping(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a table, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"{prefix}{key}: unknown key (allowed: {', '.join(sorted(known))})")
        default = known[key].default
        if default is dataclasses.MISSING:
            default = known[key].default_factory()  # type: ignore[misc]
        if is_dataclass(default):
            kwargs[key] = _from_mapping(type(default), value, prefix=f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(f"{prefix}{key}", value, default)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{prefix or 'config'}: {exc}") from exc


def _coerce(key: str, value: Any, default: Any) -> Any:
    kind = type(default)
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    return value


# (section, key) -> (low, high) inclusive; None = unbounded on that side.
_RANGES: dict[tuple[str, str], tuple[float | None, float | None]] = {
    ("network", "neurons"): (10, 50_000_000),
    ("network", "excitatory_fraction"): (0.5, 0.95),
    ("network", "synapses_per_neuron"): (1, 10_000),
    ("network", "sigma"): (0.1, 1e6),
    ("network", "max_radius_sigmas"): (1.0, 100.0),
    ("network", "init_weight_max"): (0.0, 1.0),
    ("network", "input_size"): (1, 1_000_000),
    ("network", "max_labels"): (2, 100_000),
    ("network", "population_size"): (1, 10_000),
    ("network", "readout_fan_in"): (-1, 1_000_000),
    ("network", "seed"): (0, 2**63 - 1),
    ("network", "initial_clusters"): (1, 100_000),
    ("network", "activity_history"): (1, 4096),
    ("lif", "dt_ms"): (0.01, 10.0),
    ("lif", "steps"): (2, 10_000),
    ("lif", "tau_mean"): (1.0, 1000.0),
    ("lif", "tau_std"): (0.0, 100.0),
    ("lif", "v_th_std"): (0.0, 50.0),
    ("lif", "synaptic_gain"): (0.0, 1e5),
    ("lif", "input_current"): (0.0, 1e6),
    ("lif", "global_inhibition"): (0.0, 100.0),
    ("encoder", "max_rate_hz"): (0.0, 1000.0),
    ("encoder", "refractory_ms"): (0.0, 100.0),
    ("encoder", "lowpass_steps"): (1, 1000),
    ("encoder", "text_ngram_max"): (1, 10),
    ("encoder", "max_text_chars"): (1, 100_000_000),
    ("stdp", "a_plus"): (0.0, 10.0),
    ("stdp", "a_minus"): (0.0, 10.0),
    ("stdp", "tau_plus_ms"): (0.1, 1000.0),
    ("stdp", "tau_minus_ms"): (0.1, 1000.0),
    ("stdp", "window_steps"): (1, 1000),
    ("stdp", "inh_amplitude"): (0.0, 10.0),
    ("stdp", "inh_tau_ms"): (0.1, 1000.0),
    ("stdp", "inh_target_rate_hz"): (0.0, 1000.0),
    ("learning", "eta"): (0.0, 1.0),
    ("learning", "gamma"): (0.0, 1.0),
    ("learning", "w_max"): (0.0, 1.0),
    ("learning", "persistent_eta_scale"): (0.0, 1.0),
    ("learning", "novelty_boost_threshold"): (0.0, 1.0),
    ("learning", "novelty_boost"): (0.0, 10.0),
    ("learning", "baseline_alpha"): (0.0, 1.0),
    ("learning", "readout_eta"): (0.0, 1.0),
    ("learning", "readout_eta_fan_in"): (0.0, 1e6),
    ("learning", "readout_weight_sum"): (0.0, 1e4),
    ("learning", "readout_weight_fan_in"): (0.0, 1e6),
    ("learning", "internal_scale"): (0.0, 10.0),
    ("learning", "margin"): (0.0, 1.0),
    ("learning", "theta_plus_mv"): (0.0, 100.0),
    ("learning", "theta_decay"): (0.0, 1.0),
    ("learning", "bias_mv"): (0.0, 100.0),
    ("learning", "replay_per_input"): (0.0, 16.0),
    ("learning", "replay_capacity"): (0, 4096),
    ("learning", "replay_restore"): (0.0, 1000.0),
    ("learning", "replay_recent_halflife"): (1.0, 1e12),
    ("learning", "replay_longrun_halflife"): (1.0, 1e12),
    ("encoder", "z_scale"): (1e-3, 1e3),
    ("encoder", "stats_halflife"): (1.0, 1e12),
    ("lif", "v_min"): (-1e6, 0.0),
    ("sie", "internal_weight_with_external"): (0.0, 10.0),
    ("sie", "w_td"): (0.0, 10.0),
    ("sie", "w_novelty"): (0.0, 10.0),
    ("sie", "w_habituation"): (0.0, 10.0),
    ("sie", "w_self_benefit"): (0.0, 10.0),
    ("sie", "td_gamma"): (0.0, 1.0),
    ("sie", "td_alpha"): (0.0, 1.0),
    ("sie", "history_size"): (1, 100_000),
    ("sie", "match_threshold"): (0.0, 1.0),
    ("sie", "habituation_increment"): (0.0, 1.0),
    ("sie", "habituation_decay"): (0.0, 1.0),
    ("sie", "smoothing_window"): (1, 10_000),
    ("sie", "novelty_cap_threshold"): (0.0, 1.0),
    ("sie", "time_budget_ms"): (0.0, 1e6),
    ("sie", "cluster_reward_alpha"): (0.0, 1.0),
    ("sie", "cluster_history"): (1, 10_000_000),
    ("intrinsic", "rate_alpha"): (0.0, 1.0),
    ("intrinsic", "eta_v_th"): (0.0, 10.0),
    ("intrinsic", "eta_tau"): (0.0, 10.0),
    ("intrinsic", "tau_min"): (0.1, 1000.0),
    ("intrinsic", "tau_max"): (0.1, 1000.0),
}

_CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("encoder", "normalize"): ("standardize", "minmax", "clip01"),
    ("encoder", "channels"): ("on_off", "single"),
    ("learning", "modulator"): ("label", "reward"),
    ("stdp", "inh_modulation"): ("reward", "abs_reward", "none"),
    ("learning", "trace_dtype"): ("float16", "float32"),
    ("network", "index_order"): ("spatial", "random"),
    ("learning", "reward_baseline"): ("none", "global", "action"),
    ("learning", "eta_modulation"): ("magnitude", "signed"),
    ("learning", "readout_window"): ("causal", "full"),
}


def input_neurons(config: EngineConfig) -> int:
    """Input neurons of the network: one per feature and encoder channel (ON and OFF: two)."""
    return config.network.input_size * (2 if config.encoder.channels == "on_off" else 1)


def validate(config: EngineConfig) -> None:
    """Raise ConfigError naming the first key outside its allowed range."""
    for (section, key), (low, high) in _RANGES.items():
        value = getattr(getattr(config, section), key)
        if (low is not None and value < low) or (high is not None and value > high):
            raise ConfigError(f"{section}.{key} = {value!r} is outside the allowed range [{low}, {high}]")
    for (section, key), allowed in _CHOICES.items():
        value = getattr(getattr(config, section), key)
        if value not in allowed:
            raise ConfigError(f"{section}.{key} = {value!r}: allowed values are {', '.join(allowed)}")
    if config.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device = {config.device!r}: allowed values are auto, cpu, cuda")
    if config.backend not in ("auto", "numba", "torch"):
        raise ConfigError(f"backend = {config.backend!r}: allowed values are auto, numba, torch")
    if config.compile not in ("off", "auto", "on"):
        raise ConfigError(f"compile = {config.compile!r}: allowed values are off, auto, on")
    net, lif = config.network, config.lif
    n_exc = int(round(net.neurons * net.excitatory_fraction))
    designated = input_neurons(config) + net.max_labels * net.population_size
    if designated > n_exc:
        raise ConfigError(
            f"network.neurons = {net.neurons}: {n_exc} excitatory neurons cannot hold "
            f"{input_neurons(config)} input + {net.max_labels}x{net.population_size} output neurons"
        )
    if net.synapses_per_neuron >= net.neurons:
        raise ConfigError(f"network.synapses_per_neuron = {net.synapses_per_neuron} must be < network.neurons")
    if lif.v_min >= lif.v_reset:
        raise ConfigError("lif.v_min must lie below lif.v_reset")
    ip = config.intrinsic
    if ip.target_low_hz > ip.target_high_hz:
        raise ConfigError("intrinsic.target_low_hz must be <= intrinsic.target_high_hz")
    if ip.v_th_min >= ip.v_th_max:
        raise ConfigError("intrinsic.v_th_min must be < intrinsic.v_th_max")
    if ip.tau_min >= ip.tau_max:
        raise ConfigError("intrinsic.tau_min must be < intrinsic.tau_max")
    if not lif.v_reset < lif.v_th_mean or not lif.v_rest < lif.v_th_mean:
        raise ConfigError("lif.v_reset and lif.v_rest must lie below lif.v_th_mean")
    enc = config.encoder
    if enc.max_rate_hz * enc.refractory_ms / 1000.0 >= 1.0:
        raise ConfigError(
            "encoder.max_rate_hz x encoder.refractory_ms must stay below 1 spike per refractory period"
        )
