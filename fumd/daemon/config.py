"""The daemon's configuration: one TOML file (see ``systemd/fumd.example.toml``).

Top-level keys are the engine's (``network.*``, ``lif.*``, ``learning.*``, ..., ``deterministic``,
``device``; see ``fumd/config.py``) plus the service sections below. Everything has a default, so
the daemon runs with no file at all. Unknown keys, wrong types and values out of range are refused
at start with an error naming the key and its allowed range.

At start the daemon also refuses, the same way (one line, exit 2), a state directory it cannot
use (``check_state_dir``) and a network too large for the machine's memory (``check_memory``:
about 11 bytes per synapse and 0.5 KiB per neuron, twice while a checkpoint is taken, plus
0.5 GiB for the libraries, against MemAvailable capped by the cgroup's memory.max).
"""
from __future__ import annotations

import dataclasses
import os
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
    settle_seconds: float = 1.0  # a file written in place without a close event is admitted once unchanged this long
    max_file_bytes: int = 64 * 1024 * 1024
    max_records_per_file: int = 100_000
    max_queued_files: int = 1000  # admitted and not yet learned; a larger backlog waits in the inbox


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
class RetentionConfig:
    """What the daemon deletes so that a run of months stays within its disk (0: no limit).

    Oldest first, until every limit of a directory holds. outbox/: published results files only
    (`*.results.jsonl`; a consumer should take them long before). done/: learned inputs, only once
    no checkpoint on disk predates them (a fallback could replay them). failed/: rejected files
    with their reports. history/ is bounded by history.max_bytes (two files of each kind).
    """

    every_seconds: float = 60.0  # how often the state directory is measured and pruned
    outbox_max_age_days: float = 30.0
    outbox_max_bytes: int = 4 * 1024**3
    outbox_max_files: int = 200_000
    done_max_age_days: float = 7.0
    done_max_bytes: int = 2 * 1024**3
    done_max_files: int = 100_000
    failed_max_age_days: float = 30.0
    failed_max_bytes: int = 512 * 1024**2
    failed_max_files: int = 10_000

    def limits(self, directory: str) -> tuple[float, int, int]:
        """(max age in seconds, max bytes, max files) of ``outbox``, ``done`` or ``failed``."""
        return (getattr(self, f"{directory}_max_age_days") * 86400.0, getattr(self, f"{directory}_max_bytes"),
                getattr(self, f"{directory}_max_files"))


