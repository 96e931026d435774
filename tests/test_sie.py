import math

import pytest
import torch

from fumd.config import SIEConfig
from fumd.sie.evaluator import SelfImprovementEngine
from fumd.sie.habituation import habituation_update
from fumd.sie.novelty import cosine_to_history, novelty
from fumd.sie.self_benefit import complexity, self_benefit
from fumd.sie.td import td_update


def test_td0_update_by_hand():
    v = torch.tensor([0.0, 2.0, -1.0], dtype=torch.float64)
    td, new = td_update(v, current=0, nxt=1, reward=1.0, gamma=0.9, alpha=0.1)
    assert td == pytest.approx(1.0 + 0.9 * 2.0 - 0.0)
    assert new.tolist() == pytest.approx([0.28, 2.0, -1.0])
    assert v.tolist() == [0.0, 2.0, -1.0]  # pure


def test_novelty_range_and_zero_for_repeat():
    hist = torch.zeros(50, 4)
    assert novelty(cosine_to_history(torch.tensor([1.0, 0, 0, 0]), hist, 0)) == (1.0, -1)
    hist[0] = torch.tensor([1.0, 2.0, 0.0, 0.0])
    hist[1] = torch.tensor([0.0, 0.0, 1.0, 0.0])
    nov, best = novelty(cosine_to_history(torch.tensor([1.0, 2.0, 0.0, 0.0]), hist, 2))
    assert nov == pytest.approx(0.0, abs=1e-12) and best == 0
    nov2, _ = novelty(cosine_to_history(torch.tensor([1.0, 0.0, 1.0, 0.0]), hist, 2))
    assert nov2 == pytest.approx(1 - 1 / math.sqrt(2))
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        n, _ = novelty(cosine_to_history(torch.rand(4, generator=gen), hist, 2))
        assert 0.0 <= n <= 1.0


def test_habituation_rises_on_repeats_and_decays():
    levels = torch.zeros(3, dtype=torch.float64)
    seen = []
    for _ in range(5):
        h, levels = habituation_update(levels, 1, 0.2, 0.99)
        seen.append(h)
    assert all(b > a for a, b in zip(seen, seen[1:], strict=False)) and seen[-1] < 1
    h0, levels2 = habituation_update(levels, -1, 0.2, 0.99)
    assert h0 == 0.0 and float(levels2[1]) == pytest.approx(float(levels[1]) * 0.99)


def test_self_benefit_is_complexity_times_confidence():
    assert complexity(torch.tensor([0.0, 0.0, 0.0])) == 0.0
    assert complexity(torch.tensor([5.0, 0.0, 0.0])) == 0.0
    assert complexity(torch.tensor([2.0, 2.0, 2.0, 2.0])) == pytest.approx(1.0)
    sb, cx = self_benefit(torch.tensor([1.0, 1.0]), 0.5)
    assert cx == pytest.approx(1.0) and sb == pytest.approx(0.5)


def make_sie(**kw) -> SelfImprovementEngine:
    return SelfImprovementEngine(SIEConfig(**kw), 8, 4, torch.device("cpu"), deterministic=True)


def test_combined_reward_weights_and_smoothing():
    sie = make_sie(smoothing_window=5, w_td=1.0, w_novelty=2.0, w_habituation=1.0, w_self_benefit=0.0)
    p = torch.tensor([1.0, 0.0, 0.0, 0.0])
    r1 = sie.evaluate(p, 0, torch.ones(8), 0.0, external=1.0)
    # first input: TD = 1 + 0.9*0 - 0 = 1, novelty 1 -> raw 3, capped to 0 (novelty > 0.9)
    assert r1.td_error == pytest.approx(1.0) and r1.novelty == 1.0 and r1.raw_reward == pytest.approx(3.0)
    assert r1.capped and r1.total_reward == 0.0
    r2 = sie.evaluate(p, 0, torch.ones(8), 0.0, external=1.0)
    assert r2.novelty == pytest.approx(0.0, abs=1e-12) and r2.habituation == pytest.approx(0.2)
    # V(0) = 0.1 after the first update: TD = 1 + 0.9*0.1 - 0.1
    assert r2.td_error == pytest.approx(0.99)
    assert r2.raw_reward == pytest.approx(0.99 - 0.2)
    # mean of the last two (window 5), squashed under the external reward (k = 0.25)
    assert r2.total_reward == pytest.approx(1.0 + 0.25 * math.tanh((3.0 + 0.79) / 2))


def test_external_reward_dominates_the_internal_terms():
    """A wrong decision (external -1) is never paid a positive total, however large the internal
    terms; without an external reward the internal terms are the total (issue #9)."""
    sie = make_sie(w_novelty=2.0, w_self_benefit=2.0, novelty_cap_threshold=1.0)
    r = sie.evaluate(torch.tensor([1.0, 0.0, 0.0, 0.0]), 0, torch.ones(8), 1.0, external=-1.0)
    assert r.raw_reward > 1.0 and -1.0 < r.total_reward < 0.0
    r = sie.evaluate(torch.tensor([0.0, 1.0, 0.0, 0.0]), 0, torch.ones(8), 1.0, external=1.0)
    assert r.total_reward >= 1.0
    free = make_sie(w_novelty=2.0, novelty_cap_threshold=1.0, smoothing_window=1)
    r = free.evaluate(torch.tensor([1.0, 0.0, 0.0, 0.0]), 0, torch.ones(8), 1.0, external=None)
    assert r.total_reward == pytest.approx(r.raw_reward)


def test_reward_capped_for_highly_novel_input():
    sie = make_sie()
    sie.evaluate(torch.tensor([1.0, 0.0, 0.0, 0.0]), 0, torch.ones(8), 1.0, external=1.0)
    r = sie.evaluate(torch.tensor([0.0, 0.0, 0.0, 1.0]), 0, torch.ones(8), 1.0, external=1.0)
    assert r.novelty > 0.9 and r.raw_reward > 0 and r.total_reward == 0.0 and r.capped


def test_time_budget_fallback_uses_external_reward():
    sie = SelfImprovementEngine(SIEConfig(time_budget_ms=0.0), 8, 4, torch.device("cpu"), deterministic=False)
    r = sie.evaluate(torch.tensor([1.0, 0.0, 0.0, 0.0]), 0, torch.ones(8), 1.0, external=-1.0)
    assert r.fallback and r.total_reward == -1.0 and sie.fallbacks == 1
    r = sie.evaluate(torch.tensor([1.0, 0.0, 0.0, 0.0]), 0, torch.ones(8), 1.0, external=None)
    assert r.fallback and r.total_reward == 0.0
    # deterministic mode: no wall-clock effect on state
    det = SelfImprovementEngine(SIEConfig(time_budget_ms=0.0), 8, 4, torch.device("cpu"), deterministic=True)
    assert not det.evaluate(torch.ones(4), 0, torch.ones(8), 1.0, external=-1.0).fallback


def test_cluster_reward_tracking():
    sie = make_sie(cluster_reward_alpha=0.5, smoothing_window=1, novelty_cap_threshold=1.0,
                   w_novelty=0.0, w_habituation=0.0, w_self_benefit=0.0, internal_weight_with_external=0.0)
    sie.evaluate(torch.ones(4), 3, torch.ones(8), 0.0, external=1.0)
    assert float(sie.avg_reward[3]) == pytest.approx(0.5) and int(sie.reward_count[3]) == 1
    assert float(sie.reward_history[3, 0]) == pytest.approx(1.0)
