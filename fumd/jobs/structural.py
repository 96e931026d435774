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
   they lose (``edit.pruning_compensation``).
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

``compute`` (pure, may run off the loop) chooses everything on a snapshot; ``apply`` performs it
in the order rewire -> add -> remove synapses -> compensate -> prune -> grow, each edit through
``fumd.network.edit`` (arrays aligned, CSR rebuilt, ``structure_version`` bumped).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..network.build import initial_density
from ..network import edit
from ..network.state import NetworkState
from .base import PrivateStream
from .config import StructuralConfig  # noqa: F401 - the [jobs.structural] section, defined in config.py (light to import)
from .decay import low_reward_clusters

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


class StructuralJob:
    """``slow_source`` (optional): called at every snapshot for the slow flag, e.g.
    ``lambda: criticality_job.slow_structural``; otherwise ``set_slow`` sets it."""

    name = NAME

    def __init__(self, config: StructuralConfig | None = None, slow_source: Callable[[], bool] | None = None,
                 seed: int = 0):
        self.config = config or StructuralConfig()
        self.config.validate()
        self.stream = PrivateStream(seed, NAME)  # event seeds: the engine's generator is never touched
        self.slow_source = slow_source
        self.slow = False
        self._empty()

    def _empty(self) -> None:
        i32 = dict(dtype=torch.int32)
        self.pair_pre = torch.zeros(0, **i32)  # sorted by (pre, post)
        self.pair_post = torch.zeros(0, **i32)
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
    def snapshot(self, engine: Any) -> StructuralSnapshot:
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
            "target_density": float(self.config.target_density or initial_density(cfg)),
        }
        dev = st.device
        return StructuralSnapshot(
            structure_version=st.structure_version, seed=seed, steps_done=int(engine.steps_done), n_exc=st.n_exc,
            indptr=st.indptr.clone(), col=st.col.clone(), w=st.w.clone(), persistent=st.persistent.clone(),
            v_th=st.v_th.clone(), grid_xy=st.grid_xy.clone(), cluster=st.cluster.clone(), activity=st.activity.clone(),
            designated=torch.cat([st.input_idx.reshape(-1), st.output_idx.reshape(-1)]).long().clone(),
            outputs=st.output_idx.reshape(-1).long().clone(),
            avg_reward=sie.avg_reward.clone(), reward_history=sie.reward_history.clone(),
            reward_count=sie.reward_count.clone(),
            pair_pre=self.pair_pre.to(dev), pair_post=self.pair_post.to(dev), pair_count=self.pair_count.to(dev),
            young_idx=self.young_idx.to(dev), young_born=self.young_born.to(dev), slow=self.slow, params=params,
        )

    # -- compute (pure) ---------------------------------------------------------------------
    def compute(self, snap: StructuralSnapshot) -> StructuralPlan | None:
        c = self.config
        p = snap.params
        dev = snap.w.device
        gen = torch.Generator(device=dev)
        gen.manual_seed(snap.seed)
        n, nnz = snap.grid_xy.shape[0], snap.col.shape[0]
        n_exc = snap.n_exc
        factor = c.slow_factor if snap.slow else 1.0
        counts = snap.indptr[1:] - snap.indptr[:-1]
        pre = torch.repeat_interleave(torch.arange(n, device=dev), counts)
        post = snap.col.long()
        keys = pre * n + post  # ascending (sorted CSR)
        empty_l = torch.zeros(0, dtype=torch.int64, device=dev)
        stats: dict[str, float] = {}

        # 1. pruning ------------------------------------------------------------------------
        prune = empty_l
        shift = torch.zeros(0, dtype=snap.v_th.dtype, device=dev)
        history = int(p["history"])
        if c.pruning and c.prune_cap > 0 and snap.steps_done >= history:
            prune = self._choose_prune(snap, pre, post, gen, factor)
        remove_mask = torch.zeros(n, dtype=torch.bool, device=dev)
        remove_mask[prune] = True
        if prune.numel() and c.compensation > 0:
            tmp = _shadow_state(snap)
            shift = edit.pruning_compensation(tmp, remove_mask, c.compensation, c.compensation_max_mv, p["v_rest"])
        lost_synapses = int((remove_mask[pre] | remove_mask[post]).sum()) if prune.numel() else 0

        # 2. rewiring -----------------------------------------------------------------------
        pk_keys = snap.pair_pre.long() * n + snap.pair_post.long()  # sorted (maintained by the job)
        taken = [keys]  # every (pre, post) that exists or is being created this event
        rw_pos = rw_new = empty_l
        add_pre, add_post, add_w = [empty_l], [empty_l], [torch.zeros(0, device=dev)]
        inh_added = 0
        halted = self._halted_clusters(snap, pre, post)
        stats["halted_clusters"] = float(halted.sum())
        if c.rewiring and c.rewire_cap > 0 and nnz:
            budget = _floor(c.rewire_cap * factor * nnz)
            ratio = c.rewire_inh_per_100 / 100.0
            cap_exc = _floor(budget / (1.0 + ratio))
            # the inhibitory count rounds down so rewired + added never exceeds the budget
            rw_pos, rw_new = self._choose_rewires(snap, pre, post, keys, pk_keys, remove_mask, halted, cap_exc, gen)
            n_inh = min(_floor(ratio * rw_pos.numel()), budget - rw_pos.numel())
            new_keys = pre[rw_pos] * n + rw_new
            taken.append(new_keys)
            if n_inh > 0:
                ip, iq = self._inhibitory_partners(snap, rw_new, n_inh, remove_mask, torch.cat(taken), gen)
                if ip.numel():
                    add_pre.append(ip)
                    add_post.append(iq)
                    add_w.append(torch.rand(ip.numel(), generator=gen, device=dev) * p["init_weight_max"])
                    taken.append(ip * n + iq)
                    inh_added = int(ip.numel())

        # 3. sparsity -----------------------------------------------------------------------
        rm_pre = rm_post = empty_l
        n_after = n - int(prune.numel())
        nnz_after = nnz - lost_synapses + inh_added
        target = p["target_density"] * n_after * (n_after - 1)
        dens_cap = _floor(c.density_cap * nnz)
        if c.density_cap > 0 and nnz_after > target * (1 + c.density_tolerance):
            k = min(int(nnz_after - target), dens_cap)
            ok = ~snap.persistent & ~remove_mask[pre] & ~remove_mask[post]
            ok &= ~_protection(snap, c.protect_readout)[0][post]  # never a readout synapse
            ok[rw_pos] = False
            cand = ok.nonzero().squeeze(1)
            cand = cand[torch.randperm(cand.numel(), generator=gen, device=dev)]
            cand = cand[torch.argsort(snap.w[cand].abs(), stable=True)][:k]
            rm_pre, rm_post = pre[cand], post[cand]
        elif c.density_cap > 0 and nnz_after < target * (1 - c.density_tolerance):
            k = min(int(target - nnz_after), dens_cap)
            dp, dq = self._density_additions(snap, k, remove_mask, torch.cat(taken), gen)
            add_pre.append(dp)
            add_post.append(dq)
            add_w.append(torch.rand(dp.numel(), generator=gen, device=dev) * p["init_weight_max"])

        # 4. growth -------------------------------------------------------------------------
        grow_cluster = empty_l
        grow_exc = grow_inh = 0
        fan = 0
        if c.growth and c.growth_cap > 0:
            room = _floor(c.neuron_cap * p["target_neurons"]) - n_after
            budget = min(_floor(c.growth_cap * factor * n), room)
            low = self._low_reward_clusters(snap)
            stats["growth_clusters"] = float(low.numel())
            if budget > 0 and low.numel():
                e_after = n_exc - int((prune < n_exc).sum())
                grow_exc = min(max(int(round(p["exc_fraction"] * (n_after + budget))) - e_after, 0), budget)
                grow_inh = budget - grow_exc
                grow_cluster = low[torch.arange(budget, device=dev) % low.numel()]
                fan = int(round(p["target_density"] * (n_after + budget - 1)))

        if shift.numel() == 0:
            shift = torch.zeros(n, dtype=snap.v_th.dtype, device=dev)
        stats["compensated"] = float((shift != 0).sum())
        return StructuralPlan(
            structure_version=snap.structure_version, seed=snap.seed, prune=prune, v_th_shift=shift,
            rewire_pos=rw_pos, rewire_pre=pre[rw_pos], rewire_old=post[rw_pos], rewire_new=rw_new,
            add_pre=torch.cat(add_pre), add_post=torch.cat(add_post), add_w=torch.cat(add_w), inhibitory_added=inh_added,
            remove_pre=rm_pre, remove_post=rm_post, grow_exc=grow_exc, grow_inh=grow_inh, grow_cluster=grow_cluster,
            grow_fan=fan, stats=stats,
        )

    def _choose_prune(self, snap: StructuralSnapshot, pre, post, gen, factor: float) -> torch.Tensor:
        c, p = self.config, snap.params
        n, n_exc = snap.grid_xy.shape[0], snap.n_exc
        dev = snap.w.device
        rate = snap.activity.double().mean(1) * (1000.0 / p["cycle_ms"])
        cand = rate < c.prune_rate_hz
        cand[snap.designated] = False
        on_persistent = torch.zeros(n, dtype=torch.bool, device=dev)
        on_persistent[pre[snap.persistent]] = True
        on_persistent[post[snap.persistent]] = True
        cand &= ~on_persistent
        if c.protect_readout:  # pruning a neuron would remove its readout synapses
            is_out, _ = _protection(snap, True)
            cand[pre[is_out[post]]] = False
        grace = c.grace_cycles or int(p["history"])
        young = snap.young_idx[(snap.steps_done - snap.young_born) < grace]
        cand[young] = False
        cap = _floor(c.prune_cap * factor * n)
        cap = min(cap, n - int(math.ceil(c.prune_floor * p["target_neurons"])))
        idx = cand.nonzero().squeeze(1)
        if cap <= 0 or idx.numel() == 0:
            return torch.zeros(0, dtype=torch.int64, device=dev)
        idx = idx[torch.randperm(idx.numel(), generator=gen, device=dev)]
        idx = idx[torch.argsort(rate[idx], stable=True)]  # least active first, random among ties
        exc_c, inh_c = idx[idx < n_exc], idx[idx >= n_exc]
        e, i = _balanced_split(n, n_exc, exc_c.numel(), inh_c.numel(), cap, p["exc_fraction"], c.ei_tolerance)
        return torch.sort(torch.cat([exc_c[:e], inh_c[:i]])).values

    def _halted_clusters(self, snap: StructuralSnapshot, pre, post) -> torch.Tensor:
        """Bool per cluster id: intra-cluster density / network density below the threshold."""
        n = snap.grid_xy.shape[0]
        k = int(snap.cluster.max()) + 1 if n else 0
        sizes = torch.bincount(snap.cluster, minlength=k).double()
        same = snap.cluster[pre] == snap.cluster[post]
        intra = torch.bincount(snap.cluster[pre][same], minlength=k).double()
        density = snap.col.shape[0] / max(n * (n - 1), 1)
        rel = intra / (sizes * (sizes - 1)).clamp(min=1.0) / max(density, 1e-12)
        return (rel < self.config.integrity_threshold) & (sizes >= 2)

    def _pair_counts(self, snap: StructuralSnapshot, pk_keys: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        if pk_keys.numel() == 0:
            return torch.zeros_like(query)
        pos = torch.searchsorted(pk_keys, query).clamp(max=pk_keys.numel() - 1)
        return torch.where(pk_keys[pos] == query, snap.pair_count.long()[pos], torch.zeros_like(query))

    def _choose_rewires(self, snap, pre, post, keys, pk_keys, remove_mask, halted, cap, gen):
        c, p = self.config, snap.params
        n = snap.grid_xy.shape[0]
        dev = snap.w.device
        empty = torch.zeros(0, dtype=torch.int64, device=dev)
        if cap <= 0:
            return empty, empty
        n_exc_syn = int(snap.indptr[snap.n_exc])
        ok = torch.zeros(snap.col.shape[0], dtype=torch.bool, device=dev)
        ok[:n_exc_syn] = True
        ok &= ~snap.persistent & (snap.w.abs() < c.rewire_weak_threshold)
        ok &= ~remove_mask[pre] & ~remove_mask[post]
        _, is_des = _protection(snap, c.protect_readout)
        ok &= ~is_des[post]  # readout synapses stay where they are
        if halted.numel():
            ok &= ~halted[snap.cluster[pre]] & ~halted[snap.cluster[post]]
        cand = ok.nonzero().squeeze(1)
        if cand.numel() and pk_keys.numel():
            cand = cand[self._pair_counts(snap, pk_keys, keys[cand]) < c.rewire_pair_cap]
        if cand.numel() == 0:
            return empty, empty
        cand = cand[torch.randperm(cand.numel(), generator=gen, device=dev)]
        cand = cand[torch.argsort(snap.w[cand].abs(), stable=True)]
        cand = cand[: 2 * cap]  # a few spares for synapses whose proposals all fail
        src = pre[cand]
        proposals = edit.propose_near(snap.grid_xy, snap.grid_xy[src], c.rewire_tries, p["sigma"], gen,
                                      candidates=~remove_mask & ~is_des, exclude=src, radius=p["radius"])
        existing = keys
        chosen = torch.full((cand.numel(),), -1, dtype=torch.int64, device=dev)
        taken_new = torch.zeros(0, dtype=torch.int64, device=dev)
        for t in range(proposals.shape[1]):
            todo = (chosen < 0).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            q = proposals[todo, t]
            k = src[todo] * n + q.clamp(min=0)
            valid = (q >= 0) & ~edit._isin_sorted(existing, k) & ~edit._isin_sorted(taken_new, k)
            if pk_keys.numel():
                valid &= self._pair_counts(snap, pk_keys, k) < c.rewire_pair_cap
            valid &= edit.first_occurrence(torch.where(valid, k, -1 - torch.arange(k.numel(), device=dev)))
            chosen[todo[valid]] = q[valid]
            taken_new = torch.sort(torch.cat([taken_new, k[valid]])).values
        done = (chosen >= 0).nonzero().squeeze(1)[:cap]
        order = torch.argsort(cand[done])
        return cand[done][order], chosen[done][order]

    def _inhibitory_partners(self, snap, targets, count, remove_mask, taken_keys, gen):
        """``count`` new inhibitory synapses onto neurons among ``targets``, each from an
        inhibitory neuron drawn distance-biased around the target."""
        c, p = self.config, snap.params
        n = snap.grid_xy.shape[0]
        dev = snap.w.device
        inh = torch.arange(n, device=dev) >= snap.n_exc
        inh &= ~remove_mask
        if count <= 0 or targets.numel() == 0 or not bool(inh.any()):
            return torch.zeros(0, dtype=torch.int64, device=dev), torch.zeros(0, dtype=torch.int64, device=dev)
        pick = torch.randperm(targets.numel(), generator=gen, device=dev)
        posts = targets[pick[torch.arange(2 * count, device=dev) % pick.numel()]]  # spares
        return self._first_valid(snap, posts, count, inh, taken_keys, gen, sources=True)

    def _density_additions(self, snap, count, remove_mask, taken_keys, gen):
        """``count`` new distance-biased synapses, 100 E : ``rewire_inh_per_100`` I."""
        c = self.config
        n = snap.grid_xy.shape[0]
        dev = snap.w.device
        alive = ~remove_mask
        targets = alive & ~_protection(snap, c.protect_readout)[1]  # nothing new onto input/output neurons
        idx = torch.arange(n, device=dev)
        n_inh = int(round(count * c.rewire_inh_per_100 / (100.0 + c.rewire_inh_per_100)))
        out_p, out_q = [], []
        for kind, k in ((idx < snap.n_exc, count - n_inh), (idx >= snap.n_exc, n_inh)):
            pool = (kind & alive).nonzero().squeeze(1)
            if k <= 0 or pool.numel() == 0:
                continue
            pres = pool[torch.randint(0, pool.numel(), (2 * k,), generator=gen, device=dev)]
            a, b = self._first_valid(snap, pres, k, targets, torch.cat([taken_keys] + [x * n + y for x, y in zip(out_p, out_q)]), gen, sources=False)
            out_p.append(a)
            out_q.append(b)
        if not out_p:
            return torch.zeros(0, dtype=torch.int64, device=dev), torch.zeros(0, dtype=torch.int64, device=dev)
        return torch.cat(out_p), torch.cat(out_q)

    def _first_valid(self, snap, anchors, count, pool_mask, taken_keys, gen, sources: bool):
        """For each anchor neuron propose partners (distance-biased, from ``pool_mask``); keep the
        first proposal making a new (pre, post) pair; stop at ``count`` pairs. ``sources``: the
        partner is the presynaptic side."""
        c, p = self.config, snap.params
        n = snap.grid_xy.shape[0]
        dev = snap.w.device
        prop = edit.propose_near(snap.grid_xy, snap.grid_xy[anchors], c.rewire_tries, p["sigma"], gen,
                                 candidates=pool_mask, exclude=anchors, radius=p["radius"])
        taken = torch.sort(taken_keys).values
        chosen = torch.full((anchors.numel(),), -1, dtype=torch.int64, device=dev)
        for t in range(prop.shape[1]):
            todo = (chosen < 0).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            q = prop[todo, t]
            k = (q * n + anchors[todo]) if sources else (anchors[todo] * n + q)
            valid = (q >= 0) & ~edit._isin_sorted(taken, k)
            valid &= edit.first_occurrence(torch.where(valid, k, -1 - torch.arange(k.numel(), device=dev)))
            chosen[todo[valid]] = q[valid]
            taken = torch.sort(torch.cat([taken, k[valid]])).values
        done = (chosen >= 0).nonzero().squeeze(1)[:count]
        a, q = anchors[done], chosen[done]
        return (q, a) if sources else (a, q)

    def _low_reward_clusters(self, snap: StructuralSnapshot) -> torch.Tensor:
        """Cluster ids with avg_reward and the mean of their last ``growth_window`` reward samples
        below the threshold (and at least ``growth_min_samples`` samples), lowest first."""
        c = self.config
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

    # -- apply (loop thread) ----------------------------------------------------------------
    def apply(self, engine: Any, plan: StructuralPlan | None) -> dict[str, float]:
        st: NetworkState = engine.state
        if plan is None:
            return {}
        if st.structure_version != plan.structure_version:
            return {"stale": 1.0}
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
            st.v_th = (st.v_th + plan.v_th_shift.to(st.v_th.dtype)).clamp(cfg.intrinsic.v_th_min, cfg.intrinsic.v_th_max) \
                if bool((plan.v_th_shift != 0).any()) else st.v_th
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
            self.young_born = torch.cat([self.young_born, torch.full((grown.new_index.numel(),), int(engine.steps_done), dtype=torch.int64)])
            out["neurons_added"] = float(grown.new_index.numel())
            out["neurons_added_exc"], out["neurons_added_inh"] = float(plan.grow_exc), float(plan.grow_inh)
            out["synapses_added"] += grown.synapses_added
        grace = self.config.grace_cycles or int(st.activity.shape[1])
        keep = (int(engine.steps_done) - self.young_born) < grace
        self.young_idx, self.young_born = self.young_idx[keep], self.young_born[keep]
        if any(v for k, v in out.items()):
            engine.last_spikes = None  # its raster / event positions describe the old structure
        self.events += 1
        for key in self.totals:
            self.totals[key] += int(out[key])
        out.update({k: float(v) for k, v in plan.stats.items()})
        out.update({"sparsity": st.sparsity(), "neurons": float(st.n), "synapses": float(st.nnz),
                    "synapse_delta": float(st.nnz - syn_before), "slow": float(self.slow),
                    "excitatory_fraction": st.n_exc / float(st.n)})
        return out

    @staticmethod
    def _drop_onto_designated(st: NetworkState, sources: torch.Tensor) -> int:
        """Remove the synapses from ``sources`` onto input or output neurons (``edit.add_neurons``
        draws targets among all neurons); returns how many went."""
        designated = torch.zeros(st.n, dtype=torch.bool, device=st.device)
        designated[st.input_idx.reshape(-1).long()] = True
        designated[st.output_idx.reshape(-1).long()] = True
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

    # -- persistence --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "pair_pre": self.pair_pre, "pair_post": self.pair_post, "pair_count": self.pair_count,
            "young_idx": self.young_idx, "young_born": self.young_born, "slow": self.slow, "events": self.events,
            "rng": self.stream.get_state(),
        }
        out.update({f"total_{k}": v for k, v in self.totals.items()})
        return out

    def load_state_dict(self, data: dict[str, Any]) -> None:
        self._empty()
        self.slow = bool(data.get("slow", False))
        if "pair_pre" in data:
            self.pair_pre = torch.as_tensor(data["pair_pre"]).cpu().to(torch.int32)
            self.pair_post = torch.as_tensor(data["pair_post"]).cpu().to(torch.int32)
            self.pair_count = torch.as_tensor(data["pair_count"]).cpu().to(torch.uint8)
        if "young_idx" in data:
            self.young_idx = torch.as_tensor(data["young_idx"]).cpu().to(torch.int64)
            self.young_born = torch.as_tensor(data["young_born"]).cpu().to(torch.int64)
        self.events = int(data.get("events", 0))
        if "rng" in data:
            self.stream.set_state(data["rng"])
        else:
            self.stream.reset()
        for key in self.totals:
            self.totals[key] = int(data.get(f"total_{key}", 0))


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


