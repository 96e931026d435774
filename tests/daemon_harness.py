"""Start the real daemon as a subprocess and talk to it as a user would: files, signals, HTTP."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

SMALL_TOML = """\
deterministic = true
[network]
neurons = 400
synapses_per_neuron = 20
input_size = 16
max_labels = 4
population_size = 8
readout_fan_in = 8
seed = {seed}
[checkpoint]
every_cycles = {every_cycles}
format = "{fmt}"
keep = 3
[metrics]
port = 0
[inbox]
rescan_seconds = 0.2
[status]
every_seconds = 0.2
"""


def write_config(path: Path, seed: int = 7, every_cycles: int = 50, fmt: str = "zarr", extra: str = "") -> Path:
    path.write_text(SMALL_TOML.format(seed=seed, every_cycles=every_cycles, fmt=fmt) + extra)
    return path


def fumd_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "fumd", *args]


def start(state: Path, config: Path, *extra: str, env: dict[str, str] | None = None,
          log: Path | None = None) -> subprocess.Popen:
    log = log or state.parent / f"{state.name}.log"
    out = open(log, "ab")
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen(fumd_cmd("run", "--state-dir", str(state), "--config", str(config), *extra),
                            stdout=out, stderr=subprocess.STDOUT, env=full_env)


def run_to_idle(state: Path, config: Path, env: dict[str, str] | None = None, timeout: float = 120) -> None:
    proc = start(state, config, "--exit-when-idle", env=env)
    assert proc.wait(timeout) == 0, (state.parent / f"{state.name}.log").read_text()[-3000:]


def wait_for(predicate: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def log_events(log: Path) -> list[dict[str, Any]]:
    """The JSON lines of a daemon log (lines that are not JSON, e.g. a traceback, skipped)."""
    out = []
    for line in log.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def status(state: Path) -> dict[str, Any]:
    try:
        return json.loads((state / "status.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def running(state: Path, proc: subprocess.Popen) -> bool:
    s = status(state)
    return s.get("pid") == proc.pid and s.get("phase") in ("running", "idle")


def inspect(path: Path) -> dict[str, Any]:
    out = subprocess.run(fumd_cmd("inspect", str(path)), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def labelled_files(directory: Path, n_files: int, per_file: int, seed: int = 0, dim: int = 16) -> list[Path]:
    """Noisy prototypes of 3 classes as .jsonl files (plus one .npy and one .csv for variety)."""
    rng = np.random.default_rng(seed)
    protos = rng.random((3, dim))
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for f in range(n_files):
        rows, labels = [], []
        for _ in range(per_file):
            c = int(rng.integers(3))
            x = protos[c].copy()
            noisy = rng.random(dim) < 0.2
            x[noisy] = rng.random(int(noisy.sum()))
            rows.append(x)
            labels.append(f"c{c}")
        if f % 3 == 1:
            path = directory / f"in{f:02d}.npy"
            np.save(path, np.array(rows))
        elif f % 3 == 2:
            path = directory / f"in{f:02d}.csv"
            path.write_text(",".join([f"f{i}" for i in range(dim)] + ["label"]) + "\n"
                            + "".join(",".join(repr(float(v)) for v in r) + f",{lab}\n" for r,
                                      lab in zip(rows, labels, strict=True)))
        else:
            path = directory / f"in{f:02d}.jsonl"
            path.write_text("".join(json.dumps({"id": f"{f}-{i}", "x": r.tolist(), "label": lab}) + "\n"
                                    for i, (r, lab) in enumerate(zip(rows, labels, strict=True))))
        paths.append(path)
    return paths


def drop(paths: list[Path], inbox: Path) -> None:
    """Place files in the inbox the way producers should: write elsewhere, rename in, in order."""
    inbox.mkdir(parents=True, exist_ok=True)
    for p in paths:
        tmp = inbox / f".{p.name}.tmp"
        tmp.write_bytes(p.read_bytes())
        os.rename(tmp, inbox / p.name)
        time.sleep(0.01)  # distinct ctimes: arrival order is the order given


def results_without_timing(outbox: Path) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for path in sorted(outbox.glob("*.results.jsonl")):
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        for line in lines:
            line.pop("latency_ms", None)
        out[path.name] = lines
    return out


def kill(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
    proc.wait(60)
