"""The daemon with every self-regulation job on a short cadence (issue #4's end-to-end test)."""
from __future__ import annotations

import random
import signal
import time
import urllib.request
from pathlib import Path

from tests.daemon_harness import (
    drop,
    inspect,
    kill,
    labelled_files,
    results_without_timing,
    run_to_idle,
    running,
    start,
    status,
    wait_for,
    write_config,
)

JOBS = ("clustering", "decay", "persistence", "tuning", "structural", "criticality")
ALL_JOBS_SHORT = "".join(f"\n[jobs.{name}]\nenabled = true\nevery_cycles = {every}\n"
                         for name, every in zip(JOBS, (40, 25, 30, 20, 35, 15), strict=True))


def test_all_jobs_run_in_the_daemon_and_show_in_metrics(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "fumd.toml", every_cycles=100, extra=ALL_JOBS_SHORT)
    state = tmp_path / "state"
    drop(labelled_files(tmp_path / "src", 6, 50, seed=1), state / "inbox")
    proc = start(state, cfg)
    try:
        wait_for(lambda: running(state, proc) and status(state).get("step", 0) >= 300, timeout=300, what="300 cycles")
        text = urllib.request.urlopen(status(state)["metrics_url"], timeout=10).read().decode()
        runs = {line.split('"')[1]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith("fumd_job_runs_total{")}
        failures = {line.split('"')[1]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                    if line.startswith("fumd_job_failures_total{")}
        for name in JOBS:
            assert runs.get(name, 0) >= 1, (name, runs)
            assert failures.get(name, 0) == 0, (name, failures, (tmp_path / "state.log").read_text()[-4000:])
        assert 'fumd_job_output{job="criticality"' in text and 'fumd_job_output{job="clustering"' in text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        kill(proc)


def test_crash_equivalence_holds_with_every_job_on(tmp_path: Path) -> None:
    inputs = labelled_files(tmp_path / "src", 4, 40, seed=2)
    cfg = write_config(tmp_path / "fumd.toml", every_cycles=17, extra=ALL_JOBS_SHORT)
    reference = tmp_path / "reference"
    drop(inputs, reference / "inbox")
    run_to_idle(reference, cfg)
    expected = inspect(reference)

    crashed = tmp_path / "crashed"
    drop(inputs, crashed / "inbox")
    rng = random.Random(5)
    for _ in range(3):
        proc = start(crashed, cfg)
        try:
            wait_for(lambda proc=proc: running(crashed, proc) or proc.poll() is not None, what="daemon start")
            time.sleep(rng.uniform(0.2, 1.5))
        finally:
            kill(proc)
    run_to_idle(crashed, cfg)
    got = inspect(crashed)
    assert got["step"] == expected["step"] == 160
    assert got["state_sha256"] == expected["state_sha256"]
    assert results_without_timing(crashed / "outbox") == results_without_timing(reference / "outbox")
