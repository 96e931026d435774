"""Structural plasticity, SPEC §6 (seed 002 §5.B.2, §5.C.2-§5.C.3, §5.D.5, §5.E.4): the job
``structural``. One event (every ``every_cycles`` cycles by default) may do four things, each
with its own cap per event; all caps are halved while the criticality job says the network is
off criticality (``set_slow(True)``, criticality index > 0.2: seed §5.C.3 "temporarily reduce
structural plasticity rates").

1. **Pruning** of inactive neurons: mean rate over the activity window (``state.activity``, the
   last ``network.activity_history`` cycles) below ``prune_rate_hz`` (seed: 1 Hz). Never the
   designated input/output neurons, never a neuron with a persistent synapse (in or out), never a
   neuron younger than the activity window (its history is not yet full), never below
   ``prune_floor`` x ``network.neurons``. At most ``prune_cap`` (1 %) of N, the least active
   first, split between E and I so the excitatory fraction stays within ``ei_tolerance`` of its
   target (or gets closer). Downstream neurons get their threshold compensated for the input
   they lose (``edit.compensation_shift``).
2. **Rewiring** of weak synapses: non-persistent excitatory synapses with ``|w| <
   rewire_weak_threshold`` move (weakest first) to a new distance-biased target of the same
   presynaptic neuron; weight magnitude kept, trace reset. Every rewire counts once for the pair it
   leaves and once for the pair it creates; a pair that has taken part in ``rewire_pair_cap`` (3)
   rewires is never rewired again (per-pair counters, kept sparse in this job's state and
   renumbered when neurons come and go). For every 100 excitatory connections made this way,
   ``rewire_inh_per_100`` (20) inhibitory synapses are added onto the new targets from nearby
   inhibitory neurons (local E/I balance). Rewired + added <= ``rewire_cap`` (1 %) of the
   synapses. No rewiring touches a cluster whose intra-cluster connectivity (internal density
   relative to the network's density) is below ``integrity_threshold`` (0.5).
3. **Sparsity**: the connection density is kept within ``density_tolerance`` (relative) of its
   target (by default the initial density implied by the network config, ~95 % sparsity):
   missing synapses are added (distance-biased, 100 E : 20 I), excess removed (weakest
   non-persistent first), at most ``density_cap`` (5 %) of the synapses per event.
4. **Growth**: clusters whose ``avg_reward[c]`` and mean reward over their last ``growth_window``
   reward samples are both below ``growth_reward_threshold`` (0.5) get new neurons (at most
   ``growth_cap`` = 1 % of N per event in total, lowest reward first, round-robin), drawn from
   the init distributions, wired at the target density, E/I chosen so the whole network stays
   4:1 (within rounding); never beyond ``neuron_cap`` (1.5) x ``network.neurons``.

**The readout is left alone** (``protect_readout``, default on; issue #9): no synapse onto an
output neuron (the learned input->output weights, the inhibition between output populations) is
rewired or removed for density, no neuron with a synapse onto an output neuron is pruned, and no
new synapse (rewiring, density, growth) ends on an input or output neuron, which keeps the readout
isolated from the recurrent network (``network.readout_isolated``). Growth's "low reward" is
relative as well as absolute (``growth_reward_margin``, as decay's rule): with labels the reward is
mostly the external +-1, and an absolute threshold alone grows every cluster of a network that
learns a hard task.

``compute`` (pure, may run off the loop) chooses everything on a snapshot, one function per
mechanism (``_plan_pruning``, ``_plan_rewiring``, ``_plan_sparsity``, ``_plan_growth``, each
with its rule); ``apply`` performs it in the order rewire -> add -> remove synapses -> compensate
-> prune -> grow, each edit through ``fumd.network.edit`` (arrays aligned, CSR rebuilt,
``structure_version`` bumped).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, NamedTuple

import torch

from ..network import edit
from ..network.build import initial_density, recurrent_density
from ..network.state import NetworkState
from .base import Applied, PrivateStream
from .config import StructuralConfig  # noqa: F401 - the [jobs.structural] section, defined in config.py (light to import)
from .decay import low_reward_clusters
from .state import Counters, Persist, PersistentJob, Scalar, Stream, TensorOf

if TYPE_CHECKING:
    from ..engine import Engine

NAME = "structural"


@dataclass
class StructuralSnapshot:
    structure_version: int
    seed: int
    steps_done: int
    n_exc: int
    indptr: torch.Tensor
    col: torch.Tensor
    w: torch.Tensor
    persistent: torch.Tensor
    v_th: torch.Tensor
    grid_xy: torch.Tensor
    cluster: torch.Tensor
    activity: torch.Tensor
    designated: torch.Tensor
    outputs: torch.Tensor  # int64: the output neurons (a part of ``designated``)
    avg_reward: torch.Tensor
    reward_history: torch.Tensor
    reward_count: torch.Tensor
    pair_pre: torch.Tensor
    pair_post: torch.Tensor
    pair_count: torch.Tensor
    young_idx: torch.Tensor
    young_born: torch.Tensor
    slow: bool
    params: dict[str, float]


@dataclass
class StructuralPlan:
    structure_version: int
    seed: int
    prune: torch.Tensor  # int64 neuron indices
    v_th_shift: torch.Tensor  # float [N] mV (snapshot numbering), zeros if none
    rewire_pos: torch.Tensor  # int64 synapse positions
    rewire_pre: torch.Tensor
    rewire_old: torch.Tensor
    rewire_new: torch.Tensor
    add_pre: torch.Tensor
    add_post: torch.Tensor
    add_w: torch.Tensor
    inhibitory_added: int
    remove_pre: torch.Tensor
    remove_post: torch.Tensor
    grow_exc: int
    grow_inh: int
    grow_cluster: torch.Tensor  # int64 [grow_exc + grow_inh], excitatory first
    grow_fan: int
    stats: dict[str, float] = field(default_factory=dict)


class StructuralJob(PersistentJob):
    """``slow_source`` (optional): called at every snapshot for the slow flag, e.g.
    ``lambda: criticality_job.slow_structural``; otherwise ``set_slow`` sets it."""

    name = NAME
    STATE = (
        *(Persist(attr, TensorOf(dtype)) for attr, dtype in (
            ("pair_pre", torch.int32), ("pair_post", torch.int32), ("pair_count", torch.uint8),
            ("young_idx", torch.int64), ("young_born", torch.int64))),
        Persist("slow", Scalar(bool)), Persist("events", Scalar(int)), Persist("stream", Stream(), key="rng"),
        Persist("totals", Counters("total_{}", int)),
    )

    def __init__(self, config: StructuralConfig | None = None, slow_source: Callable[[], bool] | None = None,
                 seed: int = 0):
        self.config = config or StructuralConfig()
        self.config.validate()
        self.stream = PrivateStream(seed, NAME)  # event seeds: the engine's generator is never touched
        self.slow_source = slow_source
        self.slow = False
        self._empty()

    def _empty(self) -> None:
        self.pair_pre = torch.zeros(0, dtype=torch.int32)  # sorted by (pre, post)
        self.pair_post = torch.zeros(0, dtype=torch.int32)
        self.pair_count = torch.zeros(0, dtype=torch.uint8)
        self.young_idx = torch.zeros(0, dtype=torch.int64)  # neurons added recently ...
        self.young_born = torch.zeros(0, dtype=torch.int64)  # ... and the cycle they were added
        self.events = 0
        self.totals = {"neurons_added": 0, "neurons_removed": 0, "synapses_rewired": 0, "synapses_added": 0,
                       "synapses_removed": 0}

    def set_slow(self, slow: bool) -> None:
        """Criticality job: True while the criticality index exceeds 0.2 (halves every cap)."""
        self.slow = bool(slow)

    # -- snapshot (loop thread) -------------------------------------------------------------
    def snapshot(self, engine: Engine) -> StructuralSnapshot:
        st: NetworkState = engine.state
        cfg = engine.config
        if self.slow_source is not None:
            self.slow = bool(self.slow_source())
        seed = self.stream.integer(2**62)
        sie = engine.sie
        params = {
            "target_neurons": float(cfg.network.neurons),
            "exc_fraction": float(cfg.network.excitatory_fraction),
            "cycle_ms": float(cfg.lif.steps * cfg.lif.dt_ms),
            "history": float(st.activity.shape[1]),
            "v_rest": float(cfg.lif.v_rest),
            "sigma": float(cfg.network.sigma),
            "radius": float(cfg.network.max_radius_sigmas * cfg.network.sigma),
            "init_weight_max": float(cfg.network.init_weight_max),
            # with the readout protected, the density counts the recurrent synapses only (build.py)
            "target_density": float(
                self.config.target_density
                or (recurrent_density(cfg) if self.config.protect_readout else initial_density(cfg))),
        }
        dev = st.device
        return StructuralSnapshot(
            structure_version=st.structure_version, seed=seed, steps_done=int(engine.steps_done), n_exc=st.n_exc,
            indptr=st.indptr.clone(), col=st.col.clone(), w=st.w.clone(), persistent=st.persistent.clone(),
            v_th=st.v_th.clone(), grid_xy=st.grid_xy.clone(), cluster=st.cluster.clone(), activity=st.activity.clone(),
            designated=st.designated_idx().clone(),
            outputs=st.output_idx.reshape(-1).long().clone(),
            avg_reward=sie.avg_reward.clone(), reward_history=sie.reward_history.clone(),
            reward_count=sie.reward_count.clone(),
            pair_pre=self.pair_pre.to(dev), pair_post=self.pair_post.to(dev), pair_count=self.pair_count.to(dev),
            young_idx=self.young_idx.to(dev), young_born=self.young_born.to(dev), slow=self.slow, params=params,
        )

    # -- compute (pure) ---------------------------------------------------------------------
    def compute(self, snap: StructuralSnapshot) -> StructuralPlan | None:
        """Plan one event from ``snap`` alone (pure, so it may run off the loop: seed §5.D.5).

        The mechanisms draw from one generator seeded by ``snap.seed``, in the order pruning ->
        rewiring -> sparsity (growth draws in ``apply``, from ``seed + 1``), and each plans on what
        the earlier ones leave: rewiring and sparsity skip the neurons being pruned, sparsity counts
        the synapses pruning takes and rewiring adds, and growth sizes itself to the pruned network."""
        ev = _Event.of(snap, self.config)
        pruning = _plan_pruning(ev)
        rewiring = _plan_rewiring(ev, pruning.removed)
        sparsity = _plan_sparsity(ev, pruning, rewiring)
        growth = _plan_growth(ev, pruning.prune)
        stats = {"halted_clusters": rewiring.halted_clusters}
        if growth.low_clusters is not None:
            stats["growth_clusters"] = growth.low_clusters
        stats["compensated"] = float((pruning.shift != 0).sum())
        pos = rewiring.pos
        return StructuralPlan(
            structure_version=snap.structure_version, seed=snap.seed, prune=pruning.prune, v_th_shift=pruning.shift,
            rewire_pos=pos, rewire_pre=ev.pre[pos], rewire_old=ev.post[pos], rewire_new=rewiring.new,
            add_pre=torch.cat([rewiring.inh_pre, sparsity.add_pre]),
            add_post=torch.cat([rewiring.inh_post, sparsity.add_post]),
            add_w=torch.cat([rewiring.inh_w, sparsity.add_w]), inhibitory_added=int(rewiring.inh_pre.numel()),
            remove_pre=sparsity.remove_pre, remove_post=sparsity.remove_post, grow_exc=growth.exc, grow_inh=growth.inh,
            grow_cluster=growth.cluster, grow_fan=growth.fan, stats=stats,
        )

    # -- apply (loop thread) ----------------------------------------------------------------
    def apply(self, engine: Engine, plan: StructuralPlan | None) -> Applied:
        st: NetworkState = engine.state
        if plan is None:
            return Applied()
        if st.structure_version != plan.structure_version:
            return Applied({"stale": 1.0})
        dev = st.device
        cfg = engine.config
        syn_before = st.nnz
        out = {"neurons_added": 0.0, "neurons_added_exc": 0.0, "neurons_added_inh": 0.0, "neurons_removed": 0.0,
               "synapses_rewired": 0.0, "inhibitory_added": 0.0, "synapses_added": 0.0, "synapses_removed": 0.0}
        # 1. rewire (positions are valid: the structure is the snapshot's)
        if plan.rewire_pos.numel():
            edit.rewire_synapses(st, plan.rewire_pos, plan.rewire_new)
            n = st.n
            self._count_pairs(torch.cat([plan.rewire_pre, plan.rewire_pre]),
                              torch.cat([plan.rewire_old, plan.rewire_new]), n)
            out["synapses_rewired"] = float(plan.rewire_pos.numel())
        # 2. add (inhibitory balance, density top-up)
        if plan.add_pre.numel():
            added = edit.add_synapses_to_state(st, plan.add_pre, plan.add_post, plan.add_w)
            out["synapses_added"] += added
            out["inhibitory_added"] = float(plan.inhibitory_added)
        # 3. remove for density
        if plan.remove_pre.numel():
            out["synapses_removed"] += edit.remove_synapses_by_pair(st, plan.remove_pre, plan.remove_post)
        # 4-5. compensate, prune
        if plan.prune.numel():
            if bool((plan.v_th_shift != 0).any()):
                edit.shift_thresholds(st, plan.v_th_shift, cfg.intrinsic.v_th_min, cfg.intrinsic.v_th_max)
            mask = torch.zeros(st.n, dtype=torch.bool, device=dev)
            mask[plan.prune] = True
            nnz0 = st.nnz
            old_to_new = edit.remove_neurons(st, mask)
            out["synapses_removed"] += nnz0 - st.nnz
            out["neurons_removed"] = float(plan.prune.numel())
            self._renumber(old_to_new)
        # 6. grow
        if plan.grow_cluster.numel():
            gen = torch.Generator(device=dev)
            gen.manual_seed((plan.seed + 1) % (2**63))
            grown = edit.add_neurons(st, plan.grow_exc, plan.grow_inh, cluster=plan.grow_cluster,
                                     init=edit.NeuronInit.from_config(cfg), generator=gen,
                                     fan_out=plan.grow_fan, fan_in=plan.grow_fan)
            self._renumber(grown.old_to_new)
            if self.config.protect_readout:  # the new neurons' out-synapses onto input/output neurons go
                grown.synapses_added -= self._drop_onto_designated(st, grown.new_index)
            self.young_idx = torch.cat([self.young_idx, grown.new_index.cpu()])
            self.young_born = torch.cat([self.young_born,
                                         torch.full((grown.new_index.numel(),), int(engine.steps_done),
                                                    dtype=torch.int64)])
            out["neurons_added"] = float(grown.new_index.numel())
            out["neurons_added_exc"], out["neurons_added_inh"] = float(plan.grow_exc), float(plan.grow_inh)
            out["synapses_added"] += grown.synapses_added
        grace = self.config.grace_cycles or int(st.activity.shape[1])
        keep = (int(engine.steps_done) - self.young_born) < grace
        self.young_idx, self.young_born = self.young_idx[keep], self.young_born[keep]
        if any(v for k, v in out.items()):
            engine.drop_last_cycle_spikes()  # its raster / event positions describe the old structure
        self.events += 1
        for key in self.totals:
            self.totals[key] += int(out[key])
        out.update({k: float(v) for k, v in plan.stats.items()})
        out.update({"sparsity": st.sparsity(), "neurons": float(st.n), "synapses": float(st.nnz),
                    "synapse_delta": float(st.nnz - syn_before), "slow": float(self.slow),
                    "excitatory_fraction": st.n_exc / float(st.n)})
        return Applied(out)

    @staticmethod
    def _drop_onto_designated(st: NetworkState, sources: torch.Tensor) -> int:
        """Remove the synapses from ``sources`` onto input or output neurons (``edit.add_neurons``
        draws targets among all neurons); returns how many went."""
        designated = torch.zeros(st.n, dtype=torch.bool, device=st.device)
        designated[st.designated_idx()] = True
        is_src = torch.zeros(st.n, dtype=torch.bool, device=st.device)
        is_src[sources.long()] = True
        drop = is_src[st.pre_index()] & designated[st.col.long()]
        if not bool(drop.any()):
            return 0
        return edit.remove_synapses(st, ~drop)

    # -- per-pair rewire counters -------------------------------------------------------------
    def _count_pairs(self, pre: torch.Tensor, post: torch.Tensor, n: int) -> None:
        keys = torch.cat([self.pair_pre.long() * n + self.pair_post.long(), pre.cpu().long() * n + post.cpu().long()])
        counts = torch.cat([self.pair_count.long(), torch.ones(pre.numel(), dtype=torch.int64)])
        uniq, inv = torch.unique(keys, return_inverse=True)
        total = torch.zeros(uniq.numel(), dtype=torch.int64).index_add_(0, inv, counts)
        self.pair_pre, self.pair_post = (uniq // n).to(torch.int32), (uniq % n).to(torch.int32)
        self.pair_count = total.clamp(max=255).to(torch.uint8)

    def _renumber(self, old_to_new: torch.Tensor) -> None:
        m = old_to_new.cpu()
        if self.pair_pre.numel():
            a, b = m[self.pair_pre.long()], m[self.pair_post.long()]
            keep = (a >= 0) & (b >= 0)  # monotone map: the (pre, post) order is preserved
            self.pair_pre, self.pair_post = a[keep].to(torch.int32), b[keep].to(torch.int32)
            self.pair_count = self.pair_count[keep]
        if self.young_idx.numel():
            y = m[self.young_idx]
            keep = y >= 0
            self.young_idx, self.young_born = y[keep], self.young_born[keep]

    def pair_count_of(self, pre: int, post: int) -> int:
        hit = (self.pair_pre == pre) & (self.pair_post == post)
        return int(self.pair_count[hit].sum())

    def reset_state(self) -> None:
        self._empty()
        self.slow = False


def _protection(snap: StructuralSnapshot, protect: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(is_output, is_designated) bool [N]; all False when the readout is not protected."""
    n = snap.grid_xy.shape[0]
    dev = snap.w.device
    is_out = torch.zeros(n, dtype=torch.bool, device=dev)
    is_des = torch.zeros(n, dtype=torch.bool, device=dev)
    if protect:
        is_out[snap.outputs] = True
        is_des[snap.designated] = True
    return is_out, is_des


