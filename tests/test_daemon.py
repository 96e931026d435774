"""End-to-end tests of ``fumd run``: the real daemon as a subprocess, driven by files, signals, HTTP."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
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
        fed = subprocess.run(fumd_cmd("feed", "--state-dir", str(state), *map(str, inputs)), capture_output=True,
                             text=True, timeout=60)
        assert fed.returncode == 0, fed.stderr
        outbox = state / "outbox"
        wait_for(lambda: len(list(outbox.glob("*.results.jsonl"))) == 3, what="results of 3 files")
        for path in inputs:
            lines = [json.loads(x) for x in (outbox / f"{path.name}.results.jsonl").read_text().splitlines()]
            assert len(lines) == 6
            for line in lines:
                assert {"id", "action", "confidence", "total_reward", "components", "novelty", "cluster", "step",
                        "latency_ms"} <= set(line)
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
            wait_for(lambda proc=proc: running(crashed, proc) or proc.poll() is not None, what="daemon start")
            if attempt == 0:  # inside a checkpoint write
                wait_for(lambda: any(p.name.startswith(".tmp") for p in (crashed / "checkpoints").iterdir()),
                         timeout=60, what="a checkpoint being written")
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
    assert (sorted(p.name for p in (crashed / "outbox").glob("*.results.jsonl"))
            == sorted(f"{p.name}.results.jsonl" for p in inputs))
    assert len(list((crashed / "done").iterdir())) == 6 and not list((crashed / "queue").iterdir())


def test_corrupt_newest_checkpoint_falls_back_and_replays(tmp_path: Path) -> None:
    inputs = labelled_files(tmp_path / "src", 3, 10, seed=5)
    cfg = write_config(tmp_path / "fumd.toml", every_cycles=12)
    state = tmp_path / "state"
    drop(inputs, state / "inbox")
    run_to_idle(state, cfg)
    before = inspect(state)
    newest = state / "checkpoints" / (state / "checkpoints" / "LATEST").read_text().strip()
    victim = max((p for p in newest.rglob("*") if p.is_file() and p.name != "manifest.json"),
                 key=lambda p: p.stat().st_size)
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
    put("€" * 80 + ".jsonl", b'{"text": "hi"}', "bad_name")  # 246 bytes (issue 10 item 2)
    put("bomb.json", b'{"x": ' + b"[" * 5000 + b"]" * 5000 + b"}", "malformed_json")  # deeper than the parser allows
    forged = __import__("io").BytesIO()
    np.lib.format.write_array_header_1_0(forged, {"descr": "<f8", "fortran_order": False, "shape": (10**10, 16)})
    put("forged.npy", forged.getvalue() + bytes(128), "bad_npy")
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
    cfg.write_text(cfg.read_text().replace("rescan_seconds = 0.2",
                                           "rescan_seconds = 0.2\nmax_file_bytes = 20000\nmax_records_per_file = 50"))
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
        '{"id": "bomb", "x": ' + "[" * 5000 + "]" * 5000 + "}",  # issue 10 item 6 (within max_file_bytes)
        json.dumps({"id": "range", "x": [1.7e308, -1.7e308] + [0.0] * 14}),  # item 9
        json.dumps({"id": "sep", "text": "a\u2028b\u0085c", "label": "c1"}, ensure_ascii=False),  # item 7
        json.dumps({"id": "lab", "x": [0.5] * 16, "label": [1]}),
        json.dumps({"id": "txt", "text": "   "}),
        json.dumps({"id": "rew", "x": [0.5] * 16, "reward": 7}),
        json.dumps({"id": "ok2", "text": "fine text"}),
    ]) + "\n")
    numeric_csv = tmp_path / "src" / "numeric.csv"  # item 8: a first row with one non-number is data
    numeric_csv.write_text(",".join(["1"] * 15 + ["abc"]) + "\n" + ",".join(["0.5"] * 16) + "\n")
    drop(good + [mixed, numeric_csv], state / "inbox")
    proc = start(state, cfg)
    try:
        wait_for(lambda: len(list((state / "outbox").glob("*.results.jsonl"))) == 3, what="good files processed")
        assert proc.poll() is None and running(state, proc)
        reports = [json.loads(p.read_text()) for p in (state / "failed").glob("*.error.json")]
        got = {r["file"]: r["reason"] for r in reports}
        assert got == expected
        for r in reports:
            moved = state / "failed" / r["moved_to"]
            assert r["message"] and moved.exists() or os.path.islink(moved)
        assert (tmp_path / "outside" / "secret.jsonl").read_text() == '{"text": "must never be read"}'
        lines = [json.loads(x) for x in (state / "outbox" / "mixed.jsonl.results.jsonl").read_text().splitlines()]
        assert [line.get("error", {}).get("reason") for line in lines] == [
            None, "malformed_json", "wrong_dimension", "non_finite", "malformed_json", "out_of_range", None,
            "bad_label", "empty_text", "bad_reward", None]
        assert [line["where"] for line in lines] == [f"line {n}" for n in range(1, 12)]
        lines = [json.loads(x) for x in (state / "outbox" / "numeric.csv.results.jsonl").read_text().splitlines()]
        assert [(line["where"], line.get("error", {}).get("reason"))
                for line in lines] == [("line 1", "bad_format"), ("line 2", None)]
        metrics = _scrape(state)
        assert sum(v for k, v in metrics.items() if k.startswith("fumd_input_files_failed_total{")) == len(expected)
        assert metrics['fumd_records_failed_total{reason="non_finite"}'] == 1
        assert metrics['fumd_records_failed_total{reason="out_of_range"}'] == 1
        assert metrics["fumd_cycles_total"] == 4 + 3 + 1
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
    first = {key: next(i for i, m in enumerate(messages) if key in m)
             for key in ("EXTEND_TIMEOUT_USEC=", "READY=1", "WATCHDOG=1", "STOPPING=1")}
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
    out = subprocess.run(fumd_cmd("run", "--state-dir", str(tmp_path / "state"), "--config", str(cfg)),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and needle in out.stderr and str(cfg) in out.stderr


def _results(state: Path, name: str) -> list[dict]:
    path = state / "outbox" / f"{name}.results.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_real_deployments_in_place_writes_hard_links_deletions_and_bad_sighup(tmp_path: Path) -> None:
    """Issue 10, running daemon: a slow in-place writer (item 10), the same hard link dropped twice
    before a checkpoint (item 5), files deleted while they are admitted (item 3), SIGHUP with the
    config replaced by a directory (item 4). The daemon never exits and no input is lost."""
    cfg = write_config(tmp_path / "fumd.toml", every_cycles=100_000)
    good_toml = cfg.read_text().replace("rescan_seconds = 0.2", "rescan_seconds = 0.2\nsettle_seconds = 0.2")
    cfg.write_text(good_toml)
    state = tmp_path / "state"
    inbox = state / "inbox"
    proc = start(state, cfg)
    rng = np.random.default_rng(0)

    def record(i: int) -> bytes:
        return json.dumps({"id": f"r{i}", "x": rng.random(16).tolist(), "label": f"c{i % 3}"}).encode() + b"\n"

    try:
        wait_for(lambda: running(state, proc), what="daemon start")
        # item 10: written in place, slowly, with pauses longer than settle_seconds
        with open(inbox / "slow.jsonl", "wb") as fh:
            for i in range(6):
                fh.write(record(i))
                fh.flush()
                time.sleep(0.5)
        wait_for(lambda: len(_results(state, "slow.jsonl")) == 6, what="all 6 records of the slow file")
        assert not list((state / "failed").iterdir())

        # item 5: the same inode linked in twice, the second while the first waits in queue/
        src = tmp_path / "src.jsonl"
        src.write_bytes(b"".join(record(i) for i in range(3)))
        os.link(src, inbox / "a.jsonl")
        wait_for(lambda: len(_results(state, "a.jsonl")) == 3, what="a.jsonl")
        assert any(p.name.endswith("-a.jsonl") for p in (state / "queue").iterdir())
        os.link(src, inbox / "b.jsonl")
        wait_for(lambda: len(_results(state, "b.jsonl")) == 3, what="b.jsonl (a second input, not a 'remnant')")

        # item 3: 60 files renamed in, the last 20 deleted as soon as the first reaches queue/
        staging = tmp_path / "staging"
        staging.mkdir()
        names = [f"many{i:02d}.jsonl" for i in range(60)]
        for name in names:
            (staging / name).write_bytes(record(0))
        queued_before = len(list((state / "queue").iterdir()))
        for name in names:
            os.rename(staging / name, inbox / name)
        wait_for(lambda: len(list((state / "queue").iterdir())) > queued_before, timeout=30, what="first file queued")
        deleted = set()
        for name in names[40:]:
            try:
                os.unlink(inbox / name)
                deleted.add(name)
            except FileNotFoundError:
                pass
        survivors = [n for n in names if n not in deleted]
        wait_for(lambda: all(_results(state, n) for n in survivors), timeout=60, what="results of every surviving file")
        assert proc.poll() is None
        # a deleted name may still have results: the daemon can have admitted it (linked it into
        # queue/) just before the unlink, which then removes only the inbox name (seen under load)
        assert not list((state / "failed").iterdir())

        # item 4: SIGHUP while the config is a directory, then a good one again
        cfg.unlink()
        cfg.mkdir()
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "config_reload_rejected" in (tmp_path / "state.log").read_text(), what="reload rejected")
        assert "is a directory" in (tmp_path / "state.log").read_text()
        cfg.rmdir()
        cfg.write_text(good_toml)
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "config_reloaded" in (tmp_path / "state.log").read_text(), what="reload")
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        kill(proc)
    assert "Traceback" not in (tmp_path / "state.log").read_text()


def test_machine_level_config_errors_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 10: each of these used to end in a traceback. They are refused before anything is
    started (no signal handler, no thread), so they run in-process through ``fumd.cli.main``; one
    of them also as a real process."""
    from fumd.cli import main

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    (tmp_path / "statefile").write_text("not a directory")
    (tmp_path / "cfgdir").mkdir()
    cases = {  # name -> (config body, or None for a directory; state dir; what the one line must say)
        "port_in_use": (f"[metrics]\nport = {port}\n", "s1", f"metrics.port = {port}: already in use"),
        "unresolvable_host": ('[metrics]\nhost = "no-such-host.invalid"\n', "s2",
                              "metrics.host = 'no-such-host.invalid'"),
        "config_is_a_directory": (None, "s3", f"{tmp_path / 'cfgdir'}: is a directory"),
        "state_dir_is_a_file": ("[metrics]\nport = 0\n", "statefile", "statefile: exists and is not a directory"),
        "state_dir_below_a_file": ("[metrics]\nport = 0\n", "statefile/state", "statefile/state: cannot create it"),
        "too_big_for_memory": ("[metrics]\nport = 0\n[network]\nneurons = 50000000\nsynapses_per_neuron = 9999\n", "s5",
                               "network.neurons = 50000000"),
    }
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)}
    try:
        args = {}
        for name, (body, state, needle) in cases.items():
            config = tmp_path / "cfgdir" if body is None else tmp_path / f"{name}.toml"
            if body is not None:
                config.write_text(body)
            args[name] = ["run", "--state-dir", str(tmp_path / state), "--config", str(config)]
            code = main(args[name])
            err = capsys.readouterr().err
            assert code == 2 and err.count("\n") == 1 and needle in err, (name, code, err)
            assert {sig: signal.getsignal(sig) for sig in handlers} == handlers  # nothing was started
        out = subprocess.run(fumd_cmd(*args["port_in_use"]), capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and out.stderr.count("\n") == 1 and cases["port_in_use"][2] in out.stderr, out.stderr
    finally:
        busy.close()


def _setpriv_daemon_cmd() -> list[str] | None:
    """setpriv to uid/gid 65534 (the unit's DynamicUser=, as it were). CAP_DAC_READ_SEARCH (ambient)
    only lets that uid read this checkout's interpreter under /root; it grants no write access and
    does not bypass fs.protected_hardlinks (that needs CAP_FOWNER)."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        return None
    cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
           "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
    probe = subprocess.run([*cmd, sys.executable, "-c", "import os; print(os.geteuid())"], capture_output=True,
                           text=True, timeout=60)
    return cmd if probe.returncode == 0 and probe.stdout.strip() == "65534" else None


def test_root_fed_files_into_a_non_root_daemon_as_shipped(tmp_path: Path) -> None:
    """Issue 10 item 1: the daemon runs as another uid with a 0700 state dir; root feeds it
    (`sudo fumd feed`, `sudo cp` in place, `sudo mv`). Under fs.protected_hardlinks = 1 os.link of
    root's files fails with EPERM, which used to kill the daemon on every restart."""
    setpriv = _setpriv_daemon_cmd()
    if setpriv is None:
        pytest.skip("needs root and setpriv with ambient capabilities, to run the daemon as uid 65534")
    base = Path(tempfile.mkdtemp(prefix="fumd-nonroot-", dir="/tmp"))
    try:
        os.chmod(base, 0o755)
        state = base / "state"
        state.mkdir(mode=0o700)
        os.chown(state, 65534, 65534)
        home = base / "home"
        home.mkdir(mode=0o777)
        cfg = write_config(base / "fumd.toml", every_cycles=1000)
        os.chmod(cfg, 0o644)
        log = base / "daemon.log"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HOME": str(home), "NUMBA_CACHE_DIR": str(home / "numba")}
        with open(log, "ab") as out:
            proc = subprocess.Popen([*setpriv, *fumd_cmd("run", "--state-dir", str(state), "--config", str(cfg))],
                                    stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            wait_for(lambda proc=proc: running(state, proc) or proc.poll() is not None, timeout=120,
                     what="daemon start")
            assert proc.poll() is None, log.read_text()[-3000:]
            src = labelled_files(base / "src", 3, 4)
            fed = subprocess.run(fumd_cmd("feed", "--state-dir", str(state), str(src[0])), capture_output=True,
                                 text=True, timeout=120)
            assert fed.returncode == 0, fed.stderr
            inbox = state / "inbox"
            tmp = inbox / f".{src[1].name}.tmp"
            shutil.copyfile(src[1], tmp)  # root's file, renamed in (`sudo mv`)
            os.rename(tmp, inbox / src[1].name)
            shutil.copyfile(src[2], inbox / src[2].name)  # root's file, written in place (`sudo cp`)
            assert all((inbox / p.name).stat().st_uid == 0 for p in src[1:] if (inbox / p.name).exists())
            wait_for(lambda: len(list((state / "outbox").glob("*.results.jsonl"))) == 3 or proc.poll() is not None,
                     timeout=120, what="results of the 3 files")
            assert proc.poll() is None, log.read_text()[-3000:]
            assert [len(_results(state, p.name)) for p in src] == [4, 4, 4] and not list((state / "failed").iterdir())
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0
        finally:
            kill(proc)
        assert "Traceback" not in log.read_text()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_sigkill_in_the_shipped_default_mode_loses_nothing_and_learns_nothing_twice(tmp_path: Path) -> None:
    """Issue 10: with deterministic = false (the default) and its wall-clock job cadences a
    bit-identical state cannot be promised, but this can: killed with SIGKILL at random moments
    (one inside a checkpoint write) and restarted, the daemon learns every record exactly once
    (the final step equals the record count; the results' steps are 1..N in order) and writes
    every input's results exactly once, one line per record. Only the metrics port (any free one)
    and the checkpoint interval (1 s, so that kills land between checkpoints) differ from the
    shipped defaults."""
    inputs = labelled_files(tmp_path / "src", 4, 16, seed=4, dim=64)
    total = 4 * 16
    cfg = tmp_path / "fumd.toml"
    cfg.write_text("[metrics]\nport = 0\n[checkpoint]\nevery_seconds = 1.0\n")
    state = tmp_path / "state"
    drop(inputs, state / "inbox")
    slow = {"FUMD_FAULT_CHECKPOINT_PAUSE_S": "0.05"}
    rng = random.Random(5)
    kills = 0
    for attempt in range(3):
        proc = start(state, cfg, env=slow)
        try:
            wait_for(lambda proc=proc: running(state, proc) or proc.poll() is not None, timeout=120,
                     what="daemon start")
            if attempt == 0:  # inside the first checkpoint write
                wait_for(lambda proc=proc: any(p.name.startswith(".tmp") for p in (state / "checkpoints").iterdir())
                         or proc.poll() is not None,
                         timeout=60, what="a checkpoint being written")
            else:  # at a random moment after a restored checkpoint and some progress past it
                wait_for(lambda proc=proc, attempt=attempt: status(state).get("step", 0) >= 16 * attempt
                         and status(state).get("last_checkpoint")
                         or proc.poll() is not None, timeout=120, what="progress past a checkpoint")
                time.sleep(rng.uniform(0.0, 0.6))
        finally:
            if proc.poll() is None:
                kills += 1
            kill(proc)
    assert kills >= 2
    run_to_idle(state, cfg, env=slow, timeout=300)
    log = (tmp_path / "state.log").read_text()
    assert log.count('"event": "restored"') >= 2  # the restarts did resume from checkpoints
    assert inspect(state)["step"] == total  # none lost, none learned twice
    outbox = results_without_timing(state / "outbox")
    assert sorted(outbox) == sorted(f"{p.name}.results.jsonl" for p in inputs)  # no second results file
    for lines in outbox.values():
        assert [line["record"] for line in lines] == list(range(16)) and not any("error" in line for line in lines)
    order = sorted(inputs, key=lambda p: outbox[f"{p.name}.results.jsonl"][0]["seq"])
    assert [line["step"] for p in order for line in outbox[f"{p.name}.results.jsonl"]] == list(range(1, total + 1))
    assert len(list((state / "done").iterdir())) == 4
    assert not list((state / "queue").iterdir()) and not list((state / "failed").iterdir())
