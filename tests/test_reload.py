"""Issue 14 item 6: a reload never ignores a setting silently. SIGHUP applies ``[jobs.*]`` (the
runner is rebuilt and rescheduled) and names every key it cannot apply in ``needs_restart``."""
from __future__ import annotations

import signal
from pathlib import Path

from fumd.daemon.config import RELOADABLE_SECTIONS, ServiceConfig, changed_keys, config_from_mapping, reloadable_changes
from tests.daemon_harness import drop, kill, labelled_files, log_events, running, start, wait_for, write_config


def test_every_changed_key_is_applied_or_named() -> None:
    old = ServiceConfig()
    new = config_from_mapping({"deterministic": True, "network": {"neurons": 2000}, "metrics": {"port": 1},
                               "jobs": {"tuning": {"enabled": False}}, "inbox": {"max_file_bytes": 10}})
    applied, needs_restart = reloadable_changes(old, new)
    assert sorted(needs_restart) == ["deterministic", "metrics.port", "network.neurons"]
    assert changed_keys(old, applied) == ["inbox.max_file_bytes", "jobs.tuning.enabled"]
    assert applied.jobs.tuning.enabled is False and applied.engine == old.engine
    # the list is derived from the code: every section of the config is reloadable or restart-only
    assert set(RELOADABLE_SECTIONS) < {f for f in ServiceConfig.__dataclass_fields__}


def test_sighup_disables_a_job_and_names_what_needs_a_restart(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "fumd.toml", every_cycles=1000,
                       extra="\n[jobs.decay]\nevery_cycles = 3\n[jobs.tuning]\nevery_cycles = 2\n")
    state = tmp_path / "state"
    log = tmp_path / "state.log"
    files = labelled_files(tmp_path / "src", 2, 12)
    proc = start(state, cfg)
    try:
        wait_for(lambda: running(state, proc), what="daemon start")
        drop(files[:1], state / "inbox")
        wait_for(lambda: (state / "outbox" / f"{files[0].name}.results.jsonl").exists(), what="first results")
        assert any(e["event"] == "job_ran" and e["job"] == "tuning" for e in log_events(log))
        text = cfg.read_text().replace("[jobs.tuning]\nevery_cycles = 2\n", "[jobs.tuning]\nenabled = false\n")
        cfg.write_text(text.replace("port = 0", "port = 1").replace("neurons = 400", "neurons = 500"))
        proc.send_signal(signal.SIGHUP)
        reloaded = wait_for(lambda: next((e for e in log_events(log) if e["event"] == "config_reloaded"), None),
                            what="reload")
        assert reloaded["applied"] == ["jobs.tuning.enabled", "jobs.tuning.every_cycles"]
        assert reloaded["needs_restart"] == ["network.neurons", "metrics.port"]
        mark = len(log_events(log))
        drop(files[1:], state / "inbox")
        wait_for(lambda: (state / "outbox" / f"{files[1].name}.results.jsonl").exists(), what="second results")
        after = log_events(log)[mark:]
        assert any(e["event"] == "job_ran" and e["job"] == "decay" for e in after)  # the others still run
        assert not any(e["event"] == "job_ran" and e["job"] == "tuning" for e in after)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        kill(proc)