def _floor(x: float) -> int:
    """floor() that does not lose a whole unit to binary rounding (1.025 * 400 -> 410, not 409)."""
    return int(math.floor(x + 1e-9))


def _balanced_split(n: int, n_exc: int, cand_e: int, cand_i: int, cap: int, target: float,
                    tol: float) -> tuple[int, int]:
    """(e, i) neurons to remove: the most removals (<= cap) that keep the excitatory fraction
    within ``tol`` of ``target``, or no further from it than it is now; ties: closest to target."""
    allowed = max(tol, abs(n_exc / n - target)) + 1e-12
    hi, lo = target + allowed, target - allowed
    e = torch.arange(0, min(cand_e, cap) + 1, dtype=torch.float64)
    rest_e = n_exc - e
    # (n_exc - e) / (n - e - i) grows with i: it stays <= hi while i <= n - e - rest_e / hi ...
    i_max = torch.minimum(torch.minimum(torch.full_like(e, float(cand_i)), cap - e),
                          torch.floor(n - e - rest_e / hi + 1e-9))
    # ... and >= lo while i >= n - e - rest_e / lo
    i_min = torch.ceil(n - e - rest_e / lo - 1e-9).clamp(min=0) if lo > 0 else torch.zeros_like(e)
    i_max = torch.minimum(i_max, n - e - 1)
    ok = (i_max >= i_min) & (i_max >= 0)
    if not bool(ok.any()):
        return 0, 0
    total = torch.where(ok, e + i_max, torch.full_like(e, -1.0))
    dev = ((rest_e / (n - e - i_max).clamp(min=1)) - target).abs()
    best = int(torch.argmax(total * 1e6 - dev * 1e3 * ok))  # most removals, then closest to target
    return int(e[best]), int(i_max[best])


