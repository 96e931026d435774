"""NetworkState: every tensor of the spiking network, in one object.

Layout (why it is this way):
- Neurons ``[0, n_exc)`` are excitatory, ``[n_exc, N)`` inhibitory. Position on the 2-D grid is a
  separate random permutation, so the index order carries no spatial meaning.
- Synapses are stored CSR by *presynaptic* neuron (``indptr``, ``col`` = postsynaptic index), so
  the out-synapses of a spiking neuron are one contiguous slice: propagation costs
  spikes x fan-out. Because excitatory neurons come first, synapses ``[0, n_exc_synapses)`` are
  excitatory and the rest inhibitory: Dale's law and per-type clipping are two slice operations.
- ``w`` (float32), ``e`` (eligibility trace, float16 by default), ``persistent`` (bool) are
  aligned with ``col``: 4 + 4 + 2 + 1 = 11 bytes per synapse.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch


@dataclass
class NetworkState:
    n_exc: int
    # per neuron [N]
    v: torch.Tensor
    tau_mem: torch.Tensor  # ms
    v_th: torch.Tensor  # mV
    theta: torch.Tensor  # mV, adaptive threshold added to v_th (output homeostasis; 0 elsewhere)
    rate_ema: torch.Tensor  # Hz, used by intrinsic plasticity
    last_spikes: torch.Tensor  # bool, spikes of the last step of the previous cycle
    grid_xy: torch.Tensor  # int32 [N, 2]
    cluster: torch.Tensor  # int64 cluster id
    activity: torch.Tensor  # uint8 [N, H]: spike counts of the last H cycles (clustering, pruning)
    # per synapse, CSR by presynaptic neuron
    indptr: torch.Tensor  # int64 [N + 1]
    col: torch.Tensor  # int32 [nnz]
    w: torch.Tensor  # float32 [nnz]
    e: torch.Tensor  # trace [nnz]
    persistent: torch.Tensor  # bool [nnz]
    # designated neurons
    input_idx: torch.Tensor  # int64 [input_size]
    output_idx: torch.Tensor  # int64 [max_labels, population_size]
    feature_idx: torch.Tensor  # int64 [F] feature neurons (network.feature_neurons; empty before #15)
    # scalars
    global_inhibition: float
    n_clusters: int
    activity_pos: int = 0  # next column of ``activity`` to write (ring buffer)
    structure_version: int = 0  # bumped whenever neurons or synapses are added or removed

    # Arrays aligned with neurons / with synapses: whatever adds or removes either keeps all aligned.
    NEURON_ARRAYS = ("v", "tau_mem", "v_th", "theta", "rate_ema", "last_spikes", "grid_xy", "cluster", "activity")
    SYNAPSE_ARRAYS = ("col", "w", "e", "persistent")

    @classmethod
    def from_arrays(cls, values: Mapping[str, Any], device: torch.device) -> "NetworkState":
        """A state from saved fields (``vars`` of a state, e.g. a checkpoint's ``network.*``
        entries): tensors moved to ``device``, scalars converted to their field's type. Restoring a
        checkpoint this way skips building a network only to overwrite it (at 100k neurons and 10M
        synapses the build takes ~20 s). Raises ``KeyError`` naming a missing field."""
        scalar = {"int": int, "float": float}
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in values:
                if f.name in ("activity_pos", "structure_version"):  # defaults
                    continue
                raise KeyError(f"network.{f.name}")
            value = values[f.name]
            kwargs[f.name] = value.to(device) if torch.is_tensor(value) else scalar[str(f.type)](value)
        return cls(**kwargs)

    @property
    def n(self) -> int:
        return int(self.v.shape[0])

    @property
    def nnz(self) -> int:
        return int(self.col.shape[0])

    @property
    def n_exc_synapses(self) -> int:
        return int(self.indptr[self.n_exc])

    @property
    def device(self) -> torch.device:
        return self.v.device

    def synapse_bytes(self) -> int:
        """Bytes held per-synapse plus the row pointer (the state counted by bytes_per_synapse)."""
        return sum(t.element_size() * t.numel() for t in (self.col, self.w, self.e, self.persistent, self.indptr))

    def pre_index(self) -> torch.Tensor:
        """Presynaptic neuron of every synapse (derived from indptr; O(nnz), not for the hot path)."""
        counts = self.indptr[1:] - self.indptr[:-1]
        return torch.repeat_interleave(torch.arange(self.n, device=self.device), counts)

    def record_activity(self, counts: torch.Tensor) -> None:
        """Store one cycle's spike counts per neuron in the activity ring (saturating at 255)."""
        self.activity[:, self.activity_pos] = counts.clamp(max=255).to(torch.uint8)
        self.activity_pos = (self.activity_pos + 1) % self.activity.shape[1]

    def designated_idx(self) -> torch.Tensor:
        """Input, output and feature neurons (int64): never pruned, never given recurrent synapses
        by structural plasticity (with ``readout_isolated``)."""
        return torch.cat([self.input_idx.reshape(-1), self.output_idx.reshape(-1), self.feature_idx.reshape(-1)]).long()

    def sparsity(self) -> float:
        return 1.0 - self.nnz / float(self.n * (self.n - 1))
