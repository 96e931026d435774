"""The contract between the engine and a scheduled job: snapshot -> compute -> apply.

No job may mutate the network while a cycle runs, and heavy work (k-means, GP fitting) must not
stall the loop. So every job (``Job[Snapshot, Plan]``) is split in three:

* ``snapshot(engine) -> Snapshot``: on the loop thread, between cycles; copies the little the
  job needs.
* ``compute(snap) -> Plan | None``: pure, anywhere (a worker thread in wall-clock mode, inline in
  deterministic mode); never touches the engine nor mutates its snapshot; the same snapshot gives
  the same plan (a job's randomness is drawn in ``snapshot`` from its ``PrivateStream``). None:
  nothing to do.
* ``apply(engine, plan) -> Applied``: on the loop thread, between cycles; cheap. It edits the
  network through ``fumd.network.edit`` and returns its key outputs (name -> number, to metrics
  and the log) and, for a job that tunes, the engine's new ``Knobs`` (eta, gamma, global
  inhibition, SIE weights; fumd/knobs.py). No job assigns those itself: ``commit`` makes them live
  with ``engine.set_knobs``.

A job may also ``observe(engine, result)`` every cycle (cheap bookkeeping, ``Observer``).

Stale plans: the runner stamps a plan computed off the loop with the engine's
``state.structure_version`` (bumped by every structural edit and re-clustering) and discards it,
unmarked as run, if the version changed before it could be applied; the job runs again next
time. Jobs that keep state across restarts (the tuner's trials, the structural job's per-pair
rewire counts) declare it as a ``STATE`` table (``fumd/jobs/state.py``), saved in checkpoints
under ``jobs.<name>.``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Protocol, TypeVar

if TYPE_CHECKING:
    from ..engine import CycleResult, Engine
    from ..knobs import Knobs

S = TypeVar("S")
P = TypeVar("P")


@dataclass(frozen=True)
class Applied:
    """What ``apply`` did: its outputs and, for a job that tunes, the engine's new knobs."""

    outputs: dict[str, float] = field(default_factory=dict)
    knobs: Knobs | None = None


class Job(Protocol[S, P]):
    name: str

    def snapshot(self, engine: Engine) -> S: ...

    def compute(self, snap: S) -> P | None: ...

    def apply(self, engine: Engine, plan: P) -> Applied: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, data: Mapping[str, Any]) -> None: ...


class Observer(Protocol):
    def observe(self, engine: Engine, result: CycleResult) -> None: ...


def commit(engine: Engine, applied: Applied) -> dict[str, float]:
    """Make what ``apply`` returned live (its knobs, through ``engine.set_knobs``); its outputs."""
    if applied.knobs is not None:
        engine.set_knobs(applied.knobs)
    return applied.outputs


def run_once(job: Job[Any, Any], engine: Engine) -> dict[str, float]:
    """snapshot -> compute -> apply -> commit at once, as the cycle clock runs a due job."""
    plan = job.compute(job.snapshot(engine))
    return commit(engine, job.apply(engine, plan)) if plan is not None else {}


def job_seed(seed: int, name: str) -> int:
    """A job's own seed from the network seed and the job's name (stable across runs and machines)."""
    import zlib

    return (int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (2**63 - 1)


class PrivateStream:
    """A job's own random stream (CPU ``torch.Generator`` seeded by ``job_seed``), saved in the
    job's state. Jobs draw their seeds here, not from ``engine.generator``: a job never changes
    the engine's random numbers, so the engine with jobs on sees the same input spikes as with
    them off, and what a job does to learning can be measured without that noise (issue #9)."""

    def __init__(self, seed: int, name: str):
        import torch

        self.seed = job_seed(seed, name)
        self.gen = torch.Generator()
        self.gen.manual_seed(self.seed)

    def integer(self, high: int) -> int:
        import torch

        return int(torch.randint(0, int(high), (1,), generator=self.gen))

    def reset(self) -> None:
        self.gen.manual_seed(self.seed)

    def get_state(self) -> Any:
        return self.gen.get_state()

    def set_state(self, state: Any) -> None:
        import torch

        self.gen.set_state(torch.as_tensor(state).cpu().to(torch.uint8))
