"""A stand-in engine for job unit tests: the attributes a test gives it, plus the real knobs API
(``Engine.knobs`` / ``Engine.set_knobs`` over the same attributes: ``eta``, ``gamma``,
``state.global_inhibition``, ``sie.w_*``), so a job's ``Applied.knobs`` land where they do on
the engine."""
from __future__ import annotations

from types import SimpleNamespace

from fumd.engine import Engine


def sie_weights(**extra) -> SimpleNamespace:
    return SimpleNamespace(w_td=1.0, w_novelty=1.0, w_habituation=1.0, w_self_benefit=1.0, **extra)


class FakeEngine(SimpleNamespace):
    knobs = property(Engine.knobs.fget)
    set_knobs = Engine.set_knobs
    drop_last_cycle_spikes = Engine.drop_last_cycle_spikes
