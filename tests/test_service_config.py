import os
import shutil
import tempfile
from pathlib import Path

import pytest

from fumd.daemon.config import (
    STATE_SUBDIRS,
    ServiceConfig,
    available_memory_bytes,
    check_memory,
    check_state_dir,
    config_from_mapping,
    default_toml,
    estimate_memory_bytes,
    load_config,
    reloadable_changes,
)
from fumd.errors import ConfigError
from tests.nonroot import as_nobody, needs_root

EXAMPLE = Path(__file__).resolve().parents[1] / "systemd" / "fumd.example.toml"


def test_example_config_documents_every_key_with_its_default() -> None:
    assert EXAMPLE.read_text() == default_toml(), "regenerate with: fumd config > systemd/fumd.example.toml"
    assert load_config(EXAMPLE) == ServiceConfig()


def test_defaults_without_a_file_and_seed_override() -> None:
    cfg = load_config(None, seed=42)
    assert cfg.engine.network.seed == 42 and cfg.checkpoint.format == "zarr" and cfg.metrics.host == "127.0.0.1"


@pytest.mark.parametrize("data, needle", [
    ({"checkpoint": {"every_seconds": -1}}, "checkpoint.every_seconds = -1.0 is outside the allowed range"),
    ({"metrics": {"port": 70000}}, "metrics.port = 70000 is outside the allowed range [0, 65535]"),
    ({"inbox": {"max_file_bytes": "big"}}, "inbox.max_file_bytes: expected an integer"),
    ({"log": {"level": "loud"}}, "log.level = 'loud': allowed values are debug, info, warning, error"),
    ({"jobs_typo": {}}, "jobs_typo: unknown key"),
    ({"learning": {"eta": 2.0}}, "learning.eta = 2.0 is outside the allowed range"),
])
def test_invalid_values_name_the_key_and_range(data: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        config_from_mapping(data)
    assert needle in str(info.value)


def test_sighup_applies_only_reloadable_sections() -> None:
    old = ServiceConfig()
    new = config_from_mapping({"inbox": {"max_file_bytes": 10}, "network": {"neurons": 2000}, "metrics": {"port": 1}})
    applied, ignored = reloadable_changes(old, new)
    assert applied.inbox.max_file_bytes == 10
    assert applied.engine == old.engine and applied.metrics == old.metrics
    assert len(ignored) == 2


# -- issue 10: config and machine errors are one line naming the key or path --------------------

def test_a_config_path_that_is_a_directory_or_unreadable_is_a_config_error(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="is a directory, not a config file"):
        load_config(tmp_path)
    cfg = tmp_path / "fumd.toml"
    cfg.write_text("[inbox]\nrescan_seconds = 1.0\n")

    def denied(*_a, **_k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_text", denied)
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert str(cfg) in str(info.value) and "Permission denied" in str(info.value) and "\n" not in str(info.value)


@needs_root
def test_a_config_of_another_user_with_mode_600_is_a_config_error(tmp_path: Path) -> None:
    """Issue 10 item 4 as reported (SIGHUP reads it the same way): PermissionError -> ConfigError."""
    base = Path(tempfile.mkdtemp(prefix="fumd-cfg-", dir="/tmp"))
    try:
        os.chmod(base, 0o755)
        cfg = base / "fumd.toml"
        cfg.write_text("[inbox]\nrescan_seconds = 1.0\n")
        os.chmod(cfg, 0o600)

        def load() -> str:
            try:
                load_config(cfg)
            except ConfigError as exc:
                return str(exc)
            return "loaded"

        assert as_nobody(load) == f"{cfg}: cannot read the config file: Permission denied"
    finally:
        shutil.rmtree(base)


def test_state_dir_problems_name_the_path(tmp_path: Path) -> None:
    check_state_dir(tmp_path / "fresh")  # created, with its subdirectories
    assert all((tmp_path / "fresh" / sub).is_dir() for sub in STATE_SUBDIRS)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a directory"):
        check_state_dir(tmp_path / "file")
    with pytest.raises(ConfigError, match="cannot create it: Not a directory"):
        check_state_dir(tmp_path / "file" / "state")
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "inbox").write_text("x")
    with pytest.raises(ConfigError, match=r"odd/inbox: exists and is not a directory"):
        check_state_dir(tmp_path / "odd")


@needs_root
def test_a_state_dir_the_daemon_cannot_write_is_refused() -> None:
    base = Path(tempfile.mkdtemp(prefix="fumd-state-", dir="/tmp"))
    try:
        os.chmod(base, 0o755)
        for sub in STATE_SUBDIRS:
            (base / "full" / sub).mkdir(parents=True)  # root's, 0755: the daemon user may only read them

        def check(name: str) -> str:
            try:
                check_state_dir(base / name)
            except ConfigError as exc:
                return str(exc)
            return "accepted"

        assert as_nobody(lambda: check("missing")) == \
            f"state directory {base / 'missing'}: cannot create it: Permission denied (--state-dir)"
        assert as_nobody(lambda: check("full")) == \
            f"state directory {base / 'full'}: not writable: Permission denied (--state-dir)"
    finally:
        shutil.rmtree(base)


def test_a_network_beyond_the_machines_memory_is_refused_with_the_estimate() -> None:
    cfg = config_from_mapping({"network": {"neurons": 2_000_000, "synapses_per_neuron": 1000}})
    need = estimate_memory_bytes(cfg.engine)
    assert need >= 2 * 2_000_000 * 1000 * 11
    with pytest.raises(ConfigError) as info:
        check_memory(cfg.engine, available=need - 1)
    message = str(info.value)
    assert message.startswith("network.neurons = 2000000") and "GiB" in message and "\n" not in message
    check_memory(cfg.engine, available=need)  # fits: no error
    check_memory(ServiceConfig().engine)  # the defaults fit this machine
    assert available_memory_bytes() is None or available_memory_bytes() > 0


def test_memory_estimate_counts_the_replay_buffer():
    """The replay buffer holds max_labels x replay_capacity x input_size float64 features, twice
    at a checkpoint; a wide input with a deep buffer must be refused before it is allocated."""
    from fumd.config import EngineConfig

    base = EngineConfig()
    deeper = base.replace(learning={**base.learning.__dict__, "replay_capacity": 2 * base.learning.replay_capacity})
    net = base.network
    extra = estimate_memory_bytes(deeper) - estimate_memory_bytes(base)
    assert extra == 2 * net.max_labels * base.learning.replay_capacity * net.input_size * 8


def test_memory_estimate_counts_the_sharded_layout():
    """The sharded backend keeps each shard's copy of its synapses (sharding/shard.py): counted."""
    from fumd.config import EngineConfig
    from fumd.daemon.config import SHARD_BYTES_PER_SYNAPSE

    base = EngineConfig()
    sharded = base.replace(backend="sharded", sharding={"shards": 4})
    net = base.network
    extra = estimate_memory_bytes(sharded) - estimate_memory_bytes(base)
    assert extra == net.neurons * net.synapses_per_neuron * SHARD_BYTES_PER_SYNAPSE + 4 * (net.neurons + 1) * 16
