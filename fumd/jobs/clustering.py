"""Adaptive domain clustering, SPEC §8 (seed 002 §5.B.2, §5.B.3.5, §5.C.2, §5.D.5, §5.E.6).

Every run re-partitions the neurons by what they have recently responded to and moves the SIE's
per-cluster state (``V_states`` and the reward statistics) onto the new partition.

Pipeline (``compute``, pure, may run in a worker thread):

1. **Profiles.** Row ``i`` of ``state.activity`` holds neuron ``i``'s spike counts over the last
   ``H`` cycles (one column per input). The profile is::

       p_i = log1p(a_i) / ||log1p(a_i)||_2

   so Euclidean k-means on ``p`` is k-means in cosine geometry: neurons are grouped by *which*
   inputs drive them (their domain), not by how fast they fire; ``log1p`` compresses bursts so a
   single saturated cycle does not dominate a profile. Column order is irrelevant (it is the same
   for all neurons), so the ring buffer needs no unrolling.
2. **Silent neurons** (all-zero rows: no spike in the window) have no profile and take no part in
   the fit. Each joins the new cluster that received the most *active* neurons of its old cluster
   (it follows its old cluster-mates); if its old cluster had no active neuron at all, it joins the
   new cluster whose active members' mean grid position is nearest (connectivity is distance-biased,
   so grid neighbours are the neurons it is wired to).
3. **Sampling (seed §5.D.5).** k-means is fitted on a uniform random sample of at most
   ``max_fit_neurons`` active neurons; every active neuron is then assigned to its nearest centroid.
4. **k by silhouette (seed §5.B.3.5).** For every ``k`` in ``[k_min, k_max]`` (``k_max`` also
   capped by the number of distinct profiles minus one) fit ``KMeans(k, n_init, random_state=seed)``;
   score it with ``silhouette_score`` on one fixed random sub-sample (``silhouette_sample``) of the
   fitted points, through a precomputed distance matrix (the same points for every ``k``, so scores
   are comparable and the distances are computed once). The highest score wins; ties go to the
   smaller ``k``. Fewer than ``k_min`` distinct active profiles -> the run is skipped (the partition
   is left as it is): ``k >= k_min`` cannot be honoured.
5. **Stable ids.** New clusters are renamed to maximise their overlap with the old ids (Hungarian
   assignment on the neuron-overlap matrix), so "cluster 3" keeps meaning roughly the same neurons
   across runs; unmatched clusters take the remaining ids in order.

``apply`` (loop thread) installs ``state.cluster`` (a *new* tensor object: other jobs detect a
re-clustering by identity) and ``state.n_clusters``, and remaps the SIE with the neuron-overlap
matrix ``M[a, b]`` = number of neurons moving from old cluster ``a`` to new cluster ``b``:

    V_new[b]          = sum_a M[a, b] V_old[a] / sum_a M[a, b]      (membership-weighted mean)
    avg_reward_new[b] = sum_a M[a, b] avg_old[a] / sum_a M[a, b]
    reward_history_new[b], reward_count_new[b] = those of argmax_a M[a, b]   (dominant predecessor:
                        a reward ring is a time series and cannot be averaged across clusters)
    prev_state_new    = argmax_b M[prev_state, b]   (-1 if prev_state was -1 or had no neurons)

Reproducibility: ``snapshot`` draws one integer from ``engine.generator``; it seeds the neuron
sample, the silhouette sub-sample and every ``KMeans``. k-means runs with ``threads`` OpenMP/BLAS
threads (default 1: sklearn's multi-threaded reductions are not bit-identical across thread counts).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError

NAME = "clustering"


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

    def validate(self) -> None:
        _check_cadence(NAME, self.every_seconds, self.every_cycles, self.enabled)
        _check_range(NAME, "k_min", self.k_min, 2, 100_000)
        _check_range(NAME, "k_max", self.k_max, self.k_min, 100_000)
        _check_range(NAME, "max_fit_neurons", self.max_fit_neurons, self.k_max + 1, 100_000_000)
        _check_range(NAME, "silhouette_sample", self.silhouette_sample, self.k_max + 1, 1_000_000)
        _check_range(NAME, "n_init", self.n_init, 1, 100)
        _check_range(NAME, "max_iter", self.max_iter, 1, 10_000)
        _check_range(NAME, "threads", self.threads, 1, 1024)


# -- shared validation helpers (also used by decay.py and tagging.py) ---------------------------
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


# -- pure functions ----------------------------------------------------------------------------
def activity_profiles(activity: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``p_i = log1p(a_i) / ||log1p(a_i)||_2`` for the rows of ``activity`` [N, H] (spike counts per
    cycle); returns (profiles float64 [n_active, H], active bool [N]). Silent rows are dropped."""
    x = torch.log1p(activity.to(torch.float64).cpu())
    norm = x.norm(dim=1)
    active = norm > 0
    prof = x[active] / norm[active, None]
    return prof.numpy(), active.numpy()


