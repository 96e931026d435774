"""``fumd soak``: the long-run check. Runs the real daemon (all jobs on) over a varied stream for many
cycles and samples its metrics: firing rate and variance, criticality index, synapses, sparsity,
persistent synapses, memory (RSS) and cycles/s over time. Prints one JSON object.

The stream switches domain every ``--switch-every`` cycles: numeric prototypes of different class
sets, then text, then back (the "several domains switched over time" of issue #4).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np


def _stream_files(inbox: Path, cycles: int, switch_every: int, input_size: int, seed: int, per_file: int = 500) -> None:
    rng = np.random.default_rng(seed)
    # (kind, prototypes: float [4, input_size] for "numeric", sentences for "text", labels)
    domains: list[tuple[str, Any, list[str]]] = [
        ("numeric", rng.random((4, input_size)), [f"a{i}" for i in range(4)]),
        ("numeric", rng.random((4, input_size)), [f"b{i}" for i in range(4)]),
        ("text", ["the cat sat on the mat", "stock prices rose sharply today", "a storm is coming tonight",
                  "protein folding is hard"], ["cat", "finance", "weather", "biology"])]
    records = []
    for i in range(cycles):
        kind, protos, labels = domains[(i // switch_every) % len(domains)]
        c = int(rng.integers(len(labels)))
        if kind == "numeric":
            x = protos[c].copy()
            noisy = rng.random(input_size) < 0.2
            x[noisy] = rng.random(int(noisy.sum()))
            records.append({"id": str(i), "x": x.round(4).tolist(), "label": labels[c]})
        else:
            words = protos[c].split()
            rng.shuffle(words)
            records.append({"id": str(i), "text": " ".join(words), "label": labels[c]})
    inbox.mkdir(parents=True, exist_ok=True)
    for f in range(0, cycles, per_file):
        tmp = inbox / f".soak-{f:08d}.jsonl.tmp"
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records[f:f + per_file]))
        os.rename(tmp, inbox / f"soak-{f:08d}.jsonl")
        time.sleep(0.005)


def _scrape(url: str) -> dict[str, float]:
    out = {}
    for line in urllib.request.urlopen(url, timeout=10).read().decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def run_soak(cycles: int, neurons: int, switch_every: int, sample_seconds: float, seed: int, state_dir: Path | None,
             extra_config: Path | None = None) -> dict[str, Any]:
    """``extra_config``: TOML appended to the soak's own config (any section but network, metrics,
    checkpoint), e.g. to try job settings."""
    work = Path(state_dir) if state_dir else Path(tempfile.mkdtemp(prefix="fumd-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    state = work / "state"
    config = work / "soak.toml"
    extra = Path(extra_config).read_text() if extra_config else ""
    config.write_text(f"[network]\nneurons = {neurons}\nseed = {seed}\n[metrics]\nport = "
                      "0\n[checkpoint]\nevery_seconds = 120.0\n" + extra)
    _stream_files(state / "inbox", cycles, switch_every, 64, seed)
    log = open(work / "daemon.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "fumd", "run", "--state-dir", str(state), "--config", str(config)],
                            stdout=log, stderr=subprocess.STDOUT)
    samples: list[dict[str, Any]] = []
    last = (time.monotonic(), 0.0)
    try:
        while proc.poll() is None:
            time.sleep(sample_seconds)
            try:
                status = json.loads((state / "status.json").read_text())
                m = _scrape(status["metrics_url"])
            except (OSError, ValueError, KeyError):
                continue
            now, done = time.monotonic(), m.get("fumd_cycles_total", 0.0)
            samples.append({
                "step": int(m.get("fumd_step", 0)), "rate_hz": m.get("fumd_firing_rate_hz"),
                "rate_variance_hz2": m.get("fumd_firing_rate_variance_hz2"),
                "criticality_index": m.get('fumd_job_output{job="criticality",key="criticality_index"}'),
                "global_inhibition": m.get('fumd_job_output{job="criticality",key="global_inhibition"}'),
                "clusters": m.get('fumd_job_output{job="clustering",key="k"}'),
                "neurons": m.get("fumd_neurons"), "synapses": m.get("fumd_synapses"),
                "sparsity": m.get("fumd_sparsity_ratio"),
                "persistent": m.get("fumd_persistent_synapses"), "rss_bytes": m.get("process_resident_memory_bytes"),
                "cycles_per_s": (done - last[1]) / (now - last[0]), "reward": m.get("fumd_reward"),
                "accuracy_total": m.get("fumd_correct_total", 0) / max(1.0, m.get("fumd_labelled_total", 0)),
                "job_failures": sum(v for k, v in m.items() if k.startswith("fumd_job_failures_total")),
            })
            last = (now, done)
            if done >= cycles:
                break
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(300)
    useful = [s for s in samples if s["step"] > 0]
    first, final = (useful[0], useful[-1]) if useful else ({}, {})
    rates = [s["rate_hz"] for s in useful if s["rate_hz"] is not None]
    return {
        "cycles": cycles, "neurons": neurons, "state_dir": str(state), "exit_code": proc.returncode,
        "start": first, "end": final,
        "rate_hz_min": min(rates) if rates else None, "rate_hz_max": max(rates) if rates else None,
        "samples": useful,
    }
