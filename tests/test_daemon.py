"""End-to-end tests of ``fumd run``: the real daemon as a subprocess, driven by files, signals, HTTP."""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.daemon_harness import (
    drop,
    fumd_cmd,
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


def _scrape(state: Path) -> dict[str, float]:
    url = status(state)["metrics_url"]
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def test_feed_results_metrics_status_signals(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "fumd.toml", every_cycles=1000)
    state = tmp_path / "state"
    proc = start(state, cfg)
    try:
        wait_for(lambda: running(state, proc), what="daemon start")
        inputs = labelled_files(tmp_path / "src", 3, 6)
        fed = subprocess.run(fumd_cmd("feed", "--state-dir", str(state), *map(str, inputs)), capture_output=True, text=True, timeout=60)
        assert fed.returncode == 0, fed.stderr
        outbox = state / "outbox"
        wait_for(lambda: len(list(outbox.glob("*.results.jsonl"))) == 3, what="results of 3 files")
        for path in inputs:
            lines = [json.loads(x) for x in (outbox / f"{path.name}.results.jsonl").read_text().splitlines()]
            assert len(lines) == 6
            for line in lines:
                assert {"id", "action", "confidence", "total_reward", "components", "novelty", "cluster", "step", "latency_ms"} <= set(line)
                assert line["label"] in ((None,) if path.suffix == ".npy" else ("c0", "c1", "c2"))
                assert 0.0 <= line["confidence"] <= 1.0
        steps = sorted(line["step"] for lines in results_without_timing(outbox).values() for line in lines)
        assert steps == list(range(1, 19))  # each record exactly one cycle, in order

        metrics = wait_for(lambda: (m := _scrape(state)).get("fumd_cycles_total") == 18 and m, what="metrics")
        assert metrics['fumd_input_files_total{status="done"}'] == 3
        assert metrics["fumd_neurons"] == 400 and metrics["fumd_synapses"] > 0
        assert 'fumd_reward_component{component="td_error"}' in metrics
        assert metrics["fumd_checkpoint_age_seconds"] >= 0

        # no checkpoint covers them yet: the inputs wait in queue/; SIGUSR1 checkpoints now
        assert len(list((state / "queue").iterdir())) == 3 and not list((state / "done").iterdir())
        proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: len(list((state / "done").iterdir())) == 3, what="done/ after SIGUSR1 checkpoint")
        wait_for(lambda: status(state).get("inputs_done") == 3, what="status.json to catch up")
        out = subprocess.run(fumd_cmd("status", "--state-dir", str(state)), capture_output=True, text=True, timeout=60)
        st = json.loads(out.stdout)
        assert st["running"] and st["step"] == 18 and st["inputs_done"] == 3 and st["last_checkpoint"]["step"] == 18

        # SIGHUP: a smaller file-size limit takes effect without a restart
        cfg.write_text(cfg.read_text().replace("rescan_seconds = 0.2", "rescan_seconds = 0.2\nmax_file_bytes = 100"))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "config_reloaded" in (tmp_path / "state.log").read_text(), what="reload")
        drop([inputs[0]], state / "inbox")
        wait_for(lambda: list((state / "failed").glob("*.error.json")), what="oversized file rejected")
        report = json.loads(next((state / "failed").glob("*.error.json")).read_text())
        assert report["reason"] == "oversized" and "inbox.max_file_bytes = 100" in report["message"]

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        kill(proc)
    summary = inspect(state)
    assert summary["step"] == 18
    assert json.loads((state / "status.json").read_text())["phase"] == "stopped"


def test_sigkill_at_random_moments_equals_uninterrupted_run(tmp_path: Path) -> None:
    """The daemon's promise: killed with SIGKILL at random moments (one of them inside a checkpoint
    write), restarted each time, it ends bit-identical to an uninterrupted run, and every input has
    exactly one results file with one line per record."""
    inputs = labelled_files(tmp_path / "src", 6, 25, seed=3)
    cfg = write_config(tmp_path / "fumd.toml", every_cycles=9)
    slow = {"FUMD_FAULT_CHECKPOINT_PAUSE_S": "0.05"}  # checkpoints take long enough to be hit

    reference = tmp_path / "reference"
    drop(inputs, reference / "inbox")
    run_to_idle(reference, cfg, env=slow)
    expected = inspect(reference)

    crashed = tmp_path / "crashed"
    drop(inputs, crashed / "inbox")
    rng = random.Random(11)
    kills = 0
    for attempt in range(5):
        proc = start(crashed, cfg, env=slow)
        try:
            wait_for(lambda: running(crashed, proc) or proc.poll() is not None, what="daemon start")
            if attempt == 0:  # inside a checkpoint write
                wait_for(lambda: any(p.name.startswith(".tmp") for p in (crashed / "checkpoints").iterdir()), timeout=60, what="a checkpoint being written")
            else:
                time.sleep(rng.uniform(0.0, 1.5))
        finally:
            if proc.poll() is None:
                kills += 1
            kill(proc)
    assert kills >= 3
    run_to_idle(crashed, cfg, env=slow)
    got = inspect(crashed)
    assert got["step"] == expected["step"] == 150
    assert got["state_sha256"] == expected["state_sha256"]
    assert results_without_timing(crashed / "outbox") == results_without_timing(reference / "outbox")
    assert sorted(p.name for p in (crashed / "outbox").glob("*.results.jsonl")) == sorted(f"{p.name}.results.jsonl" for p in inputs)
    assert len(list((crashed / "done").iterdir())) == 6 and not list((crashed / "queue").iterdir())