# -- compute: one event's four mechanisms (pure) -----------------------------------------------
@dataclass
class _Event:
    """One event's shared, read-only view of its snapshot: the synapse list as (pre, post) pairs
    and their keys ``pre * N + post`` (ascending: the CSR is sorted), the event's generator and
    the cap factor (``slow_factor`` while slow, else 1)."""

    c: StructuralConfig
    snap: StructuralSnapshot
    gen: torch.Generator
    factor: float
    pre: torch.Tensor  # int64 [nnz]
    post: torch.Tensor  # int64 [nnz]
    keys: torch.Tensor  # int64 [nnz]

    @classmethod
    def of(cls, snap: StructuralSnapshot, config: StructuralConfig) -> _Event:
        dev = snap.w.device
        gen = torch.Generator(device=dev)
        gen.manual_seed(snap.seed)
        n = snap.grid_xy.shape[0]
        pre = torch.repeat_interleave(torch.arange(n, device=dev), snap.indptr[1:] - snap.indptr[:-1])
        post = snap.col.long()
        return cls(config, snap, gen, config.slow_factor if snap.slow else 1.0, pre, post, pre * n + post)

    @property
    def n(self) -> int:
        return self.snap.grid_xy.shape[0]

    @property
    def nnz(self) -> int:
        return self.snap.col.shape[0]

    @property
    def dev(self) -> torch.device:
        return self.snap.w.device

    def none(self) -> torch.Tensor:
        """An empty int64 index tensor."""
        return torch.zeros(0, dtype=torch.int64, device=self.dev)


