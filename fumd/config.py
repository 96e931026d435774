"""Parameters of every mechanism, as frozen dataclasses (Norse style: parameters in, state out).

Every default is the seed value (SPEC.md, seeds/002 §5) unless ``docs/mechanisms.md`` records
a departure. Each key is declared once, with its default, doc, allowed range and (as a
``Literal`` type) its choices (``fumd/settings.py``). ``EngineConfig.from_mapping`` builds a
config from a nested dict (e.g. parsed TOML) and rejects unknown keys and out-of-range values
with an error naming the key.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Literal, Mapping

from .errors import ConfigError
from .settings import fraction, from_mapping, section, setting, validate_section


@dataclass(frozen=True)
class NetworkConfig:
    """Network construction, SPEC §1 (seed 002 §5.A.2)."""

    neurons: int = setting(1000, low=10, high=50_000_000)
    excitatory_fraction: float = setting(0.8, low=0.5, high=0.95)
    synapses_per_neuron: int = setting(50, "fan-out; 50 of 1000 = 95 % sparsity", low=1, high=10_000)
    sigma: float = setting(5.0, "distance bias exp(-d/sigma) on the virtual 2-D grid", low=0.1, high=1e6)
    max_radius_sigmas: float = setting(6.0, "candidates beyond 6 sigma carry < 2 % of the mass", low=1.0, high=100.0)
    index_order: Literal["spatial", "random"] = setting(
        "spatial", "spatial | random: number E and I neurons along the grid (cache locality)")
    init_weight_max: float = fraction(0.3, "U(0, 0.3) excitatory, U(-0.3, 0) inhibitory")
    input_size: int = setting(64, "input features; input neurons = input_size x encoder channels (2 for on_off)",
                              low=1, high=1_000_000)
    max_labels: int = setting(16, "output populations (vocabulary capacity)", low=2, high=100_000)
    population_size: int = setting(32, "output neurons per population (more neurons: less count noise per decision)",
                                   low=1, high=10_000)
    readout_fan_in: int = setting(
        -1, "designated input->output synapses per output neuron (-1: every input neuron; 0: none)", low=-1,
        high=1_000_000)
    readout_isolated: bool = setting(True,
                                     "input and output neurons receive no recurrent synapses (docs/mechanisms.md)")
    feature_neurons: int = setting(
        640, "excitatory neurons made feature detectors, at most the ones neither input nor output (-1: all of "
        "those; 0: none, #9's network; docs)",
        low=-1, high=50_000_000)
    feature_fan_in: int = setting(3, "distinct input neurons converging on each feature neuron", low=1, high=10_000)
    feature_weight: float = fraction(0.35, "mean input->feature weight (each feature's weights sum to fan-in x this)")
    feature_recurrent: bool = setting(False, "feature neurons also receive the recurrent network's synapses")
    readout_from: Literal["input", "features", "both"] = setting(
        "both", "input | features | both: the presynaptic neurons of the readout pathway")
    seed: int = setting(0, low=0, high=2**63 - 1)
    initial_clusters: int = setting(8, "k_min before the first clustering job", low=1, high=100_000)
    activity_history: int = setting(32, "cycles of per-neuron spike counts kept (clustering, pruning)", low=1,
                                    high=4096)


@dataclass(frozen=True)
class LIFConfig:
    """LIF neuron, SPEC §1 / AMN §2.1: V += dt/tau (-(V - v_rest) + R I)."""

    dt_ms: float = setting(1.0, low=0.01, high=10.0)
    steps: int = setting(200, "T per cycle (seed: 50; 200 averages out the Poisson count noise of a decision, docs)",
                         low=2, high=10_000)
    v_rest: float = setting(-65.0)
    v_reset: float = setting(-70.0)
    feature_v_reset: float = setting(
        -61.0, "reset potential of the feature neurons (mV): a partial reset, more spikes per active feature "
        "(issue #15, docs; = v_reset: the full reset)")
    tau_mean: float = setting(20.0, low=1.0, high=1000.0)
    tau_std: float = setting(2.0, "N(20 ms, 2 ms^2) read as standard deviation 2 ms", low=0.0, high=100.0)
    v_th_mean: float = setting(-55.0)
    v_th_std: float = setting(2.0, low=0.0, high=50.0)
    synaptic_gain: float = setting(200.0, "R*I (mV) delivered by one spike through a weight of 1.0", low=0.0, high=1e5)
    input_current: float = setting(400.0, "R*I (mV) of one encoder spike onto its input neuron", low=0.0, high=1e6)
    global_inhibition: float = setting(
        12.0, "initial gain on inhibitory currents: a quiet 80/20 E/I network (docs)", low=0.0, high=100.0)
    v_min: float = setting(
        -90.0, "floor on V (mV): current-based inhibition cannot drive V below it (docs)", low=-1e6, high=0.0)


@dataclass(frozen=True)
class EncoderConfig:
    """Rate encoder with low-pass, SPEC §2 (seed 002 §5.A.2, §5.E.5): regular (phase-accumulator)
    spike trains by default, the seed's Poisson trains with refractoriness as an option (docs)."""

    max_rate_hz: float = setting(100.0, low=0.0, high=1000.0)
    refractory_ms: float = setting(5.0, low=0.0, high=100.0)
    lowpass_steps: int = setting(5, low=1, high=1000)
    spike_train: Literal["poisson", "regular"] = setting(
        "regular",
        "regular: a phase accumulator, count error < 1 spike (docs) | poisson (with refractoriness, the seed's)")
    normalize: Literal["standardize", "minmax", "clip01"] = setting(
        "standardize", "standardize (online per feature) | minmax (per record) | clip01")
    channels: Literal["on_off", "single"] = setting(
        "on_off", "on_off: two input neurons per feature (z > 0, z < 0) | single")
    z_scale: float = setting(2.0, "standardize: |z| at which a channel reaches max_rate_hz", low=1e-3, high=1e3)
    stats_halflife: float = setting(
        5000.0, "standardize: running mean/variance forget over this many inputs", low=1.0, high=1e12)
    text_ngram_max: int = setting(3, low=1, high=10)
    max_text_chars: int = setting(100_000, low=1, high=100_000_000)


