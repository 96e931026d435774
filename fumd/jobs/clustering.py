"""Adaptive domain clustering, SPEC §8 (seed 002 §5.B.2, §5.B.3.5, §5.C.2, §5.D.5, §5.E.6).

Every run re-partitions the neurons by what drives them and moves the SIE's per-cluster state
(``V_states`` and the reward statistics) onto the new partition. The partition must be *stable*:
V(state), per-cluster rewards, decay classes and tagging streaks are per-cluster quantities, and
they mean nothing if the ids are reshuffled at every run (issue #9 measured 271 of 297 active
neurons changing cluster in one run). Each run reports ``kept_fraction``, the fraction of neurons
whose cluster id did not change.

Pipeline (``compute``, pure, may run in a worker thread):

1. **Profiles.** ``profile = "receptive_field"`` (default): in ``observe`` the job accumulates, for
   every neuron, the input-triggered average of the input-neuron spike counts::

       F_i += c_i(t) P^T (u(t) - u_mean),     u = counts of the input neurons,  c_i = neuron i's count

   ``u_mean`` is a running mean of ``u`` (EMA, ``input_mean_alpha``) so a field says which inputs
   drive the neuron *more than average*; ``P`` is a fixed random projection to ``profile_dims``
   dimensions when there are more input neurons (Johnson-Lindenstrauss: cosines kept). At every run
   ``F`` (and the spike count behind it) is multiplied by ``profile_decay`` after the snapshot, a
   block EMA over runs. The profile is ``p_i = F_i / ||F_i||``; neurons with fewer than
   ``min_profile_spikes`` spikes behind their field count as silent. The coordinates are the input
   neurons, the same at every run, and a field sums all cycles since the last runs, not the last
   ``H``. ``profile = "activity"`` (the seed's reading, also used until a field exists): row ``i``
   of ``state.activity`` (neuron ``i``'s spike counts over the last ``H`` cycles),
   ``p_i = log1p(a_i) / ||log1p(a_i)||_2``, whose coordinates are whichever inputs the ring holds.
   Either way Euclidean k-means on unit rows is k-means in cosine geometry: neurons are grouped by
   *which* inputs drive them (their domain), not by how fast they fire.
2. **Silent neurons** (no profile) take no part in the fit. Each joins the new cluster that
   received the most *active* neurons of its old cluster (it follows its old cluster-mates); if its
   old cluster had no active neuron at all, it joins the new cluster whose active members' mean
   grid position is nearest (connectivity is distance-biased, so grid neighbours are the neurons it
   is wired to).
3. **Sampling (seed §5.D.5).** k-means is fitted on a uniform random sample of at most
   ``max_fit_neurons`` active neurons; every active neuron is then assigned to its nearest centroid.
4. **k by silhouette (seed §5.B.3.5), warm-started, with a margin.** For every ``k`` in
   ``[k_min, k_max]`` (``k_max`` also capped by the number of distinct profiles minus one) fit
   ``KMeans(k, n_init, random_state=seed)``; score it with ``silhouette_score`` on one fixed random
   sub-sample (``silhouette_sample``) of the fitted points, through a precomputed distance matrix
   (the same points for every ``k``, so scores are comparable). From the second run on
   (``warm_start``) k-means is also run from the current partition's centroids (the mean profile
   of each current cluster's points, in today's coordinates; topped up to ``k_min`` with the
   farthest points), keeping the current ``k``; that warm fit is kept unless the best cold fit's
   silhouette is higher by more than ``k_switch_margin`` (0.05). Fewer than ``k_min`` distinct
   active profiles -> the run is skipped (the partition is left as it is).
5. **Stable ids.** New clusters are renamed to maximise their overlap with the old ids (Hungarian
   assignment on the neuron-overlap matrix, ``scipy.optimize.linear_sum_assignment``), so
   "cluster 3" keeps meaning the same neurons across runs; unmatched clusters take the remaining
   ids in order. Then **hysteresis** (``assign_hysteresis``): an active neuron keeps its old id when
   that cluster still exists and its centroid's squared distance is within ``(1 + 0.1)`` of the
   nearest one's; a neuron on the border between two clusters does not flip on noise.

Measured (a stationary 6-domain stream, 300 neurons, a run every 100 cycles; the test
``test_partition_is_stable_on_a_stationary_input``): kept_fraction 0.91-0.93 per run (0.93-0.98
with ``profile_decay = 0.8``) against 0.77-0.89 for the seed's pipeline; on the 400-neuron engine
learning a 4-prototype stream (runs every 200 cycles) 0.55-0.77 against 0.24-0.35, with learning
off 0.92-0.97 (the network itself changes while it learns).

``apply`` (loop thread) installs ``state.cluster`` (a *new* tensor object: other jobs detect a
re-clustering by identity) and ``state.n_clusters``, and remaps the SIE with the neuron-overlap
matrix ``M[a, b]`` = number of neurons moving from old cluster ``a`` to new cluster ``b``:

    V_new[b]          = sum_a M[a, b] V_old[a] / sum_a M[a, b]      (membership-weighted mean)
    avg_reward_new[b] = sum_a M[a, b] avg_old[a] / sum_a M[a, b]
    reward_history_new[b], reward_count_new[b] = those of argmax_a M[a, b]   (dominant predecessor:
                        a reward ring is a time series and cannot be averaged across clusters)
    prev_state_new    = argmax_b M[prev_state, b]   (-1 if prev_state was -1 or had no neurons)

Reproducibility: ``snapshot`` draws one integer from the job's own stream (``base.PrivateStream``,
seeded by ``network.seed`` and the job's name, saved in the job's state; not ``engine.generator``,
so the engine's random numbers are the same with the job on or off); it seeds the neuron sample,
the silhouette sub-sample and every ``KMeans``. k-means runs with ``threads`` OpenMP/BLAS
threads (default 1: sklearn's multi-threaded reductions are not bit-identical across thread counts).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from ..network import edit
from ..network.state import NetworkState
from ..sie.remap import dominant_predecessor, overlap_matrix, remap_mean  # noqa: F401 - used by tagging and tests
from .base import Applied, PrivateStream
from .config import ClusteringConfig  # noqa: F401 - the [jobs.clustering] section, defined in config.py (light to import)
from .state import Persist, PersistentJob, Scalar, Stream, TensorOf

if TYPE_CHECKING:
    from ..engine import CycleResult, Engine

NAME = "clustering"


# -- pure functions ----------------------------------------------------------------------------
def activity_profiles(activity: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``p_i = log1p(a_i) / ||log1p(a_i)||_2`` for the rows of ``activity`` [N, H] (spike counts per
    cycle); returns (profiles float64 [n_active, H], active bool [N]). Silent rows are dropped."""
    x = torch.log1p(activity.to(torch.float64).cpu())
    norm = x.norm(dim=1)
    active = norm > 0
    prof = x[active] / norm[active, None]
    return prof.numpy(), active.numpy()