class _Pruning(NamedTuple):
    prune: torch.Tensor  # int64: the neurons to remove, ascending
    removed: torch.Tensor  # bool [N]: the same as a mask
    shift: torch.Tensor  # float [N] mV: downstream threshold compensation, zeros where none


class _Rewiring(NamedTuple):
    pos: torch.Tensor  # int64: positions of the synapses to move ...
    new: torch.Tensor  # ... and their new postsynaptic neurons
    inh_pre: torch.Tensor  # the inhibitory synapses added for balance
    inh_post: torch.Tensor
    inh_w: torch.Tensor  # U(0, init_weight_max); the sign is set on apply (Dale's law)
    taken: torch.Tensor  # keys of every pair that exists or that rewiring creates
    halted_clusters: float


class _Sparsity(NamedTuple):
    remove_pre: torch.Tensor
    remove_post: torch.Tensor
    add_pre: torch.Tensor
    add_post: torch.Tensor
    add_w: torch.Tensor


class _Growth(NamedTuple):
    exc: int
    inh: int
    cluster: torch.Tensor  # int64 [exc + inh]: the cluster of each new neuron, excitatory first
    fan: int
    low_clusters: float | None  # clusters that qualified (None: growth is off)


def _plan_pruning(ev: _Event) -> _Pruning:
    """1. Pruning of inactive neurons (SPEC §6; seed 002 §5.E.4 "inactive neurons (rate < 1 Hz)",
    §5.C.3 "capped at 1% per event"): ``_inactive_to_prune`` chooses them, nothing before the
    activity window is full (``steps_done < history``).

    Downstream compensation (seed §5.E.4 "downstream compensation (v_th adjustment)"; the formula
    is ours, docs/mechanisms.md): a neuron j losing a fraction ``f_E`` of its incoming excitatory
    weight and ``f_I`` of its inhibitory weight shifts its threshold by
    ``compensation * (v_th_j - v_rest) * (f_I - f_E)``, clipped to ``±compensation_max_mv``
    (``edit.compensation_shift``; ``apply`` clips to the intrinsic bounds)."""
    c, snap, p = ev.c, ev.snap, ev.snap.params
    prune = ev.none()
    shift = torch.zeros(ev.n, dtype=snap.v_th.dtype, device=ev.dev)
    if c.pruning and c.prune_cap > 0 and snap.steps_done >= int(p["history"]):
        prune = _inactive_to_prune(ev)
    removed = torch.zeros(ev.n, dtype=torch.bool, device=ev.dev)
    removed[prune] = True
    if prune.numel() and c.compensation > 0:
        shift = edit.compensation_shift(ev.pre, ev.post, snap.w, snap.v_th, snap.n_exc, removed, c.compensation,
                                        c.compensation_max_mv, p["v_rest"])
    return _Pruning(prune, removed, shift)


