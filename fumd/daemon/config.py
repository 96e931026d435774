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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

from ..config import EngineConfig
from ..errors import ConfigError
from ..jobs.config import JobsConfig
from ..settings import field_default, from_mapping, reloadable_sections, render_toml, section, setting, validate_section


@dataclass(frozen=True)
class CheckpointConfig:
    format: Literal["zarr", "hdf5"] = setting("zarr", "zarr | hdf5")
    every_seconds: float = setting(
        300.0, "0: off (used unless `deterministic` or every_cycles > 0)", low=0.0, high=7 * 86400.0)
    every_cycles: int = setting(
        0, "0: off; in deterministic mode this is the cadence (default 1000)", low=0, high=10**12)
    keep: int = setting(3, low=1, high=1000)


@dataclass(frozen=True)
class MetricsConfig:
    enabled: bool = setting(True)
    host: str = setting("127.0.0.1")
    port: int = setting(9465, "0: any free port (written to status.json)", low=0, high=65535)


@dataclass(frozen=True)
class InboxConfig:
    rescan_seconds: float = setting(
        2.0, "the periodic rescan is the truth; filesystem events only hint", low=0.05, high=3600.0)
    settle_seconds: float = setting(
        1.0, "a file written in place without a close event is admitted once unchanged this long",
        low=0.0, high=3600.0)
    max_file_bytes: int = setting(64 * 1024 * 1024, low=1, high=1 << 40)
    max_records_per_file: int = setting(100_000, low=1, high=10**9)
    max_queued_files: int = setting(
        1000, "admitted and not yet learned; a larger backlog waits in the inbox", low=1, high=10**7)


@dataclass(frozen=True)
class LogConfig:
    level: Literal["debug", "info", "warning", "error"] = setting("info", "debug | info | warning | error")
    format: Literal["auto", "json", "console"] = setting(
        "auto", "auto (JSON when stdout is not a TTY) | json | console")


@dataclass(frozen=True)
class StatusConfig:
    every_seconds: float = setting(2.0, "how often status.json is rewritten while busy", low=0.1, high=3600.0)


@dataclass(frozen=True)
class HistoryConfig:
    every_cycles: int = setting(
        10, "one line of history/cycles.jsonl per this many cycles (0: off)", low=0, high=10**9)
    max_bytes: int = setting(
        64 * 1024 * 1024, "rotate a history file past this size (one old file kept)", low=1024, high=1 << 40)


def _max_age(days: float) -> Any:
    return setting(days, low=0.0, high=36500.0)


def _max_bytes(size: int) -> Any:
    return setting(size, low=0, high=1 << 50)


def _max_files(count: int) -> Any:
    return setting(count, low=0, high=10**9)


@dataclass(frozen=True)
class RetentionConfig:
    """What the daemon deletes so that a run of months stays within its disk (0: no limit).

    Oldest first, until every limit of a directory holds. outbox/: published results files only
    (`*.results.jsonl`; a consumer should take them long before). done/: learned inputs, only once
    no checkpoint on disk predates them (a fallback could replay them). failed/: rejected files
    with their reports. history/ is bounded by history.max_bytes (two files of each kind).
    """

    every_seconds: float = setting(60.0, "how often the state directory is measured and pruned", low=1.0, high=86400.0)
    outbox_max_age_days: float = _max_age(30.0)
    outbox_max_bytes: int = _max_bytes(4 * 1024**3)
    outbox_max_files: int = _max_files(200_000)
    done_max_age_days: float = _max_age(7.0)
    done_max_bytes: int = _max_bytes(2 * 1024**3)
    done_max_files: int = _max_files(100_000)
    failed_max_age_days: float = _max_age(30.0)
    failed_max_bytes: int = _max_bytes(512 * 1024**2)
    failed_max_files: int = _max_files(10_000)

    def limits(self, directory: str) -> tuple[float, int, int]:
        """(max age in seconds, max bytes, max files) of ``outbox``, ``done`` or ``failed``."""
        return (getattr(self, f"{directory}_max_age_days") * 86400.0, getattr(self, f"{directory}_max_bytes"),
                getattr(self, f"{directory}_max_files"))


@dataclass(frozen=True)
class ServiceConfig:
    """The daemon's whole config. A section declared ``reloadable`` is applied by a SIGHUP to a
    running daemon (``Daemon._reload_config`` applies each; jobs by rebuilding their runner);
    every other changed key (the engine's, which shape the network's state, and ``metrics``,
    whose listening socket is opened once) is named in the log's ``needs_restart``."""

    engine: EngineConfig = section(EngineConfig)
    checkpoint: CheckpointConfig = section(CheckpointConfig, reloadable=True)
    metrics: MetricsConfig = section(MetricsConfig)
    inbox: InboxConfig = section(InboxConfig, reloadable=True)
    log: LogConfig = section(LogConfig, reloadable=True)
    status: StatusConfig = section(StatusConfig, reloadable=True)
    history: HistoryConfig = section(HistoryConfig, reloadable=True)
    retention: RetentionConfig = section(RetentionConfig, reloadable=True)
    jobs: JobsConfig = section(JobsConfig, reloadable=True)

    def __post_init__(self) -> None:
        validate(self)

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
# The one list of what SIGHUP applies to a running daemon, from the declarations above
# (README.md and docs/operations.md name the same sections; tests/test_config_settings.py checks).
RELOADABLE_SECTIONS = reloadable_sections(ServiceConfig)


