import math

import numpy as np
import pytest
import torch

from fumd.config import EngineConfig
from fumd.engine import Engine, states_equal
from fumd.errors import (
    ConfigError,
    DimensionError,
    EmptyTextError,
    InputError,
    LabelTypeError,
    NonFiniteError,
    RecordFormatError,
    RewardError,
    VocabularyFullError,
)
from tests.conftest import small_config


def stream(n: int, seed: int = 0, dim: int = 16):
    rng = np.random.default_rng(seed)
    for i in range(n):
        if i % 3 == 2:
            yield {"id": f"t{i}", "text": f"sample text number {i % 5}", "label": f"c{i % 3}"}
        else:
            yield {"id": f"x{i}", "x": rng.random(dim).tolist(), "label": f"c{i % 3}",
                   **({"reward": 0.5} if i % 7 == 0 else {})}


def test_cycle_returns_a_full_result(backend):
    # (standardised, a first input is all mean)
    engine = Engine(small_config(backend=backend, encoder={"normalize": "minmax"}))
    r = engine.cycle({"id": "a", "x": [0.1 * i for i in range(16)], "label": "cat"})
    assert r.id == "a" and r.step == 1 and r.label == "cat"
    assert r.action == "cat" and r.correct is True  # the only known label
    assert 0.0 <= r.confidence <= 1.0 and 0.0 <= r.novelty <= 1.0
    assert set(r.components) >= {"td_error", "novelty", "habituation", "self_benefit", "external"}
    assert r.components["external"] == 1.0 and r.spikes > 0 and r.rate_hz > 0
    assert math.isfinite(r.total_reward)
    r2 = engine.cycle({"text": "hello world"})
    assert r2.label is None and r2.correct is None and r2.components["external"] is None


def test_same_seed_same_inputs_bit_identical_state(backend):
    a, b = Engine(small_config(backend=backend)), Engine(small_config(backend=backend))
    for rec in stream(40):
        ra, rb = a.cycle(rec), b.cycle(rec)
        assert ra == rb
    assert states_equal(a.state_dict(), b.state_dict())
    # the weights really changed (learning happened), and the traces are live
    fresh = Engine(small_config()).state
    assert not torch.equal(a.state.w, fresh.w) and float(a.state.e.float().abs().sum()) > 0


def test_different_seeds_differ(backend):
    a = Engine(small_config(backend=backend))
    b = Engine(small_config(backend=backend, network={**small_config().network.__dict__, "seed": 1}))
    for rec in stream(5):
        a.cycle(rec)
        b.cycle(rec)
    assert not states_equal(a.state_dict(), b.state_dict())


def test_state_dict_round_trip_continues_identically(backend):
    a = Engine(small_config(backend=backend))
    recs = list(stream(30))
    for rec in recs[:15]:
        a.cycle(rec)
    b = Engine(small_config(backend=backend, network={**small_config().network.__dict__, "seed": 9}))
    b.load_state_dict({k: (v.clone() if torch.is_tensor(v) else v) for k, v in a.state_dict().items()})
    for rec in recs[15:]:
        assert a.cycle(rec) == b.cycle(rec)
    assert states_equal(a.state_dict(), b.state_dict())


BAD = [
    ({"x": [0.0] * 15}, DimensionError, "expected length 16"),
    ({"x": [[0.0] * 16]}, DimensionError, "1-D"),
    ({"x": [0.0] * 15 + [float("nan")]}, NonFiniteError, r"x\[15\]"),
    ({"x": [float("inf")] + [0.0] * 15}, NonFiniteError, "finite"),
    ({"x": ["a"] * 16}, RecordFormatError, "numbers"),
    ({"x": "0,1,2"}, RecordFormatError, "list of numbers"),
    ({"text": ""}, EmptyTextError, "empty"),
    ({"text": "   \n"}, EmptyTextError, "empty"),
    ({"text": 42}, RecordFormatError, "expected a string"),
    ({"x": [0.0] * 16, "label": 1.5}, LabelTypeError, "string or integer"),
    ({"x": [0.0] * 16, "label": ["a"]}, LabelTypeError, "string or integer"),
    ({"x": [0.0] * 16, "label": True}, LabelTypeError, "string or integer"),
    ({"x": [0.0] * 16, "reward": 2.0}, RewardError, "outside"),
    ({"x": [0.0] * 16, "reward": float("nan")}, RewardError, "outside"),
    ({"x": [0.0] * 16, "text": "both"}, RecordFormatError, "exactly one"),
    ({}, RecordFormatError, "exactly one"),
    ({"x": [0.0] * 16, "colour": "red"}, RecordFormatError, "unknown field"),
    ("not a record", RecordFormatError, "expected an object"),
]


@pytest.mark.parametrize("record, error, message", BAD)
def test_bad_input_raises_typed_error_and_leaves_state_unchanged(record, error, message, backend):
    engine = Engine(small_config(backend=backend))
    for rec in stream(3):
        engine.cycle(rec)
    before = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in engine.state_dict().items()}
    with pytest.raises(error, match=message) as info:
        engine.cycle(record)
    assert isinstance(info.value, InputError)
    assert states_equal(before, engine.state_dict())


def test_full_vocabulary_rejects_new_label_without_changing_state(backend):
    engine = Engine(small_config(backend=backend))
    for label in ["a", "b", "c", "d"]:
        engine.cycle({"x": [0.5] * 16, "label": label})
    before = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in engine.state_dict().items()}
    with pytest.raises(VocabularyFullError):
        engine.cycle({"x": [0.5] * 16, "label": "e"})
    assert states_equal(before, engine.state_dict())
    assert engine.cycle({"x": [0.5] * 16, "label": "b"}).label == "b"  # known labels still work


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="learning.eta"):
        EngineConfig.from_mapping({"learning": {"eta": 5.0}})
    with pytest.raises(ConfigError, match="network.neuronz: unknown key"):
        EngineConfig.from_mapping({"network": {"neuronz": 5}})
    with pytest.raises(ConfigError, match="network.neurons: expected an integer"):
        EngineConfig.from_mapping({"network": {"neurons": "many"}})
    with pytest.raises(ConfigError, match="trace_dtype"):
        EngineConfig.from_mapping({"learning": {"trace_dtype": "int8"}})
    cfg = EngineConfig.from_mapping({"network": {"neurons": 1000, "synapses_per_neuron": 20}, "deterministic": True})
    assert cfg.network.neurons == 1000 and cfg.deterministic
    with pytest.raises(ConfigError, match="cannot hold 128 input"):
        EngineConfig.from_mapping({"network": {"neurons": 500}})


def test_bench_smoke(backend):
    from fumd.bench import run_bench
    from fumd.cli import main

    out = run_bench(neurons=400, synapses_per_neuron=20, cycles=2, backend=backend)
    for key in ("neurons", "synapses", "rate_hz", "sim_wall_per_sim_s", "learn_wall_per_sim_s", "events_per_s",
                "cycles_per_s", "bytes_per_synapse", "peak_rss_bytes"):
        assert key in out and out[key] >= 0
    assert out["neurons"] == 400 and out["bytes_per_synapse"] <= 12 and out["backend"] == backend
    assert main(["bench", "--neurons", "300", "--synapses-per-neuron", "10", "--cycles", "1", "--backend",
                 backend]) == 0