def choose_k(
    x: np.ndarray, k_min: int, k_max: int, seed: int, n_init: int, max_iter: int, silhouette_sample: int
) -> tuple[Any, float, dict[int, float]] | None:
    """Fit ``KMeans(k)`` for ``k in [k_min, min(k_max, distinct - 1)]`` on ``x`` and keep the one with
    the highest silhouette score (seed 002 §5.B.3.5), scored on one fixed sub-sample of ``x``
    (precomputed distances). Returns (model, score, {k: score}) or None if ``k_min`` is impossible."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import pairwise_distances, silhouette_score

    n = x.shape[0]
    distinct = np.unique(x, axis=0).shape[0]
    k_hi = min(k_max, distinct - 1, n - 1)
    if k_hi < k_min:
        return None
    rng = np.random.default_rng([seed, 1])  # a stream of its own (the neuron sample uses [seed, 0])
    sub = np.sort(rng.permutation(n)[: min(silhouette_sample, n)])
    dist = pairwise_distances(x[sub], metric="euclidean")
    best: tuple[Any, float] | None = None
    scores: dict[int, float] = {}
    for k in range(k_min, k_hi + 1):
        model = KMeans(n_clusters=k, n_init=n_init, max_iter=max_iter, random_state=seed).fit(x)
        labels = model.labels_[sub]
        n_labels = np.unique(labels).shape[0]
        score = float(silhouette_score(dist, labels, metric="precomputed")) if 2 <= n_labels <= len(sub) - 1 else -1.0
        scores[k] = score
        if best is None or score > best[1]:
            best = (model, score)
    assert best is not None
    return best[0], best[1], scores


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
    from scipy.optimize import linear_sum_assignment

    m = np.zeros((max(k_old, int(old.max()) + 1), k_new), dtype=np.int64)
    np.add.at(m, (old, new), 1)
    rows, cols = linear_sum_assignment(-m)
    mapping = np.full(k_new, -1, dtype=np.int64)
    for a, b in zip(rows, cols):
        if a < k_new:
            mapping[b] = a
    free = iter(sorted(set(range(k_new)) - set(mapping[mapping >= 0].tolist())))
    for b in range(k_new):
        if mapping[b] < 0:
            mapping[b] = next(free)
    return mapping[new]


def overlap_matrix(old: torch.Tensor, new: torch.Tensor, k_old: int, k_new: int) -> torch.Tensor:
    """``M[a, b]`` = number of neurons in old cluster ``a`` and new cluster ``b`` (int64 [k_old, k_new])."""
    flat = old.to(torch.int64) * k_new + new.to(torch.int64)
    return torch.bincount(flat, minlength=k_old * k_new).reshape(k_old, k_new)


def remap_mean(values: torch.Tensor, overlap: torch.Tensor) -> torch.Tensor:
    """Membership-weighted mean: ``v_new[b] = sum_a M[a, b] v[a] / sum_a M[a, b]`` (0 for an empty b)."""
    m = overlap.to(values.dtype)
    return (m * values[:, None]).sum(0) / m.sum(0).clamp(min=1)


def dominant_predecessor(overlap: torch.Tensor) -> torch.Tensor:
    """``argmax_a M[a, b]`` for every new cluster ``b`` (the old cluster most of it came from)."""
    return overlap.argmax(dim=0)


def remap_sie(sie: Any, overlap: torch.Tensor) -> None:
    """Move the SIE's per-cluster state onto the new clusters (see the module docstring)."""
    m = overlap.to(sie.values.device)
    k_old = m.shape[0]
    if sie.values.shape[0] < k_old:  # ids beyond the SIE's size (should not happen): zero state
        pad = k_old - sie.values.shape[0]
        sie.values = torch.cat([sie.values, sie.values.new_zeros(pad)])
        sie.avg_reward = torch.cat([sie.avg_reward, sie.avg_reward.new_zeros(pad)])
        sie.reward_history = torch.cat([sie.reward_history, sie.reward_history.new_zeros(pad, sie.reward_history.shape[1])])
        sie.reward_count = torch.cat([sie.reward_count, sie.reward_count.new_zeros(pad)])
    elif sie.values.shape[0] > k_old:
        m = torch.cat([m, m.new_zeros(sie.values.shape[0] - k_old, m.shape[1])])
    pred = dominant_predecessor(m)
    sie.values = remap_mean(sie.values, m)
    sie.avg_reward = remap_mean(sie.avg_reward, m)
    sie.reward_history = sie.reward_history[pred].clone()
    sie.reward_count = sie.reward_count[pred].clone()
    prev = int(sie.prev_state)
    if 0 <= prev < m.shape[0] and int(m[prev].sum()) > 0:
        sie.prev_state = int(m[prev].argmax())
    else:
        sie.prev_state = -1


