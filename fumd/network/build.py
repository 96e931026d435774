"""Network construction, SPEC §1 (seed 002 §5.A.2).

- N LIF neurons, 80 % excitatory; ``tau ~ N(20, 2)`` ms, ``v_th ~ N(-55, 2)`` mV, ``V = v_reset``.
- Neurons sit on a virtual 2-D grid (side ``ceil(sqrt(N))``, random placement; with
  ``network.index_order = spatial`` the excitatory and the inhibitory neurons are each numbered in
  row-major grid order, so that a neuron's targets have nearby indices and the propagation and
  learning kernels touch a narrow band of each per-neuron array: the same distribution of
  networks, docs/mechanisms.md). Each neuron draws
  ``K`` distinct targets with probability proportional to ``exp(-d / sigma)`` (``torch.multinomial``
  without replacement, as the seed says), among the grid cells within ``max_radius_sigmas * sigma``
  (the truncated tail holds < 2 % of the mass at 6 sigma), so building costs O(N x radius^2),
  not O(N^2).
- Initial weights ``U(0, 0.3)`` for excitatory presynaptic neurons, ``U(-0.3, 0)`` for inhibitory.
- Input neurons (one per input feature and encoder channel) and output populations are disjoint
  random subsets of the excitatory neurons. Each output neuron also receives ``readout_fan_in``
  synapses from random input neurons (-1, the default: from every input neuron), the designated
  input->output pathway (docs/mechanisms.md), initialised ``U(0, 2 S / fan-in)`` so that their
  sum is ``S`` on average (``learning.readout_weight_sum``, grown as ``sqrt(fan-in / 32)`` above
  32 channels: ``learning/readout.py`` ``weight_sum_for``).
- Feature neurons (``network.feature_neurons``, none by default; issue #15, docs/mechanisms.md
  "Feature pathway"): further excitatory neurons, each receiving ``network.feature_fan_in``
  synapses from distinct random input neurons, weights summing to ``fan-in x feature_weight``;
  the readout reads them too with ``network.readout_from = features | both``, and with
  ``network.feature_recurrent = false`` they hear nothing else.
- ``network.readout_isolated`` (default): the recurrent synapses onto input and output neurons are
  left out, so the input neurons relay the encoder's spikes unaltered and the output neurons hear
  only the input pathway (a hot recurrent network corrupted both; docs/mechanisms.md). The
  recurrent network still receives the input neurons' synapses and drives the SIE's states.
- Initial clusters are ``initial_clusters`` spatial blocks of the grid.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..config import EngineConfig, feature_neurons, input_neurons
from ..learning.readout import weight_sum_for
from .state import NetworkState


def grid_side(n: int) -> int:
    return int(math.ceil(math.sqrt(n)))


def candidate_offsets(sigma: float, radius: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer grid offsets within ``radius`` (excluding 0) and their weights exp(-d/sigma)."""
    r = int(math.floor(radius))
    ax = torch.arange(-r, r + 1, device=device)
    dx, dy = torch.meshgrid(ax, ax, indexing="ij")
    dx, dy = dx.reshape(-1), dy.reshape(-1)
    d = torch.sqrt((dx * dx + dy * dy).double())
    keep = (d <= radius) & (d > 0)
    return torch.stack([dx[keep], dy[keep]], 1), torch.exp(-d[keep] / sigma)


