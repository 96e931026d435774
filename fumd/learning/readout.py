"""Learning at the readout layer (docs/mechanisms.md "Learning that works", issue #9).

The *readout synapses* are the excitatory synapses onto output neurons: the designated
input->output pathway (``network.readout_fan_in``, by default every input neuron to every output
neuron; with ``network.readout_from = features | both`` the feature neurons' too, issue #15;
with ``network.readout_isolated`` nothing else reaches an output neuron). Per input:

1. **Causal eligibility** (``learning.readout_window = causal``, see ``stdp.py``): only
   pre-before-post pairs of this input enter ``e_ij`` (``learning.gamma = 0``: no carry-over).
2. **A third factor per output population** ``m_p`` (``population_modulator``): with a label,
   ``onehot(y) - onehot(a)`` plus a margin update; with only an external reward, the acting
   population's reward-prediction error ``R - b[a]`` (``b[a] <- b[a] + alpha (R - b[a])``,
   Fremaux, Sprekeler & Gerstner 2010: R-STDP learns only with the reward centred); with neither,
   a small share of the centred SIE reward (``engine.py``)::

       w_ij <- clip(w_ij + eta_eff(readout_eta, m_p) * m_p * e_ij, 0, w_max)       (j in population p)

3. **Synaptic scaling** (``learning.readout_normalize``; Turrigiano 2008): after each update the
   readout weights of every output neuron ``j`` are scaled multiplicatively back to the sum
   ``S`` (``learning.readout_weight_sum``, grown as ``sqrt(fan-in)`` for wide inputs:
   ``weight_sum_for``)::

       w_ij <- clip(w_ij * S / sum_i w_ij, 0, w_max)

   Potentiating the inputs that predicted the label thereby depresses the others, and the
   ever-positive eligibility cannot run the output rates away.
4. **Adaptive thresholds** ``theta`` of output neurons (``update_theta``): homeostasis plus an
   error-driven bias.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch

from ..network.state import NetworkState


@dataclass
class ReadoutIndex:
    """Positions of the readout synapses (derived from the CSR structure; not state)."""

    pos: torch.Tensor  # int64 [R] synapse positions, ascending
    post_local: torch.Tensor  # int64 [R] index of the postsynaptic output neuron in output_idx.reshape(-1)
    population: torch.Tensor  # int64 [R] the output population of that neuron
    target_sum: torch.Tensor  # float32 [n_out] learning.readout_weight_sum (0 for a neuron without such synapses)
    is_output: torch.Tensor  # bool [N]
    pre: torch.Tensor  # int64 [R] presynaptic neuron of each readout synapse (presynaptic eligibility)
    feature_pos: torch.Tensor  # int64 synapse positions onto feature neurons from excitatory neurons (issue #15)
    structure_version: int  # of the state it was derived from

    @classmethod
    def build(cls, state: NetworkState, weight_sum: float) -> "ReadoutIndex":
        n, device = state.n, state.device
        out = state.output_idx.reshape(-1)
        local = torch.full((n,), -1, dtype=torch.int64, device=device)
        local[out] = torch.arange(out.numel(), device=device)
        k = state.n_exc_synapses
        post_local_all = local[state.col[:k].long()]
        pos = (post_local_all >= 0).nonzero().squeeze(1)
        post_local = post_local_all[pos]
        counts = torch.bincount(post_local, minlength=out.numel()).float()
        is_output = torch.zeros(n, dtype=torch.bool, device=device)
        is_output[out] = True
        is_feature = torch.zeros(n, dtype=torch.bool, device=device)
        is_feature[state.feature_idx.long()] = True
        feature_pos = is_feature[state.col[:k].long()].nonzero().squeeze(1)
        pre = torch.searchsorted(state.indptr, pos, right=True) - 1  # CSR row of each position
        return cls(pos=pos, post_local=post_local, population=post_local // state.output_idx.shape[1],
                   target_sum=(counts > 0).float() * weight_sum, is_output=is_output,
                   pre=pre, feature_pos=feature_pos, structure_version=state.structure_version)


def fan_in_scale(fan_in: int, reference: float) -> float:
    """The readout learning rate's factor for ``fan_in`` input channels per output neuron::

        min(1, sqrt(reference / fan_in))        (1 when reference = 0)

    Each update moves every eligible synapse, so the change of an output neuron's drive grows with
    the number of active inputs while its weights are held to a fixed sum: a normalised step size,
    as in normalised LMS (Nagumo & Noda 1967), keeps wide inputs from overshooting. Measured
    (docs/mechanisms.md): the square root fits both 128-channel digits and 512-channel text."""
    if reference <= 0.0 or fan_in <= reference:
        return 1.0
    return math.sqrt(reference / fan_in)


def weight_sum_for(fan_in: int, weight_sum: float, reference: float) -> float:
    """Each output neuron's summed readout weight for ``fan_in`` input channels::

        S x max(1, sqrt(fan_in / reference))        (S when reference = 0)

    With the sum fixed, the mean weight is ``S / fan_in``, and the part of an output neuron's drive
    that tells one class from another (a few informative channels among many) shrinks with the
    width of the input; the output neurons then fire too little to decide or to learn (measured on
    64-256-feature streams: docs/mechanisms.md). Weights of order ``1 / sqrt(fan_in)`` (the scaling
    of balanced networks, van Vreeswijk & Sompolinsky 1996) keep that drive's fluctuations of the
    same size at every width, i.e. ``S`` grows as ``sqrt(fan_in)``. Inputs up to ``reference``
    channels are unchanged."""
    if reference <= 0.0 or fan_in <= reference:
        return weight_sum
    return weight_sum * math.sqrt(fan_in / reference)


def normalize_readout(w: torch.Tensor, index: ReadoutIndex, w_max: float) -> None:
    """In place: scale each output neuron's excitatory input weights to their target sum."""
    vals = torch.index_select(w, 0, index.pos)
    sums = torch.zeros_like(index.target_sum).index_add_(0, index.post_local, vals)
    scale = torch.where(sums > 0, index.target_sum / sums.clamp(min=1e-12), torch.ones_like(sums))
    w[index.pos] = (vals * scale[index.post_local]).clamp(0.0, w_max)


