"""Sparse feature neurons: an adaptive threshold per feature neuron that holds the fraction of
inputs it fires on at a target (issue #15; docs/mechanisms.md "Sparse features").

After every learning cycle, each feature neuron ``f`` (``state.feature_idx``) moves its threshold
offset ``theta_f`` against the difference between whether it fired and the target activity ``p``::

    theta_f <- max(theta_f + rate_mv * (1[n_f > 0] - p),  max(v_rest, v_reset_f) + 1 mV - v_th_f)

so that it fires on a fraction ``p`` of the inputs: the threshold becomes the ``1 - p`` quantile of
its drive, whatever the stream. This is the threshold rule of SAILnet (Zylberberg, Murphy & DeWeese
2011, ``theta_i += beta (n_i - p)``) and of Foldiak (1990)'s sparse coding network; Diehl & Cook
(2015)'s adaptive threshold does the same per spike. A fixed threshold makes each feature fire on
a stream-dependent share of inputs (0.3-0.4 measured; on parity's binary inputs most features sum
two of their three channels past it), where a linear readout of conjunctions needs selective ones
(a rate model of the pathway, docs: 0.8 quantile best on rbf, agrawal2 and parity). The floor keeps
a feature whose inputs stay silent from lowering its threshold below rest, where it would fire
without input (the same floor as the network's construction), and below its reset potential
``v_reset_f`` (``lif.feature_v_reset``), where one spike would set off the next.
"""
from __future__ import annotations

import torch


def sparse_feature_thresholds(theta: torch.Tensor, counts: torch.Tensor, feature_idx: torch.Tensor,
                              v_th: torch.Tensor, floor_mv: float, target: float, rate_mv: float) -> torch.Tensor:
    """The new ``theta`` (float32 [N]): feature neurons' entries updated as above, others unchanged;
    ``floor_mv`` is ``max(v_rest, v_reset_f)``."""
    f = feature_idx.long()
    fired = (counts[f] > 0).to(theta.dtype)
    floor = (floor_mv + 1.0) - v_th[f]
    new = theta.clone()
    new[f] = torch.maximum(theta[f] + rate_mv * (fired - target), floor)
    return new
