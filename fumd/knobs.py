"""The engine's adaptive settings ("knobs"): what the scheduled jobs may change between cycles.

``Knobs`` is a frozen value: ``engine.knobs`` reads the live values, a job that tunes returns a
new ``Knobs`` from ``apply`` (``knobs.replace(eta=...)``) and the runner makes it live with
``engine.set_knobs`` (fumd/jobs/base.py). No job assigns these attributes itself.

Each value stays where the cycle reads it and the checkpoint saves it (``eta``, ``gamma``: the
engine; ``global_inhibition``: ``NetworkState``, read by the simulation backends; the four SIE
weights: the SIE), so the checkpoint format is unchanged.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Knobs:
    eta: float  # live learning rate (config learning.eta; tuning and criticality jobs)
    gamma: float  # eligibility-trace carry-over per cycle (learning.gamma; tuning job)
    global_inhibition: float  # extra gain on inhibitory synapses (lif.global_inhibition; criticality job)
    w_td: float  # SIE weights (sie.*; tuning job with tune_sie_weights)
    w_novelty: float
    w_habituation: float
    w_self_benefit: float

    def replace(self, **changes: float) -> Knobs:
        return dataclasses.replace(self, **changes)

    def changes_from(self, old: Knobs) -> dict[str, float]:
        """The values of ``self`` that differ from ``old``'s: in value, sign of zero or type
        (``repr`` differs), so making them live stores exactly what the job computed."""
        out = {}
        for f in dataclasses.fields(self):
            new, was = getattr(self, f.name), getattr(old, f.name)
            if type(new) is not type(was) or repr(new) != repr(was):
                out[f.name] = new
        return out