def readout_drive(w: torch.Tensor, counts: torch.Tensor, index: ReadoutIndex) -> torch.Tensor:
    """Each output neuron's summed readout input of the cycle, ``d_j = sum_i w_ij n_i`` over its
    readout synapses (``n_i``: presynaptic spike counts), float32 [n_out] (``output_idx`` order)."""
    return torch.zeros(index.target_sum.numel(), dtype=w.dtype, device=w.device).index_add_(
        0, index.post_local, w[index.pos] * counts[index.pre].to(w.dtype))


def population_potentials(drive: torch.Tensor, threshold_gap: torch.Tensor, gain: float,
                          steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``learning.readout_decision = potential``: each output population's mean membrane potential
    over the cycle, relative to its neurons' thresholds, as if they did not spike::

        u_j = (gain / T) sum_i w_ij n_i - (v_th_j + theta_j - v_rest),    u_p = mean_{j in p} u_j

    (``drive``: ``sum_i w_ij n_i`` of every output neuron, ``readout_drive``;
    ``threshold_gap``: ``v_th + theta - v_rest`` of the output neurons, shaped as ``output_idx``,
    [P, population size]). The time average of a box-LIF membrane without reset is ``v_rest``
    plus the mean input ``R I``, so ``u_j`` is how far its drive carried neuron ``j`` above (or
    below) threshold: the membrane potential of a non-spiking leaky-integrator readout, the
    readout of liquid-state machines (Maass et al. 2002) and of e-prop (Bellec et al. 2020). Its
    spike count measures the same quantity through a threshold and a reset, i.e. with
    quantisation noise of a few spikes per cycle, and is blind below threshold
    (docs/mechanisms.md "The potential readout"). ``u_p`` is linear in the weights, so the
    presynaptic eligibility ``n_i`` with the softmax error is the exact delta rule of a softmax
    readout. Returns (``u``, the free potential ``mean_j (gain / T) sum_i w_ij n_i``: the scale of
    margins), float64 [P] each, on the CPU."""
    free = (drive.reshape(threshold_gap.shape) * (gain / steps)).mean(1)
    u = free - threshold_gap.mean(1)
    return u.cpu().double(), free.cpu().double()


def softmax_error(pop_rates: torch.Tensor, label: int, beta: float, scale: float | None = None) -> torch.Tensor:
    """``learning.label_error = softmax``: the label's one-hot minus a softmax of the competing
    populations' scores (rates, or potentials with ``scale`` their mean free potential), on the
    scale of their mean rate::

        pi = softmax(beta (r - max r) / mean r),   m = onehot(y) - pi

    The delta rule's error for a softmax readout (e-prop's readout learning signal, Bellec et al.
    2020; a graded, population-specific third factor, Fremaux & Gerstner 2016) instead of the
    perceptron's all-or-none one: every labelled input teaches, a near miss a little, a confident
    right decision almost nothing, and every rival in proportion to how strongly it competed.
    float64 [len(pop_rates)]."""
    r = pop_rates.to(torch.float64)
    if scale is None:
        scale = float(r.mean())
    if scale <= 0.0:  # no population fired: the label's population alone is told to fire
        m = -torch.full_like(r, 1.0 / r.numel())
    else:
        m = -torch.softmax(beta * (r - r.max()) / scale, 0)
    m[label] += 1.0
    return m


def population_modulator(
    populations: int, action: int, label: int | None, pop_rates: torch.Tensor, margin: float, delta: float = 0.0,
    softmax_beta: float = 0.0, scale: float | None = None,
) -> torch.Tensor:
    """The third factor ``m_p`` of each output population (float64 [populations]).

    With a label ``y`` (``learning.modulator = label``): ``m = onehot(y) - onehot(a)``, zero when the
    decision ``a`` was right, except that a right decision whose margin ``(r_y - r_q) / r_y`` over
    its strongest rival ``q`` is below ``margin`` gets ``onehot(y) - onehot(q)`` (with ``scale``,
    for potentials: ``(u_y - u_q) / scale``). ``pop_rates``
    holds the rates of the populations that compete: the vocabulary's, and with
    ``learning.reserve_compete`` also the populations not yet given a label, which thereby learn to
    stay quiet on the classes already known. With ``softmax_beta > 0`` (``learning.label_error =
    softmax``) a label gives ``softmax_error`` instead. Without a label: ``m = delta onehot(a)``,
    the acting population's reward-prediction error."""
    m = torch.zeros(populations, dtype=torch.float64)
    if label is None:
        m[action] = delta
        return m
    if softmax_beta > 0.0:
        return m.index_add_(0, torch.arange(pop_rates.numel()), softmax_error(pop_rates, label, softmax_beta, scale))
    if label != action:
        m[label] += 1.0
        m[action] -= 1.0
    elif margin > 0.0 and pop_rates.numel() > 1:
        top = float(pop_rates[label])
        others = pop_rates.clone()
        others[label] = -math.inf
        rival = int(torch.argmax(others))
        norm = top if scale is None else scale
        if norm <= 0.0 or (top - float(others[rival])) / norm < margin:
            m[label] += 1.0
            m[rival] -= 1.0
    return m


