"""Issue #11 item 2: each setting declared once (``fumd/settings.py``). Every key's range and
choices come from its declaration, and one validator refuses a bad value in any kind of section
(engine, service, job) naming the key and what is allowed; the SIGHUP list the docs give is the
code's; the old ``[jobs.persistence]`` section name is still read."""
from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any, Iterator

import pytest

from fumd.daemon.config import (
    RELOADABLE_SECTIONS,
    ServiceConfig,
    config_from_mapping,
    default_toml,
    load_config,
    sighup_sections,
)
from fumd.errors import ConfigError
from fumd.settings import checks, setting, validate_section

ROOT = Path(__file__).resolve().parents[1]


def declared(obj: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(TOML path of the key, its Check) of every declared range or choice in the config tree
    (the engine's keys are top-level in the file)."""
    for check in checks(type(obj)):
        yield path + (check.name,), check
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from declared(value, path if f.name == "engine" and isinstance(obj, ServiceConfig)
                                else path + (f.name,))


def nested(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    data: Any = value
    for part in reversed(path):
        data = {part: data}
    return data


ALL = list(declared(ServiceConfig()))
RANGES = [(p, c) for p, c in ALL if c.choices is None and c.low is not None and not callable(c.low)]
CHOICES = [(p, c) for p, c in ALL if c.choices is not None]


def test_every_kind_of_section_declares_its_checks() -> None:
    sections = {p[0] for p, _c in ALL}
    assert {"network", "learning", "device", "checkpoint", "metrics", "retention", "jobs"} <= sections
    assert {p[1] for p, _c in ALL if p[0] == "jobs"} == {f.name for f in dataclasses.fields(ServiceConfig().jobs)}


@pytest.mark.parametrize("path, check", RANGES, ids=[".".join(p) for p, _c in RANGES])
def test_a_value_below_its_range_is_refused_naming_the_key_and_range(path: tuple[str, ...], check: Any) -> None:
    key = ".".join(path)
    below = check.low - 1 if isinstance(check.low, int) else check.low - max(abs(check.low), 1.0) * 1e-3
    with pytest.raises(ConfigError) as info:
        config_from_mapping(nested(path, below))
    assert f"{key} = {below!r} is outside the allowed range [{check.low}, " in str(info.value)


@pytest.mark.parametrize("data, needle", [
    ({"network": {"neurons": 5}}, "network.neurons = 5 is outside the allowed range [10, 50000000]"),  # engine
    ({"device": "tpu"}, "device = 'tpu': allowed values are auto, cpu, cuda"),  # engine, top level
    # service
    ({"inbox": {"rescan_seconds": 0.0}}, "inbox.rescan_seconds = 0.0 is outside the allowed range [0.05, 3600.0]"),
    ({"jobs": {"decay": {"factor": 1.5}}}, "jobs.decay.factor = 1.5 is outside the allowed range [1e-06, 1.0]"),  # job
    ({"jobs": {"clustering": {"k_min": 10, "k_max": 9}}},
     "jobs.clustering.k_max = 9 is outside the allowed range [10, 100000]"),  # a bound set by another key
    ({"jobs": {"tagging": {"w_min": 2.0}}}, "jobs.tagging.w_min = 2.0 is outside the allowed range [0.0, 1.0]"),
    ({"jobs": {"tuning": {"eta_min": 0.01}}}, "jobs.tuning.eta_min and jobs.tuning.eta_max: set both"),  # cross-key
])
def test_a_bad_value_in_each_kind_of_section_names_the_key(data: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_mapping(data)
    assert needle in str(info.value)


@pytest.mark.parametrize("path, check", CHOICES, ids=[".".join(p) for p, _c in CHOICES])
def test_a_literal_choice_is_refused_listing_the_allowed_choices(path: tuple[str, ...], check: Any) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_mapping(nested(path, "no-such-choice"))
    assert str(info.value) == f"{'.'.join(path)} = 'no-such-choice': allowed values are {', '.join(check.choices)}"


def test_a_float_outside_the_reals_is_refused_by_the_validator_too() -> None:
    @dataclasses.dataclass(frozen=True)
    class Section:
        x: float = setting(1.0, "a key", low=0.0, high=2.0)

    validate_section(Section(), "s")
    for bad in (float("nan"), float("inf"), "1.0"):
        with pytest.raises(ConfigError, match=r"s\.x = .* is outside the allowed range \[0\.0, 2\.0\]"):
            validate_section(Section(x=bad), "s")


def test_fumd_config_round_trips_with_every_doc_from_the_declarations() -> None:
    text = default_toml()
    assert config_from_mapping(tomllib.loads(text)) == ServiceConfig()
    assert "  # fan-out; 50 of 1000 = 95 % sparsity" in text  # engine key doc
    assert "port = 9465  # 0: any free port (written to status.json)" in text  # service key doc
    assert "k_min = 8  # seed §5.A.2 / §5.B: k_min = 8" in text  # job key doc
    assert "\n[jobs.tagging]\n" in text and "\n[jobs.persistence]\n" not in text


# -- SIGHUP: the docs name the sections the code reloads ------------------------------------------
def test_the_sighup_list_in_readme_and_operations_matches_the_code() -> None:
    assert sighup_sections() == [f"[{s}.*]" if s == "jobs" else f"[{s}]" for s in RELOADABLE_SECTIONS]
    readme = (ROOT / "README.md").read_text()
    sentence = re.search(r"SIGHUP reloads (.*?)\n?\(", readme, re.S)
    assert sentence, "README.md: the sentence 'SIGHUP reloads [...], ... (' is gone"
    assert re.findall(r"`(\[[\w.*]+\])`", sentence.group(1)) == sighup_sections()
    operations = (ROOT / "docs" / "operations.md").read_text()
    row = re.search(r"^\| SIGHUP \| reload (.*?) from the config file", operations, re.M)
    assert row, "docs/operations.md: the SIGHUP row of the signal table is gone"
    assert re.findall(r"`(\[[\w.*]+\])`", row.group(1)) == sighup_sections()
    assert "SIGHUP reloads the " + ", ".join(sighup_sections()) + " sections" in default_toml()


# -- [jobs.persistence] is now [jobs.tagging]; the old name is still read ----------------------------
def test_the_old_jobs_persistence_section_is_read_as_jobs_tagging() -> None:
    renamed: list[tuple[str, str]] = []
    cfg = config_from_mapping({"jobs": {"persistence": {"w_min": 0.7, "every_cycles": 50}}}, renamed)
    assert cfg.jobs.tagging.w_min == 0.7 and cfg.jobs.tagging.every_cycles == 50
    assert renamed == [("jobs.persistence", "jobs.tagging")]
    assert cfg == config_from_mapping({"jobs": {"tagging": {"w_min": 0.7, "every_cycles": 50}}})
    # both names: one section, the new name's keys win
    both = config_from_mapping({"jobs": {"persistence": {"w_min": 0.7, "window": 300}, "tagging": {"w_min": 0.75}}})
    assert (both.jobs.tagging.w_min, both.jobs.tagging.window) == (0.75, 300)
    with pytest.raises(ConfigError, match=r"jobs\.tagging\.w_min = 1\.5 is outside"):
        config_from_mapping({"jobs": {"persistence": {"w_min": 1.5}}})
    # the job keeps its name: runner, metrics and checkpointed state (jobs.persistence.*) unchanged
    assert dict(cfg.jobs.items())["persistence"] is cfg.jobs.tagging


def test_loading_a_file_with_jobs_persistence_logs_a_deprecation_warning(tmp_path: Path) -> None:
    path = tmp_path / "old.toml"
    path.write_text("[jobs.persistence]\nw_min = 0.7\n")
    probe = ("import sys; from fumd.daemon.config import load_config; "
             "cfg = load_config(sys.argv[1]); assert cfg.jobs.tagging.w_min == 0.7")
    out = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]  # JSON: not a TTY, as `fumd run` logs
    assert [(e["event"], e["level"], e["key"], e["renamed_to"]) for e in lines] == [
        ("config_deprecated", "warning", "jobs.persistence", "jobs.tagging")]
    assert load_config(tmp_path / "old.toml") == config_from_mapping({"jobs": {"tagging": {"w_min": 0.7}}})
