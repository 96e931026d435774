"""Issue 14 item 4: ``fumd status`` and ``fumd feed`` start fast. They run as a user types them (and
from scripts, every few seconds) and must not pay for torch, numba, scipy, scikit-optimize or
matplotlib; timing figures are in the issue's closing note, not asserted here."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "numba", "scipy", "skopt", "matplotlib", "norse", "zarr", "h5py", "numpy")

PROBE = """
import json, sys
from fumd.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "heavy": sorted(m for m in %r if m in sys.modules)}))
""" % (HEAVY,)


@pytest.mark.parametrize("command", ["status", "feed"])
def test_status_and_feed_do_not_import_the_engine_stack(tmp_path: Path, command: str) -> None:
    state = tmp_path / "state"
    (state / "inbox").mkdir(parents=True)
    src = tmp_path / "a.jsonl"
    src.write_text('{"text": "hello"}\n')
    args = ["status", "--state-dir",
            str(state)] if command == "status" else ["feed", "--state-dir", str(state), str(src)]
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["code"] == 0 and report["heavy"] == []
    if command == "feed":
        assert (state / "inbox" / "a.jsonl").read_text() == src.read_text()


CONFIG_PROBE = """
import json, sys
from fumd.daemon.config import load_config
from fumd.jobs.config import (ClusteringConfig, CriticalityConfig, DecayConfig, JobsConfig, StructuralConfig,
                              TaggingConfig, TuningConfig)
config = load_config(sys.argv[1])
assert config.jobs.tuning.n_trials == 7 and config.jobs.criticality.every_cycles == 33
print(json.dumps(sorted(m for m in %r if m in sys.modules)))
""" % (HEAVY + ("sklearn", "apscheduler"),)


def test_loading_a_config_imports_no_job_library(tmp_path: Path) -> None:
    """``fumd run`` reads its config (and a SIGHUP re-reads it) before the heavy imports: the
    ``[jobs.*]`` dataclasses live in ``fumd/jobs/config.py``, apart from the jobs' torch, scipy,
    scikit-learn and scikit-optimize code."""
    cfg = tmp_path / "fumd.toml"
    cfg.write_text("[jobs.tuning]\nn_trials = 7\n[jobs.criticality]\nevery_cycles = 33\n")
    out = subprocess.run([sys.executable, "-c", CONFIG_PROBE, str(cfg)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


DAEMON_PROBE = """
import json, sys
from fumd.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "loaded": sorted(m for m in %r if m in sys.modules)}))
""" % (("scipy.optimize", "scipy.special", "scipy.linalg", "skopt", "sklearn", "matplotlib", "norse", "networkx",
        "h5py"),)


def test_daemon_start_imports_only_what_the_loop_needs(tmp_path: Path) -> None:
    """A daemon start (fresh network, then a restore) pays for torch and numba but not for scipy's
    subpackages, scikit-learn, scikit-optimize (imported inside the jobs that use them, when they
    run), Norse (its ``__init__`` imports matplotlib.pyplot; only the reference ``lif_step`` calls
    it) or matplotlib (plots only). Numba itself imports the top-level ``scipy`` package (a few ms)."""
    from tests.daemon_harness import write_config

    cfg = write_config(tmp_path / "fumd.toml")
    state = tmp_path / "state"
    for _ in range(2):  # the first start builds a network, the second restores its checkpoint
        out = subprocess.run([sys.executable, "-c", DAEMON_PROBE, "run", "--state-dir", str(state), "--config",
                              str(cfg), "--exit-when-idle"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-3000:]
        report = json.loads(out.stdout.strip().splitlines()[-1])
        assert report == {"code": 0, "loaded": []}
    assert list((state / "checkpoints").glob("ckpt-*"))