def field_profiles(fields: torch.Tensor, spikes: torch.Tensor, min_spikes: float) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm receptive fields (float64 [n_active, d]) and the active mask [N]: a neuron is
    active when at least ``min_spikes`` (decayed) spikes and a non-zero field stand behind it."""
    f = fields.to(torch.float64).cpu()
    norm = f.norm(dim=1)
    active = (spikes.to(torch.float64).cpu() >= max(min_spikes, 1e-12)) & (norm > 0)
    return (f[active] / norm[active, None]).numpy(), active.numpy()


def input_projection(n_inputs: int, dims: int, seed: int) -> torch.Tensor | None:
    """A fixed random projection [n_inputs, dims] (Gaussian / sqrt(dims), Johnson-Lindenstrauss:
    cosines are kept approximately), or None when ``n_inputs <= dims`` (fields stay in input
    coordinates)."""
    if n_inputs <= dims:
        return None
    g = torch.Generator().manual_seed(int(seed) * 7919 + n_inputs)
    return torch.randn(n_inputs, dims, generator=g) / math.sqrt(dims)


def silhouette_scorer(x: np.ndarray, seed: int, silhouette_sample: int) -> Callable[[np.ndarray], float]:
    """``score(labels)``: the silhouette of a labelling of ``x`` on one fixed random sub-sample of
    at most ``silhouette_sample`` points (distances computed once), so scores of different
    labellings are comparable; -1 when the sub-sample holds fewer than 2 labels."""
    from sklearn.metrics import pairwise_distances, silhouette_score

    n = x.shape[0]
    rng = np.random.default_rng([seed, 1])  # a stream of its own (the neuron sample uses [seed, 0])
    sub = np.sort(rng.permutation(n)[: min(silhouette_sample, n)])
    dist = pairwise_distances(x[sub], metric="euclidean")

    def score(labels: np.ndarray) -> float:
        lab = labels[sub]
        n_labels = np.unique(lab).shape[0]
        return float(silhouette_score(dist, lab, metric="precomputed")) if 2 <= n_labels <= len(sub) - 1 else -1.0

    return score


def warm_centroids(x: np.ndarray, old: np.ndarray, k_min: int) -> np.ndarray:
    """Initial centroids from the current partition, in today's profile coordinates: the mean
    profile of the points of every old cluster that has points here (old ids in ascending order),
    topped up to ``k_min`` with the points farthest from their nearest such centroid."""
    ids = np.unique(old)
    cents = np.stack([x[old == c].mean(axis=0) for c in ids]) if ids.size else np.zeros((0, x.shape[1]))
    while cents.shape[0] < k_min:
        d2 = ((x[:, None, :] - cents[None, :, :]) ** 2).sum(-1).min(1) if cents.shape[0] else np.ones(x.shape[0])
        cents = np.concatenate([cents, x[int(np.argmax(d2))][None, :]])
    return cents


def choose_k(
    x: np.ndarray, k_min: int, k_max: int, seed: int, n_init: int, max_iter: int, silhouette_sample: int,
    warm: np.ndarray | None = None, k_margin: float = 0.0,
) -> tuple[Any, float, dict[int, float], bool] | None:
    """Fit ``KMeans(k)`` for ``k in [k_min, min(k_max, distinct - 1)]`` on ``x`` and keep the one with
    the highest silhouette score (seed 002 §5.B.3.5), scored on one fixed sub-sample of ``x``
    (precomputed distances). With ``warm`` (initial centroids from the current partition), k-means
    is also run from them (one init, k = their number) and that warm fit is kept unless the best
    cold fit's silhouette beats it by more than ``k_margin``. Returns (model, score, {k: score},
    warm fit kept) or None if ``k_min`` is impossible."""
    from sklearn.cluster import KMeans

    n = x.shape[0]
    distinct = np.unique(x, axis=0).shape[0]
    k_hi = min(k_max, distinct - 1, n - 1)
    if k_hi < k_min:
        return None
    score = silhouette_scorer(x, seed, silhouette_sample)
    best: tuple[Any, float] | None = None
    scores: dict[int, float] = {}
    for k in range(k_min, k_hi + 1):
        model = KMeans(n_clusters=k, n_init=n_init, max_iter=max_iter, random_state=seed).fit(x)
        scores[k] = score(model.labels_)
        if best is None or scores[k] > best[1]:
            best = (model, scores[k])
    assert best is not None
    if warm is not None and k_min <= warm.shape[0] <= min(distinct, n - 1):
        model = KMeans(n_clusters=warm.shape[0], init=warm, n_init=1, max_iter=max_iter, random_state=seed).fit(x)
        warm_score = score(model.labels_)
        if not best[1] > warm_score + k_margin:
            return model, warm_score, scores, True
    return best[0], best[1], scores, False


def assign_silent(
    labels: np.ndarray, active: np.ndarray, old: np.ndarray, grid_xy: np.ndarray, k_new: int, k_old: int
) -> np.ndarray:
    """Give every silent neuron (``~active``) a new cluster: the new cluster that received most of
    its old cluster's active neurons; if its old cluster had none, the new cluster whose active
    members' mean grid position is nearest. ``labels`` holds the active neurons' new clusters at
    active positions; returns the full [N] assignment."""
    out = labels.copy()
    silent = ~active
    if not silent.any():
        return out
    m = np.zeros((max(k_old, int(old.max()) + 1), k_new), dtype=np.int64)
    np.add.at(m, (old[active], labels[active]), 1)
    follow = m.argmax(axis=1)
    has_active = m.sum(axis=1) > 0
    idx = np.nonzero(silent)[0]
    out[idx] = follow[old[idx]]
    orphans = idx[~has_active[old[idx]]]
    if orphans.size:
        xy = grid_xy.astype(np.float64)
        sums = np.zeros((k_new, 2))
        np.add.at(sums, labels[active], xy[active])
        counts = np.bincount(labels[active], minlength=k_new).clip(min=1)[:, None]
        centres = sums / counts
        d2 = ((xy[orphans, None, :] - centres[None, :, :]) ** 2).sum(-1)
        out[orphans] = d2.argmin(axis=1)
    return out


def stable_relabel(old: np.ndarray, new: np.ndarray, k_old: int, k_new: int) -> np.ndarray:
    """Rename new cluster ids to maximise overlap with old ids (Hungarian assignment); returns the
    renamed [N] labels, still ``0..k_new-1``."""
    return relabel_mapping(old, new, k_old, k_new)[new]


def relabel_mapping(old: np.ndarray, new: np.ndarray, k_old: int, k_new: int) -> np.ndarray:
    """``mapping[b]`` = the id new cluster ``b`` takes: the Hungarian assignment
    (``scipy.optimize.linear_sum_assignment``) maximising the neuron overlap with the old ids;
    unmatched new clusters take the remaining ids ``< k_new`` in order."""
    from scipy.optimize import linear_sum_assignment

    m = np.zeros((max(k_old, int(old.max()) + 1), k_new), dtype=np.int64)
    np.add.at(m, (old, new), 1)
    rows, cols = linear_sum_assignment(-m)
    mapping = np.full(k_new, -1, dtype=np.int64)
    for a, b in zip(rows, cols, strict=True):
        if a < k_new:
            mapping[b] = a
    free = iter(sorted(set(range(k_new)) - set(mapping[mapping >= 0].tolist())))
    for b in range(k_new):
        if mapping[b] < 0:
            mapping[b] = next(free)
    return mapping


def hysteresis_labels(dist2: np.ndarray, old: np.ndarray, mapping: np.ndarray, delta: float) -> np.ndarray:
    """Cluster ids of fitted points with hysteresis: a point keeps its old id ``o`` when that id
    still exists and its centroid's squared distance is within ``(1 + delta)`` of the nearest
    one's; otherwise it takes the nearest centroid's id. ``dist2`` [n, k] is in model order,
    ``mapping`` model -> id (``relabel_mapping``)."""
    best = dist2.argmin(axis=1)
    out = mapping[best]
    if delta <= 0:
        return out
    k = mapping.shape[0]
    inv = np.full(max(int(mapping.max()) + 1, int(old.max()) + 1 if old.size else 0, 1), -1, dtype=np.int64)
    inv[mapping] = np.arange(k)
    m_old = inv[old]
    ok = m_old >= 0
    rows = np.nonzero(ok)[0]
    keep = np.zeros(old.shape[0], dtype=bool)
    keep[rows] = dist2[rows, m_old[rows]] <= (1.0 + delta) * dist2[rows, best[rows]]
    out[keep] = old[keep]
    return out


# -- the job -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClusteringSnapshot:
    activity: torch.Tensor  # uint8 [N, H], a copy
    cluster: torch.Tensor  # int64 [N] (the tensor object in use at snapshot time)
    n_clusters: int
    grid_xy: torch.Tensor
    seed: int
    fields: torch.Tensor | None = None  # float32 [N, d] receptive fields (None: use the activity ring)
    field_spikes: torch.Tensor | None = None  # float32 [N] (decayed) spikes behind each field
    warm: bool = False  # the current partition is this job's (not the builder's spatial blocks)


@dataclass(frozen=True)
class ClusteringPlan:
    labels: torch.Tensor | None  # int64 [N] new cluster of every neuron; None: skipped
    k: int
    silhouette: float
    active: int
    fitted: int
    based_on: torch.Tensor  # the cluster tensor the plan was computed from
    kept_fraction: float = float("nan")  # neurons whose cluster id is unchanged by this run
    kept_fraction_active: float = float("nan")  # ... among the neurons active in the window
    warm: bool = False  # the warm-started fit (current k) was kept


def _has_fields(job: ClusteringJob) -> bool:
    return job.fields is not None


class ClusteringJob(PersistentJob):
    """See the module docstring. With ``profile = "receptive_field"`` the job keeps, per neuron,
    its receptive field: the input-triggered average of the (centred, projected) input-neuron
    spike counts, accumulated in ``observe`` and decayed by ``profile_decay`` at every run. Rows
    follow neurons across structural changes by grid cell (one neuron per cell)."""

    name = NAME
    STATE = (
        Persist("proj_seed", Scalar(int)), Persist("runs", Scalar(int)), Persist("stream", Stream(), key="rng"),
        *(Persist(attr, TensorOf(dtype), when=_has_fields) for attr, dtype in (
            ("fields", torch.float32), ("field_spikes", torch.float32), ("input_mean", torch.float32),
            ("keys", torch.int64))), Persist("version", Scalar(int), when=_has_fields),
    )

    def __init__(self, config: ClusteringConfig | None = None, seed: int = 0):
        self.config = config or ClusteringConfig()
        self.config.validate()
        self.stream = PrivateStream(seed, NAME)
        self._empty()

    def _empty(self) -> None:
        self.fields: torch.Tensor | None = None  # float32 [N, d]
        self.field_spikes: torch.Tensor | None = None  # float32 [N]
        self.input_mean: torch.Tensor | None = None  # float32 [n_inputs]
        self.keys: torch.Tensor | None = None  # int64 [N] grid cell of each row
        self.version = -1  # structure_version the rows were last checked against
        self.proj_seed = -1  # seed of the input projection (drawn once from the job's stream)
        self._proj: torch.Tensor | None = None
        self.runs = 0

    # -- receptive fields ---------------------------------------------------------------------
    @staticmethod
    def _grid_keys(grid_xy: torch.Tensor) -> torch.Tensor:
        xy = grid_xy.to(torch.int64).cpu()
        return xy[:, 0] * (1 << 32) + xy[:, 1]

    def _follow_neurons(self, st: NetworkState) -> None:
        """Re-align the rows with the neurons after a structural change (matched by grid cell;
        new neurons start empty, removed ones are dropped)."""
        version = int(st.structure_version)
        if self.fields is None or (version == self.version and self.fields.shape[0] == st.n):
            self.version = version
            return
        keys = self._grid_keys(st.grid_xy)
        if self.keys is not None and not (self.keys.shape == keys.shape and torch.equal(self.keys, keys)):
            order = torch.argsort(self.keys)
            sorted_keys = self.keys[order]
            if sorted_keys.numel():
                pos = torch.searchsorted(sorted_keys, keys).clamp(max=sorted_keys.numel() - 1)
                hit = sorted_keys[pos] == keys
                src = order[pos]
            else:
                hit = torch.zeros(keys.numel(), dtype=torch.bool)
                src = torch.zeros(keys.numel(), dtype=torch.int64)
            assert self.field_spikes is not None  # set (and restored) together with fields
            fields = torch.zeros(st.n, self.fields.shape[1], dtype=self.fields.dtype)
            spikes = torch.zeros(st.n, dtype=self.field_spikes.dtype)
            fields[hit] = self.fields[src[hit]]
            spikes[hit] = self.field_spikes[src[hit]]
            self.fields, self.field_spikes = fields, spikes
        self.keys = keys
        self.version = version

    def observe(self, engine: Engine, result: CycleResult) -> None:
        """``F_i += c_i (P^T (u - u_mean))``: this cycle's spike count of every neuron times the
        centred input-neuron counts ``u`` (projected by ``P``); ``u_mean`` is an EMA of ``u``."""
        if self.config.profile != "receptive_field":
            return
        spikes = engine.last_cycle_spikes
        st = engine.state
        if spikes is None:
            return
        counts = spikes.counts.to(torch.float32).cpu()
        if counts.numel() != st.n:
            return
        u = counts[st.input_idx.reshape(-1).long().cpu()]
        if self.proj_seed < 0:
            self.proj_seed = self.stream.integer(2**31 - 1)
        if self._proj is None or self._proj.shape[0] != u.numel():
            self._proj = input_projection(u.numel(), self.config.profile_dims, self.proj_seed)
        d = u.numel() if self._proj is None else self._proj.shape[1]
        if (self.fields is None or self.fields.shape[1] != d
                or self.input_mean is None or self.input_mean.numel() != u.numel()):
            self.fields = torch.zeros(st.n, d, dtype=torch.float32)
            self.field_spikes = torch.zeros(st.n, dtype=torch.float32)
            self.input_mean = u.clone()
            self.keys = self._grid_keys(st.grid_xy)
            self.version = int(st.structure_version)
        self._follow_neurons(st)
        centred = u - self.input_mean
        self.input_mean += self.config.input_mean_alpha * centred
        v = centred if self._proj is None else centred @ self._proj
        self.fields.addr_(counts, v)
        assert self.field_spikes is not None  # set (and restored) together with fields
        self.field_spikes += counts

    # -- snapshot -> compute -> apply ---------------------------------------------------------
    def snapshot(self, engine: Engine) -> ClusteringSnapshot:
        st = engine.state
        seed = self.stream.integer(2**31 - 1)
        fields = spikes = None
        if self.config.profile == "receptive_field" and self.fields is not None:
            self._follow_neurons(st)
            assert self.field_spikes is not None  # set (and restored) together with fields
            if self.fields.shape[0] == st.n and float(self.field_spikes.max()) >= self.config.min_profile_spikes:
                fields, spikes = self.fields.clone(), self.field_spikes.clone()
            # block EMA: evidence gathered before this run weighs profile_decay at the next
            self.fields.mul_(self.config.profile_decay)
            self.field_spikes.mul_(self.config.profile_decay)
        return ClusteringSnapshot(st.activity.clone().cpu(), st.cluster, st.n_clusters, st.grid_xy.cpu(), seed, fields,
                                  spikes, warm=self.runs > 0)

    def compute(self, snap: ClusteringSnapshot) -> ClusteringPlan:
        from threadpoolctl import threadpool_limits

        cfg = self.config
        old = snap.cluster.cpu().numpy().astype(np.int64)
        if snap.fields is not None:
            assert snap.field_spikes is not None  # snapshot takes both or neither
            prof, active = field_profiles(snap.fields, snap.field_spikes, cfg.min_profile_spikes)
        else:
            prof, active = activity_profiles(snap.activity)
        n_active = int(active.sum())
        skipped = ClusteringPlan(None, snap.n_clusters, float("nan"), n_active, 0, snap.cluster)
        if n_active <= cfg.k_min:
            return skipped
        rng = np.random.default_rng([snap.seed, 0])
        fit_idx = np.sort(rng.permutation(n_active)[: cfg.max_fit_neurons])
        x_fit = prof[fit_idx]
        warm = warm_centroids(x_fit, old[active][fit_idx], cfg.k_min) if cfg.warm_start and snap.warm else None
        with threadpool_limits(limits=cfg.threads):
            chosen = choose_k(x_fit, cfg.k_min, cfg.k_max, snap.seed, cfg.n_init, cfg.max_iter, cfg.silhouette_sample,
                              warm, cfg.k_switch_margin)
            if chosen is None:
                return skipped
            model, score, _scores, warm_kept = chosen
            dist2 = model.transform(prof) ** 2
        active_labels = dist2.argmin(axis=1).astype(np.int64)
        k = int(model.n_clusters)
        labels = np.zeros(old.shape[0], dtype=np.int64)
        labels[active] = active_labels
        labels = assign_silent(labels, active, old, snap.grid_xy.numpy(), k, snap.n_clusters)
        mapping = relabel_mapping(old, labels, snap.n_clusters, k)
        labels = mapping[labels]
        if cfg.assign_hysteresis > 0 and snap.warm:
            labels[active] = hysteresis_labels(dist2, old[active], mapping, cfg.assign_hysteresis)
        kept = labels == old
        return ClusteringPlan(torch.from_numpy(labels), k, score, n_active, int(fit_idx.size), snap.cluster,
                              kept_fraction=float(kept.mean()) if kept.size else float("nan"),
                              kept_fraction_active=float(kept[active].mean()) if n_active else float("nan"),
                              warm=warm_kept)

    def apply(self, engine: Engine, plan: ClusteringPlan) -> Applied:
        st = engine.state
        if plan.labels is None or plan.labels.shape[0] != st.n:  # skipped, or neurons changed: stale
            return Applied({"skipped": 1, "k": st.n_clusters, "active": plan.active, "kept_fraction": 1.0})
        new = plan.labels.to(st.device)
        k_old = max(int(engine.sie.values.shape[0]), int(st.cluster.max()) + 1)
        overlap = overlap_matrix(st.cluster, new, k_old, plan.k)
        changed = int((st.cluster != new).sum())
        k_before = int(st.n_clusters)
        engine.sie.remap_clusters(overlap)
        edit.set_partition(st, new, plan.k)  # a new object (jobs keyed on the partition notice), plans stale
        self.runs += 1
        return Applied({"k": plan.k, "silhouette": plan.silhouette, "active": plan.active, "fitted": plan.fitted,
                        "changed": changed, "kept_fraction": 1.0 - changed / max(st.n, 1),
                        "kept_fraction_active": plan.kept_fraction_active, "warm": float(plan.warm),
                        "k_changed": float(plan.k != k_before)})

    def reset_state(self) -> None:
        self._empty()