def _inactive_to_prune(ev: _Event) -> torch.Tensor:
    """The neurons to prune (int64, ascending). Inactive: mean rate over the activity window,
    ``mean(activity_i) * 1000 / cycle_ms``, below ``prune_rate_hz``. Never a designated neuron,
    one with a persistent synapse (in or out), one with a synapse onto an output neuron (with
    ``protect_readout``), nor one younger than ``grace_cycles`` (0: the window). At most
    ``floor(prune_cap * factor * N)``, never leaving fewer than ``ceil(prune_floor *
    network.neurons)``; least active first (random among ties), split between E and I by
    ``_balanced_split``."""
    c, snap, p = ev.c, ev.snap, ev.snap.params
    n, n_exc = ev.n, snap.n_exc
    pre, post = ev.pre, ev.post
    rate = snap.activity.double().mean(1) * (1000.0 / p["cycle_ms"])
    cand = rate < c.prune_rate_hz
    cand[snap.designated] = False
    on_persistent = torch.zeros(n, dtype=torch.bool, device=ev.dev)
    on_persistent[pre[snap.persistent]] = True
    on_persistent[post[snap.persistent]] = True
    cand &= ~on_persistent
    if c.protect_readout:  # pruning a neuron would remove its readout synapses
        is_out, _ = _protection(snap, True)
        cand[pre[is_out[post]]] = False
    grace = c.grace_cycles or int(p["history"])
    young = snap.young_idx[(snap.steps_done - snap.young_born) < grace]
    cand[young] = False
    cap = _floor(c.prune_cap * ev.factor * n)
    cap = min(cap, n - int(math.ceil(c.prune_floor * p["target_neurons"])))
    idx = cand.nonzero().squeeze(1)
    if cap <= 0 or idx.numel() == 0:
        return ev.none()
    idx = idx[torch.randperm(idx.numel(), generator=ev.gen, device=ev.dev)]
    idx = idx[torch.argsort(rate[idx], stable=True)]  # least active first, random among ties
    exc_c, inh_c = idx[idx < n_exc], idx[idx >= n_exc]
    e, i = _balanced_split(n, n_exc, exc_c.numel(), inh_c.numel(), cap, p["exc_fraction"], c.ei_tolerance)
    return torch.sort(torch.cat([exc_c[:e], inh_c[:i]])).values