def test_corrupt_newest_checkpoint_falls_back_and_replays(tmp_path: Path) -> None:
    inputs = labelled_files(tmp_path / "src", 3, 10, seed=5)
    cfg = write_config(tmp_path / "fumd.toml", every_cycles=12)
    state = tmp_path / "state"
    drop(inputs, state / "inbox")
    run_to_idle(state, cfg)
    before = inspect(state)
    newest = state / "checkpoints" / (state / "checkpoints" / "LATEST").read_text().strip()
    victim = max((p for p in newest.rglob("*") if p.is_file() and p.name != "manifest.json"), key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))

    run_to_idle(state, cfg)
    log = (tmp_path / "state.log").read_text()
    assert "checkpoint_unusable" in log and "input_replayed" in log
    after = inspect(state)
    assert after["step"] == 30 and after["state_sha256"] == before["state_sha256"]
    assert [len(v) for v in results_without_timing(state / "outbox").values()] == [10, 10, 10]


def test_zarr_and_hdf5_daemons_reach_the_same_state(tmp_path: Path) -> None:
    inputs = labelled_files(tmp_path / "src", 2, 8, seed=9)
    digests = {}
    for fmt in ("zarr", "hdf5"):
        cfg = write_config(tmp_path / f"{fmt}.toml", every_cycles=5, fmt=fmt)
        state = tmp_path / fmt
        drop(inputs, state / "inbox")
        run_to_idle(state, cfg)
        run_to_idle(state, cfg)  # a restart from its own checkpoint changes nothing
        summary = inspect(state)
        assert summary["format"] == fmt and summary["step"] == 16
        digests[fmt] = summary["state_sha256"]
    assert digests["zarr"] == digests["hdf5"]


def _bad_corpus(inbox: Path, outside: Path) -> dict[str, str]:
    """name -> expected reason; at least 20 distinct ways for an input file to be wrong."""
    inbox.mkdir(parents=True, exist_ok=True)
    expected = {}

    def put(name: str | bytes, data: bytes, reason: str) -> None:
        path = os.path.join(os.fsencode(inbox), name if isinstance(name, bytes) else os.fsencode(name))
        with open(path, "wb") as fh:
            fh.write(data)
        expected[os.fsdecode(name) if isinstance(name, bytes) else name] = reason

    put("malformed.json", b'{"x": [1, 2,', "malformed_json")
    put("nan.json", b'{"x": [NaN]}', "malformed_json")
    put("scalar.json", b"42", "bad_format")
    put("latin1.jsonl", '{"text": "caf\u00e9"}'.encode("latin-1"), "not_utf8")
    put("empty.jsonl", b"", "empty")
    put("blank.txt", b"   \n\n", "empty")
    put("nul.txt", b"abc\x00def", "binary")
    put("huge.jsonl", b'{"text": "' + b"a" * 30_000 + b'"}\n', "oversized")
    put("program.exe", b"MZ", "unsupported_extension")
    put("README", b"no extension", "unsupported_extension")
    put("garbage.npy", os.urandom(64), "bad_npy")
    buf = __import__("io").BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    put("pickled.npy", buf.getvalue(), "bad_npy")
    buf = __import__("io").BytesIO()
    np.save(buf, np.zeros((2, 2, 16)))
    put("cube.npy", buf.getvalue(), "wrong_dimension")
    buf = __import__("io").BytesIO()
    np.save(buf, np.array(["a", "b"]))
    put("strings.npy", buf.getvalue(), "bad_npy")
    put("dupcols.csv", b"a,a,label\n1,2,x\n", "bad_csv")
    put("toomany.jsonl", b"".join(b'{"text": "t%d"}\n' % i for i in range(60)), "too_many_records")
    put("x\\..\\..\\escape.jsonl", b'{"text": "hi"}', "bad_name")
    put("new\nline.jsonl", b'{"text": "hi"}', "bad_name")
    put(b"\xff\xfebytes.jsonl", b'{"text": "hi"}', "bad_name")
    (inbox / "adir.jsonl").mkdir()
    expected["adir.jsonl"] = "directory"
    secret = outside / "secret.jsonl"
    secret.write_text('{"text": "must never be read"}')
    (inbox / "link.jsonl").symlink_to(secret)
    expected["link.jsonl"] = "symlink"
    os.mkfifo(inbox / "pipe.jsonl")
    expected["pipe.jsonl"] = "not_regular_file"
    return expected


