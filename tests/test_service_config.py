from pathlib import Path

import pytest

from fumd.daemon.config import ServiceConfig, config_from_mapping, default_toml, load_config, reloadable_changes
from fumd.errors import ConfigError

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