def _plan_rewiring(ev: _Event, removed: torch.Tensor) -> _Rewiring:
    """2. Rewiring of weak synapses (SPEC §6; seed 002 §5.E.4 "avoiding rewiring persistent
    synapses", cluster integrity). With the budget ``B = floor(rewire_cap * factor * nnz)`` and
    ``r = rewire_inh_per_100 / 100``: at most ``floor(B / (1 + r))`` synapses move
    (``_choose_rewires``), then ``min(floor(r * moved), B - moved)`` inhibitory synapses are added
    onto the new targets from nearby inhibitory neurons (``_inhibitory_partners``), weights
    ``U(0, init_weight_max)``, so moved + added <= B. Clusters below the integrity threshold
    (``_halted_clusters``) are left alone."""
    c, p = ev.c, ev.snap.params
    halted = _halted_clusters(ev)
    pos = new = inh_pre = inh_post = ev.none()
    inh_w = torch.zeros(0, device=ev.dev)
    taken = ev.keys
    if c.rewiring and c.rewire_cap > 0 and ev.nnz:
        budget = _floor(c.rewire_cap * ev.factor * ev.nnz)
        ratio = c.rewire_inh_per_100 / 100.0
        pos, new = _choose_rewires(ev, removed, halted, _floor(budget / (1.0 + ratio)))
        # the inhibitory count rounds down so rewired + added never exceeds the budget
        n_inh = min(_floor(ratio * pos.numel()), budget - pos.numel())
        taken = torch.cat([taken, ev.pre[pos] * ev.n + new])
        if n_inh > 0:
            inh_pre, inh_post = _inhibitory_partners(ev, new, n_inh, removed, taken)
            if inh_pre.numel():
                inh_w = torch.rand(inh_pre.numel(), generator=ev.gen, device=ev.dev) * p["init_weight_max"]
                taken = torch.cat([taken, inh_pre * ev.n + inh_post])
    return _Rewiring(pos, new, inh_pre, inh_post, inh_w, taken, float(halted.sum()))


def _halted_clusters(ev: _Event) -> torch.Tensor:
    """Bool per cluster id: intra-cluster density / network density below the threshold, i.e.
    ``intra_c / (s_c (s_c - 1)) / (nnz / (N (N - 1))) < integrity_threshold`` for a cluster of
    ``s_c >= 2`` neurons with ``intra_c`` synapses inside it (seed 002 §5.E.4: "halt rewiring
    within that cluster")."""
    snap, n = ev.snap, ev.n
    k = int(snap.cluster.max()) + 1 if n else 0
    sizes = torch.bincount(snap.cluster, minlength=k).double()
    same = snap.cluster[ev.pre] == snap.cluster[ev.post]
    intra = torch.bincount(snap.cluster[ev.pre][same], minlength=k).double()
    density = ev.nnz / max(n * (n - 1), 1)
    rel = intra / (sizes * (sizes - 1)).clamp(min=1.0) / max(density, 1e-12)
    return (rel < ev.c.integrity_threshold) & (sizes >= 2)


