"""Replay of recent labelled inputs (fumd/learning/replay.py; docs/mechanisms.md "Replay").

Measured with this file's shift run (LED, 800 neurons, 500 training inputs per domain, seeds 0 / 1):
retention 0.87 / 0.87 with replay at its defaults, 0.31 / 0.24 with ``replay_restore = 0``.
"""
from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from fumd.config import EngineConfig, NetworkConfig
from fumd.engine import Engine, states_equal
from fumd.learning.replay import ReplayBuffer, ReplayParams, replay_weights, update_frequencies

PARAMS = ReplayParams(per_input=0.0, restore=2.0, recent_halflife=100.0, longrun_halflife=20000.0)


def test_ring_buffer_keeps_the_newest_examples_per_label():
    buf = ReplayBuffer.empty(labels=3, capacity=2, size=1)
    for value in (1.0, 2.0, 3.0):
        buf.observe(0, np.array([value]), PARAMS)
    buf.observe(1, np.array([9.0]), PARAMS)
    assert buf.filled.tolist() == [2, 1, 0]
    assert sorted(buf.features[0, :, 0].tolist()) == [2.0, 3.0]  # 1.0, the oldest, overwritten
    assert buf.features[1, 0, 0] == 9.0


def test_a_stationary_stream_owes_no_restoring_replay_and_an_absent_class_does():
    recent = longrun = torch.zeros(3, dtype=torch.float64)
    rng = np.random.default_rng(0)
    for count in range(3000):  # three balanced classes
        recent, longrun = update_frequencies(recent, longrun, count, int(rng.integers(3)), PARAMS)
    seen = torch.ones(3, dtype=torch.bool)
    assert float(replay_weights(recent, longrun, seen, PARAMS).sum()) < 0.1
    for count in range(3000, 3500):  # class 0 stops arriving
        recent, longrun = update_frequencies(recent, longrun, count, 1 + count % 2, PARAMS)
    w = replay_weights(recent, longrun, seen, PARAMS)
    assert float(w[0]) > 0.5 and float(w[1:].sum()) < 0.1 * float(w[0])
    steady = dataclasses.replace(PARAMS, per_input=0.6, restore=0.0)
    assert torch.allclose(replay_weights(recent, longrun, seen, steady), torch.full((3,), 0.2, dtype=torch.float64))
    assert float(replay_weights(recent, longrun, torch.tensor([False, True, False]), steady)[0]) == 0.0


def test_draws_follow_the_weights():
    buf = ReplayBuffer.empty(labels=3, capacity=4, size=1)
    for label in range(3):
        buf.observe(label, np.array([float(label)]), PARAMS)
    gen = torch.Generator().manual_seed(0)
    weights = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
    labels = [buf.draw(weights, gen)[0] for _ in range(400)]
    assert labels.count(0) == 0 and 0.65 < labels.count(2) / 400 < 0.85
    assert buf.draw(torch.zeros(3, dtype=torch.float64), gen) is None


def small_engine(**learning) -> Engine:
    cfg = EngineConfig(network=dataclasses.replace(NetworkConfig(), neurons=600, input_size=6, max_labels=3,
                                                   population_size=16, seed=3),
                       deterministic=True)
    cfg = dataclasses.replace(cfg, learning=dataclasses.replace(cfg.learning, **learning))
    return Engine(cfg)


def feed(engine: Engine, n: int, labels: tuple[int, ...], seed: int) -> None:
    rng = np.random.default_rng(seed)
    centres = np.eye(3, 6) * 3.0
    for _ in range(n):
        y = int(labels[int(rng.integers(len(labels)))])
        engine.cycle({"x": (centres[y] + rng.normal(0, 1, 6)).tolist(), "label": f"c{y}"})


def test_replay_runs_after_a_class_disappears_and_is_state():
    engine = small_engine()
    feed(engine, 300, (0, 1, 2), seed=1)
    before = engine.replays_done
    feed(engine, 300, (1, 2), seed=2)
    assert engine.replays_done - before > 20, "an absent class must be rehearsed"
    # the buffer, frequencies and credit are state: a copy restored from state_dict continues identically
    twin = small_engine()
    twin.load_state_dict(copy.deepcopy(engine.state_dict()))  # a copy: state_dict() shares the tensors
    feed(engine, 20, (1, 2), seed=3)
    feed(twin, 20, (1, 2), seed=3)
    assert states_equal(engine.state_dict(), twin.state_dict())
    off = small_engine(replay_restore=0.0)
    feed(off, 300, (0, 1, 2), seed=1)
    assert off.replays_done == 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_replay_keeps_absent_classes_after_a_class_incremental_shift():
    """Train half of LED's digits, then the other half, test the first half (learning off): with
    replay the old classes keep most of their accuracy, without it the new classes take them over."""
    pytest.importorskip("river")
    from fumd.evaluation.prequential import Options, run_shift
    from fumd.evaluation.streams import get_stream

    torch.set_num_threads(1)

    def retention(restore: float) -> float:
        opts = Options(inputs=1000, neurons=800, config={"learning": {"replay_restore": restore}})
        run = run_shift(get_stream("led"), 0, opts)
        return float(run.summary["fumd"]["retention"])

    with_replay, without = retention(2.0), retention(0.0)
    assert with_replay >= 0.7, f"retention with replay {with_replay:.2f} (measured 0.87)"
    assert without <= 0.5, \
        f"retention without replay {without:.2f} (measured 0.31): the test no longer shows forgetting"
