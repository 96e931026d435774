"""Issue #12: ``backend = "sharded"`` drives the engine's cycle on K shards (sharding/backend.py)
and gives the numba backend's state bit for bit, through the daemon's own loop with every job on
(structural edits included, so the shard layout is rebuilt mid-run), for K = 1, 2 and 4 shards."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from fumd.daemon.config import config_from_mapping
from fumd.errors import ConfigError
from fumd.evaluation.prequential import DaemonLoop, job_names
from fumd.persistence.checkpoint import state_digest
from fumd.sharding.backend import ShardedBackend

HAVE_METIS = importlib.util.find_spec("pymetis") is not None
INPUTS, DIM, CLASSES = 160, 6, 3


def stream() -> list[dict]:
    rng = np.random.default_rng(4)
    centres = rng.normal(0.0, 1.5, (CLASSES, DIM))
    ys = rng.integers(0, CLASSES, INPUTS)
    return [{"x": (centres[y] + rng.normal(0.0, 1.0, DIM)).tolist(), "label": f"c{y}"} for y in ys]


def config(backend: str, shards: int = 2, partition: str = "contiguous", jobs: bool = True):
    """Every job on, at cadences short enough that each runs several times in 160 inputs."""
    every = {"clustering": 40, "decay": 30, "tagging": 30, "tuning": 10, "structural": 50, "criticality": 20}
    data: dict = {"deterministic": True, "backend": backend, "sharding": {"shards": shards, "partition": partition},
                  "network": {"neurons": 300, "synapses_per_neuron": 20, "input_size": DIM, "max_labels": CLASSES,
                              "population_size": 8, "seed": 2},
                  "jobs": {name: {"every_cycles": every[name]} for name in job_names()}}
    if not jobs:
        data["jobs"] = {name: {"enabled": False} for name in job_names()}
    return config_from_mapping(data)


def run(cfg) -> tuple[str, list[str], DaemonLoop]:
    torch.set_num_threads(1)
    loop = DaemonLoop(cfg)
    actions = [str(loop.step(record).action) for record in stream()]
    loop.close()
    return state_digest(loop.engine.state_dict()), actions, loop


@pytest.fixture(scope="module")
def single():
    return run(config("numba"))


@pytest.mark.parametrize("shards,partition", [(1, "contiguous"), (2, "contiguous"), (4, "contiguous"),
                                              pytest.param(2, "metis", marks=pytest.mark.skipif(
                                                  not HAVE_METIS, reason="no pymetis"))])
def test_sharded_engine_equals_one_process_with_every_job_on(single, shards, partition):
    digest, actions, loop = run(config("sharded", shards, partition))
    backend = loop.engine.backend
    assert isinstance(backend, ShardedBackend) and len(backend.shards) == shards
    runs = loop.job_counts()
    assert all(r["runs"] > 0 and r["failures"] == 0 for r in runs.values()), runs
    assert loop.engine.state.structure_version > 0  # structural edits happened: the layout was rebuilt
    assert actions == single[1]
    assert digest == single[0]


def test_the_layout_follows_structural_edits_and_state_loads():
    from fumd.engine import Engine
    from fumd.network import edit

    cfg = config("sharded", 3).engine
    engine = Engine(cfg)
    backend = engine.backend
    first = backend.layout(engine.state)
    assert backend.layout(engine.state) is first  # cached while nothing changed
    keep = torch.ones(engine.state.nnz, dtype=torch.bool)
    keep[::7] = False
    edit.remove_synapses(engine.state, keep)
    second = backend.layout(engine.state)
    assert second is not first and sum(s.synapse_index.shape[0] for s in second) == engine.state.nnz
    engine.load_state_dict(Engine(cfg).state_dict())
    assert backend.layout(engine.state) is not second


def test_sharded_backend_is_cpu_only_and_its_settings_are_checked():
    from fumd.backends import resolve_backend

    assert resolve_backend("sharded", torch.device("cpu")) == "sharded"
    with pytest.raises(RuntimeError, match="CPU only"):
        resolve_backend("sharded", torch.device("cuda"))
    with pytest.raises(ConfigError, match="sharding.shards"):
        config("sharded", 0)
    with pytest.raises(ConfigError, match="sharding.partition"):
        config("sharded", 2, "spectral")
