"""Selective synaptic decay and pruning, SPEC §8 (seed 002 §5.E.4 "Forgetting Outdated Information",
"Synaptic Decay (Selective Forgetting)").

Every run (default every 200 cycles = 10,000 steps at T = 50, the seed's "every 10k steps")::

    w_ij <- w_ij * f(c)     for every NON-persistent synapse, c = cluster of the POSTSYNAPTIC neuron j
    f(c) = 0.965  if c is a low-reward cluster (see below)
           0.995  elif c is a low-activity cluster: mean firing rate of its neurons < 2 Hz
           0.99   otherwise
    prune  |w_ij| < 0.01   (non-persistent only; the CSR shrinks, traces and flags stay aligned),
           weakest first, never below ``prune_floor`` x the target synapse count (SPEC §6 "keep
           overall sparsity near its target"; docs/mechanisms.md)

Persistent synapses are neither decayed nor pruned, and neither are the **readout synapses**
(``protect_readout``, default on; issue #9): every synapse onto an output neuron (the learned
input->output weights and the inhibition between output populations) or onto a feature neuron
(the input->feature expansion, issue #15). They hold what the network
has learned; decaying them every 200 cycles pulled the readout back towards its random start
(and the readout's own synaptic scaling undid part of it in the next cycle anyway). The product is
computed in float64 and rounded once to the weight dtype (``w_new = float32(float64(w) * f)``).

**Low-reward cluster** (``low_reward_clusters``): at least ``min_window_rewards`` rewards in its
window, window mean below ``low_reward_threshold`` (0) AND below the network's mean by more than
``low_reward_margin`` (0.5)::

    low_c = n_c >= 20  and  mean_c < 0  and  mean_c < mean_all - 0.5,
    mean_all = sum_c n_c mean_c / sum_c n_c   (clusters with >= 20 rewards)

With labels the reward is mostly the external +-1 (``2 x accuracy - 1``), so an absolute threshold
alone calls every cluster of a network that learns a hard task (accuracy < 0.5: mean < 0) "low
reward"; the relative margin keeps the fast decay for clusters that do clearly worse than the rest
(0.5 = 25 points of accuracy, ~2.5 standard errors of a 20-reward window).

Decisions (docs/mechanisms.md):

* **A synapse belongs to its postsynaptic neuron's cluster** — it is one of the inputs that make that
  neuron (and so its cluster) fire, and STDP and the reward credit act through that firing. The
  persistence job uses the same rule.
* **Low reward wins over low activity**: the seed slows decay for rarely used knowledge and speeds
  it for wrong knowledge; knowledge that is both rare and wrong is not worth keeping.
* **"avg_reward[c]"** is the mean of the last ``reward_window`` entries of ``sie.reward_history[c]``
  (the rewards of the cycles whose state was ``c``), and a cluster counts as low-reward only with at
  least ``min_window_rewards`` entries. The SIE's exponential ``avg_reward`` starts at 0 without bias
  correction, so every young cluster would read as "low reward" and decay 3.5x faster.
* **Low activity = 2 Hz, not the seed's 0.1 Hz.** The seed's threshold sits at the bottom of its
  0.1-0.5 Hz target band; fumd's band is 2-40 Hz (intrinsic plasticity, SPEC §5), so "below the
  band" is < 2 Hz. At 0.1 Hz the slow-decay branch would never fire in a working network. The rate is
  the mean over the ``activity`` ring (the last ``network.activity_history`` cycles).
* The seed's 0.95 factor for "cross-cluster validation failure" is not implemented: fumd has no
  cross-cluster validation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..network import edit
from ..network.build import initial_density, recurrent_density
from ..network.state import NetworkState
from .base import Applied
from .config import DecayConfig  # noqa: F401 - the [jobs.decay] section, defined in config.py (light to import)
from .state import PersistentJob

if TYPE_CHECKING:
    from ..engine import Engine

NAME = "decay"


# -- cluster statistics (shared with tagging.py) ------------------------------------------------
def neuron_rates_hz(activity: torch.Tensor, cycles_seen: int, cycle_ms: float) -> torch.Tensor:
    """Mean rate of each neuron over the activity ring, in Hz::

        rate_i = sum_t a_it / min(cycles_seen, H) / (cycle_ms / 1000)

    (columns not yet written are zero, so dividing by the number written gives the true mean)."""
    h = activity.shape[1]
    n_valid = max(1, min(int(cycles_seen), h))
    return activity.sum(dim=1, dtype=torch.float64) / n_valid / (cycle_ms / 1000.0)


def cluster_rates_hz(rates: torch.Tensor, cluster: torch.Tensor, k: int) -> torch.Tensor:
    """``rate[c]`` = mean rate of the neurons of cluster ``c`` (0 for an empty cluster)."""
    total = torch.bincount(cluster, weights=rates.to(torch.float64), minlength=k)[:k]
    size = torch.bincount(cluster, minlength=k)[:k].clamp(min=1)
    return total / size


def window_reward_stats(
    history: torch.Tensor, count: torch.Tensor, window: torch.Tensor | int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, variance (unbiased, as ``torch.var``) and number of the last ``m_c = min(window_c,
    count_c, H)`` rewards of each cluster's ring ``history[c]`` (written at ``count_c % H``).
    ``window`` may be one int or an int tensor [C]. Empty windows give mean 0, var 0, n 0."""
    c, h = history.shape
    win = torch.as_tensor(window, dtype=torch.int64, device=history.device).expand(c)
    m = torch.minimum(torch.minimum(win, count.to(torch.int64)), torch.tensor(h, device=history.device))
    width = max(1, int(m.max()) if c else 1)
    j = torch.arange(width, device=history.device)
    idx = (count.to(torch.int64)[:, None] - 1 - j[None, :]) % h
    valid = j[None, :] < m[:, None]
    vals = history.gather(1, idx).to(torch.float64) * valid
    n = valid.sum(dim=1)
    mean = vals.sum(dim=1) / n.clamp(min=1)
    var = (((vals - mean[:, None]) * valid) ** 2).sum(dim=1) / (n - 1).clamp(min=1)
    return mean, var, n


