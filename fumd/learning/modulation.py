"""Reward-modulated weight update, SPEC §3 (seed 002 §5.A.2, §5.B.3, §5.E.4).

    eta_eff = eta * (1 + (2 * sigmoid(total_reward) - 1))       (= 2 eta sigmoid(R))
    w_ij    = clip(w_ij + eta_eff * total_reward * e_ij, ...)

with the sign of the presynaptic neuron kept (Dale's law): excitatory weights stay in
``[0, w_max]``, inhibitory in ``[-w_max, 0]`` (SPEC clamps to [-1, 1]; w_max = 1 by default).
``eta`` is multiplied by ``novelty_boost`` (1.2) when novelty > 0.5, and persistent synapses learn
at ``persistent_eta_scale`` (0.5) of the rate.

fumd applies the rule to the *centred* reward ``delta = R - b`` (``learning.reward_baseline``,
see ``readout.py``) and, by default (``learning.eta_modulation = magnitude``), modulates the rate
by the reward's magnitude::

    eta_eff = eta * (1 + (2 * sigmoid(|delta|) - 1))

so that ``eta_eff * delta`` is an odd function of ``delta``: a surprise of either sign raises
plasticity by the same factor. SPEC's literal ``sigmoid(delta)`` (``signed``) gives
``eta_eff * delta = eta (delta + delta tanh(delta / 2))``, whose even part is a net potentiation of
every eligible synapse on every cycle; measured, it makes the acting population win ever more
often until one population takes every decision (docs/mechanisms.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class UpdateCoefficients:
    """This cycle's weight-update coefficients ``eta_eff * delta`` per synapse class, and which
    updates apply (the generic one when either type's coefficient is non-zero; the readout one
    when there are readout synapses and their or the excitatory coefficient is non-zero)."""

    excitatory: float
    inhibitory: float
    readout_per_population: torch.Tensor  # float32 [P]: each output population's coefficient
    readout_population: torch.Tensor  # int64 [R]: the population of each readout synapse (ReadoutIndex.population)
    readout_pos: torch.Tensor  # int64 [R]: the readout synapses' positions (readout.ReadoutIndex.pos)
    generic: bool
    apply_readout: bool
    persistent_scale: float
    w_max: float

    @property
    def readout(self) -> torch.Tensor:
        """float32 [R]: per readout synapse, its population's coefficient (gathered on demand: the
        compiled readout reads the [P] coefficients directly)."""
        return self.readout_per_population[self.readout_population]


def effective_eta(eta: float, total_reward: float) -> float:
    """``eta * (1 + (2 sigmoid(R) - 1))``."""
    return eta * (1.0 + (2.0 / (1.0 + math.exp(-total_reward)) - 1.0))


def reward_coefficient(eta: float, delta: float, mode: str) -> float:
    """``eta_eff * delta`` with ``eta_eff`` modulated by ``|delta|`` (magnitude) or ``delta`` (signed)."""
    return effective_eta(eta, abs(delta) if mode == "magnitude" else delta) * delta


def synapse_update(
    w: torch.Tensor,
    e: torch.Tensor,
    persistent: torch.Tensor,
    n_exc_synapses: int,
    coef_exc: float,
    coef_inh: float,
    persistent_scale: float,
    w_max: float,
) -> None:
    """In place ``w += coef * e`` (per presynaptic type), persistent synapses scaled, then clipped
    to the sign range of their type."""
    k = n_exc_synapses
    delta = e.to(w.dtype)
    if persistent_scale != 1.0:
        delta = torch.where(persistent, delta * persistent_scale, delta)
    w[:k].add_(delta[:k], alpha=coef_exc).clamp_(0.0, w_max)
    w[k:].add_(delta[k:], alpha=coef_inh).clamp_(-w_max, 0.0)