def sighup_sections() -> list[str]:
    """The reloadable sections as the docs write them: ``[checkpoint]``, ..., ``[jobs.*]`` (a
    section made of sections)."""
    defaults = ServiceConfig()

    def of_sections(value: Any) -> bool:
        return all(dataclasses.is_dataclass(getattr(value, f.name)) for f in dataclasses.fields(value))

    return [f"[{name}.*]" if of_sections(getattr(defaults, name)) else f"[{name}]" for name in RELOADABLE_SECTIONS]


def validate(cfg: ServiceConfig) -> None:
    """Raise ConfigError naming the first service key outside its declared range or choices
    (the engine validates itself when it is made), then the jobs' constraints."""
    for name in SERVICE_SECTIONS:
        if name != "jobs":
            validate_section(getattr(cfg, name), name)
    cfg.jobs.validate()
    if not cfg.metrics.host:
        raise ConfigError("metrics.host: must not be empty")


def config_from_mapping(data: Mapping[str, Any], renamed: list[tuple[str, str]] | None = None) -> ServiceConfig:
    """The config of a parsed TOML file. A section read under its old name is appended to
    ``renamed`` as ``(old, new)`` (``load_config`` logs a ``config_deprecated`` warning for each)."""
    allowed = {f.name for f in dataclasses.fields(EngineConfig)} | set(SERVICE_SECTIONS)
    for key in data:
        if key not in allowed:
            raise ConfigError(f"{key}: unknown key (allowed: {', '.join(sorted(allowed))})")
    engine = EngineConfig.from_mapping({k: v for k, v in data.items() if k not in SERVICE_SECTIONS})
    sections = {name: from_mapping(type(field_default(f)), data[name], f"{name}.", renamed)
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
    renamed: list[tuple[str, str]] = []
    try:
        config = config_from_mapping(data, renamed)
    except ConfigError as exc:
        raise ConfigError(f"{path or 'config'}: {exc}") from None
    if renamed:
        _warn_renamed(config, path, renamed)
    return config


def _warn_renamed(config: ServiceConfig, path: Path | None, renamed: list[tuple[str, str]]) -> None:
    """One ``config_deprecated`` warning per section read under its old name. At start-up logging
    is not configured yet: it is configured here as ``fumd run`` configures it next (``[log]``)."""
    import structlog

    from ..ops.logging import configure_logging, get_logger

    if not structlog.is_configured():
        configure_logging(config.log.level, config.log.format)
    for old, new in renamed:
        get_logger().warning("config_deprecated", key=old, renamed_to=new, config=str(path),
                             message=f"[{old}] is now [{new}]; the old name is still read")


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
    """Every key with its default and its doc: ``fumd config`` prints it and
    ``systemd/fumd.example.toml`` is exactly this text (a test keeps them equal)."""
    cfg = ServiceConfig()
    lines = [
        "# fumd configuration: every key, with its default (`fumd config` prints this file).",
        "# Omit any key to keep its default. Units: ms of simulated time, Hz, seconds, bytes.",
        f"# SIGHUP reloads the {', '.join(sighup_sections())} sections; others need a restart.",
        "",
        *render_toml(cfg.engine),
    ]
    for name in SERVICE_SECTIONS:
        lines += render_toml(getattr(cfg, name), name)
    return "\n".join(lines) + "\n"


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
            raise ConfigError(f"state directory {path}: cannot create it: {exc.strerror or exc} (--state-dir)") \
                from None
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
    return CHECKPOINT_COPIES * per_copy + sharded_layout_bytes(engine, synapses) + BASE_BYTES


# the shards' copy: weight 4, local and global column 4 + 4, flag 1, position in the network's CSR 8
SHARD_BYTES_PER_SYNAPSE = 21


def sharded_layout_bytes(engine: EngineConfig, synapses: int) -> int:
    """The sharded backend's layout (sharding/shard.py; 0 for the other backends): each shard's
    copy of its synapses, plus a row pointer and a local-index map over all neurons per shard."""
    if getattr(engine, "backend", "auto") != "sharded":
        return 0
    shards = getattr(getattr(engine, "sharding", None), "shards", 1)
    return synapses * SHARD_BYTES_PER_SYNAPSE + shards * (engine.network.neurons + 1) * 16


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
