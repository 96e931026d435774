"""Each setting declared once: its default, doc, allowed range and choices, next to its name.

Every section of the configuration (the engine's in ``fumd/config.py``, the service's in
``fumd/daemon/config.py``, the jobs' in ``fumd/jobs/config.py``) is a frozen dataclass whose
keys are declared with ``setting`` and whose nested sections with ``section``::

    eta: float = setting(0.01, "learning rate", low=0.0, high=1.0)
    normalize: Literal["standardize", "minmax"] = setting("standardize", "per feature | per record")
    jobs: JobsConfig = section(JobsConfig, reloadable=True)

From these declarations alone:

* ``from_mapping`` builds a section from a parsed TOML table, refusing unknown keys and wrong
  types with an error naming the key (``section.key``);
* ``validate_section`` checks every declared range (inclusive; a float must be finite) and every
  ``Literal`` key's choices, and raises ``ConfigError`` naming the key and what is allowed;
  constraints between keys (``k_max >= k_min``) stay small explicit checks in each section's
  validate hook, with ``check_range`` for the same message;
* ``render_toml`` writes a section as TOML, every key with its default and its doc
  (``fumd config``, ``systemd/fumd.example.toml``);
* ``reloadable_sections`` lists the sections a SIGHUP applies (``fumd/daemon/config.py``).

Light to import (no torch, numpy or job library): ``fumd config`` and a SIGHUP reload use it.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import typing
from dataclasses import fields, is_dataclass
from typing import Any, Callable, Literal, Mapping, NamedTuple, Union

from .errors import ConfigError

Bound = Union[float, Callable[[Any], float], None]


def setting(default: Any, doc: str = "", *, low: Bound = None, high: Bound = None) -> Any:
    """A config key: its default, its doc (the comment ``fumd config`` prints) and its allowed
    range ``[low, high]`` (inclusive; None: unbounded on that side; a function of the section for
    a bound set by another key, e.g. ``low=lambda c: c.k_min``). A key's choices are its type,
    ``Literal[...]``."""
    return dataclasses.field(default=default, metadata={"doc": doc, "low": low, "high": high})


def fraction(default: float, doc: str = "") -> Any:
    """A config key whose allowed range is ``[0.0, 1.0]``: a rate, share, probability or factor."""
    return setting(default, doc, low=0.0, high=1.0)


def section(factory: Callable[[], Any], *, reloadable: bool = False, old_name: str | None = None) -> Any:
    """A nested section (a TOML table). ``reloadable``: a SIGHUP applies it to a running daemon.
    ``old_name``: the name it had before, still read (``from_mapping`` reports it in ``renamed``)."""
    return dataclasses.field(default_factory=factory, metadata={"reloadable": reloadable, "old_name": old_name})


class Check(NamedTuple):
    name: str
    low: Bound
    high: Bound
    choices: tuple[str, ...] | None


@functools.cache
def checks(cls: type) -> tuple[Check, ...]:
    """The declared range or choices of every key of ``cls`` that has one (nested sections
    excluded), those whose range depends on other keys last (so that a bad key is named itself)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in fields(cls):
        hint = hints.get(f.name)
        choices = typing.get_args(hint) if typing.get_origin(hint) is Literal else None
        low, high = f.metadata.get("low"), f.metadata.get("high")
        if choices is not None or low is not None or high is not None:
            out.append(Check(f.name, low, high, choices))
    return tuple(sorted(out, key=lambda c: callable(c.low) or callable(c.high)))


def key_name(section_name: str, key: str) -> str:
    """``section.key`` as in the TOML file (a top-level key has no section)."""
    return f"{section_name}.{key}" if section_name else key


def check_range(key: str, value: Any, low: float | None, high: float | None) -> None:
    """Raise ConfigError unless ``value`` is a number in ``[low, high]`` (a float must be finite)."""
    number = isinstance(value, (int, float)) and not (isinstance(value, float) and not math.isfinite(value))
    if not number or (low is not None and value < low) or (high is not None and value > high):
        raise ConfigError(f"{key} = {value!r} is outside the allowed range [{low}, {high}]")