def update_theta(theta: torch.Tensor, counts: torch.Tensor, output: torch.Tensor, plus_mv: float, decay: float,
                 modulator: torch.Tensor | None = None, bias_mv: float = 0.0) -> torch.Tensor:
    """Output homeostasis (Diehl & Cook 2015's adaptive threshold, per input instead of per step),
    plus an error-driven bias (the perceptron's bias as a threshold shift)::

        theta_j <- decay theta_j + plus_mv * spikes_j - bias_mv * m_p(j)

    on output neurons (``output``: int64 [P, n_pop]), 0 elsewhere. Homeostasis alone equalises
    the populations' rates, and so would also erase the class priors a decision needs (a stream
    with 32 % / 68 % classes); the bias lets the modulator restore them."""
    out = output.reshape(-1)
    new = theta.clone()
    upd = theta[out] * decay + plus_mv * counts[out].to(theta.dtype)
    if modulator is not None and bias_mv != 0.0:
        upd = upd - (bias_mv * modulator.to(theta.dtype))[:, None].expand(output.shape).reshape(-1)
    new[out] = upd
    return new


def presynaptic_eligibility(counts: torch.Tensor, index: ReadoutIndex, scale: float) -> torch.Tensor:
    """``learning.readout_eligibility = presynaptic``: each readout synapse's eligibility is its
    presynaptic neuron's spike count in this cycle times ``scale``::

        e_ij = scale * n_i

    the eligibility of e-prop's readout weights (Bellec et al. 2020: the error times the filtered
    presynaptic spike train), i.e. the delta rule on spike counts. The causal (STDP) eligibility
    needs output spikes: a label population that stays silent on an input cannot be potentiated
    on it, which slows learning from many weakly active presynaptic neurons (feature neurons,
    docs/mechanisms.md "Feature pathway")."""
    return torch.index_select(counts, 0, index.pre).to(torch.float32) * scale


