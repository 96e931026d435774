"""The shape of a scheduled job: snapshot -> compute -> apply.

No job may mutate the network while a cycle runs, and heavy work (k-means, GP fitting) must not
stall the loop. So every job is split in three:

* ``snapshot(engine)``: on the loop thread, between cycles; copies the little the job needs.
* ``compute(snap)``: pure, anywhere (a worker thread in wall-clock mode, inline in deterministic
  mode); never touches the engine; returns a plan (or None: nothing to do).
* ``apply(engine, plan)``: on the loop thread, between cycles; cheap; returns the key outputs
  (name -> number) that go to metrics and the log.

A plan is stamped with the engine's ``structure_version``; if the network's shape changed between
snapshot and apply (structural plasticity ran), the runner discards the plan and the job runs again
next time. Jobs that keep their own state (the tuner's trials, the structural job's per-pair rewire
counts) expose ``state_dict``/``load_state_dict`` of JSON-able values or tensors, saved in checkpoints.
"""
from __future__ import annotations

from typing import Any, Protocol


class Job(Protocol):
    name: str

    def snapshot(self, engine: Any) -> Any: ...

    def compute(self, snap: Any) -> Any: ...

    def apply(self, engine: Any, plan: Any) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, data: dict[str, Any]) -> None: ...


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