def check_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key} = {value!r}: allowed values are {', '.join(choices)}")


def validate_section(obj: Any, section_name: str) -> None:
    """Check every declared range and choice of ``obj``'s own keys; raise ConfigError naming the
    first key (``section_name.key``) that is outside them, with what is allowed."""
    cls: type = type(obj)
    for check in checks(cls):
        key, value = key_name(section_name, check.name), getattr(obj, check.name)
        if check.choices is not None:
            check_choice(key, value, check.choices)
        else:
            low, high = (bound(obj) if callable(bound) else bound for bound in (check.low, check.high))
            check_range(key, value, low, high)


def reloadable_sections(cls: type) -> tuple[str, ...]:
    """The sections of ``cls`` declared ``reloadable``, in declaration order."""
    return tuple(f.name for f in fields(cls) if f.metadata.get("reloadable"))


# -- reading ---------------------------------------------------------------------------------
def field_default(f: dataclasses.Field) -> Any:
    """The field's default, or a fresh value from its default factory."""
    if f.default is not dataclasses.MISSING:
        return f.default
    factory = f.default_factory
    if not callable(factory):
        raise TypeError(f"{f.name} has no default")
    return factory()


def from_mapping(cls: type, data: Mapping[str, Any], prefix: str = "",
                 renamed: list[tuple[str, str]] | None = None) -> Any:
    """Build section ``cls`` from a parsed TOML table: unknown keys and wrong types are refused
    with an error naming ``prefix + key``. A section found under its ``old_name`` is read as the
    new one (merged under the new name's keys when both are given) and ``(old, new)`` dotted names
    are appended to ``renamed``; the caller decides how to warn."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a table, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    data = _read_old_names(known, data, prefix, renamed)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"{prefix}{key}: unknown key (allowed: {', '.join(sorted(known))})")
        default = field_default(known[key])
        if is_dataclass(default):
            kwargs[key] = from_mapping(type(default), value, f"{prefix}{key}.", renamed)
        else:
            kwargs[key] = coerce(f"{prefix}{key}", value, default)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{prefix or 'config'}: {exc}") from exc


def _read_old_names(known: dict[str, dataclasses.Field], data: Mapping[str, Any], prefix: str,
                    renamed: list[tuple[str, str]] | None) -> Mapping[str, Any]:
    for name, f in known.items():
        old = f.metadata.get("old_name")
        if old is None or old not in data:
            continue
        data = dict(data)
        old_value = data.pop(old)
        new_value = data.get(name)
        if isinstance(old_value, Mapping) and isinstance(new_value, Mapping):
            data[name] = {**old_value, **new_value}
        else:
            data[name] = old_value if new_value is None else new_value
        if renamed is not None:
            renamed.append((f"{prefix}{old}", f"{prefix}{name}"))
    return data


def coerce(key: str, value: Any, default: Any) -> Any:
    """``value`` as the type of ``default`` (an int is a float; a bool is never a number)."""
    kind = type(default)
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    return value


# -- writing ---------------------------------------------------------------------------------
def render_toml(obj: Any, table: str = "") -> list[str]:
    """``obj``'s keys as TOML lines, each with its value and its doc as a comment, then each nested
    section as a table ``[table.name]`` headed by the first line of its class docstring. With no
    ``table`` the keys are top-level (no header)."""
    lines: list[str] = []
    if table:
        lines.append("")
        doc = (type(obj).__doc__ or "").strip().splitlines()
        if doc and not doc[0].startswith(type(obj).__name__ + "("):  # not dataclass's generated signature
            lines.append(f"# {doc[0]}")
        lines.append(f"[{table}]")
    nested = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        if is_dataclass(value):
            nested.append((key_name(table, f.name), value))
        else:
            lines.append(toml_line(f.name, value, f.metadata.get("doc")))
    for name, sub in nested:
        lines += render_toml(sub, name)
    return lines


def toml_line(key: str, value: Any, comment: str | None) -> str:
    text = (("true" if value else "false") if isinstance(value, bool)
            else f'"{value}"' if isinstance(value, str) else repr(value))
    return f"{key} = {text}" + (f"  # {comment}" if comment else "")