@dataclass(frozen=True)
class STDPConfig:
    """STDP windows, SPEC §3 (AMN §3.1, table 7.2)."""

    a_plus: float = setting(0.1, low=0.0, high=10.0)
    a_minus: float = setting(0.12, low=0.0, high=10.0)
    tau_plus_ms: float = setting(20.0, low=0.1, high=1000.0)
    tau_minus_ms: float = setting(20.0, low=0.1, high=1000.0)
    window_steps: int = setting(10, "tau_max", low=1, high=1000)
    # Inhibitory rule (Vogels et al. 2011 symmetric window), see docs/mechanisms.md.
    inh_amplitude: float = setting(0.05, low=0.0, high=10.0)
    inh_tau_ms: float = setting(20.0, low=0.1, high=1000.0)
    inh_target_rate_hz: float = setting(10.0, low=0.0, high=1000.0)
    inh_modulation: Literal["reward", "abs_reward", "none"] = setting("abs_reward", "reward | abs_reward | none")


@dataclass(frozen=True)
class LearningConfig:
    """Eligibility traces and reward-modulated update, SPEC §3 (seed 002 §5.B.3)."""

    enabled: bool = setting(True)
    eta: float = fraction(0.01)
    gamma: float = fraction(0.0, "trace carried to the next input (seed 0.95; 0: one input's credit stays with it)")
    w_max: float = fraction(1.0)
    persistent_eta_scale: float = fraction(0.5)
    novelty_boost_threshold: float = fraction(0.5)
    novelty_boost: float = setting(1.2, low=0.0, high=10.0)
    action_credit: bool = setting(True, "only the acting output population is eligible (docs/mechanisms.md)")
    trace_dtype: Literal["float16", "float32"] = setting(
        "float16", "float16 keeps state at 11 bytes/synapse; float32 for exactness")
    # Learning from rewards (docs/mechanisms.md "Learning from labels"):
    reward_baseline: Literal["none", "global", "action"] = setting(
        "action", "none | global | action: delta = R - b (b per acting population)")
    baseline_alpha: float = fraction(0.05, "EMA rate of the reward baseline b")
    eta_modulation: Literal["magnitude", "signed"] = setting(
        "magnitude", "magnitude: eta (1 + (2 sig(|delta|) - 1)); signed: SPEC's sig(delta)")
    readout_eta: float = fraction(0.03, "eta of the excitatory synapses onto output neurons (the readout layer)")
    readout_eta_fan_in: float = setting(
        32.0, "readout_eta x min(1, sqrt(this / fan-in)): wide inputs learn slower (0: off)", low=0.0, high=1e6)
    readout_window: Literal["causal", "full"] = setting(
        "causal", "causal: only pre-before-post pairs onto output neurons; full: SPEC window")
    readout_normalize: bool = setting(True, "keep each output neuron's summed excitatory input weight fixed")
    readout_weight_sum: float = setting(3.0, "each output neuron's readout weights sum to this x the fan-in factor "
                                        "(init U(0, 2 sum / fan-in); normalisation)", low=0.0, high=1e4)
    readout_weight_fan_in: float = setting(
        32.0, "readout_weight_sum x max(1, sqrt(fan-in / this)): wide inputs get a larger sum (0: off)",
        low=0.0, high=1e6)
    readout_eligibility: Literal["causal", "presynaptic"] = setting(
        "presynaptic",
        "causal: pre-before-post pairs (STDP) | presynaptic: the presynaptic count (e-prop's readout rule; docs)")
    readout_presynaptic_scale: float = setting(
        0.025, "presynaptic eligibility per presynaptic spike (measured: docs/mechanisms.md \"Potential readout\")",
        low=0.0, high=100.0)
    feature_plasticity: Literal["fixed", "stdp"] = setting(
        "fixed", "fixed: the input->feature synapses keep their random weights | stdp: the generic R-STDP")
    feature_activity: float = fraction(
        0.2, "feature neurons' adaptive thresholds hold the fraction of inputs each fires on at this (0: off; "
        "learning/feature_sparseness.py)")
    feature_threshold_rate_mv: float = setting(
        0.2, "feature_activity: threshold change (mV) per input, x (fired - target)", low=0.0, high=100.0)
    reserve_compete: bool = setting(
        True, "label modulator: populations without a label yet compete (and learn to stay quiet)")
    margin: float = fraction(0.3, "label modulator: also learn from a right decision whose confidence is below this")
    label_error: Literal["perceptron", "softmax"] = setting(
        "softmax", "label modulator: perceptron: onehot(label) - onehot(decision or rival) | softmax: onehot(label) "
        "- softmax of the populations' rates (the delta rule's error; docs)")
    softmax_beta: float = setting(
        30.0, "label_error = softmax: inverse temperature, per mean population rate (or mean free potential)",
        low=0.001, high=1e4)
    readout_decision: Literal["spikes", "potential"] = setting(
        "potential", "spikes: the populations' spike rates decide | potential: their mean membrane potential "
        "relative to threshold over the cycle (a leaky-integrator readout, as e-prop's; docs)")
    modulator: Literal["label", "reward"] = setting(
        "label", "label: population-addressed error when a label arrives, RPE otherwise | reward: RPE only")
    internal_scale: float = setting(
        0.1, "share of the (centred) SIE reward that drives learning on unlabelled, unrewarded inputs",
        low=0.0, high=10.0)
    # output homeostasis (Diehl & Cook 2015): an adaptive threshold theta on output neurons
    theta_plus_mv: float = setting(0.02, "theta += this per output spike", low=0.0, high=100.0)
    theta_decay: float = fraction(0.995, "theta *= this per input")
    bias_mv: float = setting(
        0.2, "theta -= this x the population's modulator (error-driven bias, readout.py)", low=0.0, high=100.0)
    # replay of recent labelled inputs between live ones (learning/replay.py): retention of absent classes
    replay_per_input: float = setting(
        0.0, "steady class-balanced replays per live labelled input (0: none)", low=0.0, high=16.0)
    replay_restore: float = setting(
        2.0, "replays per unit of a label's frequency deficit (long-run - recent; 0: none)", low=0.0, high=1000.0)
    replay_recent_halflife: float = setting(100.0, "inputs: the recent label frequency", low=1.0, high=1e12)
    replay_longrun_halflife: float = setting(
        20000.0, "inputs: the long-run label frequency (how long an absent class is rehearsed)", low=1.0, high=1e12)
    replay_capacity: int = setting(
        256, "inputs kept per label (the newest; a ring buffer; docs: memory)", low=0, high=4096)


