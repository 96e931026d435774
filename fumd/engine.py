"""The phase-3 perception-action engine (seed 002 §5.C.2): one object owns all state, one call
runs one cycle.

    result = engine.cycle({"id": "a", "x": [...], "label": "cat"})

encode -> simulate (T = 50 steps) -> decode -> SIE -> learn (STDP into eligibility traces,
reward-modulated weight update, intrinsic plasticity). Every random draw comes from
``engine.generator`` (seeded from ``network.seed``; its state is part of ``state_dict``), so the
same seed and inputs give a bit-identical state on CPU.
"""
from __future__ import annotations

import ctypes
import dataclasses
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import torch

from .backends import Backend, make_backend, readout_kernels
from .coding.decoder import PopulationScores, decode, population_rates
from .coding.encoder import RateEncoder
from .coding.text import text_features
from .coding.vocabulary import LabelVocabulary
from .config import EngineConfig, input_neurons
from .knobs import Knobs
from .learning.eligibility import EligibilityUpdate
from .learning.feature_sparseness import sparse_feature_thresholds
from .learning.intrinsic import intrinsic_update, update_rate
from .learning.modulation import UpdateCoefficients, effective_eta, reward_coefficient
from .learning.readout import (
    ReadoutIndex,
    fan_in_scale,
    population_modulator,
    population_potentials,
    update_theta,
    weight_sum_for,
)
from .learning.replay import ReplayBuffer, ReplayParams
from .network.build import build_network, readout_fan_in
from .network.spikes import CycleSpikes
from .network.state import NetworkState
from .persistence import CheckpointError
from .records import Record, parse_record
from .sie.evaluator import SelfImprovementEngine, SIEResult
from .sie.td import dominant_cluster


@dataclass(frozen=True)
class CycleResult:
    id: str | None
    step: int  # cycles completed, this one included
    action: str
    action_index: int
    confidence: float
    label: str | None
    correct: bool | None
    total_reward: float
    components: dict[str, float | None]
    novelty: float
    cluster: int
    spikes: int
    output_spikes: int
    rate_hz: float
    learned: bool
    sie_fallback: bool
    feature_active: float | None = None  # fraction of the feature neurons that fired (None: no features)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available")
    return torch.device(name)


