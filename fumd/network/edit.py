"""Editing the network's structure in place, keeping every aligned array aligned (SPEC §6).

All per-synapse arrays (``NetworkState.SYNAPSE_ARRAYS``) are indexed together and the CSR row
pointer is rebuilt; every edit bumps ``structure_version`` so that plans computed from an older
snapshot are recognised as stale. Invariants kept by every function here (and checked by
``check_invariants``):

* excitatory neurons are ``[0, n_exc)``, inhibitory ``[n_exc, N)``; a new excitatory neuron is
  *inserted* at ``n_exc`` (the inhibitory block shifts up by one), a new inhibitory neuron is
  appended. ``col``, ``input_idx``, ``output_idx`` and ``feature_idx`` are renumbered accordingly; functions that
  renumber return ``old_to_new`` (int64 [N_old], -1 for a removed neuron) so that callers holding
  neuron indices (the structural job's per-pair rewire counters) can follow;
* CSR rows are sorted by postsynaptic index, no duplicate (pre, post) pair, no autapse; so the
  excitatory synapses stay the block ``[0, n_exc_synapses)``;
* Dale's law: a synapse carries the sign of its presynaptic neuron (excitatory ``w >= 0``,
  inhibitory ``w <= 0``), ``|w| <= 1``;
* a new or moved synapse starts with a zero eligibility trace and is not persistent.

Arrays added to ``NEURON_ARRAYS`` / ``SYNAPSE_ARRAYS`` later are kept aligned too: new rows
are zero-filled unless this module knows better.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import torch

from ..config import EngineConfig
from .build import LocalGrid, distance_weights, grid_side
from .state import NetworkState

# sample_near and propose_near use the exact O(M x N) sampler when M x N is at most this; otherwise
# the local grid sampler of build.py (module attribute so tests can force either path)
DENSE_SAMPLING_LIMIT = 4_000_000


# -- helpers ---------------------------------------------------------------------------------
def synapse_keys(state: NetworkState) -> torch.Tensor:
    """``pre * N + post`` of every synapse (int64, ascending when the CSR is sorted)."""
    return state.pre_index() * state.n + state.col.long()


def is_inhibitory(state: NetworkState, neurons: torch.Tensor) -> torch.Tensor:
    return neurons.long() >= state.n_exc


def dale_sign(state: NetworkState, pre: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``|w|`` for excitatory presynaptic neurons, ``-|w|`` for inhibitory, clamped to [-1, 1]."""
    mag = w.abs().clamp(max=1.0).to(torch.float32)
    return torch.where(is_inhibitory(state, pre), -mag, mag)


def _fresh_like(template: torch.Tensor, rows: int) -> torch.Tensor:
    return torch.zeros((rows,) + tuple(template.shape[1:]), dtype=template.dtype, device=template.device)


def _write_synapses(state: NetworkState, pre: torch.Tensor, post: torch.Tensor, arrays: dict[str, torch.Tensor],
                    n: int, presorted: bool = False) -> None:
    """Install synapses given in any order: sort by (pre, post), set col/indptr and every
    other synapse array (``arrays`` maps each name in SYNAPSE_ARRAYS except col to its values)."""
    pre, post = pre.long(), post.long()
    if not presorted:
        order = torch.argsort(pre * n + post, stable=True)
        pre, post = pre[order], post[order]
        arrays = {k: v[order] for k, v in arrays.items()}
    state.indptr = torch.zeros(n + 1, dtype=torch.int64, device=pre.device)
    state.indptr[1:] = torch.cumsum(torch.bincount(pre, minlength=n), 0)
    state.col = post.to(torch.int32)
    for name in NetworkState.SYNAPSE_ARRAYS:
        if name != "col":
            setattr(state, name, arrays[name])


