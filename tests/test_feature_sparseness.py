"""Sparse feature neurons (learning/feature_sparseness.py, issue #15): each feature neuron's
adaptive threshold holds the fraction of inputs it fires on at ``learning.feature_activity``."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fumd.engine import Engine
from fumd.learning.feature_sparseness import sparse_feature_thresholds
from tests.conftest import small_config


def test_a_feature_that_fired_raises_its_threshold_and_a_silent_one_lowers_it_down_to_the_floor():
    theta = torch.zeros(8)
    theta[6] = -9.5
    counts = torch.tensor([5, 0, 3, 0, 0, 0, 0, 2])
    v_th = torch.full((8,), -55.0)
    new = sparse_feature_thresholds(theta, counts, torch.tensor([2, 3, 6]), v_th, -65.0, 0.2, 0.5)
    assert new[2].item() == pytest.approx(0.5 * 0.8)  # fired: up by rate x (1 - p)
    assert new[3].item() == pytest.approx(-0.5 * 0.2)  # silent: down by rate x p
    assert new[6].item() == pytest.approx(-9.0)  # floor: v_th + theta >= v_rest + 1 mV
    assert torch.equal(new[[0, 1, 4, 5, 7]], theta[[0, 1, 4, 5, 7]])  # not features (7 fired: unchanged)
    assert theta[2].item() == 0.0  # pure: the input is not modified
    # with a partial reset above rest the floor follows it: v_th + theta >= v_reset_f + 1 mV
    raised = sparse_feature_thresholds(theta, counts, torch.tensor([2, 3, 6]), v_th, -58.0, 0.2, 0.5)
    assert raised[6].item() == pytest.approx(-2.0) and raised[3].item() == pytest.approx(-0.1)


def _feature_counts(inputs: int, last: int, **sections) -> np.ndarray:
    """Spike counts of the feature neurons (int [last, 200]) on the last ``last`` of ``inputs``
    binary (parity-like) inputs, a 600-neuron network configured by ``sections``."""
    engine = Engine(small_config(network={"neurons": 600, "input_size": 6, "max_labels": 2, "population_size": 8,
                                          "feature_neurons": 200}, **sections))
    rng = np.random.default_rng(0)
    features = engine.state.feature_idx.long()
    counts = []
    for i in range(inputs):
        x = rng.integers(0, 2, 6).astype(float)
        engine.cycle({"x": x.tolist(), "label": str(int(x[:3].sum()) % 2)})
        if i >= inputs - last:
            counts.append(engine.last_cycle_spikes.counts[features].numpy())
    return np.stack(counts)


def _activity(feature_activity: float) -> float:
    """Mean fraction of the last 150 of 400 inputs each feature neuron fired on."""
    return float(np.mean(_feature_counts(400, 150, learning={"feature_activity": feature_activity}) > 0))


def test_feature_neurons_fire_on_the_target_fraction_of_inputs():
    held, free = _activity(0.2), _activity(0.0)
    assert held == pytest.approx(0.2, abs=0.04)
    assert free > 0.3  # without the rule the same features fire far more often


def test_each_cycle_reports_the_fraction_of_feature_neurons_that_fired_and_the_metrics_export_it():
    from fumd.ops.metrics import Metrics

    engine = Engine(small_config(network={"feature_neurons": 100}))
    rng = np.random.default_rng(1)
    for _ in range(5):  # (the encoder's running statistics need a few inputs to standardise)
        result = engine.cycle({"x": rng.normal(size=16).tolist(), "label": "a"})
    fired = engine.last_cycle_spikes.counts[engine.state.feature_idx.long()] > 0
    assert 0.0 < result.feature_active == pytest.approx(float(fired.float().mean()))
    metrics = Metrics()
    metrics.observe_cycle(result, 0.01, 0.0)
    assert metrics.registry.get_sample_value("fumd_feature_active_fraction") == pytest.approx(result.feature_active)
    assert Engine(small_config(network={"feature_neurons": 0})).cycle({"x": [1.0] * 16}).feature_active is None


def _spikes_per_active_feature(feature_v_reset: float) -> float:
    """Mean spike count of a feature neuron on the inputs it fired on (last 100 of 250 inputs)."""
    counts = _feature_counts(250, 100, lif={"feature_v_reset": feature_v_reset})
    return float(counts[counts > 0].mean())


def test_the_partial_reset_gives_more_spikes_per_active_feature():
    """lif.feature_v_reset (network/lif.py): the feature neurons reset closer to threshold than
    the rest and fire more spikes on the inputs they respond to."""
    full, partial = _spikes_per_active_feature(-70.0), _spikes_per_active_feature(-61.0)
    assert partial > 1.1 * full, (full, partial)  # measured 2.30 -> 2.70


def test_the_engine_floors_feature_thresholds_above_their_reset():
    """A feature threshold pushed below the partial reset is lifted to reset + 1 mV after a cycle;
    the output neurons' thresholds are not the features' business."""
    engine = Engine(small_config(network={"feature_neurons": 50}, lif={"feature_v_reset": -58.0}))
    st = engine.state
    f = st.feature_idx.long()
    st.theta[f] = -30.0
    engine.cycle({"x": [0.5] * 16, "label": "a"})
    threshold = st.v_th[f] + st.theta[f]
    # lifted to the floor (intrinsic plasticity then moves v_th by at most a fraction of a mV)
    assert float(threshold.min()) >= -57.0 - 1e-4 and float(threshold.max()) < -56.0