# -- the job -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClusteringSnapshot:
    activity: torch.Tensor  # uint8 [N, H], a copy
    cluster: torch.Tensor  # int64 [N] (the tensor object in use at snapshot time)
    n_clusters: int
    grid_xy: torch.Tensor
    seed: int


@dataclass(frozen=True)
class ClusteringPlan:
    labels: torch.Tensor | None  # int64 [N] new cluster of every neuron; None: skipped
    k: int
    silhouette: float
    active: int
    fitted: int
    based_on: torch.Tensor  # the cluster tensor the plan was computed from


class ClusteringJob:
    name = NAME

    def __init__(self, config: ClusteringConfig | None = None):
        self.config = config or ClusteringConfig()
        self.config.validate()

    def snapshot(self, engine: Any) -> ClusteringSnapshot:
        st = engine.state
        gen = engine.generator
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen, device=gen.device))
        return ClusteringSnapshot(st.activity.clone().cpu(), st.cluster, st.n_clusters, st.grid_xy.cpu(), seed)

    def compute(self, snap: ClusteringSnapshot) -> ClusteringPlan:
        from threadpoolctl import threadpool_limits

        cfg = self.config
        old = snap.cluster.cpu().numpy().astype(np.int64)
        prof, active = activity_profiles(snap.activity)
        n_active = int(active.sum())
        skipped = ClusteringPlan(None, snap.n_clusters, float("nan"), n_active, 0, snap.cluster)
        if n_active <= cfg.k_min:
            return skipped
        rng = np.random.default_rng([snap.seed, 0])
        fit_idx = np.sort(rng.permutation(n_active)[: cfg.max_fit_neurons])
        with threadpool_limits(limits=cfg.threads):
            chosen = choose_k(prof[fit_idx], cfg.k_min, cfg.k_max, snap.seed, cfg.n_init, cfg.max_iter, cfg.silhouette_sample)
            if chosen is None:
                return skipped
            model, score, _scores = chosen
            active_labels = model.predict(prof).astype(np.int64)
        k = int(model.n_clusters)
        labels = np.zeros(old.shape[0], dtype=np.int64)
        labels[active] = active_labels
        labels = assign_silent(labels, active, old, snap.grid_xy.numpy(), k, snap.n_clusters)
        labels = stable_relabel(old, labels, snap.n_clusters, k)
        return ClusteringPlan(torch.from_numpy(labels), k, score, n_active, int(fit_idx.size), snap.cluster)

    def apply(self, engine: Any, plan: ClusteringPlan) -> dict[str, float]:
        st = engine.state
        if plan.labels is None:
            return {"skipped": 1, "k": st.n_clusters, "active": plan.active}
        if plan.labels.shape[0] != st.n:
            return {"skipped": 1, "k": st.n_clusters, "active": plan.active}  # neurons changed: stale
        new = plan.labels.to(st.device)
        k_old = max(int(engine.sie.values.shape[0]), int(st.cluster.max()) + 1)
        overlap = overlap_matrix(st.cluster, new, k_old, plan.k)
        changed = int((st.cluster != new).sum())
        remap_sie(engine.sie, overlap)
        st.cluster = new  # a new object: jobs keyed on the partition notice by identity
        st.n_clusters = plan.k
        st.structure_version += 1  # plans computed on the old partition (off-loop) are now stale
        return {"k": plan.k, "silhouette": plan.silhouette, "active": plan.active, "fitted": plan.fitted,
                "changed": changed}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, data: dict[str, Any]) -> None:
        return None
