"""Persistence tagging and de-tagging, SPEC §8 (seed 002 §5.E.4 "Consolidating Core Knowledge",
"Protecting Infrequently Activated but Critical Knowledge", "Removing Persistence Tags", §5.E.4
"Conflict Resolution with Persistent Knowledge"). Job name ``persistence``.

Persistent synapses skip decay and learn at half rate (``learning.persistent_eta_scale``). A
synapse ``i -> j`` belongs to the cluster ``c`` of its POSTSYNAPTIC neuron ``j`` (as in decay.py).
Per cluster, over its reward window (the last ``window`` entries of ``sie.reward_history[c]``)::

    mean_c, var_c, n_c = mean, variance (unbiased), count of the window's rewards
    low-activity cluster:  rate[c] < low_activity_hz  (mean rate of its neurons over the activity ring)

Tag (a run of the job, all conditions at once):

    standard:      w_ij > 0.8 AND mean_c > 0.9 AND var_c < 0.1 AND n_c >= min_window_rewards
                   AND (rate_i + rate_j) / 2 > 0.1 Hz                      ("sustained activity")
    low activity:  the same with w_ij > 0.7, mean_c > 0.8 and the extended window (2,000 rewards,
                   the seed's 100,000 steps; capped by ``sie.cluster_history``)
    activity-independent: w_ij > 0.8 AND j is an output neuron of a population whose action earned
                   total_reward > 1 within the last 20,000 cycles (1M steps), regardless of
                   mean_c, var_c and rates

De-tag:

    sustained low reward: mean_c < 0.5 AND mean_c < (the network's mean) - 0.5 (with n_c >=
                   min_window_rewards; ``decay.low_reward_clusters``) at every run for >= 2,000
                   cycles (100k steps) -> all persistent synapses of c lose the tag
    negative streak: total_reward < -1 on 3 consecutive inputs whose cycle state (result.cluster)
                   was c -> immediately (in ``observe``), all persistent synapses of c lose the tag
    A cluster de-tagged by either rule cannot be re-tagged for ``retag_cooldown_cycles`` (200):
    otherwise a cluster whose window mean is still above 0.9 would be re-tagged at the next run.

Decisions and departures (docs/mechanisms.md):

* Only ``w > threshold`` is tested, as the seed writes it: inhibitory synapses (``w <= 0``) are
  never tagged.
* ``avg_reward[c]`` is the window mean of ``reward_history[c]`` (as in decay.py), not the SIE's
  exponential ``avg_reward`` (biased to 0 for young clusters). The window counts rewards of cycles
  whose state was ``c`` (200 = 10,000 steps if every input fell in ``c``).
* "Sustained activity" takes the seed's formula ``mean(spike_history[neurons_in_synapse]) > 0.1 Hz``
  literally: the mean of the pre- and postsynaptic rates over the ``activity`` ring (the last
  ``network.activity_history`` cycles, not 10,000 steps).
* Low activity = 2 Hz, not 0.1 Hz (the seed's threshold is the bottom of its 0.1-0.5 Hz target band;
  fumd's band is 2-40 Hz, SPEC §5).
* The seed's "contributes to a high-reward output" (``synapse_history[i, j]``) would cost a history
  per synapse; fumd records per output population the last cycle its action earned
  ``total_reward > 1`` (in ``observe``), and a synapse "contributed" if it is a strong (w > 0.8)
  excitatory input of one of that population's neurons.
* "Low reward" is relative as well as absolute (``detag_reward_margin``, issue #9): with labels the
  reward is mostly the external +-1, so ``mean_c < 0.5`` alone holds for every cluster of a network
  below 75 % accuracy, however well it learns; the margin keeps de-tagging for clusters that do
  clearly worse than the rest (as decay's low-reward rule).
* "for 100k steps" is tracked from the first run that saw the cluster low (``low_since``), reset by
  any run that sees it not low; it is exact to within one job period.
* The negative streak is counted per cluster (the brief's reading of "involved in"): an input whose
  state is another cluster neither extends nor breaks cluster ``c``'s streak.

Job state (``state_dict``): ``low_since``, ``streak``, ``detag_cycle`` (int64 [C]) and
``high_reward_cycle`` (int64 [populations]); -1 means "never". When the partition changes
(``state.cluster`` is replaced, e.g. by the clustering job) the per-cluster arrays follow each new
cluster's dominant predecessor (the old cluster most of its neurons came from); when the number of
neurons changed, ids are kept and the arrays are resized.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..network import edit
from ..network.state import NetworkState
from .base import Applied
from .clustering import dominant_predecessor, overlap_matrix
from .config import TaggingConfig  # noqa: F401 - the [jobs.tagging] section, defined in config.py (light to import)
from .decay import cluster_rates_hz, low_reward_clusters, neuron_rates_hz, window_reward_stats
from .state import Persist, PersistentJob, Scalar, TensorOf

if TYPE_CHECKING:
    from ..engine import CycleResult, Engine

NAME = "persistence"
NEVER = -1


# -- pure functions ----------------------------------------------------------------------------
def cluster_windows(cluster_rate: torch.Tensor, cfg: TaggingConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(low-activity mask [C], reward window per cluster [C]): the extended window for low activity."""
    low = cluster_rate < cfg.low_activity_hz
    win = torch.where(low, torch.tensor(cfg.low_activity_window), torch.tensor(cfg.window)).to(torch.int64)
    return low, win