def _pair_counts(pk_keys: torch.Tensor, pair_count: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """Lifetime rewires of each pair key in ``query`` (``pk_keys`` sorted, aligned with ``pair_count``)."""
    if pk_keys.numel() == 0:
        return torch.zeros_like(query)
    pos = torch.searchsorted(pk_keys, query).clamp(max=pk_keys.numel() - 1)
    return torch.where(pk_keys[pos] == query, pair_count.long()[pos], torch.zeros_like(query))


def _choose_rewires(ev: _Event, removed: torch.Tensor, halted: torch.Tensor,
                    cap: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to ``cap`` (synapse position, new postsynaptic neuron), positions ascending. Candidates:
    non-persistent excitatory synapses with ``|w| < rewire_weak_threshold``, not of a pruned
    neuron, not onto an input or output neuron (``protect_readout``), outside halted clusters, of
    a pair rewired fewer than ``rewire_pair_cap`` times; weakest first (random among ties). Each
    moves to the first distance-biased proposal (``_first_new_partner``) that makes a new pair
    below the pair cap and is neither pruned nor designated."""
    c, snap = ev.c, ev.snap
    pre, post = ev.pre, ev.post
    n = ev.n
    if cap <= 0:
        return ev.none(), ev.none()
    n_exc_syn = int(snap.indptr[snap.n_exc])
    ok = torch.zeros(ev.nnz, dtype=torch.bool, device=ev.dev)
    ok[:n_exc_syn] = True
    ok &= ~snap.persistent & (snap.w.abs() < c.rewire_weak_threshold)
    ok &= ~removed[pre] & ~removed[post]
    _, is_des = _protection(snap, c.protect_readout)
    ok &= ~is_des[post]  # readout synapses stay where they are
    if halted.numel():
        ok &= ~halted[snap.cluster[pre]] & ~halted[snap.cluster[post]]
    cand = ok.nonzero().squeeze(1)
    pk_keys = snap.pair_pre.long() * n + snap.pair_post.long()  # sorted (maintained by the job)

    def below_cap(keys: torch.Tensor) -> torch.Tensor:
        return _pair_counts(pk_keys, snap.pair_count, keys) < c.rewire_pair_cap

    allowed = below_cap if pk_keys.numel() else None  # no counters yet: every pair is below the cap
    if cand.numel() and allowed is not None:
        cand = cand[allowed(ev.keys[cand])]
    if cand.numel() == 0:
        return ev.none(), ev.none()
    cand = cand[torch.randperm(cand.numel(), generator=ev.gen, device=ev.dev)]
    cand = cand[torch.argsort(snap.w[cand].abs(), stable=True)]
    cand = cand[: 2 * cap]  # a few spares for synapses whose proposals all fail
    chosen = _first_new_partner(ev, pre[cand], ~removed & ~is_des, ev.keys, sources=False, allowed=allowed)
    done = (chosen >= 0).nonzero().squeeze(1)[:cap]
    order = torch.argsort(cand[done])
    return cand[done][order], chosen[done][order]


def _inhibitory_partners(ev: _Event, targets: torch.Tensor, count: int, removed: torch.Tensor,
                         taken: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` new inhibitory synapses onto neurons among ``targets``, each from an
    inhibitory neuron drawn distance-biased around the target."""
    n = ev.n
    inh = torch.arange(n, device=ev.dev) >= ev.snap.n_exc
    inh &= ~removed
    if count <= 0 or targets.numel() == 0 or not bool(inh.any()):
        return ev.none(), ev.none()
    pick = torch.randperm(targets.numel(), generator=ev.gen, device=ev.dev)
    posts = targets[pick[torch.arange(2 * count, device=ev.dev) % pick.numel()]]  # spares
    return _new_pairs(ev, posts, count, inh, taken, sources=True)


def _plan_sparsity(ev: _Event, pruning: _Pruning, rewiring: _Rewiring) -> _Sparsity:
    """3. Sparsity (SPEC §6 "keep overall sparsity near its target"; seed 002 §5.C.3 "Connection
    Density Control: maintain target sparsity (~95%)"). After pruning (``N' = N - pruned``, their
    synapses gone) and rewiring (its inhibitory additions) there will be ``nnz'`` synapses; the
    target is ``T = target_density * N' (N' - 1)`` and the cap ``floor(density_cap * nnz)``. With
    ``protect_readout`` both count the recurrent synapses only, onto the ``H'`` hidden neurons:
    ``T = recurrent_density * H' (N' - 1)``, ``nnz'`` without the synapses onto designated neurons
    (the readout and the feature pathway are fixed in number: counted, they crowd out the
    recurrent synapses as N shrinks; ``build.recurrent_density``). Above ``T (1 + density_tolerance)``: the
    ``min(nnz' - T, cap)`` weakest synapses go (random among ties), never a persistent, rewired or
    readout one, nor one of a pruned neuron. Below ``T (1 - density_tolerance)``:
    ``min(T - nnz', cap)`` distance-biased synapses are added (``_density_additions``), weights
    ``U(0, init_weight_max)``."""
    c, snap, p = ev.c, ev.snap, ev.snap.params
    pre, post, removed = ev.pre, ev.post, pruning.removed
    none = ev.none()
    n_after = ev.n - int(pruning.prune.numel())
    lost = int((removed[pre] | removed[post]).sum()) if pruning.prune.numel() else 0
    is_des = _protection(snap, c.protect_readout)[1]
    onto_designated = is_des[post] & ~removed[pre]  # designated neurons are never pruned
    nnz_after = ev.nnz - lost + int(rewiring.inh_pre.numel()) - int(onto_designated.sum())
    hidden_after = int((~is_des & ~removed).sum())  # n_after without the readout's protection
    target = p["target_density"] * hidden_after * (n_after - 1)
    cap = _floor(c.density_cap * ev.nnz)
    if c.density_cap > 0 and nnz_after > target * (1 + c.density_tolerance):
        k = min(int(nnz_after - target), cap)
        ok = ~snap.persistent & ~removed[pre] & ~removed[post]
        ok &= ~is_des[post]  # never a readout or feature-pathway synapse
        ok[rewiring.pos] = False
        cand = ok.nonzero().squeeze(1)
        cand = cand[torch.randperm(cand.numel(), generator=ev.gen, device=ev.dev)]
        cand = cand[torch.argsort(snap.w[cand].abs(), stable=True)][:k]
        return _Sparsity(pre[cand], post[cand], none, none, torch.zeros(0, device=ev.dev))
    if c.density_cap > 0 and nnz_after < target * (1 - c.density_tolerance):
        k = min(int(target - nnz_after), cap)
        add_pre, add_post = _density_additions(ev, k, removed, rewiring.taken)
        add_w = torch.rand(add_pre.numel(), generator=ev.gen, device=ev.dev) * p["init_weight_max"]
        return _Sparsity(none, none, add_pre, add_post, add_w)
    return _Sparsity(none, none, none, none, torch.zeros(0, device=ev.dev))


def _density_additions(ev: _Event, count: int, removed: torch.Tensor,
                       taken: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` new distance-biased synapses, 100 E : ``rewire_inh_per_100`` I."""
    c, snap = ev.c, ev.snap
    n = ev.n
    alive = ~removed
    targets = alive & ~_protection(snap, c.protect_readout)[1]  # nothing new onto input/output neurons
    idx = torch.arange(n, device=ev.dev)
    n_inh = int(round(count * c.rewire_inh_per_100 / (100.0 + c.rewire_inh_per_100)))
    out_p: list[torch.Tensor] = []
    out_q: list[torch.Tensor] = []
    for kind, k in ((idx < snap.n_exc, count - n_inh), (idx >= snap.n_exc, n_inh)):
        pool = (kind & alive).nonzero().squeeze(1)
        if k <= 0 or pool.numel() == 0:
            continue
        pres = pool[torch.randint(0, pool.numel(), (2 * k,), generator=ev.gen, device=ev.dev)]
        a, b = _new_pairs(ev, pres, k, targets,
                          torch.cat([taken] + [x * n + y for x, y in zip(out_p, out_q, strict=True)]), sources=False)
        out_p.append(a)
        out_q.append(b)
    if not out_p:
        return ev.none(), ev.none()
    return torch.cat(out_p), torch.cat(out_q)


def _new_pairs(ev: _Event, anchors: torch.Tensor, count: int, pool: torch.Tensor, taken: torch.Tensor,
               sources: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(pre, post) of the first ``count`` anchors that found a partner (``_first_new_partner``)."""
    chosen = _first_new_partner(ev, anchors, pool, taken, sources=sources)
    done = (chosen >= 0).nonzero().squeeze(1)[:count]
    a, q = anchors[done], chosen[done]
    return (q, a) if sources else (a, q)


def _first_new_partner(ev: _Event, anchors: torch.Tensor, pool: torch.Tensor, taken: torch.Tensor, *, sources: bool,
                       allowed: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """For each anchor neuron propose ``rewire_tries`` partners (distance-biased, from ``pool``,
    never the anchor: ``edit.propose_near``) and keep the first proposal making a new (pre, post)
    pair: not in ``taken`` (keys), not chosen by another anchor, and ``allowed`` (keys -> bool)
    if given. ``sources``: the partner is the presynaptic side. Returns int64 [M]: each anchor's
    partner, -1 where every proposal failed."""
    c, snap, p = ev.c, ev.snap, ev.snap.params
    n = ev.n
    prop = edit.propose_near(snap.grid_xy, snap.grid_xy[anchors], c.rewire_tries, p["sigma"], ev.gen,
                             candidates=pool, exclude=anchors, radius=p["radius"])
    taken = torch.sort(taken).values
    new = ev.none()  # pairs chosen so far (sorted): checked apart from ``taken``, which is larger
    chosen = torch.full((anchors.numel(),), -1, dtype=torch.int64, device=ev.dev)
    for t in range(prop.shape[1]):
        todo = (chosen < 0).nonzero().squeeze(1)
        if todo.numel() == 0:
            break
        q = prop[todo, t]
        partner = q.clamp(min=0)  # -1 (no usable proposal) is rejected below; keep keys non-negative
        k = (partner * n + anchors[todo]) if sources else (anchors[todo] * n + partner)
        valid = (q >= 0) & ~edit.isin_sorted(taken, k) & ~edit.isin_sorted(new, k)
        if allowed is not None:
            valid &= allowed(k)
        valid &= edit.first_occurrence(torch.where(valid, k, -1 - torch.arange(k.numel(), device=ev.dev)))
        chosen[todo[valid]] = q[valid]
        new = torch.sort(torch.cat([new, k[valid]])).values
    return chosen


def _plan_growth(ev: _Event, prune: torch.Tensor) -> _Growth:
    """4. Growth (SPEC §6; seed 002 §5.B.2 "if avg_reward[c] < 0.5 over 1000 steps" grow cluster
    c, §5.E.4 global neuron cap 1.5x the target size, §5.C.3 E/I ratio ~4:1). The clusters are
    ``_low_reward_clusters``, lowest reward first, sharing round-robin the budget
    ``min(floor(growth_cap * factor * N), floor(neuron_cap * network.neurons) - N')``, ``N' = N -
    pruned``. Of the new neurons ``clamp(round(exc_fraction * (N' + budget)) - E', 0, budget)`` are
    excitatory (``E'`` the excitatory neurons left after pruning), the rest inhibitory; each gets
    ``fan = round(target_density * (N' + budget - 1))`` out- and in-synapses. Nothing is drawn
    here: ``apply`` draws the new neurons (``edit.add_neurons``)."""
    c, snap, p = ev.c, ev.snap, ev.snap.params
    n = ev.n
    n_after = n - int(prune.numel())
    if not (c.growth and c.growth_cap > 0):
        return _Growth(0, 0, ev.none(), 0, None)
    room = _floor(c.neuron_cap * p["target_neurons"]) - n_after
    budget = min(_floor(c.growth_cap * ev.factor * n), room)
    low = _low_reward_clusters(c, snap)
    if budget <= 0 or low.numel() == 0:
        return _Growth(0, 0, ev.none(), 0, float(low.numel()))
    e_after = snap.n_exc - int((prune < snap.n_exc).sum())
    grow_exc = min(max(int(round(p["exc_fraction"] * (n_after + budget))) - e_after, 0), budget)
    cluster = low[torch.arange(budget, device=ev.dev) % low.numel()]
    fan = int(round(p["target_density"] * (n_after + budget - 1)))
    return _Growth(grow_exc, budget - grow_exc, cluster, fan, float(low.numel()))


def _low_reward_clusters(c: StructuralConfig, snap: StructuralSnapshot) -> torch.Tensor:
    """Cluster ids with avg_reward and the mean of their last ``growth_window`` reward samples
    below the threshold (and at least ``growth_min_samples`` samples), lowest first."""
    dev = snap.w.device
    k = snap.avg_reward.numel()
    hist = snap.reward_history
    size = hist.shape[1]
    count = snap.reward_count.long()
    win = torch.clamp(torch.minimum(count, torch.full_like(count, min(c.growth_window, size))), min=0)
    j = torch.arange(size, device=dev)
    # slot of the j-th most recent sample: (count - 1 - j) mod size
    slot = (count[:, None] - 1 - j[None, :]) % size
    vals = hist.double().gather(1, slot)
    mask = j[None, :] < win[:, None]
    mean = (vals * mask).sum(1) / win.clamp(min=1)
    thr = c.growth_reward_threshold
    relative = low_reward_clusters(mean, win, 1, thr, c.growth_reward_margin)  # mean < thr and < overall - margin
    ok = (count >= c.growth_min_samples) & (snap.avg_reward < thr) & relative & (win > 0)
    present = torch.bincount(snap.cluster, minlength=k)[:k] > 0  # a cluster with no neurons cannot grow
    ok &= present
    ids = ok.nonzero().squeeze(1)
    return ids[torch.argsort(mean[ids], stable=True)]
