"""Issue 14 item 5: an interrupted checkpoint write is not an error, and a crash loop is visible."""
from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from fumd.daemon.restarts import RestartTracker
from tests.daemon_harness import (
    drop,
    kill,
    labelled_files,
    log_events,
    run_to_idle,
    running,
    start,
    status,
    wait_for,
    write_config,
)


def _gauge(state: Path, name: str) -> float:
    text = urllib.request.urlopen(status(state)["metrics_url"], timeout=10).read().decode()
    return float(next(line.split()[-1] for line in text.splitlines() if line.startswith(name + " ")))


def test_leftover_of_an_interrupted_write_is_cleaned_quietly_and_a_crash_loop_is_counted(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "fumd.toml", every_cycles=1000)
    state = tmp_path / "state"
    drop(labelled_files(tmp_path / "src", 1, 3), state / "inbox")
    run_to_idle(state, cfg)
    ckpts = state / "checkpoints"
    leftover = ckpts / ".tmp-ckpt-000000000099-000042-12345"  # a writer SIGKILLed mid-way
    (leftover / "state.zarr").mkdir(parents=True)
    (leftover / "state.zarr" / "zarr.json").write_text("{")
    log = tmp_path / "state.log"
    seen = len(log_events(log))
    for expected in (0, 1):  # two starts killed before they could checkpoint: a crash loop
        proc = start(state, cfg)
        try:
            wait_for(lambda proc=proc: running(state, proc), what="daemon start")
            assert _gauge(state, "fumd_restarts_without_progress") == expected
            assert _gauge(state, 'fumd_errors_total{kind="checkpoint_unusable"}') == 0
        finally:
            kill(proc)
    run_to_idle(state, cfg)
    events = log_events(log)[seen:]
    assert not leftover.exists()
    assert [e["path"] for e in events if e["event"] == "checkpoint_leftover_removed"] == [str(leftover)]
    assert next(e for e in events if e["event"] == "checkpoint_leftover_removed")["level"] == "info"
    assert not [e for e in events if e["level"] == "error"]
    assert [e["restarts"] for e in events if e["event"] == "restart_without_progress"] == [1, 2]
    assert json.loads((state / "restarts.json").read_text())["clean"] is True  # the last stop was clean


def test_restart_tracker_counts_only_unclean_starts_from_the_same_checkpoint(tmp_path: Path) -> None:
    t = RestartTracker(tmp_path)
    assert t.started(None) == 0 and t.started(None) == 0  # fresh starts: nothing to compare
    t.progressed("ckpt-1")
    assert RestartTracker(tmp_path).started("ckpt-1") == 1  # died after writing ckpt-1: no progress since
    assert RestartTracker(tmp_path).started("ckpt-1") == 2
    t = RestartTracker(tmp_path)
    assert t.started("ckpt-1") == 3
    t.progressed("ckpt-2")
    assert RestartTracker(tmp_path).started("ckpt-2") == 1
    t = RestartTracker(tmp_path)
    t.started("ckpt-2")
    t.stopped_cleanly()
    assert RestartTracker(tmp_path).started("ckpt-2") == 0