@dataclass(frozen=True)
class LocalGrid:
    """The virtual grid as the local samplers see it: which neuron sits in each cell of the
    ``side x side`` grid, and the integer offsets within a radius with their weights
    ``exp(-d / sigma)`` (``candidate_offsets``). It only looks neurons up; the callers draw
    (``sample_connectivity`` here; ``sample_near`` and ``propose_near`` in edit.py), so each keeps
    its own sequence of draws on its generator."""

    side: int
    cell: torch.Tensor  # int64 [side * side]: the neuron in each cell, -1 where the cell is empty
    offsets: torch.Tensor  # int64 [K, 2]
    weight: torch.Tensor  # float64 [K]: exp(-d / sigma) of each offset

    @classmethod
    def build(cls, grid_xy: torch.Tensor, side: int, sigma: float, radius: float,
              with_center: bool = False) -> LocalGrid:
        """``with_center``: offset (0, 0), weight 1, comes first (a center that is not a neuron's own
        cell, such as a free cell for a new neuron, may hold a candidate)."""
        device = grid_xy.device
        offsets, weight = candidate_offsets(sigma, radius, device)
        if with_center:
            offsets = torch.cat([offsets.new_zeros(1, 2), offsets])
            weight = torch.cat([weight.new_ones(1), weight])
        cell = torch.full((side * side,), -1, dtype=torch.int64, device=device)
        cell[grid_xy[:, 0].long() * side + grid_xy[:, 1].long()] = torch.arange(grid_xy.shape[0], device=device)
        return cls(side, cell, offsets, weight)

    def neurons_at(self, centers: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """The neuron in the cell ``centers[m] + offsets[m, k]`` (``centers`` [M, 2], ``offsets``
        [M or 1, K, 2]): int64 [M, K], -1 where the cell is empty or off the grid."""
        side = self.side
        tx = centers[:, None, 0].long() + offsets[..., 0]
        ty = centers[:, None, 1].long() + offsets[..., 1]
        inside = (tx >= 0) & (tx < side) & (ty >= 0) & (ty < side)
        return torch.where(inside, self.cell[tx.clamp(0, side - 1) * side + ty.clamp(0, side - 1)], -1)

    def around(self, centers: torch.Tensor) -> torch.Tensor:
        """``neurons_at`` every offset: int64 [M, K], column k for ``offsets[k]``."""
        return self.neurons_at(centers, self.offsets[None])

    def masked_weight(self, usable: torch.Tensor) -> torch.Tensor:
        """The offsets' weights where ``usable`` ([M, K] bool), 0 elsewhere: the rows to draw from."""
        return torch.where(usable, self.weight[None, :],
                           torch.zeros((), dtype=self.weight.dtype, device=self.weight.device))


def distance_weights(
    centers: torch.Tensor, grid_xy: torch.Tensor, sigma: float,
    candidates: torch.Tensor | None = None, exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """``exp(-d / sigma)`` from each center [M, 2] to every neuron (float64 [M, N]), the exact
    weights of the O(M x N) samplers; 0 outside ``candidates`` (bool [N]) and at ``exclude[m]``
    (one neuron per row, -1 for none)."""
    p = torch.exp(-torch.cdist(centers.double(), grid_xy.double()) / sigma)
    if candidates is not None:
        p = p * candidates[None, :]
    if exclude is not None:
        has_ex = exclude >= 0
        p[has_ex.nonzero().squeeze(1), exclude[has_ex]] = 0.0
    return p


def sample_connectivity(
    grid_xy: torch.Tensor, side: int, fan_out: int, sigma: float, radius: float, gen: torch.Generator,
    batch: int = 2048,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance-biased targets for every neuron; returns (indptr int64, col int32), rows sorted."""
    n = grid_xy.shape[0]
    device = grid_xy.device
    grid = LocalGrid.build(grid_xy, side, sigma, radius)
    cols = []
    for start in range(0, n, batch):
        target = grid.around(grid_xy[start : start + batch])
        p = grid.masked_weight(target >= 0)
        k = min(fan_out, int((p > 0).sum(1).min()))
        if k < fan_out:
            # Small or edge-heavy grids: top up from the whole network (still distance-weighted).
            return _sample_dense(grid_xy, fan_out, sigma, gen)
        pick = torch.multinomial(p, fan_out, replacement=False, generator=gen)
        cols.append(torch.sort(target.gather(1, pick), dim=1).values)
    col = torch.cat(cols).reshape(-1).to(torch.int32)
    indptr = torch.arange(0, n + 1, device=device, dtype=torch.int64) * fan_out
    return indptr, col


def _sample_dense(grid_xy: torch.Tensor, fan_out: int, sigma: float,
                  gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact O(N^2) sampler for small networks whose grid cannot offer fan_out local candidates."""
    n = grid_xy.shape[0]
    p = distance_weights(grid_xy, grid_xy, sigma, exclude=torch.arange(n, device=grid_xy.device))  # no autapse
    pick = torch.multinomial(p, fan_out, replacement=False, generator=gen)
    col = torch.sort(pick, dim=1).values.reshape(-1).to(torch.int32)
    indptr = torch.arange(0, n + 1, device=grid_xy.device, dtype=torch.int64) * fan_out
    return indptr, col


def add_synapses(indptr: torch.Tensor, col: torch.Tensor, pre: torch.Tensor, post: torch.Tensor,
                 n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge extra (pre, post) synapses into a CSR structure; duplicates are kept once, rows sorted."""
    counts = indptr[1:] - indptr[:-1]
    old_pre = torch.repeat_interleave(torch.arange(n, device=col.device), counts)
    key = torch.cat([old_pre * n + col.long(), pre.long() * n + post.long()])
    key = torch.unique(key)  # sorted: by pre, then post
    new_pre, new_col = key // n, key % n
    new_indptr = torch.zeros(n + 1, dtype=torch.int64, device=col.device)
    new_indptr[1:] = torch.cumsum(torch.bincount(new_pre, minlength=n), 0)
    return new_indptr, new_col.to(torch.int32)


def spatial_clusters(grid_xy: torch.Tensor, side: int, k: int) -> torch.Tensor:
    """Split the grid into k near-equal rectangular blocks (rows x cols with rows*cols >= k)."""
    rows = int(math.floor(math.sqrt(k)))
    while k % rows:
        rows -= 1
    cols = k // rows
    bx = (grid_xy[:, 0].long() * rows) // side
    by = (grid_xy[:, 1].long() * cols) // side
    return bx * cols + by


def initial_density(cfg: EngineConfig) -> float:
    """Connection density ``build_network`` creates for this config (before duplicates; with
    ``readout_isolated`` the expected share of recurrent synapses onto designated neurons left
    out), readout and feature-pathway synapses included."""
    net = cfg.network
    n_out = net.max_labels * net.population_size
    recurrent: float = net.neurons * net.synapses_per_neuron
    n_feat = feature_neurons(cfg)
    isolated = (input_neurons(cfg) + n_out if net.readout_isolated else 0) + (0 if net.feature_recurrent else n_feat)
    recurrent *= 1.0 - isolated / float(net.neurons)
    nnz = recurrent + n_out * readout_fan_in(cfg) + n_feat * min(net.feature_fan_in, input_neurons(cfg))
    return nnz / float(net.neurons * (net.neurons - 1))


def recurrent_density(cfg: EngineConfig) -> float:
    """Density of the recurrent synapses onto the hidden (non-designated) neurons that
    ``build_network`` creates, per possible (any presynaptic neuron, hidden postsynaptic neuron)
    pair: ``synapses_per_neuron / (N - 1)``, each hidden neuron's mean in-degree over N - 1. The
    sparsity target of structural plasticity and decay pruning while they protect the readout:
    ``T = density x hidden x (N - 1)``. The readout's synapses are fixed in number while the
    network's size changes, and the hidden neurons are the ones pruning removes; counted over all
    N (N - 1) pairs with the readout included, the readout took the place of the recurrent
    synapses once pruning shrank N (measured: a 1,000-neuron soak lost every recurrent synapse
    by cycle ~49,000; docs/mechanisms.md "Structural plasticity")."""
    net = cfg.network
    return net.synapses_per_neuron / float(max(net.neurons - 1, 1))


def readout_fan_in(cfg: EngineConfig) -> int:
    """Readout synapses per output neuron: ``network.readout_fan_in``, -1 = from every source
    neuron (``network.readout_from``: the input neurons, the feature neurons, or both)."""
    frm = cfg.network.readout_from
    n_src = (input_neurons(cfg) if frm != "features" else 0) + (feature_neurons(cfg) if frm != "input" else 0)
    return n_src if cfg.network.readout_fan_in < 0 else min(cfg.network.readout_fan_in, n_src)


def readout_sources(input_idx: torch.Tensor, feature_idx: torch.Tensor, readout_from: str) -> torch.Tensor:
    """The presynaptic neurons of the readout pathway (``network.readout_from``)."""
    parts = {"input": [input_idx], "features": [feature_idx], "both": [input_idx, feature_idx]}[readout_from]
    return torch.cat(parts).long()


def _mask(idx: torch.Tensor, n: int, device: torch.device) -> torch.Tensor:
    m = torch.zeros(n, dtype=torch.bool, device=device)
    m[idx.long()] = True
    return m


def drop_synapses_onto(indptr: torch.Tensor, col: torch.Tensor, targets: torch.Tensor,
                       n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The CSR structure without the synapses whose postsynaptic neuron is in ``targets``."""
    is_target = torch.zeros(n, dtype=torch.bool, device=col.device)
    is_target[targets] = True
    keep = ~is_target[col.long()]
    pre = torch.repeat_interleave(torch.arange(n, device=col.device), indptr[1:] - indptr[:-1])[keep]
    new_indptr = torch.zeros(n + 1, dtype=torch.int64, device=col.device)
    new_indptr[1:] = torch.cumsum(torch.bincount(pre, minlength=n), 0)
    return new_indptr, col[keep]


def build_network(config: EngineConfig, gen: torch.Generator, device: torch.device) -> NetworkState:
    net, lif = config.network, config.lif
    n = net.neurons
    n_exc = int(round(n * net.excitatory_fraction))
    side = grid_side(n)

    tau = (lif.tau_mean + lif.tau_std * torch.randn(n, generator=gen, device=device)).clamp(
        config.intrinsic.tau_min, config.intrinsic.tau_max
    )
    v_th = lif.v_th_mean + lif.v_th_std * torch.randn(n, generator=gen, device=device)
    v_th = v_th.clamp(min=lif.v_rest + 1.0)  # a threshold below rest would fire forever
    cells = torch.randperm(side * side, generator=gen, device=device)[:n]
    if net.index_order == "spatial":  # same random placement, numbered along the grid (locality)
        cells = torch.cat([cells[:n_exc].sort().values, cells[n_exc:].sort().values])
    grid_xy = torch.stack([cells // side, cells % side], 1).to(torch.int32)

    indptr, col = sample_connectivity(
        grid_xy, side, net.synapses_per_neuron, net.sigma, net.max_radius_sigmas * net.sigma, gen
    )
    designated = torch.randperm(n_exc, generator=gen, device=device)
    n_out = net.max_labels * net.population_size
    n_in, n_feat = input_neurons(config), feature_neurons(config)
    input_idx = torch.sort(designated[:n_in]).values
    output_idx = designated[n_in : n_in + n_out].reshape(net.max_labels, net.population_size)
    feature_idx = torch.sort(designated[n_in + n_out : n_in + n_out + n_feat]).values
    isolated = [input_idx, output_idx.reshape(-1)] if net.readout_isolated else []
    if not net.feature_recurrent:
        isolated.append(feature_idx)
    if isolated:
        indptr, col = drop_synapses_onto(indptr, col, torch.cat(isolated), n)
    k_feat = min(net.feature_fan_in, n_in)
    if n_feat and k_feat:  # the feature pathway: k distinct input neurons converge on each feature neuron
        pick = torch.topk(torch.rand(n_feat, n_in, generator=gen, device=device), k_feat, dim=1).indices
        indptr, col = add_synapses(indptr, col, input_idx[pick].reshape(-1),
                                   feature_idx.reshape(-1, 1).expand(-1, k_feat).reshape(-1), n)
    sources = readout_sources(input_idx, feature_idx, net.readout_from)
    fan_in = readout_fan_in(config)
    if fan_in:
        scores = torch.rand(n_out, sources.numel(), generator=gen, device=device)
        pick = torch.topk(scores, fan_in, dim=1).indices  # distinct sources per output
        extra_pre = sources[pick].reshape(-1)
        extra_post = output_idx.reshape(-1, 1).expand(-1, fan_in).reshape(-1)
        indptr, col = add_synapses(indptr, col, extra_pre, extra_post, n)
    nnz = col.shape[0]
    n_exc_syn = int(indptr[n_exc])
    w = torch.rand(nnz, generator=gen, device=device) * net.init_weight_max
    w[n_exc_syn:] = -w[n_exc_syn:]
    post = col[:n_exc_syn].long()
    if n_feat and k_feat:  # input -> feature: U(0.5, 1.5) x feature_weight
        is_in = _mask(input_idx, n, device)
        pre = torch.repeat_interleave(torch.arange(n_exc, device=device), indptr[1 : n_exc + 1] - indptr[:n_exc])
        feat = (is_in[pre] & _mask(feature_idx, n, device)[post]).nonzero().squeeze(1)
        u = 0.5 + torch.rand(feat.numel(), generator=gen, device=device)
        per_feature = torch.zeros(n, device=device).index_add_(0, post[feat], u)
        # each feature's weights sum to k x feature_weight: the same mean drive on every feature
        w[feat] = u * (k_feat * net.feature_weight) / per_feature[post[feat]]
    if fan_in:  # the readout pathway: U(0, 2 S / fan-in), mean sum S per output neuron
        readout = _mask(output_idx.reshape(-1), n, device)[post].nonzero().squeeze(1)
        total = weight_sum_for(fan_in, config.learning.readout_weight_sum, config.learning.readout_weight_fan_in)
        w[readout] = torch.rand(readout.numel(), generator=gen, device=device) * (2.0 * total / fan_in)
    w.clamp_(-1.0, 1.0)

    trace_dtype = getattr(torch, config.learning.trace_dtype)
    return NetworkState(
        n_exc=n_exc,
        v=torch.full((n,), lif.v_reset, device=device),
        theta=torch.zeros(n, device=device),
        tau_mem=tau.float(),
        v_th=v_th.float(),
        rate_ema=torch.zeros(n, device=device),
        last_spikes=torch.zeros(n, dtype=torch.bool, device=device),
        grid_xy=grid_xy,
        cluster=spatial_clusters(grid_xy, side, net.initial_clusters),
        activity=torch.zeros(n, net.activity_history, dtype=torch.uint8, device=device),
        indptr=indptr,
        col=col,
        w=w,
        e=torch.zeros(nnz, dtype=trace_dtype, device=device),
        persistent=torch.zeros(nnz, dtype=torch.bool, device=device),
        input_idx=input_idx,
        output_idx=output_idx,
        feature_idx=feature_idx,
        global_inhibition=float(lif.global_inhibition),
        n_clusters=net.initial_clusters,
    )
