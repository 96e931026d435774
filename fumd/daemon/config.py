"""The daemon's configuration: one TOML file (see ``systemd/fumd.example.toml``).

Top-level keys are the engine's (``network.*``, ``lif.*``, ``learning.*``, ..., ``deterministic``,
``device``; see ``fumd/config.py``) plus the service sections below. Everything has a default, so
the daemon runs with no file at all. Unknown keys, wrong types and values out of range are refused
at start with an error naming the key and its allowed range.
"""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..config import EngineConfig, _from_mapping
from ..errors import ConfigError
from ..jobs.config import JobsConfig


@dataclass(frozen=True)
class CheckpointConfig:
    format: str = "zarr"  # zarr | hdf5
    every_seconds: float = 300.0  # 0: off (used unless `deterministic` or every_cycles > 0)
    every_cycles: int = 0  # 0: off; in deterministic mode this is the cadence (default 1000)
    keep: int = 3


@dataclass(frozen=True)
class MetricsConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 9465  # 0: any free port (written to status.json)


@dataclass(frozen=True)
class InboxConfig:
    rescan_seconds: float = 2.0  # the periodic rescan is the truth; filesystem events only hint
    max_file_bytes: int = 64 * 1024 * 1024
    max_records_per_file: int = 100_000


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"  # debug | info | warning | error
    format: str = "auto"  # auto (JSON when stdout is not a TTY) | json | console


@dataclass(frozen=True)
class StatusConfig:
    every_seconds: float = 2.0  # how often status.json is rewritten while busy


@dataclass(frozen=True)
class HistoryConfig:
    every_cycles: int = 10  # one line of history/cycles.jsonl per this many cycles (0: off)
    max_bytes: int = 64 * 1024 * 1024  # rotate a history file past this size (one old file kept)