@dataclass(frozen=True)
class SIEConfig:
    """Self-Improvement Engine, SPEC §4 (seed 002 §5.B.2, §5.C.2, §5.E.3, §5.E.5)."""

    w_td: float = setting(1.0, low=0.0, high=10.0)
    w_novelty: float = setting(1.0, low=0.0, high=10.0)
    w_habituation: float = setting(1.0, low=0.0, high=10.0)
    w_self_benefit: float = setting(1.0, low=0.0, high=10.0)
    td_gamma: float = fraction(0.9)
    td_alpha: float = fraction(0.1)
    history_size: int = setting(50, "max novelty comparisons", low=1, high=100_000)
    match_threshold: float = fraction(0.95, 'cosine at or above this = "the same input again"')
    habituation_increment: float = fraction(0.2)
    habituation_decay: float = fraction(0.99)
    smoothing_window: int = setting(5, low=1, high=10_000)
    novelty_cap_threshold: float = fraction(0.9)
    time_budget_ms: float = setting(5.0, low=0.0, high=1e6)
    cluster_reward_alpha: float = fraction(0.01, "EMA for avg_reward[c]")
    cluster_history: int = setting(1000, "reward history kept per cluster", low=1, high=10_000_000)
    internal_weight_with_external: float = setting(
        0.25, "bound on the internal terms when an external reward is present", low=0.0, high=10.0)


