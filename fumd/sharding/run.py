"""Running the sharded simulation: shards from a network, their cycle merged back into one spike
record, on threads or on ``torch.distributed`` ranks (issue #12).

What is sharded so far is the *simulation* (the T steps of a cycle: integration, LIF, spikes): the
coordinator (rank 0) holds the engine, builds the shards from its network and sends each rank its
own; per cycle it broadcasts the encoder's drive, every rank runs the steps on its neurons with a
spike exchange after each step, and the coordinator gathers the spikes into the ``CycleSpikes``
the single process would have produced (bit for bit: ``step.py``). Learning, the SIE and the jobs
still run in one process on the coordinator's state; sharding them is the rest of issue #12.
"""
from __future__ import annotations

import functools
import os
import socket
import sys
import threading
import time
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..backends.numba.arrays import LIFNeurons
from ..config import LIFConfig
from ..network.lif import LIFStepper, neuron_parameters
from ..network.spikes import CycleSpikes
from ..network.state import NetworkState
from .exchange import ThreadExchange, TorchExchange
from .shard import make_shard
from .step import ShardSimulator


def simulators(state: NetworkState, lif: LIFConfig, assignment: np.ndarray) -> list[ShardSimulator]:
    """One ``ShardSimulator`` per shard of ``assignment``, holding its neurons' V, last spikes and
    LIF parameters (``tau_mem``, ``v_th + theta``) as they are in ``state`` now."""
    stepper = LIFStepper(neuron_parameters(state, lif), lif.dt_ms)
    dt_tau_inv, v_th, v_reset = stepper.dt_tau_inv.numpy(), stepper.v_th.numpy(), stepper.v_reset.numpy()
    v, fired = state.v.numpy(), state.last_spikes.numpy()
    out = []
    for rank in range(int(np.max(assignment)) + 1):
        shard = make_shard(state, assignment, rank)
        idx = shard.neurons
        neurons = LIFNeurons(np.ascontiguousarray(dt_tau_inv[idx]), np.ascontiguousarray(v_th[idx]),
                             float(stepper.v_leak), np.ascontiguousarray(v_reset[idx]),
                             float(lif.v_min))
        out.append(ShardSimulator(shard, v[idx], fired[idx], neurons, lif.synaptic_gain, state.global_inhibition))
    return out


def drive_of(input_spikes: torch.Tensor, lif: LIFConfig) -> np.ndarray:
    """The input current per step and input neuron, as the single-process backends compute it."""
    return (input_spikes.to(torch.float32) * lif.input_current).numpy()


def merge_steps(n: int, per_shard: Sequence[tuple[np.ndarray, Sequence[np.ndarray]]]) -> CycleSpikes:
    """The cycle's spike record from every shard's ``(neurons, steps)``: step ``t``'s spikes are the
    union of the shards' (global indices), ascending, as one process lists them."""
    steps = len(per_shard[0][1]) if per_shard else 0
    ptr = np.zeros(steps + 1, dtype=np.int64)
    lists = []
    for t in range(steps):
        merged = np.concatenate([neurons[local[t]] for neurons, local in per_shard]).astype(np.int32)
        merged.sort()
        lists.append(merged)
        ptr[t + 1] = ptr[t] + merged.shape[0]
    flat = np.concatenate(lists) if lists else np.empty(0, dtype=np.int32)
    return CycleSpikes(step_ptr=torch.from_numpy(ptr), neurons=torch.from_numpy(flat), n=n)


def on_threads(tasks: Sequence[Callable[[], Any]], abort: Callable[[], None] | None = None) -> list[Any]:
    """Run each task on its own thread; their results in order; the first error re-raised here
    (``abort`` is called on an error so that tasks waiting on each other stop waiting)."""
    results: list[Any] = [None] * len(tasks)
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            results[k] = tasks[k]()
        except BaseException as exc:  # noqa: BLE001 - re-raised below, in the caller's thread
            errors.append(exc)
            if abort is not None:
                abort()

    if len(tasks) == 1:
        run(0)
    else:
        threads = [threading.Thread(target=run, args=(k,), name=f"fumd-shard-{k}") for k in range(len(tasks))]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    if errors:
        raise errors[0]
    return results


def cycle_on_threads(sims: Sequence[ShardSimulator], drive: np.ndarray) -> CycleSpikes:
    """One cycle of every shard, each on its own thread, exchanging through ``ThreadExchange``."""
    hub = ThreadExchange(len(sims))
    results = on_threads([functools.partial(sim.cycle, drive, hub.for_rank(r)) for r, sim in enumerate(sims)],
                         abort=hub._barrier.abort)
    return merge_steps(sims[0].shard.n, [(s.shard.neurons, r) for s, r in zip(sims, results, strict=True)])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------------------
