"""``fumd bench``: speed and memory of the engine at a given size (a benchmark, not a test).

Runs ``cycles`` cycles with learning off (simulation only), then ``cycles`` with all per-cycle
learning on, on random input vectors, and reports one JSON object.
"""
from __future__ import annotations

import resource
import time
from typing import Any

import numpy as np
import torch

from .config import EngineConfig
from .engine import Engine


def run_bench(neurons: int, synapses_per_neuron: int, cycles: int, device: str = "cpu", compile_mode: str = "off", seed: int = 0) -> dict[str, Any]:
    cfg = EngineConfig().replace(
        network={"neurons": neurons, "synapses_per_neuron": synapses_per_neuron, "seed": seed},
        device=device, compile=compile_mode, deterministic=True,
    )
    t0 = time.perf_counter()
    engine = Engine(cfg)
    build_s = time.perf_counter() - t0
    rng = np.random.default_rng(seed)
    inputs = [rng.random(cfg.network.input_size) for _ in range(2 * cycles + 2)]
    degree = (engine.state.indptr[1:] - engine.state.indptr[:-1]).double()
    sim_ms = cfg.lif.steps * cfg.lif.dt_ms

    def timed(n: int, offset: int, learn: bool) -> tuple[float, int, int]:
        engine.learning_enabled = learn
        spikes = events = 0
        engine.cycle({"x": inputs[offset]})  # warm-up (allocations, compilation)
        _sync(engine.device)
        start = time.perf_counter()
        for i in range(n):
            engine.cycle({"x": inputs[offset + 1 + i]})
            counts = engine.last_spikes.counts
            spikes += int(counts.sum())
            events += int(counts.double() @ degree)
        _sync(engine.device)
        return time.perf_counter() - start, spikes, events

    sim_wall, _, sim_events = timed(cycles, 0, learn=False)
    learn_wall, learn_spikes, _ = timed(cycles, cycles + 1, learn=True)
    st = engine.state
    sim_seconds = cycles * sim_ms / 1000.0
    return {
        "neurons": st.n,
        "synapses": st.nnz,
        "rate_hz": learn_spikes / (st.n * sim_seconds),
        "sim_wall_per_sim_s": sim_wall / sim_seconds,
        "learn_wall_per_sim_s": learn_wall / sim_seconds,
        "learning_overhead": learn_wall / sim_wall - 1.0,
        "events_per_s": sim_events / sim_wall,
        "cycles_per_s": cycles / learn_wall,
        "bytes_per_synapse": st.synapse_bytes() / st.nnz,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "build_s": build_s,
        "cycles": cycles,
        "device": str(engine.device),
        "threads": torch.get_num_threads(),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