def tune_allocator() -> None:
    """Keep glibc from returning every large tensor's pages to the OS: with its default mmap
    threshold each [N] temporary is a fresh mmap + page faults (measured: a 100k-neuron LIF step
    1.7 ms -> 0.5 ms with this)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 256 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 512 << 20)  # M_TRIM_THRESHOLD
    except OSError:
        pass


def saved_network(data: Mapping[str, Any]) -> dict[str, Any]:
    """The ``network.*`` entries of a ``state_dict`` (a checkpoint), with the fields that older
    checkpoints lack filled in."""
    net = {k.split(".", 1)[1]: v for k, v in data.items() if k.startswith("network.")}
    net.setdefault("feature_idx", torch.zeros(0, dtype=torch.int64))  # checkpoints from before #15
    unknown = sorted(set(net) - {f.name for f in dataclasses.fields(NetworkState)})
    if unknown:  # written by another fumd: restoring it without them would silently drop learned state
        raise CheckpointError("the checkpoint holds network state this version of fumd does not know ("
                              + ", ".join(f"network.{k}" for k in unknown)
                              + "): it was written by another version of fumd; run that version, or move the "
                              "checkpoint away to start from an older one")
    return net


class Engine:
    def __init__(self, config: EngineConfig | None = None, *, network: NetworkState | None = None):
        """A fresh engine: the network built from ``config`` (seeded by ``network.seed``), or, for
        ``from_state``, the given ``network``."""
        self.config = config or EngineConfig()
        cfg = self.config
        tune_allocator()
        self.device = resolve_device(cfg.device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(cfg.network.seed)
        self.state: NetworkState = build_network(cfg, self.generator, self.device) if network is None else network
        self.encoder = RateEncoder(cfg.encoder, cfg.network.input_size, self.device)
        self.sie = SelfImprovementEngine(cfg.sie, self.state.n_clusters, input_neurons(cfg), self.device,
                                         cfg.deterministic)
        self.vocabulary = LabelVocabulary(cfg.network.max_labels)
        self.eta = cfg.learning.eta  # adaptive: a knob (set_knobs; tuning / criticality jobs)
        self.gamma = cfg.learning.gamma  # trace decay, a knob (tuning job)
        self.steps_done = 0
        self.learning_enabled = cfg.learning.enabled
        self.last_cycle_spikes: CycleSpikes | None = None  # the spike record of the last cycle
        # reward baseline b[a] per acting population (learning.reward_baseline; readout.py), then
        # the baselines of the internal reward (unlabelled inputs) and of the generic synapses
        self.reward_baseline = torch.zeros(cfg.network.max_labels + 2, dtype=torch.float64)
        fan_in = readout_fan_in(cfg)
        self.readout_weight_sum = weight_sum_for(fan_in, cfg.learning.readout_weight_sum,
                                                 cfg.learning.readout_weight_fan_in)
        self.readout = ReadoutIndex.build(self.state, self.readout_weight_sum)
        self.readout_eta_scale = fan_in_scale(fan_in, cfg.learning.readout_eta_fan_in)
        # recent labelled inputs, replayed between live ones (learning/replay.py)
        self.replay = ReplayBuffer.empty(cfg.network.max_labels, cfg.learning.replay_capacity, cfg.network.input_size)
        self.replays_done = 0
        self.replay_params = ReplayParams(cfg.learning.replay_per_input, cfg.learning.replay_restore,
                                          cfg.learning.replay_recent_halflife, cfg.learning.replay_longrun_halflife)
        # simulation and synaptic learning: numba kernels on the CPU or PyTorch (backends/), chosen once
        self.backend: Backend = make_backend(cfg, self.device)
        self.readout_kernels = readout_kernels(self.backend.name)

    @classmethod
    def from_state(cls, config: EngineConfig, data: Mapping[str, Any]) -> "Engine":
        """The engine a ``state_dict`` (a checkpoint) describes, without building a network first
        (a restart of a large network would otherwise build one only to overwrite it). The same
        state as ``Engine(config)`` followed by ``load_state_dict(data)``; ``config`` must describe
        the saved network (``daemon/checkpointing.with_saved_network``)."""
        network = NetworkState.from_arrays(saved_network(data), resolve_device(config.device))
        engine = cls(config, network=network)
        engine.load_state_dict(data)
        return engine

    # -- the cycle --------------------------------------------------------------------------
    def cycle(self, record: Record | Mapping[str, Any]) -> CycleResult:
        """Run encode -> simulate -> decode -> SIE -> learn for one input.

        Raises an ``InputError`` subclass, with the state untouched, for an invalid record."""
        cfg = self.config
        rec = parse_record(record, cfg.network.input_size, cfg.encoder.max_text_chars)
        if rec.label is not None:
            self.vocabulary.check_room(rec.label)
        # ---- from here on the state changes ----
        label_index = self.vocabulary.add(rec.label) if rec.label is not None else None
        features = (rec.x if rec.x is not None
                    else text_features(rec.text or "", cfg.network.input_size, cfg.encoder.text_ngram_max))
        target_rates = self.encoder.rates(self.encoder.unit(features))
        input_spikes = self.encoder.encode(target_rates, cfg.lif.steps, cfg.lif.dt_ms, self.generator)

        spikes = self._simulate(input_spikes)
        self.last_cycle_spikes = spikes
        counts = spikes.counts
        self.state.record_activity(counts)

        n_actions = len(self.vocabulary) or cfg.network.max_labels
        self._sync_readout()
        scores = self._population_scores(counts)
        pop_rates, scale = scores.first(n_actions)
        action, confidence = decode(pop_rates, scale)
        correct = None if label_index is None else action == label_index
        external = rec.reward if rec.reward is not None else (None if correct is None else (1.0 if correct else -1.0))

        state_id, cluster_spikes = dominant_cluster(counts, self.state.cluster, self.state.n_clusters,
                                                    max(self.sie.prev_state, 0))
        sie = self.sie.evaluate(target_rates, state_id, cluster_spikes, confidence, external)

        if self.learning_enabled:
            modulator = self._population_modulator(sie, action, n_actions, label_index, scores)
            self._learn(spikes, modulator, self._coefficients(sie, action, modulator))
            if label_index is not None:
                self._rehearse(label_index, features)
        self.steps_done += 1
        total = spikes.total
        return CycleResult(
            id=rec.id, step=self.steps_done, action=self.vocabulary.name(action), action_index=action,
            confidence=confidence, label=rec.label, correct=correct, total_reward=sie.total_reward,
            components={
                "td_error": sie.td_error, "novelty": sie.novelty, "habituation": sie.habituation,
                "self_benefit": sie.self_benefit, "external": sie.external_reward, "raw": sie.raw_reward,
            },
            novelty=sie.novelty, cluster=state_id, spikes=total,
            output_spikes=int(counts[self.state.output_idx.reshape(-1)].sum()),
            rate_hz=total / self.state.n * 1000.0 / self._cycle_ms, learned=self.learning_enabled,
            sie_fallback=sie.fallback, feature_active=self._feature_active(counts),
        )

    def _feature_active(self, counts: torch.Tensor) -> float | None:
        """The fraction of feature neurons that fired this cycle (``learning.feature_activity``'s
        target, feature_sparseness.py)."""
        features = self.state.feature_idx
        return float((counts[features.long()] > 0).float().mean()) if features.numel() else None

    @property
    def _cycle_ms(self) -> float:
        """Simulated time per cycle (T steps x dt)."""
        return self.config.lif.steps * self.config.lif.dt_ms

    def _simulate(self, input_spikes: torch.Tensor) -> CycleSpikes:
        with torch.no_grad():
            return self.backend.simulate(self.state, input_spikes)

    def _population_scores(self, counts: torch.Tensor) -> PopulationScores:
        """What every output population decides by (``learning.readout_decision``): its rate (Hz)
        or its mean potential relative to threshold (mV) (readout.py, decoder.py)."""
        st, lif = self.state, self.config.lif
        if self.config.learning.readout_decision == "spikes":
            return PopulationScores(population_rates(counts, st.output_idx, self._cycle_ms), None)
        out = st.output_idx
        gap = (st.v_th[out.reshape(-1)] + st.theta[out.reshape(-1)] - lif.v_rest).reshape(out.shape)
        drive = self.readout_kernels.drive(st.w, counts, self.readout)
        return PopulationScores(*population_potentials(drive, gap, lif.synaptic_gain, lif.steps))

    def _sync_readout(self) -> None:
        if self.readout.structure_version != self.state.structure_version:  # synapses moved (jobs): re-derive
            self.readout = ReadoutIndex.build(self.state, self.readout_weight_sum)

    def _learn(self, spikes: CycleSpikes, modulator: torch.Tensor, coefs: UpdateCoefficients) -> None:
        """Plasticity from one simulated input: STDP into traces, weights (generic and readout:
        the backend), readout scaling, output thresholds, intrinsic plasticity."""
        cfg, st, lc = self.config, self.state, self.config.learning
        ro, counts = self.readout, spikes.counts
        # STDP -> eligibility traces. Among the output neurons only the populations with a non-zero
        # modulator are eligible (action credit, docs/mechanisms.md); excitatory synapses onto
        # output neurons count only pre-before-post pairs (readout_window = causal, stdp.py)
        gate = None
        if lc.action_credit:
            gate = torch.ones(st.n, dtype=torch.float32, device=self.device)
            silent = (modulator == 0).nonzero().squeeze(1)
            gate[st.output_idx[silent].reshape(-1)] = 0.0
        causal = ro.is_output if lc.readout_window == "causal" else None
        # a fixed random expansion (learning.feature_plasticity = fixed): the feature pathway keeps its weights
        frozen = st.w[ro.feature_pos] if lc.feature_plasticity == "fixed" and coefs.generic else None
        presynaptic = lc.readout_eligibility == "presynaptic" and coefs.apply_readout
        if presynaptic:  # the backend does the generic update only; the readout is updated here
            w_before = self.readout_kernels.weights(st.w, ro)
        self.backend.learn(st, spikes, EligibilityUpdate(self.gamma, gate, causal),
                           dataclasses.replace(coefs, apply_readout=False) if presynaptic else coefs)
        if presynaptic:  # (with the readout's scaling in the same pass)
            self.readout_kernels.presynaptic_update(
                st.w, counts, ro, w_before, coefs.readout_per_population, st.persistent, coefs.persistent_scale,
                lc.readout_presynaptic_scale, coefs.w_max, lc.readout_normalize)
        elif coefs.apply_readout and lc.readout_normalize:
            self.readout_kernels.normalize(st.w, ro, lc.w_max)
        if frozen is not None:
            st.w[ro.feature_pos] = frozen
        # output homeostasis and sparse features (adaptive thresholds), intrinsic plasticity
        st.theta = update_theta(st.theta, counts, st.output_idx, lc.theta_plus_mv, lc.theta_decay,
                                modulator.to(self.device), lc.bias_mv)
        if lc.feature_activity > 0.0 and st.feature_idx.numel():
            st.theta = sparse_feature_thresholds(st.theta, counts, st.feature_idx, st.v_th,
                                                 max(cfg.lif.v_rest, cfg.lif.feature_v_reset),
                                                 lc.feature_activity, lc.feature_threshold_rate_mv)
        st.rate_ema = update_rate(st.rate_ema, counts, self._cycle_ms, cfg.intrinsic.rate_alpha)
        if cfg.intrinsic.enabled:
            st.v_th, st.tau_mem = intrinsic_update(st.rate_ema, st.v_th, st.tau_mem, cfg.intrinsic)

    def _population_modulator(self, sie: SIEResult, action: int, n_actions: int, label_index: int | None,
                              scores: PopulationScores) -> torch.Tensor:
        """The third factor of each output population (float64 [max_labels]; readout.py):
        label-addressed error when a label arrives (``learning.modulator = label``), else the
        reward-prediction error ``R - b[a]`` of the acting population (external reward), else a
        small centred internal (SIE) reward."""
        lc = self.config.learning
        p = self.config.network.max_labels
        external = sie.external_reward
        if external is not None:
            delta = self._centred_reward(external, action)
            if label_index is not None and lc.modulator == "label":
                rivals, scale = scores.first(p if lc.reserve_compete else n_actions)
                return self._label_modulator(action, label_index, rivals, scale)
            return population_modulator(p, action, None, scores.values[:n_actions], 0.0, delta)
        if lc.internal_scale == 0.0:
            return torch.zeros(p, dtype=torch.float64)
        delta = lc.internal_scale * self._centred_reward(sie.total_reward, action, slot=p)
        return population_modulator(p, action, None, scores.values[:n_actions], 0.0, delta)

    def _label_modulator(self, action: int, label_index: int, rivals: torch.Tensor, scale: float | None
                         ) -> torch.Tensor:
        """The label's error over the competing populations (``learning.label_error``; readout.py)."""
        lc = self.config.learning
        beta = lc.softmax_beta if lc.label_error == "softmax" else 0.0
        return population_modulator(self.config.network.max_labels, action, label_index, rivals, lc.margin,
                                    softmax_beta=beta, scale=scale)

    def _coefficients(self, sie: SIEResult, action: int, modulator: torch.Tensor) -> UpdateCoefficients:
        """Reward-modulated coefficients: the generic synapses follow the centred SIE reward
        ``delta = R - b`` (modulation.py); each readout synapse its population's modulator."""
        cfg, lc = self.config, self.config.learning
        delta = self._centred_reward(sie.total_reward, action, slot=cfg.network.max_labels + 1)
        boost = lc.novelty_boost if sie.novelty > lc.novelty_boost_threshold else 1.0
        mode = lc.eta_modulation
        coef = reward_coefficient(self.eta * boost, delta, mode)
        inh = cfg.stdp.inh_modulation
        coef_inh = (coef if inh == "reward"
                    else reward_coefficient(self.eta * boost, abs(delta), mode) if inh == "abs_reward"
                    else effective_eta(self.eta * boost, 0.0))
        return self._readout_coefficients(modulator, boost, coef, coef_inh)

    def _readout_coefficients(self, modulator: torch.Tensor, boost: float, coef: float = 0.0,
                              coef_inh: float = 0.0) -> UpdateCoefficients:
        """Each readout synapse gets its population's ``eta_eff(m_p) * m_p`` (readout.py); the
        generic synapses ``coef`` / ``coef_inh`` (0: no generic update)."""
        lc = self.config.learning
        eta_ro = lc.readout_eta * self.readout_eta_scale * boost * (self.eta / lc.eta if lc.eta > 0 else 1.0)
        per_population = torch.tensor([reward_coefficient(eta_ro, float(m), lc.eta_modulation) for m in modulator],
                                      dtype=torch.float32, device=self.device)
        return UpdateCoefficients(
            excitatory=coef, inhibitory=coef_inh, readout_per_population=per_population,
            readout_population=self.readout.population, readout_pos=self.readout.pos,
            generic=coef != 0.0 or coef_inh != 0.0,
            apply_readout=self.readout.pos.numel() > 0 and bool((per_population != 0).any()),
            persistent_scale=lc.persistent_eta_scale, w_max=lc.w_max,
        )

    # -- replay (learning/replay.py) ----------------------------------------------------------
    def _rehearse(self, label_index: int, features: Any) -> None:
        """Store this labelled input, then replay the stored inputs it owes (replay.py; label-
        modulated learning only: no result, SIE untouched)."""
        lc = self.config.learning
        if lc.modulator != "label" or (lc.replay_per_input <= 0.0 and lc.replay_restore <= 0.0):
            return
        weights = self.replay.observe(label_index, features, self.replay_params)
        while self.replay.credit >= 1.0:
            self.replay.credit -= 1.0
            drawn = self.replay.draw(weights, self.generator)
            if drawn is None:
                break
            self._replay_one(*drawn)
            self.replays_done += 1

    def _replay_one(self, label_index: int, features: Any) -> None:
        cfg, lc = self.config, self.config.learning
        target_rates = self.encoder.rates(self.encoder.unit_frozen(features))
        spikes = self._simulate(self.encoder.encode(target_rates, cfg.lif.steps, cfg.lif.dt_ms, self.generator))
        n_actions = len(self.vocabulary) or cfg.network.max_labels
        scores = self._population_scores(spikes.counts)
        action, _confidence = decode(*scores.first(n_actions))
        rivals, scale = scores.first(cfg.network.max_labels if lc.reserve_compete else n_actions)
        modulator = self._label_modulator(action, label_index, rivals, scale)
        self._learn(spikes, modulator, self._readout_coefficients(modulator, 1.0))

    def _centred_reward(self, reward: float, action: int, slot: int | None = None) -> float:
        """``delta = R - b``, then ``b += alpha (R - b)`` (learning.reward_baseline): ``b`` per
        acting population, or in ``slot`` for the internal and the generic baselines."""
        lc = self.config.learning
        if lc.reward_baseline == "none":
            return reward
        if slot is None:
            slot = action if lc.reward_baseline == "action" else 0
        b = float(self.reward_baseline[slot])
        self.reward_baseline[slot] = b + lc.baseline_alpha * (reward - b)
        return reward - b

    # -- what the scheduled jobs change (fumd/jobs/base.py) ------------------------------------
    @property
    def knobs(self) -> Knobs:
        """The live adaptive settings (fumd/knobs.py), each read from where the cycle uses it."""
        sie = self.sie
        return Knobs(self.eta, self.gamma, self.state.global_inhibition, sie.w_td, sie.w_novelty, sie.w_habituation,
                     sie.w_self_benefit)

    def set_knobs(self, knobs: Knobs) -> None:
        """Make ``knobs`` live: the values that differ from ``self.knobs`` are stored where the
        cycle reads them (the inhibition gain in ``state``, the SIE weights in ``sie``)."""
        for name, value in knobs.changes_from(self.knobs).items():
            owner = self.state if name == "global_inhibition" else self.sie if name.startswith("w_") else self
            setattr(owner, name, value)

    def drop_last_cycle_spikes(self) -> None:
        """Forget the last cycle's spike record after a structural edit (its raster and event
        positions describe the old structure)."""
        self.last_cycle_spikes = None

    # -- state ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Every piece of state as tensors / ints / floats / str lists (checkpoints, digests)."""
        st = self.state
        out: dict[str, Any] = {f"network.{k}": v for k, v in vars(st).items()}
        out.update({f"sie.{k}": v for k, v in self.sie.state_dict().items()})
        out.update({f"encoder.{k}": v for k, v in self.encoder.state_dict().items()})
        out["vocabulary"] = list(self.vocabulary.labels)
        out["rng"] = self.generator.get_state()
        out["eta"] = self.eta
        out["gamma"] = self.gamma
        out["learning.reward_baseline"] = self.reward_baseline
        out["steps_done"] = self.steps_done
        out.update({f"replay.{k}": v for k, v in self.replay.state_dict().items()})
        out["replay.done"] = self.replays_done
        return out

    def load_state_dict(self, data: Mapping[str, Any]) -> None:
        for key, value in saved_network(data).items():
            current = getattr(self.state, key)
            setattr(self.state, key, value.to(self.device) if torch.is_tensor(value) else type(current)(value))
        self.sie.load_state_dict({k.split(".", 1)[1]: v for k, v in data.items() if k.startswith("sie.")})
        self.encoder.load_state_dict({k.split(".", 1)[1]: v for k, v in data.items() if k.startswith("encoder.")})
        self.vocabulary = LabelVocabulary(self.config.network.max_labels, list(data["vocabulary"]))
        self.generator.set_state(data["rng"].cpu() if torch.is_tensor(data["rng"]) else torch.as_tensor(data["rng"]))
        self.eta = float(data["eta"])
        self.gamma = float(data.get("gamma", self.config.learning.gamma))
        if "learning.reward_baseline" in data:
            saved = torch.as_tensor(data["learning.reward_baseline"], dtype=torch.float64).cpu()
            self.reward_baseline = torch.zeros_like(self.reward_baseline)  # (before #9: only the per-action slots)
            self.reward_baseline[: saved.numel()] = saved
        self.readout = ReadoutIndex.build(self.state, self.readout_weight_sum)
        self.steps_done = int(data["steps_done"])
        self.replay.load_state_dict({k.split(".", 1)[1]: v for k, v in data.items() if k.startswith("replay.")})
        self.replays_done = int(data.get("replay.done", 0))


def states_equal(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Bit-exact comparison of two ``state_dict`` results."""
    if a.keys() != b.keys():
        return False
    for key in a:
        x, y = a[key], b[key]
        if torch.is_tensor(x):
            if not torch.is_tensor(y) or x.dtype != y.dtype or x.shape != y.shape or not torch.equal(x.cpu(), y.cpu()):
                return False
        elif x != y:
            return False
    return True
