"""The SIE's combined reward, SPEC §4 (seed 002 §5.B.2, §5.E.3, §5.E.5)::

    total = w_td * TD + w_nov * novelty - w_hab * habituation + w_sb * self_benefit
    total <- mean of the last 5 totals                       (smoothing)
    total <- r + k tanh(total)   if an external reward r arrived (k = internal_weight_with_external)
    total <- min(total, 0)      if novelty > 0.9             (possibly corrupted input)
    total <- r (or 0)           if the computation overran its time budget (5 ms)

``SelfImprovementEngine`` is the thin stateful wrapper: it owns V_states, the pattern history
with habituation levels, the smoothing buffer and the per-cluster reward statistics
(``avg_reward[c]`` as an exponential average, plus a bounded history per cluster).

External reward dominates (issue #9): the internal terms (novelty, self-benefit, ...) are of the
order of 1 and used to swamp an external -1, so 82 % of wrong decisions were paid a positive total.
When a label or reward is present the internal part is squashed to ``(-k, k)`` with ``k = 0.25 < 1``,
so the total has the external reward's sign and the internal terms only shade it.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from ..config import SIEConfig
from .habituation import habituation_update
from .novelty import cosine_to_history, novelty
from .remap import dominant_predecessor, remap_mean
from .self_benefit import self_benefit
from .td import td_update


@dataclass(frozen=True)
class SIEResult:
    total_reward: float
    raw_reward: float
    td_error: float
    novelty: float
    habituation: float
    self_benefit: float
    complexity: float
    external_reward: float | None
    capped: bool
    fallback: bool


class SelfImprovementEngine:
    def __init__(self, cfg: SIEConfig, n_clusters: int, input_size: int, device: torch.device, deterministic: bool):
        self.cfg = cfg
        # live weights: start at the config, adapted by the tuning job (SPEC §8), checkpointed
        self.w_td, self.w_novelty = cfg.w_td, cfg.w_novelty
        self.w_habituation, self.w_self_benefit = cfg.w_habituation, cfg.w_self_benefit
        self.deterministic = deterministic
        self.values = torch.zeros(n_clusters, dtype=torch.float64, device=device)  # V_states
        self.prev_state = -1
        self.history = torch.zeros(cfg.history_size, input_size, dtype=torch.float32, device=device)
        self.history_count = 0
        self.history_next = 0
        self.habituation = torch.zeros(cfg.history_size, dtype=torch.float64, device=device)
        self.recent = torch.zeros(cfg.smoothing_window, dtype=torch.float64, device=device)
        self.recent_count = 0
        self.avg_reward = torch.zeros(n_clusters, dtype=torch.float64, device=device)
        self.reward_history = torch.zeros(n_clusters, cfg.cluster_history, dtype=torch.float32, device=device)
        self.reward_count = torch.zeros(n_clusters, dtype=torch.int64, device=device)
        self.fallbacks = 0

    def evaluate(
        self,
        pattern: torch.Tensor,
        state: int,
        cluster_spikes: torch.Tensor,
        confidence: float,
        external: float | None,
    ) -> SIEResult:
        """Compute this cycle's reward and advance the SIE's state."""
        cfg = self.cfg
        started = time.perf_counter()
        r = 0.0 if external is None else external
        current = state if self.prev_state < 0 else self.prev_state
        td, self.values = td_update(self.values, current, state, r, cfg.td_gamma, cfg.td_alpha)

        sims = cosine_to_history(pattern, self.history, self.history_count)
        nov, best = novelty(sims)
        match = best if best >= 0 and float(sims[best]) >= cfg.match_threshold else -1
        hab, self.habituation = habituation_update(self.habituation, match, cfg.habituation_increment,
                                                   cfg.habituation_decay)
        if match < 0:
            self._remember(pattern)

        sb, cx = self_benefit(cluster_spikes, confidence)
        raw = self.w_td * td + self.w_novelty * nov - self.w_habituation * hab + self.w_self_benefit * sb

        self.recent[self.recent_count % cfg.smoothing_window] = raw
        self.recent_count += 1
        total = float(self.recent[: min(self.recent_count, cfg.smoothing_window)].mean())
        if external is not None:
            total = external + cfg.internal_weight_with_external * math.tanh(total)
        capped = nov > cfg.novelty_cap_threshold and total > 0.0
        if capped:
            total = 0.0

        elapsed_ms = (time.perf_counter() - started) * 1000.0
        fallback = not self.deterministic and elapsed_ms > cfg.time_budget_ms
        if fallback:
            self.fallbacks += 1
            total = r

        self._track_cluster(state, total)
        self.prev_state = state
        return SIEResult(total, raw, td, nov, hab, sb, cx, external, capped, fallback)

    def _remember(self, pattern: torch.Tensor) -> None:
        slot = self.history_next
        self.history[slot] = pattern
        self.habituation[slot] = 0.0
        self.history_next = (slot + 1) % self.cfg.history_size
        self.history_count = min(self.history_count + 1, self.cfg.history_size)

    def _track_cluster(self, state: int, total: float) -> None:
        a = self.cfg.cluster_reward_alpha
        self.avg_reward[state] += a * (total - self.avg_reward[state])
        slot = int(self.reward_count[state]) % self.cfg.cluster_history
        self.reward_history[state, slot] = total
        self.reward_count[state] += 1

    # -- persistence ---------------------------------------------------------------------------
    def remap_clusters(self, overlap: torch.Tensor) -> None:
        """Move the per-cluster state onto a new partition (the clustering job, SPEC §8): TD values
        and average rewards as membership-weighted means over the old clusters each new one draws
        from, reward rings and counts from its dominant predecessor, the previous state to where most
        of its neurons went (-1 if it emptied). ``overlap``: ``M[a, b]``, ``fumd/sie/remap.py``."""
        m = overlap.to(self.values.device)
        k_old = m.shape[0]
        if self.values.shape[0] < k_old:  # ids beyond the SIE's size (should not happen): zero state
            pad = k_old - self.values.shape[0]
            self.values = torch.cat([self.values, self.values.new_zeros(pad)])
            self.avg_reward = torch.cat([self.avg_reward, self.avg_reward.new_zeros(pad)])
            self.reward_history = torch.cat([self.reward_history,
                                             self.reward_history.new_zeros(pad, self.reward_history.shape[1])])
            self.reward_count = torch.cat([self.reward_count, self.reward_count.new_zeros(pad)])
        elif self.values.shape[0] > k_old:
            m = torch.cat([m, m.new_zeros(self.values.shape[0] - k_old, m.shape[1])])
        pred = dominant_predecessor(m)
        self.values = remap_mean(self.values, m)
        self.avg_reward = remap_mean(self.avg_reward, m)
        self.reward_history = self.reward_history[pred].clone()
        self.reward_count = self.reward_count[pred].clone()
        prev = int(self.prev_state)
        if 0 <= prev < m.shape[0] and int(m[prev].sum()) > 0:
            self.prev_state = int(m[prev].argmax())
        else:
            self.prev_state = -1

    def state_dict(self) -> dict[str, torch.Tensor | int | float]:
        return {
            "values": self.values, "prev_state": self.prev_state, "history": self.history,
            "history_count": self.history_count, "history_next": self.history_next,
            "habituation": self.habituation, "recent": self.recent, "recent_count": self.recent_count,
            "avg_reward": self.avg_reward, "reward_history": self.reward_history,
            "reward_count": self.reward_count, "fallbacks": self.fallbacks,
            "w_td": self.w_td, "w_novelty": self.w_novelty, "w_habituation": self.w_habituation,
            "w_self_benefit": self.w_self_benefit,
        }

    def load_state_dict(self, data: dict) -> None:
        for key, value in data.items():
            current = getattr(self, key)
            setattr(self, key, value.to(current.device, current.dtype) if torch.is_tensor(current)
                    else type(current)(value))