def cluster_tag_thresholds(
    mean: torch.Tensor, var: torch.Tensor, n: torch.Tensor, low_activity: torch.Tensor,
    may_tag: torch.Tensor, cfg: TaggingConfig,
) -> torch.Tensor:
    """Weight threshold of every cluster (float64 [C]; ``inf`` = the cluster may not tag)::

        eligible_c = n_c >= min_window_rewards AND mean_c > r_min(c) AND var_c < 0.1 AND may_tag_c
        thr_c      = w_min(c) if eligible_c else inf
        (w_min, r_min) = (0.7, 0.8) for low-activity clusters, (0.8, 0.9) otherwise
    """
    r_min = torch.where(low_activity, torch.tensor(cfg.low_activity_reward_min, dtype=torch.float64),
                        torch.tensor(cfg.reward_min, dtype=torch.float64))
    w_min = torch.where(low_activity, torch.tensor(cfg.low_activity_w_min, dtype=torch.float64),
                        torch.tensor(cfg.w_min, dtype=torch.float64))
    eligible = (n >= cfg.min_window_rewards) & (mean > r_min) & (var < cfg.reward_var_max) & may_tag
    return torch.where(eligible, w_min, torch.tensor(float("inf"), dtype=torch.float64))


def update_low_since(low_since: torch.Tensor, is_low: torch.Tensor, now: int) -> torch.Tensor:
    """First cycle of the current low-reward stretch of each cluster (-1: not low now)."""
    started = torch.where(low_since >= 0, low_since, torch.full_like(low_since, now))
    return torch.where(is_low, started, torch.full_like(low_since, NEVER))


def sustained_low(low_since: torch.Tensor, now: int, after_cycles: int) -> torch.Tensor:
    """Clusters low for at least ``after_cycles`` cycles."""
    return (low_since >= 0) & (now - low_since >= after_cycles)


def may_retag(detag_cycle: torch.Tensor, now: int, cooldown: int) -> torch.Tensor:
    """Clusters outside their post-de-tag cooldown."""
    return (detag_cycle < 0) | (now - detag_cycle >= cooldown)


def standard_tag_mask(
    w: torch.Tensor, persistent: torch.Tensor, pre: torch.Tensor, post: torch.Tensor, post_cluster: torch.Tensor,
    thresholds: torch.Tensor, rates: torch.Tensor, min_rate_hz: float,
) -> torch.Tensor:
    """Untagged synapses with ``w > thr[c(post)]`` and ``(rate_pre + rate_post) / 2 > min_rate_hz``."""
    active = (rates[pre] + rates[post]) / 2.0 > min_rate_hz
    return ~persistent & (w.to(torch.float64) > thresholds[post_cluster]) & active


def independent_tag_mask(
    w: torch.Tensor, persistent: torch.Tensor, post: torch.Tensor, post_cluster: torch.Tensor,
    high_reward_neuron: torch.Tensor, may_tag: torch.Tensor, w_min: float,
) -> torch.Tensor:
    """Untagged synapses with ``w > w_min`` onto an output neuron of a recent high-reward action."""
    return ~persistent & high_reward_neuron[post] & (w > w_min) & may_tag[post_cluster]