def readout_update(
    w: torch.Tensor, e: torch.Tensor, persistent: torch.Tensor, pos: torch.Tensor, w_before: torch.Tensor,
    coef: torch.Tensor, persistent_scale: float, w_max: float, aligned: bool = False,
) -> None:
    """In place: the readout synapses (positions ``pos``, ``ReadoutIndex.pos``) get
    ``w_before + coef * e`` (instead of the generic update that ``synapse_update`` applied to all
    excitatory synapses), persistent ones scaled; ``coef`` (float32 [R]) is each synapse's
    population's ``eta_eff * m_p``. ``e``: every synapse's trace, or with ``aligned`` the readout
    synapses' eligibility ([R], ``presynaptic_eligibility``)."""
    delta = (e if aligned else torch.index_select(e, 0, pos)).to(w.dtype) * coef
    if persistent_scale != 1.0:
        delta = torch.where(torch.index_select(persistent, 0, pos), delta * persistent_scale, delta)
    w[pos] = (w_before + delta).clamp(0.0, w_max)


class ReadoutKernels(Protocol):
    """The readout's three per-cycle passes over its synapses: ``TorchReadout`` (here, any device)
    or ``backends/numba/readout.py::CompiledReadout`` (CPU, bit-identical, several times faster)."""

    name: str

    def drive(self, w: torch.Tensor, counts: torch.Tensor, index: ReadoutIndex) -> torch.Tensor:
        """``readout_drive``."""
        ...

    def weights(self, w: torch.Tensor, index: ReadoutIndex) -> torch.Tensor:
        """A copy of the readout synapses' weights, ``w[index.pos]`` (float32 [R])."""
        ...

    def presynaptic_update(self, w: torch.Tensor, counts: torch.Tensor, index: ReadoutIndex, w_before: torch.Tensor,
                           coef: torch.Tensor, persistent: torch.Tensor, persistent_scale: float, scale: float,
                           w_max: float, normalize: bool) -> None:
        """``readout_update`` with ``presynaptic_eligibility(counts, index, scale)`` and each
        synapse's coefficient ``coef[index.population]`` (``coef``: float32 [P]); then, with
        ``normalize``, ``normalize_readout`` (a compiled kernel does both in one pass)."""
        ...

    def normalize(self, w: torch.Tensor, index: ReadoutIndex, w_max: float) -> None:
        """``normalize_readout``."""
        ...


class TorchReadout:
    """``ReadoutKernels`` in PyTorch: the reference, and the path on CUDA."""

    name = "torch"

    @staticmethod
    def drive(w: torch.Tensor, counts: torch.Tensor, index: ReadoutIndex) -> torch.Tensor:
        return readout_drive(w, counts, index)

    @staticmethod
    def weights(w: torch.Tensor, index: ReadoutIndex) -> torch.Tensor:
        return w[index.pos]

    @staticmethod
    def presynaptic_update(w: torch.Tensor, counts: torch.Tensor, index: ReadoutIndex, w_before: torch.Tensor,
                           coef: torch.Tensor, persistent: torch.Tensor, persistent_scale: float, scale: float,
                           w_max: float, normalize: bool) -> None:
        readout_update(w, presynaptic_eligibility(counts, index, scale), persistent, index.pos, w_before,
                       coef[index.population], persistent_scale, w_max, aligned=True)
        if normalize:
            normalize_readout(w, index, w_max)

    @staticmethod
    def normalize(w: torch.Tensor, index: ReadoutIndex, w_max: float) -> None:
        normalize_readout(w, index, w_max)