@dataclass(frozen=True)
class IntrinsicConfig:
    """Intrinsic plasticity, SPEC §5. Target band departs from the seed's 0.1-0.5 Hz (see docs)."""

    enabled: bool = setting(True)
    target_low_hz: float = setting(2.0)
    target_high_hz: float = setting(40.0)
    rate_alpha: float = fraction(0.1, "EMA of the per-cycle rate")
    eta_v_th: float = setting(0.005, "mV per Hz of excess rate per cycle", low=0.0, high=10.0)
    eta_tau: float = setting(0.002, "ms per Hz", low=0.0, high=10.0)
    v_th_min: float = setting(-62.0)
    v_th_max: float = setting(-40.0)
    tau_min: float = setting(10.0, low=0.1, high=1000.0)
    tau_max: float = setting(30.0, low=0.1, high=1000.0)


@dataclass(frozen=True)
class ShardingConfig:
    """The sharded backend (``backend = "sharded"``, issue #12, sharding/backend.py): the network's
    neurons split into shards that simulate and learn in parallel, bit-identical to one process."""

    shards: int = setting(2, "shards: parts of the network run in parallel in this process", low=1, high=1024)
    partition: Literal["contiguous", "metis"] = setting(
        "contiguous", "contiguous | metis: how neurons are assigned to shards (metis needs pymetis)")


@dataclass(frozen=True)
class EngineConfig:
    network: NetworkConfig = section(NetworkConfig)
    lif: LIFConfig = section(LIFConfig)
    encoder: EncoderConfig = section(EncoderConfig)
    stdp: STDPConfig = section(STDPConfig)
    learning: LearningConfig = section(LearningConfig)
    sie: SIEConfig = section(SIEConfig)
    intrinsic: IntrinsicConfig = section(IntrinsicConfig)
    sharding: ShardingConfig = section(ShardingConfig)
    deterministic: bool = setting(False, "True: no wall-clock effect on state (disables SIE time fallback)")
    device: Literal["auto", "cpu", "cuda"] = setting("auto", "auto | cpu | cuda")
    compile: Literal["off", "auto", "on"] = setting(
        "off", "off | auto | on: torch.compile the fused synapse update (torch backend)")
    backend: Literal["auto", "numba", "torch", "sharded"] = setting(
        "auto", "auto | numba | torch | sharded: compiled CPU kernels (numba), the PyTorch path, or numba "
        "kernels on [sharding] shards")

    def __post_init__(self) -> None:
        validate(self)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "EngineConfig":
        return from_mapping(cls, data)

    def replace(self, **sections: Any) -> "EngineConfig":
        """Copy with some sections replaced; a section may be given as a dict of changed keys."""
        updates = {}
        for name, value in sections.items():
            current = getattr(self, name)
            if isinstance(value, Mapping) and is_dataclass(current) and not isinstance(current, type):
                value = dataclasses.replace(current, **value)
            updates[name] = value
        return dataclasses.replace(self, **updates)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def input_neurons(config: EngineConfig) -> int:
    """Input neurons of the network: one per feature and encoder channel (ON and OFF: two)."""
    return config.network.input_size * (2 if config.encoder.channels == "on_off" else 1)


def feature_neurons(config: EngineConfig) -> int:
    """Feature neurons of the network (``network.feature_neurons``; -1: every excitatory neuron that
    is neither an input nor an output neuron)."""
    net = config.network
    n_exc = int(round(net.neurons * net.excitatory_fraction))
    free = max(0, n_exc - input_neurons(config) - net.max_labels * net.population_size)
    return free if net.feature_neurons < 0 else min(net.feature_neurons, free)


def validate(config: EngineConfig) -> None:
    """Raise ConfigError naming the first key outside its declared range or choices, then check
    the constraints between keys."""
    validate_section(config, "")
    for f in fields(config):
        value = getattr(config, f.name)
        if is_dataclass(value):
            validate_section(value, f.name)
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
    if lif.v_min >= lif.v_reset or lif.v_min >= lif.feature_v_reset:
        raise ConfigError("lif.v_min must lie below lif.v_reset and lif.feature_v_reset")
    ip = config.intrinsic
    if ip.target_low_hz > ip.target_high_hz:
        raise ConfigError("intrinsic.target_low_hz must be <= intrinsic.target_high_hz")
    if ip.v_th_min >= ip.v_th_max:
        raise ConfigError("intrinsic.v_th_min must be < intrinsic.v_th_max")
    if ip.tau_min >= ip.tau_max:
        raise ConfigError("intrinsic.tau_min must be < intrinsic.tau_max")
    if not max(lif.v_reset, lif.feature_v_reset, lif.v_rest) < lif.v_th_mean:
        raise ConfigError("lif.v_reset, lif.feature_v_reset and lif.v_rest must lie below lif.v_th_mean")
    enc = config.encoder
    if enc.max_rate_hz * enc.refractory_ms / 1000.0 >= 1.0:
        raise ConfigError(
            "encoder.max_rate_hz x encoder.refractory_ms must stay below 1 spike per refractory period"
        )
