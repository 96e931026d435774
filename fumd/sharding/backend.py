"""The sharded backend: the engine's cycle on K shards, bit-identical to one process (issue #12).

``backend = "sharded"`` puts this class behind the engine's backend seam (``backends/__init__``):
the engine, the SIE, the jobs, checkpoints and metrics see one ``NetworkState`` as with any
backend, and only the two hot paths run on shards:

- ``simulate``: the network is split by ``[sharding] partition`` into ``[sharding] shards`` parts
  (``partition.py``, ``shard.py``); per step, every shard integrates its own neurons from the
  synapses onto them and runs their LIF update, the shards in parallel (``step.sharded_steps``, one
  compiled call per cycle, ``prange`` over shards), and the step's spikes, which every shard reads
  at the next step, are the exchange (shared memory: no copies);
- ``learn``: each shard runs the single process's plasticity kernels on its synapses
  (``learn.py``: STDP table from its own neurons' spikes, presynaptic times from the cycle's
  spike list, traces, generic and readout updates), the shards on threads (the kernels release
  the GIL), then its weights and traces are written back.

The state stays one ``NetworkState`` in shared memory: the shards' weights are one array, gathered
from the state at the start of each cycle (O(synapses)), and learning reads each shard's flags
and traces and writes its weights and traces back (disjoint positions). Whatever changed the
state in between (the readout's scaling, thresholds, intrinsic plasticity, every job, a
checkpoint load) is therefore seen at the next cycle without notice; the layout (which neuron and
synapse each shard holds) is rebuilt only when the state object or its ``structure_version``
changes (structural plasticity, pruning, growth).

Bit-equality with the numba backend holds for any K and either partition, every job on
(``tests/test_sharded_backend.py``): each neuron's input is summed in the same order and each
synapse updated by the same float operations (``step.py``, ``learn.py``). What this backend does
not do yet is put shards in separate processes or hosts (``run.py`` runs the simulation that
way for ``fumd bench --ranks``; the engine driver over ``torch.distributed`` is the rest of #12).
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np
import torch

from ..backends.numba import compiled_threads
from ..backends.numba.arrays import LIFNeurons, SpikeList, STDPWindow, WeightUpdate
from ..config import LIFConfig, ShardingConfig
from ..learning.eligibility import EligibilityUpdate
from ..learning.modulation import UpdateCoefficients
from ..learning.stdp import STDPKernels
from ..network.lif import LIFStepper, neuron_parameters
from ..network.spikes import CycleSpikes
from ..network.state import NetworkState
from .learn import local_readout, shard_learn, shard_trace
from .partition import partition
from .run import drive_of, on_threads
from .shard import Shard, make_shard
from .step import ShardedSynapses, sharded_steps, sharded_synapses


class ShardedBackend:
    """``Backend`` on ``sharding.shards`` shards of the state, in parallel in this process (module doc)."""

    name = "sharded"

    def __init__(self, lif: LIFConfig, kernels: STDPKernels, sharding: ShardingConfig, seed: int = 0):
        self.lif = lif
        self.sharding = sharding
        self.seed = seed
        causal = kernels.causal if kernels.causal is not None else kernels.excitatory
        self.window = STDPWindow(torch.stack([kernels.excitatory, kernels.inhibitory, causal]).double().cpu().numpy(),
                                 float(kernels.inhibitory_offset))
        self._state: NetworkState | None = None
        self._version = -1
        self.shards: list[Shard] = []
        self.fused: ShardedSynapses | None = None  # the shards' synapses as one array set (step.sharded_steps)
        self.synapse_index = np.empty(0, dtype=np.int64)  # each fused synapse's position in the state's CSR
        self.cut_fraction = 0.0

    def layout(self, state: NetworkState) -> list[Shard]:
        """The shards of ``state``: rebuilt when the state is another object or its structure
        changed, else the cached ones."""
        if state is not self._state or state.structure_version != self._version or not self.shards \
                or self.shards[0].n != state.n or self.fused is None or self.fused.w.shape[0] != state.nnz:
            k = max(1, min(self.sharding.shards, state.n))
            part = partition(state, k, self.sharding.partition, self.seed)
            shards = [make_shard(state, part.assignment, r) for r in range(k)]
            fused = sharded_synapses(shards, part.assignment[state.input_idx.numpy()])
            # one weight array: each shard's weights are a view of its block of the fused one
            ptr = fused.syn_ptr
            self.shards = [dataclasses.replace(sh, synapses=sh.synapses._replace(w=fused.w[ptr[r]:ptr[r + 1]]))
                           for r, sh in enumerate(shards)]
            self.fused = fused
            self.synapse_index = np.concatenate([sh.synapse_index for sh in shards])
            self.cut_fraction = float(part.cut_fraction)
            self._state, self._version = state, state.structure_version
        return self.shards

    def simulate(self, state: NetworkState, input_spikes: torch.Tensor) -> CycleSpikes:
        self.layout(state)
        fused, lif = self.fused, self.lif
        assert fused is not None  # layout() just built it
        params = neuron_parameters(state, lif)
        stepper = LIFStepper(params, lif.dt_ms)
        compiled_threads()  # prange over shards follows torch's thread count, as the numba backend's kernels
        fused.w[:] = state.w.numpy()[self.synapse_index]  # the weights as learning and the jobs left them
        # callers may hold the old V and spikes (checkpoints): never write into them
        v, fired = state.v.clone(), state.last_spikes.clone()
        out = SpikeList(np.empty(input_spikes.shape[0] + 1, dtype=np.int64),
                        np.empty(max(state.n, 1024), dtype=np.int32))
        neurons = sharded_steps(
            v.numpy(), LIFNeurons(stepper.dt_tau_inv.numpy(), stepper.v_th.numpy(), float(stepper.v_leak),
                                  stepper.v_reset.numpy(), float(lif.v_min)),
            fused, drive_of(input_spikes, lif), state.input_idx.numpy().astype(np.int64), float(lif.synaptic_gain),
            float(state.global_inhibition), fired.numpy(), out)
        state.v, state.last_spikes = v, fired
        step_ptr = torch.from_numpy(out.step_ptr)
        return CycleSpikes(step_ptr=step_ptr, neurons=torch.from_numpy(neurons[: out.step_ptr[-1]]), n=state.n)

    def learn(self, state: NetworkState, spikes: CycleSpikes, eligibility: EligibilityUpdate,
              coefficients: UpdateCoefficients) -> None:
        shards = self.layout(state)
        c = coefficients
        rule = WeightUpdate(eligibility.gamma, c.generic, c.excitatory, c.inhibitory, c.persistent_scale, c.w_max)
        cycle = SpikeList(spikes.step_ptr.numpy(), spikes.neurons.numpy())
        counts = spikes.counts.numpy().astype(np.int64)
        gate = None if eligibility.post_gate is None else eligibility.post_gate.numpy()
        causal = None if eligibility.causal_post is None else eligibility.causal_post.numpy()
        w, e, persistent = state.w.numpy(), state.e.numpy(), state.persistent.numpy()
        pos = c.readout_pos.numpy()
        coef = c.readout.numpy() if c.apply_readout else None
        threads = max(1, compiled_threads() // len(shards))  # each shard's parallel kernels get a share

        def learn_shard(shard: Shard) -> None:
            at = shard.synapse_index
            shard.synapses.w[:] = w[at]
            shard.synapses.persistent[:] = persistent[at]
            trace = shard_trace(shard, e)
            shard_learn(shard, trace, self.window, cycle, counts,
                        None if gate is None else np.ascontiguousarray(gate[shard.neurons]),
                        None if causal is None else np.ascontiguousarray(causal[shard.neurons]), rule,
                        local_readout(shard, pos, coef) if coef is not None else None, threads)
            # the shards' synapses are disjoint: each writes only its own positions
            w[at] = shard.synapses.w
            e[at] = trace.values.view(np.float16) if trace.half else trace.values

        on_threads([functools.partial(learn_shard, s) for s in shards])