def _balanced_split(n: int, n_exc: int, cand_e: int, cand_i: int, cap: int, target: float, tol: float) -> tuple[int, int]:
    """(e, i) neurons to remove: the most removals (<= cap) that keep the excitatory fraction
    within ``tol`` of ``target``, or no further from it than it is now; ties: closest to target."""
    allowed = max(tol, abs(n_exc / n - target)) + 1e-12
    hi, lo = target + allowed, target - allowed
    e = torch.arange(0, min(cand_e, cap) + 1, dtype=torch.float64)
    rest_e = n_exc - e
    # (n_exc - e) / (n - e - i) grows with i: it stays <= hi while i <= n - e - rest_e / hi ...
    i_max = torch.minimum(torch.minimum(torch.full_like(e, float(cand_i)), cap - e), torch.floor(n - e - rest_e / hi + 1e-9))
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


def _shadow_state(snap: StructuralSnapshot) -> NetworkState:
    """A NetworkState view of the snapshot for the edit helpers that read one (no copies)."""
    n = snap.grid_xy.shape[0]
    z = torch.zeros(n, device=snap.w.device)
    return NetworkState(
        n_exc=snap.n_exc, v=z, tau_mem=z, v_th=snap.v_th, theta=z, rate_ema=z, last_spikes=z.bool(), grid_xy=snap.grid_xy,
        cluster=snap.cluster, activity=snap.activity, indptr=snap.indptr, col=snap.col, w=snap.w, e=snap.w,
        persistent=snap.persistent, input_idx=snap.designated, output_idx=snap.designated, global_inhibition=1.0,
        n_clusters=int(snap.cluster.max()) + 1 if n else 0,
    )
