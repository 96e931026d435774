"""``fumd bench``: speed and memory of the engine at a given size (a benchmark, not a test).

After ``warmup`` cycles with learning on (intrinsic plasticity brings a fresh network from its
initial firing rate to its working rate), the state is saved; ``cycles`` cycles run with learning
off (simulation only), the saved state is restored, and the same ``cycles`` inputs run again with
all per-cycle learning on. Both phases thus simulate the same network at about the same rate
(``sim_rate_hz`` and ``rate_hz`` say how close), so ``learning_overhead`` is the cost of learning
and not of a different firing rate. One JSON object is printed.
"""
from __future__ import annotations

import resource
import time
from typing import Any

import numpy as np
import torch

from .config import EngineConfig
from .engine import Engine
from .persistence.encoding import state_digest


def bench_config(neurons: int, synapses_per_neuron: int, seed: int = 0, device: str = "cpu",
                 compile_mode: str = "off", backend: str = "auto", shards: int = 2,
                 partition: str = "contiguous") -> EngineConfig:
    """The benchmark's network: ``neurons`` x ``synapses_per_neuron``, 16 labels, deterministic
    (``shards`` / ``partition``: the sharded backend's ``[sharding]``)."""
    labels, n_in = 16, 2 * EngineConfig().network.input_size
    room = int(neurons * EngineConfig().network.excitatory_fraction) - n_in  # output neurons that fit
    return EngineConfig().replace(
        network={"neurons": neurons, "synapses_per_neuron": synapses_per_neuron, "seed": seed,
                 "max_labels": labels, "population_size": max(1, min(32, room // labels))},
        device=device, compile=compile_mode, deterministic=True, backend=backend,
        sharding={"shards": shards, "partition": partition},
    )


def bench_engine(neurons: int, synapses_per_neuron: int, seed: int, warmup: int, cycles: int,
                 **config: Any) -> tuple[Engine, list[np.ndarray]]:
    """A benchmark engine after ``warmup`` learning cycles (intrinsic plasticity brings a fresh
    network to its working rate) and the ``cycles + 1`` inputs to measure with."""
    engine = Engine(bench_config(neurons, synapses_per_neuron, seed, **config))
    rng = np.random.default_rng(seed)
    inputs = [rng.random(engine.config.network.input_size) for _ in range(warmup + cycles + 1)]
    engine.learning_enabled = True
    for x in inputs[:warmup]:
        engine.cycle({"x": x})
    return engine, inputs[warmup:]


def run_bench(
    neurons: int, synapses_per_neuron: int, cycles: int, device: str = "cpu", compile_mode: str = "off", seed: int = 0,
    backend: str = "auto", threads: int | None = None, warmup: int | None = None, shards: int = 2,
    partition: str = "contiguous",
) -> dict[str, Any]:
    warmup = cycles if warmup is None else warmup
    if threads is not None:
        torch.set_num_threads(threads)  # the numba kernels follow torch's thread count
    cfg = bench_config(neurons, synapses_per_neuron, seed, device, compile_mode, backend, shards, partition)
    t0 = time.perf_counter()
    engine = Engine(cfg)
    build_s = time.perf_counter() - t0
    rng = np.random.default_rng(seed)
    inputs = [rng.random(cfg.network.input_size) for _ in range(warmup + cycles + 1)]
    degree = (engine.state.indptr[1:] - engine.state.indptr[:-1]).double()
    sim_ms = cfg.lif.steps * cfg.lif.dt_ms

    engine.learning_enabled = True
    for x in inputs[:warmup]:
        engine.cycle({"x": x})
    engine.learning_enabled = False
    engine.cycle({"x": inputs[warmup]})  # first call of each path: allocations, compilation
    saved = {k: v.clone() if torch.is_tensor(v) else v for k, v in engine.state_dict().items()}

    def timed(learn: bool) -> tuple[float, int, int]:
        engine.load_state_dict({k: v.clone() if torch.is_tensor(v) else v for k, v in saved.items()})
        engine.learning_enabled = learn
        spikes = events = 0
        _sync(engine.device)
        start = time.perf_counter()
        for x in inputs[warmup + 1 :]:
            engine.cycle({"x": x})
            record = engine.last_cycle_spikes
            assert record is not None  # Engine.cycle just set it
            counts = record.counts
            spikes += int(counts.sum())
            events += int(counts.double() @ degree)
        _sync(engine.device)
        return time.perf_counter() - start, spikes, events

    sim_wall, sim_spikes, sim_events = timed(learn=False)
    learn_wall, learn_spikes, _ = timed(learn=True)
    st = engine.state
    sim_seconds = cycles * sim_ms / 1000.0
    sharded: dict[str, Any] = {}
    if engine.backend.name == "sharded":  # (numba is imported only where it is used)
        from .sharding.backend import ShardedBackend

        assert isinstance(engine.backend, ShardedBackend)
        sharded = {"shards": len(engine.backend.shards), "partition": partition,
                   "cut_fraction": engine.backend.cut_fraction}
    return {
        "neurons": st.n,
        "synapses": st.nnz,
        "rate_hz": learn_spikes / (st.n * sim_seconds),
        "sim_rate_hz": sim_spikes / (st.n * sim_seconds),
        "sim_wall_per_sim_s": sim_wall / sim_seconds,
        "learn_wall_per_sim_s": learn_wall / sim_seconds,
        "learning_overhead": learn_wall / sim_wall - 1.0,
        "events_per_s": sim_events / sim_wall,
        "cycles_per_s": cycles / learn_wall,
        "bytes_per_synapse": st.synapse_bytes() / st.nnz,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "build_s": build_s,
        "cycles": cycles,
        "warmup_cycles": warmup,
        "device": str(engine.device),
        "threads": torch.get_num_threads(),
        "backend": engine.backend.name,
        **sharded,
        # deterministic run: equal across backends and shard counts (the bit-equality, measured)
        "state_sha256": state_digest(engine.state_dict()),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