@dataclass(frozen=True)
class ServiceConfig:
    engine: EngineConfig = field(default_factory=EngineConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    inbox: InboxConfig = field(default_factory=InboxConfig)
    log: LogConfig = field(default_factory=LogConfig)
    status: StatusConfig = field(default_factory=StatusConfig)
    history: HistoryConfig = field(default_factory=HistoryConfig)
    jobs: JobsConfig = field(default_factory=JobsConfig)

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def deterministic(self) -> bool:
        return self.engine.deterministic

    def checkpoint_every_cycles(self) -> int:
        """Cycle cadence; deterministic mode never uses the wall clock for anything that matters."""
        if self.checkpoint.every_cycles > 0:
            return self.checkpoint.every_cycles
        return 1000 if self.deterministic else 0

    def checkpoint_every_seconds(self) -> float:
        return 0.0 if self.deterministic or self.checkpoint.every_cycles > 0 else self.checkpoint.every_seconds


SERVICE_SECTIONS = {f.name: f for f in dataclasses.fields(ServiceConfig) if f.name != "engine"}
# sections SIGHUP may change in a running daemon (nothing that touches the network's state)
RELOADABLE_SECTIONS = ("checkpoint", "inbox", "log", "status", "history")  # jobs: restart (cadences live in the scheduler)

_RANGES: dict[str, tuple[float, float]] = {
    "checkpoint.every_seconds": (0.0, 7 * 86400.0),
    "checkpoint.every_cycles": (0, 10**12),
    "checkpoint.keep": (1, 1000),
    "metrics.port": (0, 65535),
    "inbox.rescan_seconds": (0.05, 3600.0),
    "inbox.max_file_bytes": (1, 1 << 40),
    "inbox.max_records_per_file": (1, 10**9),
    "status.every_seconds": (0.1, 3600.0),
    "history.every_cycles": (0, 10**9),
    "history.max_bytes": (1024, 1 << 40),
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "checkpoint.format": ("zarr", "hdf5"),
    "log.level": ("debug", "info", "warning", "error"),
    "log.format": ("auto", "json", "console"),
}


def _validate(cfg: ServiceConfig) -> None:
    for key, (low, high) in _RANGES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if not low <= value <= high:
            raise ConfigError(f"{key} = {value!r} is outside the allowed range [{low}, {high}]")
    for key, allowed in _CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value not in allowed:
            raise ConfigError(f"{key} = {value!r}: allowed values are {', '.join(allowed)}")
    cfg.jobs.validate()
    if not cfg.metrics.host:
        raise ConfigError("metrics.host: must not be empty")


def config_from_mapping(data: Mapping[str, Any]) -> ServiceConfig:
    allowed = {f.name for f in dataclasses.fields(EngineConfig)} | set(SERVICE_SECTIONS)
    for key in data:
        if key not in allowed:
            raise ConfigError(f"{key}: unknown key (allowed: {', '.join(sorted(allowed))})")
    engine = EngineConfig.from_mapping({k: v for k, v in data.items() if k not in SERVICE_SECTIONS})
    sections = {name: _from_mapping(type(f.default_factory()), data[name], prefix=f"{name}.")  # type: ignore[misc]
                for name, f in SERVICE_SECTIONS.items() if name in data}
    return ServiceConfig(engine=engine, **sections)


def load_config(path: Path | None, seed: int | None = None) -> ServiceConfig:
    """Read and validate the TOML file (None: all defaults); ``seed`` overrides ``network.seed``."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    if seed is not None:
        data.setdefault("network", {})
        if not isinstance(data["network"], dict):
            raise ConfigError(f"network: expected a table, got {type(data['network']).__name__}")
        data["network"]["seed"] = seed
    try:
        return config_from_mapping(data)
    except ConfigError as exc:
        raise ConfigError(f"{path or 'config'}: {exc}") from None


def reloadable_changes(old: ServiceConfig, new: ServiceConfig) -> tuple[ServiceConfig, list[str]]:
    """Apply the SIGHUP-safe sections of ``new``; returns the result and the keys left unchanged."""
    applied = dataclasses.replace(old, **{s: getattr(new, s) for s in RELOADABLE_SECTIONS})
    ignored = []
    if new.engine != old.engine:
        ignored.append("engine sections (network, lif, learning, ...)")
    if new.metrics != old.metrics:
        ignored.append("metrics")
    return applied, ignored


def default_toml() -> str:
    """Every key with its default and its comment from the source: ``fumd config`` prints it and
    ``systemd/fumd.example.toml`` is exactly this text (a test keeps them equal)."""
    cfg = ServiceConfig()
    lines = [
        "# fumd configuration: every key, with its default (`fumd config` prints this file).",
        "# Omit any key to keep its default. Units: ms of simulated time, Hz, seconds, bytes.",
        "# SIGHUP reloads the [checkpoint], [inbox], [log] and [status] sections; others need a restart.",
        "",
    ]
    for f in dataclasses.fields(cfg.engine):
        value = getattr(cfg.engine, f.name)
        if not dataclasses.is_dataclass(value):
            lines.append(_toml_line(f.name, value, _field_comments(EngineConfig).get(f.name)))
    tables = [(f.name, getattr(cfg.engine, f.name)) for f in dataclasses.fields(cfg.engine) if dataclasses.is_dataclass(getattr(cfg.engine, f.name))]
    tables += [(name, getattr(cfg, name)) for name in SERVICE_SECTIONS]
    for name, section in tables:
        lines += _toml_table(name, section)
    return "\n".join(lines) + "\n"


def _toml_table(name: str, section: Any) -> list[str]:
    doc = (type(section).__doc__ or "").strip().splitlines()
    lines = [""]
    if doc and not doc[0].startswith(type(section).__name__ + "("):
        lines.append(f"# {doc[0]}")
    lines.append(f"[{name}]")
    comments = _field_comments(type(section))
    nested = []
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if dataclasses.is_dataclass(value):
            nested.append((f"{name}.{f.name}", value))
        else:
            lines.append(_toml_line(f.name, value, comments.get(f.name)))
    for sub_name, sub in nested:
        lines += _toml_table(sub_name, sub)
    return lines


def _field_comments(cls: type) -> dict[str, str]:
    import inspect
    import re

    comments = {}
    for line in inspect.getsource(cls).splitlines():
        match = re.match(r"\s+(\w+): [^=]+= .*?#\s*(.*)$", line)
        if match:
            comments[match.group(1)] = match.group(2)
    return comments


def _toml_line(key: str, value: Any, comment: str | None) -> str:
    text = ("true" if value else "false") if isinstance(value, bool) else f'"{value}"' if isinstance(value, str) else repr(value)
    return f"{key} = {text}" + (f"  # {comment}" if comment else "")