# torch.distributed: one process per rank (``run_ranks``), rank 0 the coordinator
def _rank_main(rank: int, world: int, port: int, job: dict[str, Any], results: Any, timeout_s: float) -> None:
    import datetime

    import torch.distributed as dist

    if sys.platform.startswith("linux"):  # local ranks talk over the loopback interface only
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=timeout_s))
    try:
        out = _sharded_bench(rank, world, job)
        if rank == 0:
            results.put(out)
    except BaseException as exc:
        if rank == 0:
            results.put({"error": f"{type(exc).__name__}: {exc}"})
        raise
    finally:
        dist.destroy_process_group()


def run_ranks(world: int, job: dict[str, Any], timeout_s: float = 3600.0) -> dict[str, Any]:
    """Run ``_sharded_bench`` on ``world`` local processes (gloo over 127.0.0.1); rank 0's result."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    results = ctx.SimpleQueue()
    port = free_port()
    procs = [ctx.Process(target=_rank_main, args=(r, world, port, job, results, timeout_s), daemon=True)
             for r in range(world)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout_s
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.kill()
    if results.empty():
        codes = [p.exitcode for p in procs]
        raise RuntimeError(f"the sharded run ended without a result (exit codes {codes})")
    out: dict[str, Any] = results.get()
    if "error" in out:
        raise RuntimeError(f"the sharded run failed: {out['error']}")
    return out


def _sharded_bench(rank: int, world: int, job: dict[str, Any]) -> dict[str, Any]:
    """Rank 0 builds and warms the network (one process, learning on), shards it and sends each
    rank its part; then ``cycles`` cycles of sharded simulation, rank 0 checking each against the
    single-process backend on the same state when ``verify``."""
    import torch.distributed as dist

    from ..bench import bench_engine
    from .partition import partition

    engine = None
    payload: list[Any] = [None]
    if rank == 0:
        engine, inputs = bench_engine(job["neurons"], job["synapses_per_neuron"], job["seed"], job["warmup"],
                                      job["cycles"])
        engine.learning_enabled = False
        part = partition(engine.state, world, job["partition"], job["seed"])
        cut = part.cut_fraction
        sims = simulators(engine.state, engine.config.lif, part.assignment)
        for r in range(1, world):
            dist.send_object_list([sims[r]], dst=r)
        sim = sims[0]
    else:
        dist.recv_object_list(payload, src=0)
        sim = payload[0]
    exchange = TorchExchange()
    header: list[Any] = [None]
    if rank == 0:
        assert engine is not None
        header = [(engine.config.lif.steps, int(engine.state.input_idx.shape[0]))]
    dist.broadcast_object_list(header, src=0)
    steps, n_in = header[0]
    mismatches = 0
    busy = 0.0
    for c in range(job["cycles"]):
        drive = torch.zeros(steps, n_in, dtype=torch.float32)
        input_spikes = None
        if rank == 0:
            assert engine is not None
            rates = engine.encoder.rates(engine.encoder.unit(inputs[c]))
            input_spikes = engine.encoder.encode(rates, steps, engine.config.lif.dt_ms, engine.generator)
            drive = torch.from_numpy(drive_of(input_spikes, engine.config.lif))
        dist.broadcast(drive, src=0)
        started = time.perf_counter()
        local = sim.cycle(drive.numpy(), exchange)
        busy += time.perf_counter() - started
        gathered: list[Any] = [None] * world if rank == 0 else []
        dist.gather_object((sim.shard.neurons, local), gathered if rank == 0 else None, dst=0)
        if rank == 0 and job["verify"]:
            assert engine is not None and input_spikes is not None
            sharded = merge_steps(sim.shard.n, gathered)
            single = engine.backend.simulate(engine.state, input_spikes)
            same = (torch.equal(sharded.step_ptr, single.step_ptr) and torch.equal(sharded.neurons, single.neurons))
            mismatches += 0 if same else 1
    stats = [(busy, exchange.wait_seconds, exchange.bytes_sent, exchange.steps)]
    every: list[Any] = [None] * world if rank == 0 else []
    dist.gather_object(stats[0], every if rank == 0 else None, dst=0)
    if rank != 0:
        return {}
    assert engine is not None
    busy_s = [s[0] for s in every]
    sim_seconds = job["cycles"] * steps * engine.config.lif.dt_ms / 1000.0
    return {
        "ranks": world, "neurons": engine.state.n, "synapses": engine.state.nnz, "partition": job["partition"],
        "cut_fraction": cut, "cycles": job["cycles"],
        "sim_wall_per_sim_s": max(busy_s) / sim_seconds,
        "comm_bytes_per_step": sum(s[2] for s in every) / max(1, every[0][3]),
        "comm_wait_fraction": float(np.mean([s[1] / s[0] if s[0] else 0.0 for s in every])),
        "verified_cycles": job["cycles"] if job["verify"] else 0,
        "mismatched_cycles": mismatches,
    }