def low_reward_clusters(mean: torch.Tensor, n: torch.Tensor, min_n: int, threshold: float,
                        margin: float) -> torch.Tensor:
    """Bool [C]: clusters with evidence (``n >= min_n``) whose window mean is below ``threshold``
    and below the evidence-weighted network mean ``sum n_c mean_c / sum n_c`` by more than
    ``margin`` (shared by decay, persistence and structural growth; module docstring)."""
    enough = n >= min_n
    weights = torch.where(enough, n.to(torch.float64), torch.zeros_like(mean, dtype=torch.float64))
    total = float(weights.sum())
    overall = float((weights * mean.to(torch.float64)).sum()) / total if total > 0 else 0.0
    return enough & (mean < threshold) & (mean < overall - margin)


def readout_synapses(state: NetworkState) -> torch.Tensor:
    """Bool [nnz]: synapses onto an output neuron or a feature neuron (derived from
    ``state.output_idx``, ``state.feature_idx`` and the CSR, so it is valid for the structure at
    hand whatever ``engine.readout`` was last built for). The feature pathway is the fixed
    expansion the readout reads (issue #15): decay would erase the features under it."""
    is_out = torch.zeros(state.n, dtype=torch.bool, device=state.col.device)
    is_out[state.output_idx.reshape(-1).long().to(state.col.device)] = True
    is_out[state.feature_idx.long().to(state.col.device)] = True
    return is_out[state.col.long()]


# -- the decay rule ----------------------------------------------------------------------------
def decay_classes(
    cluster_rate: torch.Tensor, reward_mean: torch.Tensor, reward_n: torch.Tensor, cfg: DecayConfig
) -> torch.Tensor:
    """Class of every cluster (int64 [C]): 2 = low reward (``low_reward_clusters``), else 1 = low
    activity (rate below ``low_activity_hz``), else 0. Low reward wins (seed 002 §5.E.4)."""
    cls = torch.zeros(cluster_rate.shape[0], dtype=torch.int64, device=cluster_rate.device)
    cls[cluster_rate < cfg.low_activity_hz] = 1
    low = low_reward_clusters(reward_mean, reward_n, cfg.min_window_rewards, cfg.low_reward_threshold,
                              cfg.low_reward_margin)
    cls[low.to(cls.device)] = 2
    return cls


def decay_factors(classes: torch.Tensor, cfg: DecayConfig) -> torch.Tensor:
    """``f(c)`` (float64 [C]): ``factor``, ``low_activity_factor`` or ``low_reward_factor`` by class."""
    table = torch.tensor([cfg.factor, cfg.low_activity_factor, cfg.low_reward_factor], dtype=torch.float64,
                         device=classes.device)
    return table[classes]


def decay_weights(w: torch.Tensor, persistent: torch.Tensor, synapse_factor: torch.Tensor) -> torch.Tensor:
    """``w * f`` for non-persistent synapses (float64 product, rounded once), ``w`` for persistent."""
    return torch.where(persistent, w, (w.to(torch.float64) * synapse_factor).to(w.dtype))


