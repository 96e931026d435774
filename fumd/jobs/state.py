"""A job's persistent state <-> checkpoint entries, written once for every job.

A job declares what it keeps across restarts as ``STATE``, a tuple of ``Persist(attr, codec)``:
the attribute, how it is stored (``codec``), under which key (default: the attribute's name) and
when. ``PersistentJob`` turns that table into ``state_dict`` (key -> tensor / int / float / bool /
str list, what ``fumd.persistence`` writes) and ``load_state_dict``:

* ``reset_state()`` first (a job restores onto a fresh state; default: nothing to reset);
* then, for each entry in order, the attribute is restored from the entries present in the
  data; a missing entry leaves the attribute as it is (a checkpoint from before the job kept it);
* an entry with ``check=True`` (a format or what the state was saved for) must hold the job's own
  value, or the whole saved state is ignored and the job starts fresh.

Codecs (``save(job, key, value) -> entries``, ``load(job, key, data, value) -> value``):
``Scalar(int | float | bool)``, ``TensorOf(dtype)`` (restored on the CPU), ``Strings``,
``Floats`` / ``FloatRows(width)`` (lists of floats as float64 tensors), ``OptionalFloats``
(None as an empty tensor), ``Counters(key_format, type)`` (a dict of numbers, one entry each),
``RingOf`` (``analysis.ring.Ring``), ``Nested`` (an object with its own ``state_dict``, entries
at the top level), ``Stream`` (``base.PrivateStream``; a missing stream is reset to its seed) and
``Custom(save, load)``. The keys, dtypes and JSON types are those the hand-written ``state_dict``
methods wrote before (issue #11), so older checkpoints load and the state digest is unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping, Protocol

import torch

Entries = dict[str, Any]


class Codec(Protocol):
    def save(self, job: Any, key: str, value: Any) -> Entries: ...

    def load(self, job: Any, key: str, data: Mapping[str, Any], value: Any) -> Any: ...


@dataclass(frozen=True)
class Persist:
    attr: str
    codec: Codec
    key: str | None = None  # checkpoint key (default: attr)
    when: Callable[[Any], bool] | None = None  # saved only when this holds for the job
    check: bool = False  # must equal the job's value, or the saved state is ignored

    @property
    def name(self) -> str:
        return self.attr if self.key is None else self.key


class _OneEntry:
    """A codec of one entry ``key``: ``encode(job, value)`` / ``decode(job, stored)``."""

    def encode(self, job: Any, value: Any) -> Any:
        raise NotImplementedError

    def decode(self, job: Any, stored: Any) -> Any:
        raise NotImplementedError

    def save(self, job: Any, key: str, value: Any) -> Entries:
        return {key: self.encode(job, value)}

    def load(self, job: Any, key: str, data: Mapping[str, Any], value: Any) -> Any:
        return self.decode(job, data[key]) if key in data else value


@dataclass(frozen=True)
class Scalar(_OneEntry):
    type: type

    def encode(self, job: Any, value: Any) -> Any:
        return self.type(value)

    def decode(self, job: Any, stored: Any) -> Any:
        return self.type(stored)


@dataclass(frozen=True)
class TensorOf(_OneEntry):
    dtype: torch.dtype

    def encode(self, job: Any, value: torch.Tensor) -> torch.Tensor:
        return value.clone()

    def decode(self, job: Any, stored: Any) -> torch.Tensor:
        return torch.as_tensor(stored).cpu().to(self.dtype).clone()


class Strings(_OneEntry):
    def encode(self, job: Any, value: Any) -> list[str]:
        return [str(v) for v in value]

    def decode(self, job: Any, stored: Any) -> list[str]:
        return [str(v) for v in stored]


def _floats(stored: Any) -> list:
    return torch.as_tensor(stored).to(torch.float64).cpu().tolist()


class Floats(_OneEntry):
    def encode(self, job: Any, value: Any) -> torch.Tensor:
        return torch.tensor(value, dtype=torch.float64)

    def decode(self, job: Any, stored: Any) -> list[float]:
        return _floats(stored)


@dataclass(frozen=True)
class FloatRows(_OneEntry):
    """A list of equal-length float lists as a float64 [rows, width(job)] tensor."""

    width: Callable[[Any], int]

    def encode(self, job: Any, value: Any) -> torch.Tensor:
        return torch.tensor(value, dtype=torch.float64).reshape(-1, self.width(job))

    def decode(self, job: Any, stored: Any) -> list[list[float]]:
        return _floats(stored)


class OptionalFloats(_OneEntry):
    """A list of floats or None (stored as an empty tensor, as ``Floats`` stores [])."""

    def encode(self, job: Any, value: Any) -> torch.Tensor:
        return torch.tensor(value or [], dtype=torch.float64)

    def decode(self, job: Any, stored: Any) -> list[float] | None:
        return _floats(stored) or None


@dataclass(frozen=True)
class Custom(_OneEntry):
    to_stored: Callable[[Any, Any], Any]  # (job, value) -> stored
    from_stored: Callable[[Any, Any], Any]  # (job, stored) -> value

    def encode(self, job: Any, value: Any) -> Any:
        return self.to_stored(job, value)

    def decode(self, job: Any, stored: Any) -> Any:
        return self.from_stored(job, stored)


@dataclass(frozen=True)
class Counters:
    """A dict of numbers, one entry per item under ``key_format.format(item)`` (the Persist key
    is not used); items missing from the data keep their value."""

    key_format: str
    type: type

    def save(self, job: Any, key: str, value: dict[str, Any]) -> Entries:
        return {self.key_format.format(k): self.type(v) for k, v in value.items()}

    def load(self, job: Any, key: str, data: Mapping[str, Any], value: dict[str, Any]) -> dict[str, Any]:
        return {k: self.type(data.get(self.key_format.format(k), v)) for k, v in value.items()}


class RingOf:
    """An ``analysis.ring.Ring``: ``{key}.buf`` and ``{key}.count``, restored in place."""

    def save(self, job: Any, key: str, value: Any) -> Entries:
        return value.state_dict(key)

    def load(self, job: Any, key: str, data: Mapping[str, Any], value: Any) -> Any:
        if f"{key}.buf" in data:
            value.load_state_dict(dict(data), key)
        return value


class Nested:
    """An object with its own ``state_dict()`` / ``load_state_dict(data)``; its entries sit at the
    top level (the Persist key is not used). Restored in place when any of its entries is there."""

    def save(self, job: Any, key: str, value: Any) -> Entries:
        return value.state_dict()

    def load(self, job: Any, key: str, data: Mapping[str, Any], value: Any) -> Any:
        if any(k in data for k in value.state_dict()):
            value.load_state_dict(dict(data))
        return value


class Stream(_OneEntry):
    """A ``base.PrivateStream`` (its generator state); a checkpoint without it resets the stream
    to its seed."""

    def encode(self, job: Any, value: Any) -> torch.Tensor:
        return value.get_state()

    def load(self, job: Any, key: str, data: Mapping[str, Any], value: Any) -> Any:
        if key in data:
            value.set_state(data[key])
        else:
            value.reset()
        return value


def save_state(job: Any, table: tuple[Persist, ...]) -> Entries:
    out: Entries = {}
    for p in table:
        if p.when is None or p.when(job):
            out.update(p.codec.save(job, p.name, getattr(job, p.attr)))
    return out


def load_state(job: Any, table: tuple[Persist, ...], data: Mapping[str, Any]) -> bool:
    """Restore ``job``'s attributes from ``data``; False (nothing restored) when a ``check``
    entry is missing or differs from the job's own value."""
    for p in table:
        if p.check and (p.name not in data or p.codec.load(job, p.name, data, None) != getattr(job, p.attr)):
            return False
    for p in table:
        if not p.check:
            setattr(job, p.attr, p.codec.load(job, p.name, data, getattr(job, p.attr)))
    return True


class PersistentJob:
    """``state_dict`` / ``load_state_dict`` from the class's ``STATE`` table (module docstring)."""

    STATE: ClassVar[tuple[Persist, ...]] = ()

    def reset_state(self) -> None:
        """Called before a load: put the persistent attributes back to a fresh job's values."""

    def state_dict(self) -> dict[str, Any]:
        return save_state(self, self.STATE)

    def load_state_dict(self, data: Mapping[str, Any]) -> None:
        self.reset_state()
        load_state(self, self.STATE, data)