def test_bad_inputs_go_to_failed_and_the_daemon_carries_on(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "fumd.toml", extra="")
    cfg.write_text(cfg.read_text().replace("rescan_seconds = 0.2", "rescan_seconds = 0.2\nmax_file_bytes = 20000\nmax_records_per_file = 50"))
    state = tmp_path / "state"
    (tmp_path / "outside").mkdir()
    expected = _bad_corpus(state / "inbox", tmp_path / "outside")
    assert len(set(expected.values())) >= 15 and len(expected) >= 20
    good = labelled_files(tmp_path / "src", 1, 4)
    mixed = tmp_path / "src" / "mixed.jsonl"
    mixed.write_text("\n".join([
        json.dumps({"id": "ok1", "x": [0.5] * 16, "label": "c0"}),
        "{not json",
        json.dumps({"id": "short", "x": [0.5] * 3}),
        '{"id": "inf", "x": [1e999' + ", 0.5" * 15 + "]}",
        json.dumps({"id": "lab", "x": [0.5] * 16, "label": [1]}),
        json.dumps({"id": "txt", "text": "   "}),
        json.dumps({"id": "rew", "x": [0.5] * 16, "reward": 7}),
        json.dumps({"id": "ok2", "text": "fine text"}),
    ]) + "\n")
    drop(good + [mixed], state / "inbox")
    proc = start(state, cfg)
    try:
        wait_for(lambda: len(list((state / "outbox").glob("*.results.jsonl"))) == 2, what="good files processed")
        assert proc.poll() is None and running(state, proc)
        reports = [json.loads(p.read_text()) for p in (state / "failed").glob("*.error.json")]
        got = {r["file"]: r["reason"] for r in reports}
        assert got == expected
        for r in reports:
            assert r["message"] and (state / "failed" / r["moved_to"]).exists() or os.path.islink(state / "failed" / r["moved_to"])
        assert (tmp_path / "outside" / "secret.jsonl").read_text() == '{"text": "must never be read"}'
        lines = [json.loads(x) for x in (state / "outbox" / "mixed.jsonl.results.jsonl").read_text().splitlines()]
        assert [line.get("error", {}).get("reason") for line in lines] == [
            None, "malformed_json", "wrong_dimension", "non_finite", "bad_label", "empty_text", "bad_reward", None]
        assert all("where" in line and "line" in line["where"] for line in lines)
        metrics = _scrape(state)
        assert sum(v for k, v in metrics.items() if k.startswith("fumd_input_files_failed_total{")) == len(expected)
        assert metrics['fumd_records_failed_total{reason="non_finite"}'] == 1
        assert metrics["fumd_cycles_total"] == 4 + 2
        assert "input_rejected" in (tmp_path / "state.log").read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        kill(proc)


def test_sd_notify_messages_in_order(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "fumd.toml")
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(60)
    state = tmp_path / "state"
    proc = start(state, cfg, env={"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"})
    messages: list[str] = []
    try:
        def receive_until(marker: str) -> None:
            while not any(marker in m for m in messages):
                messages.append(sock.recv(4096).decode())

        receive_until("READY=1")
        receive_until("WATCHDOG=1")
        proc.send_signal(signal.SIGTERM)
        receive_until("STOPPING=1")
        assert proc.wait(60) == 0
    finally:
        kill(proc)
        sock.close()
    first = {key: next(i for i, m in enumerate(messages) if key in m) for key in ("EXTEND_TIMEOUT_USEC=", "READY=1", "WATCHDOG=1", "STOPPING=1")}
    assert first["EXTEND_TIMEOUT_USEC="] < first["READY=1"] < first["WATCHDOG=1"] < first["STOPPING=1"]
    assert any(m.startswith("STATUS=") for m in messages)
    assert f"MAINPID={proc.pid}" in messages[first["READY=1"]]


@pytest.mark.parametrize("body, needle", [
    ("[checkpoint]\nkeep = 0\n", "checkpoint.keep = 0 is outside the allowed range"),
    ("[network]\nneurons = -5\n", "network.neurons"),
    ("bogus = 1\n", "bogus: unknown key"),
    ("[checkpoint]\nformat = \"pickle\"\n", "checkpoint.format = 'pickle': allowed values are zarr, hdf5"),
    ("[inbox\n", "not valid TOML"),
])
def test_bad_config_is_refused_with_the_key_named(tmp_path: Path, body: str, needle: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(body)
    out = subprocess.run(fumd_cmd("run", "--state-dir", str(tmp_path / "state"), "--config", str(cfg)), capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and needle in out.stderr and str(cfg) in out.stderr