def prune_keep(w: torch.Tensor, persistent: torch.Tensor, threshold: float,
               max_pruned: int | None = None) -> torch.Tensor:
    """Synapses to keep: persistent ones and those with ``|w| >= threshold``; if more than
    ``max_pruned`` qualify, only the ``max_pruned`` weakest go (ties: lower position first)."""
    keep = persistent | (w.abs() >= threshold)
    if max_pruned is not None:
        candidates = (~keep).nonzero().squeeze(1)
        if candidates.numel() > max_pruned:
            order = torch.sort(w[candidates].abs(), stable=True).indices
            keep[candidates[order[max_pruned:]]] = True
    return keep


def prune_budget(nnz: int, target: float, floor: float) -> int | None:
    """How many of ``nnz`` synapses pruning may remove without going below ``floor`` x the
    ``target`` synapse count (None: no floor)."""
    if floor <= 0:
        return None
    return max(0, nnz - int(math.ceil(floor * target)))


# -- the job -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class DecaySnapshot:
    cluster: torch.Tensor  # the partition object in use at snapshot time
    n_clusters: int
    rates: torch.Tensor  # float64 [N], Hz
    reward_history: torch.Tensor
    reward_count: torch.Tensor


@dataclass(frozen=True)
class DecayPlan:
    classes: torch.Tensor  # int64 [C]: 0 normal, 1 low activity, 2 low reward
    factors: torch.Tensor  # float64 [C]
    based_on: torch.Tensor


class DecayJob(PersistentJob):
    """No state of its own (``STATE`` is empty)."""

    name = NAME

    def __init__(self, config: DecayConfig | None = None):
        self.config = config or DecayConfig()
        self.config.validate()

    def snapshot(self, engine: Engine) -> DecaySnapshot:
        st, lif = engine.state, engine.config.lif
        rates = neuron_rates_hz(st.activity, engine.steps_done, lif.steps * lif.dt_ms)
        return DecaySnapshot(st.cluster, st.n_clusters, rates, engine.sie.reward_history.clone(),
                             engine.sie.reward_count.clone())

    def compute(self, snap: DecaySnapshot) -> DecayPlan:
        cfg = self.config
        k = snap.n_clusters
        rate_c = cluster_rates_hz(snap.rates, snap.cluster.to(snap.rates.device), k)
        mean, _var, n = window_reward_stats(snap.reward_history[:k], snap.reward_count[:k], cfg.reward_window)
        classes = decay_classes(rate_c, mean.to(rate_c.device), n.to(rate_c.device), cfg)
        return DecayPlan(classes, decay_factors(classes, cfg), snap.cluster)

    def apply(self, engine: Engine, plan: DecayPlan) -> Applied:
        st = engine.state
        if plan.based_on is not st.cluster:  # re-clustered meanwhile: the ids mean other clusters
            plan = self.compute(self.snapshot(engine))
        post_cluster = st.cluster[st.col.to(torch.int64)]
        syn_class = plan.classes.to(st.device)[post_cluster]
        readout = readout_synapses(st) if self.config.protect_readout else torch.zeros_like(st.persistent)
        fixed = st.persistent | readout  # neither decayed nor pruned
        movable = ~fixed
        edit.set_weights(st, decay_weights(st.w, fixed, plan.factors.to(st.device)[post_cluster]))
        if self.config.protect_readout:  # the floor counts the recurrent synapses only (build.recurrent_density)
            hidden = st.n - int(st.designated_idx().unique().numel())
            floor_target = recurrent_density(engine.config) * hidden * (st.n - 1)
            budget = prune_budget(st.nnz - int(readout.sum()), floor_target, self.config.prune_floor)
        else:
            budget = prune_budget(st.nnz, initial_density(engine.config) * st.n * (st.n - 1),
                                  self.config.prune_floor)
        pruned = edit.remove_synapses(st, prune_keep(st.w, fixed, self.config.prune_below, budget))
        return Applied({
            "protected_readout": int(readout.sum()),
            "decayed": int(movable.sum()),
            "pruned": pruned,
            "slow": int((movable & (syn_class == 1)).sum()),
            "fast": int((movable & (syn_class == 2)).sum()),
            "low_activity_clusters": int((plan.classes == 1).sum()),
            "low_reward_clusters": int((plan.classes == 2).sum()),
            "synapses": st.nnz,
        })