@dataclass(frozen=True)
class ServiceConfig:
    engine: EngineConfig = field(default_factory=EngineConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    inbox: InboxConfig = field(default_factory=InboxConfig)
    log: LogConfig = field(default_factory=LogConfig)
    status: StatusConfig = field(default_factory=StatusConfig)
    history: HistoryConfig = field(default_factory=HistoryConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
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
# The one list of what SIGHUP applies to a running daemon (``Daemon._apply_config`` applies each of
# these; jobs by rebuilding their runner). Every other key (the engine's, which shape the network's
# state, and ``metrics``, whose listening socket is opened once) is named in ``needs_restart``.
RELOADABLE_SECTIONS = ("checkpoint", "inbox", "log", "status", "history", "retention", "jobs")

_RANGES: dict[str, tuple[float, float]] = {
    "checkpoint.every_seconds": (0.0, 7 * 86400.0),
    "checkpoint.every_cycles": (0, 10**12),
    "checkpoint.keep": (1, 1000),
    "metrics.port": (0, 65535),
    "inbox.rescan_seconds": (0.05, 3600.0),
    "inbox.settle_seconds": (0.0, 3600.0),
    "inbox.max_file_bytes": (1, 1 << 40),
    "inbox.max_records_per_file": (1, 10**9),
    "inbox.max_queued_files": (1, 10**7),
    "status.every_seconds": (0.1, 3600.0),
    "history.every_cycles": (0, 10**9),
    "history.max_bytes": (1024, 1 << 40),
    "retention.every_seconds": (1.0, 86400.0),
    **{f"retention.{d}_max_age_days": (0.0, 36500.0) for d in ("outbox", "done", "failed")},
    **{f"retention.{d}_max_bytes": (0, 1 << 50) for d in ("outbox", "done", "failed")},
    **{f"retention.{d}_max_files": (0, 10**9) for d in ("outbox", "done", "failed")},
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
        except IsADirectoryError:
            raise ConfigError(f"{path}: is a directory, not a config file") from None
        except OSError as exc:  # permissions, I/O errors, a FIFO that is not a file, ...
            raise ConfigError(f"{path}: cannot read the config file: {exc.strerror or exc}") from None
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {_one_line(exc)}") from None
    if seed is not None:
        data.setdefault("network", {})
        if not isinstance(data["network"], dict):
            raise ConfigError(f"network: expected a table, got {type(data['network']).__name__}")
        data["network"]["seed"] = seed
    try:
        return config_from_mapping(data)
    except ConfigError as exc:
        raise ConfigError(f"{path or 'config'}: {exc}") from None


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted names of every leaf key whose value differs (engine keys without a prefix, as in the
    TOML file: ``network.neurons``, ``jobs.tuning.enabled``, ``deterministic``)."""
    if dataclasses.is_dataclass(old) and dataclasses.is_dataclass(new) and type(old) is type(new):
        out = []
        for f in dataclasses.fields(old):
            name = "" if f.name == "engine" and isinstance(old, ServiceConfig) else f"{prefix}{f.name}"
            out += changed_keys(getattr(old, f.name), getattr(new, f.name), f"{name}." if name else "")
        return out
    return [] if old == new else [prefix.rstrip(".")]


def reloadable_changes(old: ServiceConfig, new: ServiceConfig) -> tuple[ServiceConfig, list[str]]:
    """Apply the SIGHUP-safe sections of ``new``; returns the result and the changed keys that
    were *not* applied (they need a restart). Nothing is ignored silently: every changed key is
    either in a reloadable section or in the returned list."""
    applied = dataclasses.replace(old, **{s: getattr(new, s) for s in RELOADABLE_SECTIONS})
    needs_restart = [key for key in changed_keys(old, new) if key.split(".")[0] not in RELOADABLE_SECTIONS]
    return applied, needs_restart


def default_toml() -> str:
    """Every key with its default and its comment from the source: ``fumd config`` prints it and
    ``systemd/fumd.example.toml`` is exactly this text (a test keeps them equal)."""
    cfg = ServiceConfig()
    lines = [
        "# fumd configuration: every key, with its default (`fumd config` prints this file).",
        "# Omit any key to keep its default. Units: ms of simulated time, Hz, seconds, bytes.",
        f"# SIGHUP reloads the {', '.join(f'[{s}]' for s in RELOADABLE_SECTIONS)} sections; others need a restart.",
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


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


# -- checks of the machine the daemon starts on (refused like a bad config: one line, exit 2) --------
STATE_SUBDIRS = ("checkpoints", "inbox", "queue", "done", "failed", "outbox", "history")


def check_state_dir(state_dir: Path) -> None:
    """Create the state directory and its subdirectories if needed and prove they are writable
    (a file, not a directory, where one should be; permissions; a read-only filesystem)."""
    state_dir = Path(state_dir)
    for path in (state_dir, *(state_dir / sub for sub in STATE_SUBDIRS)):
        try:
            path.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise ConfigError(f"state directory {path}: exists and is not a directory (--state-dir)") from None
        except OSError as exc:
            raise ConfigError(f"state directory {path}: cannot create it: {exc.strerror or exc} (--state-dir)") from None
        if not path.is_dir():
            raise ConfigError(f"state directory {path}: not a directory (--state-dir)")
        probe = path / f".fumd-write-test-{os.getpid()}"
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise ConfigError(f"state directory {path}: not writable: {exc.strerror or exc} (--state-dir)") from None


BYTES_PER_SYNAPSE = 11  # col int32 + w float32 + e float16 + persistent bool (fumd/network/state.py)
BYTES_PER_NEURON = 512  # neuron state, activity history, traces, encoder/decoder and simulation buffers
CHECKPOINT_COPIES = 2  # the live state plus the snapshot a checkpoint writes from
BASE_BYTES = 512 << 20  # interpreter, torch, numba and the other libraries


def estimate_memory_bytes(engine: EngineConfig) -> int:
    """About how much memory a daemon with this network needs at its peak (while a checkpoint is
    taken): every synapse and neuron twice (state + snapshot), the replay buffer (float64 features
    per label and slot, learning/replay.py) twice, plus the libraries."""
    net = engine.network
    synapses = net.neurons * net.synapses_per_neuron
    trace_extra = 2 if getattr(getattr(engine, "learning", None), "trace_dtype", "float16") == "float32" else 0
    per_copy = synapses * (BYTES_PER_SYNAPSE + trace_extra) + (net.neurons + 1) * 8 + net.neurons * (
        BYTES_PER_NEURON + getattr(net, "activity_history", 32))
    learning = getattr(engine, "learning", None)
    per_copy += net.max_labels * getattr(learning, "replay_capacity", 0) * net.input_size * 8
    return CHECKPOINT_COPIES * per_copy + BASE_BYTES


def available_memory_bytes() -> int | None:
    """Memory this process may still use: MemAvailable, capped by a cgroup (systemd MemoryMax=)."""
    available = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, AttributeError):
            return None
    limit = _cgroup_memory_limit()
    if limit is not None:
        available = min(available, limit)
    return available


def _cgroup_memory_limit() -> int | None:
    """memory.max - memory.current of this process's cgroup (v2), or None."""
    try:
        with open("/proc/self/cgroup") as fh:
            rel = next((line.strip().split(":", 2)[2] for line in fh if line.startswith("0::")), None)
        if rel is None:
            return None
        base = Path("/sys/fs/cgroup") / rel.lstrip("/")
        raw = (base / "memory.max").read_text().strip()
        if raw == "max":
            return None
        current = int((base / "memory.current").read_text().strip())
        return max(0, int(raw) - current)
    except (OSError, ValueError, StopIteration):
        return None


def check_memory(engine: EngineConfig, available: int | None = None) -> None:
    """Refuse, before anything is allocated, a network that cannot fit in this machine's memory."""
    available = available_memory_bytes() if available is None else available
    if available is None:
        return
    need = estimate_memory_bytes(engine)
    if need > available:
        net = engine.network
        raise ConfigError(
            f"network.neurons = {net.neurons} (x network.synapses_per_neuron = {net.synapses_per_neuron}): "
            f"the daemon would need about {_gib(need)} ({net.neurons * net.synapses_per_neuron:,} synapses x "
            f"{BYTES_PER_SYNAPSE} B, twice while checkpointing, plus neurons and libraries) but only "
            f"{_gib(available)} of memory is available; lower network.neurons or network.synapses_per_neuron")


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB"