def _fit(arr: torch.Tensor, n: int) -> torch.Tensor:
    """Truncate or pad (with -1 / 0 for the streak) to length ``n``."""
    if arr.shape[0] >= n:
        return arr[:n].clone()
    return torch.cat([arr, torch.full((n - arr.shape[0],), NEVER, dtype=torch.int64)])


# -- the job -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaggingSnapshot:
    cluster: torch.Tensor
    n_clusters: int
    now: int
    rates: torch.Tensor  # float64 [N], Hz
    reward_history: torch.Tensor
    reward_count: torch.Tensor
    low_since: torch.Tensor
    detag_cycle: torch.Tensor
    high_reward_neuron: torch.Tensor  # bool [N]


@dataclass(frozen=True)
class TaggingPlan:
    thresholds: torch.Tensor  # float64 [C]
    detag: torch.Tensor  # bool [C]: sustained low reward
    low_since: torch.Tensor  # int64 [C], to commit
    rates: torch.Tensor
    high_reward_neuron: torch.Tensor
    now: int
    eligible: int
    low_reward: int
    based_on: torch.Tensor


class TaggingJob(PersistentJob):
    name = NAME
    STATE = (*(Persist(key, TensorOf(torch.int64))
               for key in ("low_since", "streak", "detag_cycle", "high_reward_cycle")),
             Persist("streak_detagged", Scalar(int)))

    def __init__(self, config: TaggingConfig | None = None):
        self.config = config or TaggingConfig()
        self.config.validate()
        empty = torch.zeros(0, dtype=torch.int64)
        self.low_since = empty.clone()
        self.streak = empty.clone()
        self.detag_cycle = empty.clone()
        self.high_reward_cycle = empty.clone()
        self.streak_detagged = 0  # de-tagged in observe since the last apply (reported there)
        self._ref: torch.Tensor | None = None  # the partition the per-cluster arrays refer to

    # -- keeping the per-cluster arrays on the current partition -------------------------------
    def _sync(self, engine: Engine) -> None:
        st = engine.state
        n_pop = int(st.output_idx.shape[0])
        if self.high_reward_cycle.shape[0] != n_pop:
            self.high_reward_cycle = _fit(self.high_reward_cycle, n_pop)
        if st.cluster is self._ref and self.low_since.shape[0] == st.n_clusters:
            return
        k = st.n_clusters
        old = self._ref
        if old is not None and old.shape == st.cluster.shape and not torch.equal(old, st.cluster):
            k_old = max(self.low_since.shape[0], int(old.max()) + 1)
            pred = dominant_predecessor(overlap_matrix(old.cpu(), st.cluster.cpu(), k_old, k))
            self.low_since = _fit(self.low_since, k_old)[pred]
            self.detag_cycle = _fit(self.detag_cycle, k_old)[pred]
            self.streak = _fit(self.streak, k_old).clamp(min=0)[pred]
        else:
            self.low_since = _fit(self.low_since, k)
            self.detag_cycle = _fit(self.detag_cycle, k)
            self.streak = _fit(self.streak, k).clamp(min=0)
        self._ref = st.cluster

    # -- per cycle -----------------------------------------------------------------------------
    def observe(self, engine: Engine, result: CycleResult) -> None:
        """Negative-streak de-tagging and high-reward bookkeeping (O(1) unless the streak fires)."""
        cfg = self.config
        self._sync(engine)
        now = int(engine.steps_done)
        c = int(result.cluster)
        reward = float(result.total_reward)
        if 0 <= c < self.streak.shape[0]:
            if reward < cfg.negative_reward:
                self.streak[c] += 1
                if int(self.streak[c]) >= cfg.negative_streak:
                    self.streak[c] = 0
                    self.detag_cycle[c] = now
                    self.streak_detagged += self._detag_cluster(engine.state, c)
            else:
                self.streak[c] = 0
        if reward > cfg.high_reward and 0 <= int(result.action_index) < self.high_reward_cycle.shape[0]:
            self.high_reward_cycle[int(result.action_index)] = now

    @staticmethod
    def _detag_cluster(st: NetworkState, c: int) -> int:
        if not bool(st.persistent.any()):
            return 0
        return edit.set_persistent(st, st.persistent & (st.cluster[st.col.to(torch.int64)] == c), False)

    # -- per run -------------------------------------------------------------------------------
    def snapshot(self, engine: Engine) -> TaggingSnapshot:
        self._sync(engine)
        st, lif, cfg = engine.state, engine.config.lif, self.config
        now = int(engine.steps_done)
        rates = neuron_rates_hz(st.activity, now, lif.steps * lif.dt_ms)
        recent = (self.high_reward_cycle >= 0) & (now - self.high_reward_cycle < cfg.high_reward_window_cycles)
        hr_neuron = torch.zeros(st.n, dtype=torch.bool, device=st.device)
        if bool(recent.any()):
            hr_neuron[st.output_idx[recent.to(st.device)].reshape(-1)] = True
        return TaggingSnapshot(st.cluster, st.n_clusters, now, rates, engine.sie.reward_history.clone(),
                               engine.sie.reward_count.clone(), self.low_since.clone(), self.detag_cycle.clone(),
                               hr_neuron)

    def compute(self, snap: TaggingSnapshot) -> TaggingPlan:
        cfg = self.config
        k = snap.n_clusters
        rate_c = cluster_rates_hz(snap.rates, snap.cluster.to(snap.rates.device), k).cpu()
        low_act, win = cluster_windows(rate_c, cfg)
        stats = window_reward_stats(snap.reward_history[:k], snap.reward_count[:k], win.to(snap.reward_history.device))
        mean, var, n = (t.cpu() for t in stats)
        is_low = low_reward_clusters(mean, n, cfg.min_window_rewards, cfg.detag_reward_below, cfg.detag_reward_margin)
        low_since = update_low_since(snap.low_since, is_low, snap.now)
        detag = sustained_low(low_since, snap.now, cfg.detag_after_cycles)
        may = may_retag(snap.detag_cycle, snap.now, cfg.retag_cooldown_cycles) & ~detag
        thr = cluster_tag_thresholds(mean, var, n, low_act, may, cfg)
        return TaggingPlan(thr, detag, low_since, snap.rates, snap.high_reward_neuron, snap.now,
                           int(torch.isfinite(thr).sum()), int(is_low.sum()), snap.cluster)

    def apply(self, engine: Engine, plan: TaggingPlan) -> Applied:
        cfg, st = self.config, engine.state
        if plan.based_on is not st.cluster:  # re-clustered meanwhile: recompute on the new partition
            plan = self.compute(self.snapshot(engine))
        now = plan.now
        dev = st.device
        post = st.col.to(torch.int64)
        post_cluster = st.cluster[post]
        # de-tag: sustained low reward
        detagged = edit.set_persistent(st, st.persistent & plan.detag.to(dev)[post_cluster], False)
        self.low_since = plan.low_since.clone()
        self.detag_cycle[plan.detag] = now
        # tag (cooldown re-checked: observe may have de-tagged a cluster since the snapshot)
        may = may_retag(self.detag_cycle, now, cfg.retag_cooldown_cycles).to(dev)
        thr = torch.where(may, plan.thresholds.to(dev), torch.tensor(float("inf"), dtype=torch.float64, device=dev))
        pre = st.pre_index()
        std = standard_tag_mask(st.w, st.persistent, pre, post, post_cluster, thr, plan.rates.to(dev), cfg.min_rate_hz)
        ind = independent_tag_mask(st.w, st.persistent, post, post_cluster, plan.high_reward_neuron.to(dev), may,
                                   cfg.independent_w_min)
        tag = std | ind
        tagged = edit.set_persistent(st, tag, True)
        detagged += self.streak_detagged
        self.streak_detagged = 0
        return Applied({
            "tagged": tagged,
            "tagged_independent": int((ind & ~std).sum()),
            "detagged": detagged,
            "persistent": int(st.persistent.sum()),
            "eligible_clusters": plan.eligible,
            "low_reward_clusters": plan.low_reward,
        })

    def reset_state(self) -> None:
        self._ref = None  # re-derived from the loaded arrays at the next _sync