def isin_sorted(sorted_keys: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """Membership of ``query`` in an ascending int64 tensor."""
    if sorted_keys.numel() == 0 or query.numel() == 0:
        return torch.zeros(query.shape, dtype=torch.bool, device=query.device)
    pos = torch.searchsorted(sorted_keys, query).clamp(max=sorted_keys.numel() - 1)
    return sorted_keys[pos] == query


def first_occurrence(values: torch.Tensor) -> torch.Tensor:
    """Bool mask: True at the first occurrence of each value (in index order)."""
    if values.numel() == 0:
        return torch.zeros(0, dtype=torch.bool, device=values.device)
    order = torch.argsort(values, stable=True)
    sv = values[order]
    first_sorted = torch.ones_like(sv, dtype=torch.bool)
    first_sorted[1:] = sv[1:] != sv[:-1]
    mask = torch.zeros_like(first_sorted)
    mask[order] = first_sorted
    return mask


def remap(index: torch.Tensor, old_to_new: torch.Tensor) -> torch.Tensor:
    """Renumber neuron indices (any shape) through ``old_to_new``."""
    return old_to_new[index.long()].to(index.dtype)


# -- distance-biased sampling ----------------------------------------------------------------
def sample_near(
    grid_xy: torch.Tensor,
    centers: torch.Tensor,
    count: int,
    sigma: float,
    gen: torch.Generator,
    candidates: torch.Tensor | None = None,
    exclude: torch.Tensor | None = None,
    radius: float | None = None,
) -> torch.Tensor:
    """For each grid position in ``centers`` [M, 2], draw ``count`` distinct neurons with
    probability proportional to ``exp(-d / sigma)`` (``torch.multinomial`` without replacement,
    as build.py), among ``candidates`` (bool [N], default all) minus ``exclude[m]`` (one neuron
    index per row, e.g. the presynaptic neuron itself; -1 for none). Returns int64 [M, count],
    padded with -1 where a row has fewer candidates.

    Small problems use all neurons (exact); large ones the grid offsets within ``radius``
    (default 6 sigma, as build.py) with an exact fallback for rows lacking local candidates."""
    n, m = grid_xy.shape[0], centers.shape[0]
    device = grid_xy.device
    out = torch.full((m, count), -1, dtype=torch.int64, device=device)
    if m == 0 or count == 0 or n == 0:
        return out
    cand, excl = _usable(n, m, candidates, exclude, device)
    if m * n <= DENSE_SAMPLING_LIMIT:
        return _sample_dense_rows(grid_xy, centers, count, sigma, gen, cand, excl, torch.arange(m, device=device), out)
    grid = _local_grid(grid_xy, centers, sigma, radius)
    short = []
    for start in range(0, m, 2048):
        target = grid.around(centers[start:start + 2048])
        ok = target >= 0
        ok &= cand[target.clamp(min=0)]
        ok &= target != excl[start:start + 2048, None]
        p = grid.masked_weight(ok)
        avail = ok.sum(1)
        full = avail >= count
        rows = full.nonzero().squeeze(1)
        if rows.numel():
            pick = torch.multinomial(p[rows], count, replacement=False, generator=gen)
            out[start + rows] = target[rows].gather(1, pick)
        short.append(start + (~full).nonzero().squeeze(1))
    short_rows = torch.cat(short)
    if short_rows.numel():
        _sample_dense_rows(grid_xy, centers, count, sigma, gen, cand, excl, short_rows, out)
    return out


def propose_near(
    grid_xy: torch.Tensor,
    centers: torch.Tensor,
    tries: int,
    sigma: float,
    gen: torch.Generator,
    candidates: torch.Tensor | None = None,
    exclude: torch.Tensor | None = None,
    radius: float | None = None,
) -> torch.Tensor:
    """``tries`` independent distance-biased proposals per center (int64 [M, tries], -1 where a
    proposal is not a usable neuron). The first usable proposal of a row is distributed as
    ``exp(-d / sigma)`` restricted to the usable neurons (rejection sampling), which is all the
    structural job needs, at O(M x tries) cost on large networks: grid offsets are drawn from the
    fixed offset distribution (within ``radius``, default 6 sigma) and looked up in the grid."""
    n, m = grid_xy.shape[0], centers.shape[0]
    device = grid_xy.device
    if m == 0 or tries == 0 or n == 0:
        return torch.full((m, tries), -1, dtype=torch.int64, device=device)
    cand, excl = _usable(n, m, candidates, exclude, device)
    if m * n <= DENSE_SAMPLING_LIMIT:
        p = distance_weights(centers, grid_xy, sigma, cand, excl)
        ok = p.sum(1) > 0
        out = torch.full((m, tries), -1, dtype=torch.int64, device=device)
        rows = ok.nonzero().squeeze(1)
        if rows.numel():
            out[rows] = torch.multinomial(p[rows], tries, replacement=True, generator=gen)
        return out
    grid = _local_grid(grid_xy, centers, sigma, radius)
    pick = torch.multinomial(grid.weight, m * tries, replacement=True, generator=gen).reshape(m, tries)
    target = grid.neurons_at(centers, grid.offsets[pick])
    usable = (target >= 0) & cand[target.clamp(min=0)] & (target != excl[:, None])
    return torch.where(usable, target, torch.full_like(target, -1))


def _usable(n: int, m: int, candidates: torch.Tensor | None, exclude: torch.Tensor | None,
            device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The samplers' defaults: every neuron a candidate (bool [N]), no exclusion (-1 per row)."""
    cand = torch.ones(n, dtype=torch.bool, device=device) if candidates is None else candidates
    excl = torch.full((m,), -1, dtype=torch.int64, device=device) if exclude is None else exclude.long()
    return cand, excl


def _local_grid(grid_xy: torch.Tensor, centers: torch.Tensor, sigma: float, radius: float | None) -> LocalGrid:
    """The grid covering the neurons and the centers (a center may be a free cell beyond the
    occupied extent), offsets within ``radius`` (default 6 sigma, as build.py) and the center cell."""
    side = int(max(int(grid_xy.max()) + 1, int(centers.max()) + 1))
    return LocalGrid.build(grid_xy, side, sigma, 6.0 * sigma if radius is None else radius, with_center=True)


def _sample_dense_rows(grid_xy: torch.Tensor, centers: torch.Tensor, count: int, sigma: float, gen: torch.Generator,
                       cand: torch.Tensor, excl: torch.Tensor, rows: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Exact rows of ``sample_near`` (``rows`` of ``centers``), written into ``out``."""
    for start in range(0, rows.numel(), 1024):
        r = rows[start:start + 1024]
        p = distance_weights(centers[r], grid_xy, sigma, cand, excl[r])
        avail = (p > 0).sum(1)
        full = avail >= count
        idx = full.nonzero().squeeze(1)
        if idx.numel():
            out[r[idx]] = torch.multinomial(p[idx], count, replacement=False, generator=gen)
        for j in (~full).nonzero().squeeze(1).tolist():  # rare: fewer candidates than asked
            k = int(avail[j])
            if k:
                out[r[j], :k] = torch.multinomial(p[j], k, replacement=False, generator=gen)
    return out


# -- synapses --------------------------------------------------------------------------------
def remove_synapses(state: NetworkState, keep: torch.Tensor) -> int:
    """Keep the synapses where ``keep`` (bool [nnz]) is True; returns how many were removed.

    CSR order is preserved, so excitatory synapses stay in front of inhibitory ones."""
    removed = int((~keep).sum())
    if removed == 0:
        return 0
    kept_per_row = torch.zeros(state.n, dtype=torch.int64, device=state.device)
    kept_per_row.index_add_(0, state.pre_index(), keep.to(torch.int64))
    state.indptr = torch.cat([kept_per_row.new_zeros(1), torch.cumsum(kept_per_row, 0)])
    for name in NetworkState.SYNAPSE_ARRAYS:
        setattr(state, name, getattr(state, name)[keep])
    state.structure_version += 1
    return removed


def find_synapses(state: NetworkState, pre: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
    """Positions of the synapses (pre, post) (int64; -1 where absent). Needs a sorted CSR."""
    keys = synapse_keys(state)
    q = pre.long() * state.n + post.long()
    if keys.numel() == 0:
        return torch.full_like(q, -1)
    pos = torch.searchsorted(keys, q).clamp(max=keys.numel() - 1)
    return torch.where(keys[pos] == q, pos, torch.full_like(pos, -1))


def remove_synapses_by_pair(state: NetworkState, pre: torch.Tensor, post: torch.Tensor) -> int:
    """Remove the synapses (pre, post) that exist; returns how many were removed."""
    pos = find_synapses(state, pre, post)
    pos = pos[pos >= 0]
    keep = torch.ones(state.nnz, dtype=torch.bool, device=state.device)
    keep[pos] = False
    return remove_synapses(state, keep)


def add_synapses_to_state(state: NetworkState, pre: torch.Tensor, post: torch.Tensor, w: torch.Tensor) -> int:
    """Add synapses (pre, post) with weights ``w`` (sign set by the presynaptic type: Dale's law),
    zero trace, not persistent. Autapses, pairs that already exist and repeats within the call
    are skipped; returns how many were added."""
    pre, post, w = pre.long(), post.long(), w.to(torch.float32)
    n = state.n
    if pre.numel() and (int(pre.min()) < 0 or int(post.min()) < 0 or int(pre.max()) >= n or int(post.max()) >= n):
        raise ValueError("add_synapses_to_state: neuron index out of range")
    key = pre * n + post
    ok = (pre != post) & ~isin_sorted(torch.sort(synapse_keys(state)).values, key) & first_occurrence(key)
    pre, post, w = pre[ok], post[ok], w[ok]
    k = int(pre.numel())
    if k == 0:
        return 0
    arrays = {}
    for name in NetworkState.SYNAPSE_ARRAYS:
        old = getattr(state, name)
        if name == "col":
            continue
        fresh = dale_sign(state, pre, w).to(old.dtype) if name == "w" else _fresh_like(old, k)
        arrays[name] = torch.cat([old, fresh])
    _write_synapses(state, torch.cat([state.pre_index(), pre]), torch.cat([state.col.long(), post]), arrays, n)
    state.structure_version += 1
    return k


def rewire_synapses(state: NetworkState, idx: torch.Tensor, new_post: torch.Tensor,
                    new_w: torch.Tensor | None = None) -> None:
    """Move the synapses at positions ``idx`` to the postsynaptic neurons ``new_post``: same
    presynaptic neuron, weight kept (or ``new_w``) with the sign of the presynaptic type, trace
    reset to 0. Rows are re-sorted, so positions change afterwards. Raises ValueError for a
    persistent synapse, an autapse, or a move that would duplicate a (pre, post) pair."""
    idx, new_post = idx.long(), new_post.long()
    if idx.numel() == 0:
        return
    if torch.unique(idx).numel() != idx.numel():
        raise ValueError("rewire_synapses: a synapse is listed twice")
    if bool(state.persistent[idx].any()):
        raise ValueError("rewire_synapses: persistent synapses are never rewired")
    pre_all = state.pre_index()
    pre = pre_all[idx]
    if bool((pre == new_post).any()) or int(new_post.min()) < 0 or int(new_post.max()) >= state.n:
        raise ValueError("rewire_synapses: autapse or target out of range")
    col = state.col.long().clone()
    col[idx] = new_post
    key = pre_all * state.n + col
    if torch.unique(key).numel() != key.numel():
        raise ValueError("rewire_synapses: a move would duplicate an existing (pre, post) pair")
    arrays = {name: getattr(state, name).clone() for name in NetworkState.SYNAPSE_ARRAYS if name != "col"}
    w = arrays["w"]
    w[idx] = dale_sign(state, pre, w[idx] if new_w is None else new_w).to(w.dtype)
    arrays["e"][idx] = 0
    order = torch.argsort(key, stable=True)  # pre unchanged: rows keep their place, only re-sorted inside
    _write_synapses(state, pre_all[order], col[order], {k: v[order] for k, v in arrays.items()}, state.n,
                    presorted=True)
    state.structure_version += 1


# -- neurons ---------------------------------------------------------------------------------
NEURON_INIT_SECTIONS = ("lif", "intrinsic", "network")  # EngineConfig sections NeuronInit's keys come from


def _config_keys(cls: type) -> type:
    """Give every annotated name of ``cls`` the default of the config key of that name in the one
    section of NEURON_INIT_SECTIONS that declares it (recorded as the field's ``section``)."""
    defaults = EngineConfig()
    for name in cls.__annotations__:
        owners = [s for s in NEURON_INIT_SECTIONS if name in {f.name for f in fields(getattr(defaults, s))}]
        assert len(owners) == 1, f"NeuronInit.{name}: declared in {owners or 'no section'} of {NEURON_INIT_SECTIONS}"
        setattr(cls, name, field(default=getattr(getattr(defaults, owners[0]), name), metadata={"section": owners[0]}))
    return cls


@dataclass(frozen=True)
@_config_keys
class NeuronInit:
    """Initial distributions of a new neuron and its synapses (SPEC §1; build.py). Every field is
    the config key of the same name, in the section that declares it (``lif``, ``intrinsic``,
    ``network`` in fumd/config.py); its default and ``from_config`` are derived from that key."""

    tau_mean: float
    tau_std: float
    tau_min: float  # tau is clipped to the intrinsic-plasticity bounds
    tau_max: float
    v_th_mean: float
    v_th_std: float
    v_rest: float
    v_reset: float
    init_weight_max: float
    sigma: float
    max_radius_sigmas: float

    @classmethod
    def from_config(cls, cfg: EngineConfig) -> NeuronInit:
        return cls(**{f.name: getattr(getattr(cfg, f.metadata["section"]), f.name) for f in fields(cls)})


@dataclass
class Growth:
    new_index: torch.Tensor  # int64 [k]: indices of the new neurons (excitatory first)
    old_to_new: torch.Tensor  # int64 [N_old]
    synapses_added: int


def insert_neurons(
    state: NetworkState,
    n_exc_new: int,
    n_inh_new: int,
    values: dict[str, torch.Tensor],
    syn_pre: torch.Tensor,
    syn_post: torch.Tensor,
    syn_w: torch.Tensor,
) -> Growth:
    """Low-level insertion. ``values`` maps neuron-array names to the new neurons' rows
    ([n_exc_new + n_inh_new, ...], excitatory first; missing arrays are zero-filled).
    ``syn_pre``/``syn_post`` are in the *new* numbering (see ``Growth.new_index``); autapses and
    duplicates are dropped; weights get the presynaptic sign."""
    n0, e0 = state.n, state.n_exc
    a, b = int(n_exc_new), int(n_inh_new)
    k = a + b
    device = state.device
    old_to_new = torch.arange(n0, device=device)
    old_to_new[e0:] += a
    new_index = torch.cat([e0 + torch.arange(a, device=device), n0 + a + torch.arange(b, device=device)])
    n1 = n0 + k
    if k == 0 and syn_pre.numel() == 0:
        return Growth(new_index, old_to_new, 0)
    old_pre = old_to_new[state.pre_index()]
    old_post = old_to_new[state.col.long()]
    for name in NetworkState.NEURON_ARRAYS:
        old = getattr(state, name)
        new = _fresh_like(old, n1)
        new[old_to_new] = old
        if name in values:
            new[new_index] = values[name].to(device=device, dtype=old.dtype)
        setattr(state, name, new)
    state.n_exc = e0 + a
    state.input_idx = remap(state.input_idx, old_to_new)
    state.output_idx = remap(state.output_idx, old_to_new)
    state.feature_idx = remap(state.feature_idx, old_to_new)
    # synapses: old ones renumbered, new ones appended; drop autapses / duplicates
    pre, post = syn_pre.long(), syn_post.long()
    key = pre * n1 + post
    old_key = torch.sort(old_pre * n1 + old_post).values
    ok = (pre != post) & ~isin_sorted(old_key, key) & first_occurrence(key)
    pre, post, w = pre[ok], post[ok], syn_w[ok]
    added = int(pre.numel())
    arrays = {}
    for name in NetworkState.SYNAPSE_ARRAYS:
        if name == "col":
            continue
        old = getattr(state, name)
        fresh = dale_sign(state, pre, w).to(old.dtype) if name == "w" else _fresh_like(old, added)
        arrays[name] = torch.cat([old, fresh])
    _write_synapses(state, torch.cat([old_pre, pre]), torch.cat([old_post, post]), arrays, n1)
    state.structure_version += 1
    return Growth(new_index, old_to_new, added)


def free_cells_near(
    grid_xy: torch.Tensor, cluster: torch.Tensor, wanted: torch.Tensor, sigma: float, gen: torch.Generator,
    anchors_per_cluster: int = 256,
) -> torch.Tensor:
    """Grid cells for new neurons: ``wanted`` (int64 [k]) is the cluster of each. The grid keeps
    one neuron per cell; it is the square of side ``ceil(sqrt(N + k))`` (at least the occupied
    extent), grown by one row and column while it lacks free cells. For each cluster the free
    cells are drawn without replacement with probability ``exp(-d / sigma)``, ``d`` = distance
    to the nearest of (up to ``anchors_per_cluster`` sampled) members of the cluster."""
    k = int(wanted.numel())
    device = grid_xy.device
    if k == 0:
        return torch.zeros(0, 2, dtype=torch.int32, device=device)
    n = grid_xy.shape[0]
    side = max(grid_side(n + k), int(grid_xy.max()) + 1 if n else 1)
    while True:
        occupied = torch.zeros(side * side, dtype=torch.bool, device=device)
        if n:
            occupied[grid_xy[:, 0].long() * side + grid_xy[:, 1].long()] = True
        free = (~occupied).nonzero().squeeze(1)
        if free.numel() >= k:
            break
        side += 1
    free_xy = torch.stack([free // side, free % side], 1)
    taken = torch.zeros(free.numel(), dtype=torch.bool, device=device)
    out = torch.zeros(k, 2, dtype=torch.int32, device=device)
    for c in torch.unique(wanted).tolist():
        rows = (wanted == c).nonzero().squeeze(1)
        members = (cluster == c).nonzero().squeeze(1)
        if members.numel() > anchors_per_cluster:
            members = members[torch.randperm(members.numel(), generator=gen, device=device)[:anchors_per_cluster]]
        if members.numel():
            anchors = grid_xy[members].double()
            d = torch.cat([torch.cdist(free_xy[s:s + 16384].double(), anchors).min(1).values
                           for s in range(0, free.numel(), 16384)])
            p = torch.exp(-(d - d.min()) / sigma)
        else:
            p = torch.ones(free.numel(), dtype=torch.float64, device=device)
        p[taken] = 0.0
        pick = torch.multinomial(p, rows.numel(), replacement=False, generator=gen)
        taken[pick] = True
        out[rows] = free_xy[pick].to(torch.int32)
    return out


def add_neurons(
    state: NetworkState,
    n_exc_new: int,
    n_inh_new: int,
    *,
    cluster: int | torch.Tensor,
    init: NeuronInit,
    generator: torch.Generator,
    fan_out: int | None = None,
    fan_in: int | None = None,
) -> Growth:
    """Grow the network by ``n_exc_new`` excitatory and ``n_inh_new`` inhibitory neurons.

    New neurons: ``tau ~ N(tau_mean, tau_std)`` clipped to the intrinsic-plasticity bounds,
    ``v_th ~ N(v_th_mean, v_th_std)`` (>= v_rest + 1), ``V = v_reset``, no spikes, zero rate and
    activity history, cluster id ``cluster`` (one int, or one per new neuron, excitatory first),
    placed on free grid cells near their cluster (``free_cells_near``). Each draws ``fan_out``
    targets and ``fan_in`` sources among all neurons (itself excluded), distance-biased
    ``exp(-d / sigma)`` like build.py; weights ``U(0, w0)`` signed by the presynaptic type.
    ``fan_out``/``fan_in`` default to the current mean degree x (N_new - 1) / (N - 1), which keeps
    the connection density unchanged."""
    a, b = int(n_exc_new), int(n_inh_new)
    k = a + b
    device = state.device
    n0 = state.n
    if k == 0:
        return Growth(torch.zeros(0, dtype=torch.int64, device=device), torch.arange(n0, device=device), 0)
    if a < 0 or b < 0:
        raise ValueError("add_neurons: negative count")
    wanted = torch.as_tensor(cluster, dtype=torch.int64, device=device).reshape(-1)
    wanted = wanted.expand(k).clone() if wanted.numel() == 1 else wanted
    if wanted.numel() != k:
        raise ValueError("add_neurons: cluster must be one id or one per new neuron")
    n1 = n0 + k
    if fan_out is None or fan_in is None:
        density = state.nnz / float(max(n0 * (n0 - 1), 1))
        default_fan = int(round(density * (n1 - 1)))
        fan_out = default_fan if fan_out is None else fan_out
        fan_in = default_fan if fan_in is None else fan_in
    fan_out, fan_in = min(int(fan_out), n1 - 1), min(int(fan_in), n1 - 1)

    xy_new = free_cells_near(state.grid_xy, state.cluster, wanted, init.sigma, generator)
    tau = (init.tau_mean + init.tau_std * torch.randn(k, generator=generator,
                                                      device=device)).clamp(init.tau_min, init.tau_max)
    v_th = (init.v_th_mean + init.v_th_std * torch.randn(k, generator=generator,
                                                         device=device)).clamp(min=init.v_rest + 1.0)
    values = {
        "v": torch.full((k,), init.v_reset, device=device),
        "tau_mem": tau.float(),
        "v_th": v_th.float(),
        "grid_xy": xy_new,
        "cluster": wanted,
    }
    # positions in the new numbering, to sample partners among all N + k neurons
    e0 = state.n_exc
    new_index = torch.cat([e0 + torch.arange(a, device=device), n0 + a + torch.arange(b, device=device)])
    old_to_new = torch.arange(n0, device=device)
    old_to_new[e0:] += a
    xy_all = torch.zeros(n1, 2, dtype=torch.int32, device=device)
    xy_all[old_to_new] = state.grid_xy
    xy_all[new_index] = xy_new
    radius = init.max_radius_sigmas * init.sigma
    outs = sample_near(xy_all, xy_new, fan_out, init.sigma, generator, exclude=new_index, radius=radius)
    ins = sample_near(xy_all, xy_new, fan_in, init.sigma, generator, exclude=new_index, radius=radius)
    src = new_index[:, None].expand(-1, fan_out)
    dst = new_index[:, None].expand(-1, fan_in)
    pre = torch.cat([src.reshape(-1), ins.reshape(-1)])
    post = torch.cat([outs.reshape(-1), dst.reshape(-1)])
    valid = (pre >= 0) & (post >= 0)
    pre, post = pre[valid], post[valid]
    w = torch.rand(pre.numel(), generator=generator, device=device) * init.init_weight_max
    return insert_neurons(state, a, b, values, pre, post, w)


def remove_neurons(state: NetworkState, remove: torch.Tensor) -> torch.Tensor:
    """Delete the neurons where ``remove`` (bool [N]) is True with every synapse from or to them;
    the survivors keep their order (so the E/I blocks and CSR order hold). Returns ``old_to_new``
    (int64 [N], -1 for removed). Designated input/output neurons are never removed (ValueError)."""
    remove = remove.to(torch.bool)
    if bool(remove[state.designated_idx()].any()):
        raise ValueError("remove_neurons: designated input/output/feature neurons are never removed")
    keep_n = ~remove
    old_to_new = torch.cumsum(keep_n.to(torch.int64), 0) - 1
    old_to_new[remove] = -1
    if not bool(remove.any()):
        return old_to_new
    pre = state.pre_index()
    col = state.col.long()
    keep_s = keep_n[pre] & keep_n[col]
    n1 = int(keep_n.sum())
    new_pre = old_to_new[pre[keep_s]]
    kept_per_row = torch.bincount(new_pre, minlength=n1)
    state.indptr = torch.cat([kept_per_row.new_zeros(1), torch.cumsum(kept_per_row, 0)])
    for name in NetworkState.SYNAPSE_ARRAYS:
        if name == "col":
            state.col = old_to_new[col[keep_s]].to(torch.int32)  # monotone map: rows stay sorted
        else:
            setattr(state, name, getattr(state, name)[keep_s])
    state.n_exc = int(keep_n[: state.n_exc].sum())
    for name in NetworkState.NEURON_ARRAYS:
        setattr(state, name, getattr(state, name)[keep_n])
    state.input_idx = remap(state.input_idx, old_to_new)
    state.output_idx = remap(state.output_idx, old_to_new)
    state.feature_idx = remap(state.feature_idx, old_to_new)
    state.structure_version += 1
    return old_to_new


def pruning_compensation(
    state: NetworkState, remove: torch.Tensor, strength: float, max_shift_mv: float, v_rest: float
) -> torch.Tensor:
    """Threshold shift (mV, [N]) of the neurons downstream of the neurons to be removed
    (``compensation_shift`` on the state's arrays)."""
    return compensation_shift(state.pre_index(), state.col.long(), state.w, state.v_th, state.n_exc, remove,
                              strength, max_shift_mv, v_rest)


def compensation_shift(
    pre: torch.Tensor, post: torch.Tensor, w: torch.Tensor, v_th: torch.Tensor, n_exc: int, remove: torch.Tensor,
    strength: float, max_shift_mv: float, v_rest: float,
) -> torch.Tensor:
    """Threshold shift (mV, [N]) of the neurons downstream of the neurons to be removed, from
    the synapse list (``pre``, ``post``, ``w``: one entry per synapse), the thresholds ``v_th``
    [N] and the excitatory count ``n_exc`` (neurons ``[0, n_exc)`` are excitatory).

    A neuron j losing a fraction ``f_E`` of its incoming excitatory weight and ``f_I`` of its
    incoming inhibitory weight moves its threshold by
    ``strength * (v_th_j - v_rest) * (f_I - f_E)``, clipped to ``±max_shift_mv``: the distance
    from rest to threshold shrinks in proportion to the excitatory drive lost (and grows with the
    inhibition lost), so the same relative input still reaches threshold (seed 002 §5.E.4
    "downstream compensation (v_th adjustment)"; the formula is ours, docs/mechanisms.md)."""
    remove = remove.to(torch.bool)
    n = v_th.shape[0]
    col = post.long()
    inh = pre >= n_exc
    mag = w.double().abs()
    tot_e = torch.zeros(n, dtype=torch.float64, device=v_th.device).index_add_(0, col, torch.where(inh, 0.0, mag))
    tot_i = torch.zeros(n, dtype=torch.float64, device=v_th.device).index_add_(0, col, torch.where(inh, mag, 0.0))
    lost = remove[pre]
    lost_e = torch.zeros_like(tot_e).index_add_(0, col, torch.where(lost & ~inh, mag, 0.0))
    lost_i = torch.zeros_like(tot_i).index_add_(0, col, torch.where(lost & inh, mag, 0.0))
    f_e = torch.where(tot_e > 0, lost_e / tot_e.clamp(min=1e-12), torch.zeros_like(tot_e))
    f_i = torch.where(tot_i > 0, lost_i / tot_i.clamp(min=1e-12), torch.zeros_like(tot_i))
    shift = strength * (v_th.double() - v_rest).clamp(min=0.0) * (f_i - f_e)
    shift = shift.clamp(-max_shift_mv, max_shift_mv)
    shift[remove] = 0.0
    return shift.to(v_th.dtype)


# -- values and partition (what the jobs change besides the structure) -----------------------
def set_weights(state: NetworkState, w: torch.Tensor) -> None:
    """Overwrite the synapse weights in place (the structure is unchanged)."""
    state.w.copy_(w)


def set_persistent(state: NetworkState, mask: torch.Tensor, value: bool) -> int:
    """Tag (``value`` True) or de-tag the synapses in ``mask`` as persistent, in place; returns
    how many were in ``mask``."""
    count = int(mask.sum())
    if count:
        state.persistent[mask] = value
    return count


def shift_thresholds(state: NetworkState, shift: torch.Tensor, v_min: float, v_max: float) -> None:
    """``v_th <- clamp(v_th + shift, v_min, v_max)`` (a new tensor)."""
    state.v_th = (state.v_th + shift.to(state.v_th.dtype)).clamp(v_min, v_max)


def set_partition(state: NetworkState, cluster: torch.Tensor, n_clusters: int) -> None:
    """Install a new cluster partition: a *new* tensor object (holders of the old one see by
    identity that it changed), and ``structure_version`` bumped (plans computed on the old
    partition off the loop are stale)."""
    state.cluster = cluster
    state.n_clusters = int(n_clusters)
    state.structure_version += 1


# -- checks ----------------------------------------------------------------------------------
def check_invariants(state: NetworkState) -> None:
    """Raise AssertionError naming the first broken invariant (tests, debugging)."""
    n, nnz = state.n, state.nnz
    for name in NetworkState.NEURON_ARRAYS:
        assert getattr(state, name).shape[0] == n, f"{name} has {getattr(state, name).shape[0]} rows, N = {n}"
    for name in NetworkState.SYNAPSE_ARRAYS:
        assert getattr(state, name).shape[0] == nnz, f"{name} has {getattr(state, name).shape[0]} rows, nnz = {nnz}"
    ip = state.indptr
    assert ip.shape[0] == n + 1 and int(ip[0]) == 0 and int(ip[-1]) == nnz, "indptr ends"
    assert bool((ip[1:] >= ip[:-1]).all()), "indptr not monotone"
    if nnz:
        assert int(state.col.min()) >= 0 and int(state.col.max()) < n, "col out of range"
    key = synapse_keys(state)
    assert bool((key[1:] > key[:-1]).all()), "CSR rows not sorted or duplicate (pre, post)"
    assert not bool((state.pre_index() == state.col.long()).any()), "autapse"
    k = state.n_exc_synapses
    assert bool((state.w[:k] >= 0).all()) and bool((state.w[k:] <= 0).all()), "Dale's law"
    assert float(state.w.abs().max() if nnz else 0.0) <= 1.0, "|w| > 1"
    des = state.designated_idx()
    assert bool((des >= 0).all()) and bool((des < state.n_exc).all()), "designated neurons must be excitatory"
    cells = state.grid_xy[:, 0].long() * (1 << 31) + state.grid_xy[:, 1].long()
    assert torch.unique(cells).numel() == n, "two neurons on one grid cell"
    assert math.isfinite(float(state.v_th.sum())), "non-finite v_th"


__all__ = [
    "DENSE_SAMPLING_LIMIT", "Growth", "NeuronInit", "add_neurons", "add_synapses_to_state", "check_invariants",
    "compensation_shift", "find_synapses", "first_occurrence", "free_cells_near", "insert_neurons", "isin_sorted",
    "propose_near", "pruning_compensation", "remap", "remove_neurons", "remove_synapses", "remove_synapses_by_pair",
    "rewire_synapses", "sample_near", "set_partition", "set_persistent", "set_weights", "shift_thresholds",
    "synapse_keys",
]
