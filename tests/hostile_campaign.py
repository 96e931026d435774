"""Second hostile-input campaign (issue 10): ~70 kinds of bad or unusual input dropped into a
running daemon between good files, plus SIGHUP / SIGUSR1 / SIGTERM / SIGKILL with restarts.

Not collected by pytest (it takes minutes). Run it as root (the daemon then runs as uid 65534,
like the unit's ``DynamicUser=``, so permission kinds mean something):

    nice -n 10 .venv/bin/python -m tests.hostile_campaign [--work DIR] [--only KIND,...]

For every kind it checks: the daemon is alive afterwards; each input name the kind created has
exactly the expected outcome (a results file whose lines are the expected good records and record
errors, in order, with their reasons and ``where``; or a file in ``failed/`` whose report names
the reason and, where the kind expects one, the position); nothing expected is missing. At the
end every good record's result must equal, field for field, that of a reference daemon fed only
the good records (same order, fresh state dir), and the two final state digests
(``fumd inspect``: ``state_sha256``) must be equal. Prints one JSON summary; exit 1 on any failure.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

DIM = 8
REPO = Path(__file__).resolve().parents[1]
CODE_DIR = [REPO]  # where the daemons import fumd from: a snapshot taken at set-up
MAX_FILE_BYTES = 1 << 20
NOBODY = 65534

CONFIG = f"""\
deterministic = true
[network]
neurons = 300
synapses_per_neuron = 20
input_size = {DIM}
max_labels = 4
population_size = 8
readout_fan_in = 8
seed = 3
[encoder]
max_text_chars = 5000
[checkpoint]
every_cycles = 25
keep = 3
[metrics]
port = 0
[inbox]
rescan_seconds = 0.2
settle_seconds = 0.5
max_file_bytes = {MAX_FILE_BYTES}
max_records_per_file = 200
max_queued_files = 100
[status]
every_seconds = 0.2
"""


# -- records -----------------------------------------------------------------------------------
class Gen:
    def __init__(self) -> None:
        self.rng = np.random.default_rng(11)
        self.protos = self.rng.random((3, DIM))
        self.n = 0

    def rec(self, **over: Any) -> dict[str, Any]:
        c = int(self.rng.integers(3))
        x = self.protos[c] + 0.1 * self.rng.standard_normal(DIM)
        self.n += 1
        r = {"id": f"g{self.n}", "x": [float(v) for v in x], "label": f"c{c}"}
        r.update(over)
        return {k: v for k, v in r.items() if v is not _DROP}


_DROP = object()
OK, ERR = "ok", "err"


@dataclass
class Expect:
    name: str
    outcome: str  # "results" | "failed" | "any" (a race: results without good records, or failed) | "stays" | "stuck"
    lines: list[tuple] = field(default_factory=list)  # results: (OK, record) or (ERR, reason[, where])
    reason: str | tuple[str, ...] | None = None  # failed: expected reason(s)
    where: str | None = None  # failed: expected position


def ok(rec: dict[str, Any]) -> tuple:
    return (OK, rec)


def err(reason: str, where: str | None = None) -> tuple:
    return (ERR, reason, where)


def jl(*objs: Any) -> bytes:
    return b"".join((o if isinstance(o, bytes) else (o if isinstance(o, str) else json.dumps(o)).encode()) + b"\n"
                    for o in objs)


class Campaign:
    def __init__(self, work: Path):
        self.work = work
        self.state = work / "state"
        self.inbox = self.state / "inbox"
        self.cfg = work / "fumd.toml"
        self.src = work / "src"
        self.g = Gen()
        self.proc: subprocess.Popen | None = None
        self.results: list[dict[str, Any]] = []  # per kind
        self.seen_results: set[Path] = set()
        self.seen_failed: set[Path] = set()
        self.claimed: dict[str, int] = {}
        self.crashes: list[str] = []
        self.marker = 0

    # -- the daemon -------------------------------------------------------------------------
    def setup(self) -> None:
        if self.work.exists():
            shutil.rmtree(self.work)
        self.src.mkdir(parents=True)
        # the code as it is now, for the campaign daemon and the reference alike: an edit to the
        # working tree during the run (other work in progress) must not split the two
        shutil.copytree(REPO / "fumd", self.work / "code" / "fumd", ignore=shutil.ignore_patterns("__pycache__"))
        CODE_DIR[0] = self.work / "code"
        self.cfg.write_text(CONFIG)
        self.state.mkdir()
        for d in ("inbox", "queue", "done", "failed", "outbox"):
            (self.state / d).mkdir()
        if os.geteuid() == 0:
            for root, _dirs, _files in os.walk(self.state):
                os.chown(root, NOBODY, NOBODY)
            os.chmod(self.state, 0o700)
            os.chmod(self.work, 0o755)

    def start(self, state: Path | None = None, extra: tuple[str, ...] = ()) -> subprocess.Popen:
        state = state or self.state
        cmd = [sys.executable, "-m", "fumd", "run", "--state-dir", str(state), "--config", str(self.cfg), *extra]
        if os.geteuid() == 0 and state == self.state:
            cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *cmd]
        out = open(self.work / f"{state.name}.log", "ab")
        env = {**os.environ, "PYTHONPATH": str(CODE_DIR[0]), "OMP_NUM_THREADS": "1",
               "NUMBA_CACHE_DIR": str(self.work / "numba-cache"), "HOME": str(self.work)}
        (self.work / "numba-cache").mkdir(exist_ok=True)
        os.chmod(self.work / "numba-cache", 0o777)
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(CODE_DIR[0]))
        if state == self.state:
            self.proc = proc
            self.wait(lambda: self.status().get("pid") == proc.pid
                      and self.status().get("phase") in ("running", "idle"), 120, "daemon start")
        return proc

    def status(self) -> dict[str, Any]:
        try:
            return json.loads((self.state / "status.json").read_text())
        except (OSError, ValueError):
            return {}

    def wait(self, pred: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = pred()
            if v:
                return v
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode} while waiting for {what}")
            time.sleep(0.05)
        raise TimeoutError(f"timed out after {timeout} s waiting for {what}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ensure_running(self, kind: str) -> None:
        if not self.alive():
            rc = self.proc.returncode if self.proc else None
            self.crashes.append(f"{kind}: exit {rc}")
            self.start()

    # -- dropping -----------------------------------------------------------------------------
    def put(self, name: str | bytes, data: bytes, how: str = "rename", mode: int | None = None) -> None:
        """rename: written beside, renamed in (fumd feed's way); inplace: cp into the inbox."""
        inbox = os.fsencode(self.inbox)
        name_b = os.fsencode(name) if isinstance(name, str) else name
        target = os.path.join(inbox, name_b)
        if how == "inplace":
            with open(target, "wb") as fh:
                fh.write(data)
        else:
            tmp = os.path.join(inbox, b".campaign.tmp")
            with open(tmp, "wb") as fh:
                fh.write(data)
            if mode is not None:
                os.chmod(tmp, mode)
            os.rename(tmp, target)

    # -- outcomes -----------------------------------------------------------------------------
    def _index(self) -> tuple[dict[str, list[tuple[int, Any]]], dict[str, list[tuple[int, Any]]]]:
        res: dict[str, list[tuple[int, Any]]] = {}
        for p in (self.state / "outbox").glob("*.results.jsonl"):
            try:
                lines = [json.loads(s) for s in p.read_text().splitlines()]
            except (OSError, ValueError):
                continue
            if lines:
                res.setdefault(lines[0]["file"], []).append((lines[0]["seq"], lines))
        fail: dict[str, list[tuple[int, Any]]] = {}
        for p in (self.state / "failed").glob("*.error.json"):
            try:
                rep = json.loads(p.read_text())
            except (OSError, ValueError):
                continue
            fail.setdefault(rep["file"], []).append((rep["seq"], rep))
        for d in (res, fail):
            for v in d.values():
                v.sort(key=lambda t: t[0])
        return res, fail

    def _outcomes(self, expects: list[Expect]) -> dict[int, tuple[str, Any]] | None:
        """The outcome of each expectation (by index), or None while one is still missing. The
        n-th expectation for a name takes the n-th outcome for it not claimed by earlier kinds."""
        res, fail = self._index()
        found: dict[int, tuple[str, Any]] = {}
        per_name: dict[str, int] = {}
        for i, e in enumerate(expects):
            if e.outcome in ("stays", "stuck"):
                if e.outcome == "stuck" and not c_logged(self, "input_stuck", e.name):
                    return None
                continue
            skip = self.claimed.get(e.name, 0) + per_name.get(e.name, 0)
            both = sorted([(s, "results", v) for s,
                           v in res.get(e.name, [])] + [(s, "failed", v) for s, v in fail.get(e.name, [])],
                          key=lambda t: t[0])
            if len(both) <= skip:
                return None
            per_name[e.name] = per_name.get(e.name, 0) + 1
            _s, what, v = both[skip]
            found[i] = (what, v)
        return found

    def run_kind(self, name: str, make: Callable[["Campaign"], list[Expect]], timeout: float = 90) -> None:
        started = time.monotonic()
        entry: dict[str, Any] = {"kind": name, "problems": []}
        try:
            expects = make(self)
        except Exception as exc:  # noqa: BLE001 - a bug in the campaign, reported as such
            entry["problems"].append(f"campaign error while creating: {type(exc).__name__}: {exc}")
            self.results.append(entry)
            return
        found = None
        try:
            self.wait(lambda: self._outcomes(expects) is not None, timeout, f"outcomes of {name}")
            found = self._outcomes(expects)
        except (TimeoutError, RuntimeError) as exc:
            entry["problems"].append(str(exc))
        if not self.alive():
            entry["problems"].append(f"daemon died (exit {self.proc.returncode if self.proc else None})")
            self.ensure_running(name)
        if found is None:
            found = self._outcomes_partial(expects)
        for i, e in enumerate(expects):
            if e.outcome in ("stays", "stuck"):
                if not os.path.lexists(os.path.join(os.fsencode(self.inbox), os.fsencode(e.name))):
                    entry["problems"].append(f"{e.name!r}: expected to stay in the inbox")
                continue
            if i not in found:
                entry["problems"].append(f"{e.name!r}: no outcome")
                continue
            self.claimed[e.name] = self.claimed.get(e.name, 0) + 1
            entry["problems"] += self._check(e, *found[i])
        # a good marker file after every kind: its one record must come right back
        self.marker += 1
        rec = self.g.rec(id=f"marker{self.marker}")
        mname = f"marker-{self.marker:03d}.jsonl"
        self.put(mname, jl(rec))
        try:
            mfound = self.wait(lambda: self._outcomes([Expect(mname, "results")]), 60, f"marker after {name}")
            self.claimed[mname] = 1
            entry["problems"] += self._check(Expect(mname, "results", [ok(rec)]), *mfound[0])
        except (TimeoutError, RuntimeError) as exc:
            entry["problems"].append(f"marker: {exc}")
            self.ensure_running(name)
        entry["seconds"] = round(time.monotonic() - started, 2)
        entry["ok"] = not entry["problems"]
        self.results.append(entry)
        print(json.dumps(entry), flush=True)

    def _outcomes_partial(self, expects: list[Expect]) -> dict[int, tuple[str, Any]]:
        res, fail = self._index()
        found = {}
        per_name: dict[str, int] = {}
        for i, e in enumerate(expects):
            skip = self.claimed.get(e.name, 0) + per_name.get(e.name, 0)
            both = sorted([(s, "results", v) for s,
                           v in res.get(e.name, [])] + [(s, "failed", v) for s, v in fail.get(e.name, [])],
                          key=lambda t: t[0])
            per_name[e.name] = per_name.get(e.name, 0) + 1
            if len(both) > skip:
                found[i] = both[skip][1:]
        return found

    def _check(self, e: Expect, what: str, value: Any) -> list[str]:
        problems = []
        label = repr(e.name)
        if e.outcome == "any":
            if what == "results" and any("error" not in line for line in value):
                problems.append(f"{label}: a racy kind learned a record")
            if what == "failed":
                problems += self._check_report(e, value, need_reason=False)
            return problems
        if e.outcome != what:
            detail = (value.get("reason") + ": " + value.get("message", "")[:200] if what == "failed"
                      else f"{len(value)} lines")
            return [f"{label}: expected {e.outcome}, got {what} ({detail})"]
        if what == "failed":
            return self._check_report(e, value, need_reason=True)
        if len(value) != len(e.lines):
            problems.append(f"{label}: {len(value)} result lines, expected {len(e.lines)}: "
                            + "; ".join((ln.get("error") or {}).get("reason", "ok") for ln in value)[:300])
        for n, (line, exp) in enumerate(zip(value, e.lines, strict=False)):
            if exp[0] == OK:
                if "error" in line:
                    problems.append(f"{label} record {n}: expected a result, got error {line['error']}")
                elif exp[1].get("id") is not None and line.get("id") != str(exp[1]["id"]):
                    problems.append(f"{label} record {n}: id {line.get('id')!r}, expected {exp[1]['id']!r}")
                else:
                    self.good.append((line, exp[1]))
            else:
                got = (line.get("error") or {}).get("reason")
                if got != exp[1]:
                    problems.append(f"{label} record {n}: expected error {exp[1]}, got {got or 'a result'} "
                                    f"{str(line.get('error'))[:160]}")
                elif exp[2] is not None and line.get("where") != exp[2]:
                    problems.append(f"{label} record {n}: where {line.get('where')!r}, expected {exp[2]!r}")
                elif not line["error"].get("message"):
                    problems.append(f"{label} record {n}: no message")
        return problems

    def _check_report(self, e: Expect, rep: dict[str, Any], need_reason: bool) -> list[str]:
        problems = []
        reasons = (e.reason,) if isinstance(e.reason, str) else e.reason
        if need_reason and reasons and rep.get("reason") not in reasons:
            problems.append(f"{e.name!r}: failed as {rep.get('reason')} ({rep.get('message', '')[:200]}), expected "
                            f"{reasons}")
        if not rep.get("message"):
            problems.append(f"{e.name!r}: report without a message")
        if e.where is not None and rep.get("where") != e.where:
            problems.append(f"{e.name!r}: report where {rep.get('where')!r}, expected {e.where!r} "
                            f"({rep.get('message', '')[:160]})")
        moved = rep.get("moved_to")
        # the report is written just before the move (a crash in between leaves the report): give it a moment
        deadline = time.monotonic() + 3
        while moved is not None and not os.path.lexists(self.state / "failed" / moved) and time.monotonic() < deadline:
            time.sleep(0.05)
        if moved is not None and not os.path.lexists(self.state / "failed" / moved):
            problems.append(f"{e.name!r}: report says moved_to {moved!r}, which is not in failed/")
        return problems

    good: list[tuple[dict[str, Any], dict[str, Any]]] = []


def c_logged(c: Campaign, event: str, name: str) -> bool:
    """Whether the daemon's log has ``event`` for file ``name``."""
    try:
        text = (c.work / "state.log").read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if f'"{event}"' in line:
            try:
                if json.loads(line).get("file") == name:
                    return True
            except ValueError:
                pass
    return False


def foreign_dir() -> str:
    """A directory dropped by another user (root) cannot be moved by the daemon (uid 65534):
    it stays in the inbox, logged once as input_stuck. The daemon's own directories go to failed/."""
    return "stuck" if os.geteuid() == 0 else "failed"


# -- the kinds ---------------------------------------------------------------------------------
KINDS: list[tuple[str, Callable[[Campaign], list[Expect]]]] = []


def kind(name: str) -> Callable:
    def deco(fn: Callable[[Campaign], list[Expect]]) -> Callable:
        KINDS.append((name, fn))
        return fn
    return deco


def simple(name: str, fname: str, lines_fn: Callable[[Gen], list[tuple[Any, tuple]]]) -> None:
    """A JSON Lines file: each entry (raw line, expectation) with expectation ok(None) = the record."""
    def make(c: Campaign) -> list[Expect]:
        entries = lines_fn(c.g)
        data = jl(*[raw for raw, _ in entries])
        exp = [ok(raw) if e == "OK" else e for raw, e in entries]
        c.put(fname, data)
        return [Expect(fname, "results", exp)]
    KINDS.append((name, make))


@kind("warmup_all_labels")
def _warm(c: Campaign) -> list[Expect]:
    recs = [c.g.rec(label=f"c{i}") for i in range(3)]
    c.put("warm.jsonl", jl(*recs))
    return [Expect("warm.jsonl", "results", [ok(r) for r in recs])]


# filesystem object kinds
@kind("fifo")
def _fifo(c: Campaign) -> list[Expect]:
    os.mkfifo(c.inbox / "pipe.jsonl")
    return [Expect("pipe.jsonl", "failed", reason="not_regular_file")]


@kind("fifo_with_writer_blocked")
def _fifo_writer(c: Campaign) -> list[Expect]:
    path = c.inbox / "pipe2.jsonl"
    os.mkfifo(path)

    def writer() -> None:  # blocks in open() until someone opens the read end; the daemon must not
        try:
            fd = os.open(path, os.O_WRONLY)
            os.write(fd, jl(c.g.rec()))
            os.close(fd)
        except OSError:
            pass
    threading.Thread(target=writer, daemon=True).start()
    return [Expect("pipe2.jsonl", "failed", reason="not_regular_file")]


@kind("unix_socket")
def _sock(c: Campaign) -> list[Expect]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(c.inbox / "sock.jsonl"))
    c._sock = s  # type: ignore[attr-defined]
    return [Expect("sock.jsonl", "failed", reason="not_regular_file")]


@kind("symlink_outside_state_dir")
def _sym_out(c: Campaign) -> list[Expect]:
    (c.src / "outside.jsonl").write_bytes(jl(c.g.rec()))
    os.symlink(c.src / "outside.jsonl", c.inbox / "link-out.jsonl")
    os.symlink("/etc/shadow", c.inbox / "shadow.txt")
    return [Expect("link-out.jsonl", "failed", reason="symlink"), Expect("shadow.txt", "failed", reason="symlink")]


@kind("symlink_dangling")
def _sym_dangling(c: Campaign) -> list[Expect]:
    os.symlink("/nonexistent/x.jsonl", c.inbox / "dangling.jsonl")
    return [Expect("dangling.jsonl", "failed", reason="symlink")]


@kind("symlink_loop")
def _sym_loop(c: Campaign) -> list[Expect]:
    os.symlink("loop-b.jsonl", c.inbox / "loop-a.jsonl")
    os.symlink("loop-a.jsonl", c.inbox / "loop-b.jsonl")
    return [Expect("loop-a.jsonl", "failed", reason="symlink"), Expect("loop-b.jsonl", "failed", reason="symlink")]


@kind("symlink_into_state_dir")
def _sym_state(c: Campaign) -> list[Expect]:
    os.symlink("../status.json", c.inbox / "status.json")
    os.symlink("../checkpoints", c.inbox / "ckpts.json")
    return [Expect("status.json", "failed", reason="symlink"), Expect("ckpts.json", "failed", reason="symlink")]


@kind("directory_with_files")
def _dir(c: Campaign) -> list[Expect]:
    d = c.inbox / "batch.jsonl"
    d.mkdir()
    (d / "inner.jsonl").write_bytes(jl(c.g.rec()))
    (c.inbox / "plaindir").mkdir()
    own = c.inbox / "own-dir.json"
    own.mkdir()
    (own / "inner.jsonl").write_bytes(jl(c.g.rec()))
    if os.geteuid() == 0:
        os.chown(own, NOBODY, NOBODY)
    return [Expect("batch.jsonl", foreign_dir(), reason="directory"),
            Expect("plaindir", foreign_dir(), reason="directory"), Expect("own-dir.json", "failed", reason="directory")]


@kind("zero_byte_each_format")
def _zero(c: Campaign) -> list[Expect]:
    out = []
    for ext in (".jsonl", ".json", ".npy", ".csv", ".txt"):
        c.put("zero" + ext, b"")
        out.append(Expect("zero" + ext, "failed", reason="empty"))
    return out


@kind("zero_byte_in_place")
def _zero_inplace(c: Campaign) -> list[Expect]:
    (c.inbox / "touched.jsonl").touch()
    return [Expect("touched.jsonl", "failed", reason="empty")]


@kind("whitespace_only")
def _ws(c: Campaign) -> list[Expect]:
    c.put("ws.jsonl", b" \n\r\n\t\n")
    c.put("ws.txt", b"\xef\xbb\xbf  \n")
    return [Expect("ws.jsonl", "failed", reason="empty"), Expect("ws.txt", "failed", reason="empty")]


@kind("growing_while_written_in_place")
def _growing(c: Campaign) -> list[Expect]:
    recs = [c.g.rec() for _ in range(6)]
    path = c.inbox / "slow.jsonl"
    fh = open(path, "wb")
    for r in recs:  # pauses shorter than the stale-write limit: one input with every line
        fh.write(json.dumps(r).encode()[:20])
        fh.flush()
        time.sleep(0.3)
        fh.write(json.dumps(r).encode()[20:] + b"\n")
        fh.flush()
        time.sleep(0.3)
    fh.close()
    return [Expect("slow.jsonl", "results", [ok(r) for r in recs])]


@kind("appended_after_close")
def _appended(c: Campaign) -> list[Expect]:
    # written, closed, admitted; then appended to in the inbox under the same name: a second input
    r1, r2 = c.g.rec(), c.g.rec()
    c.put("again.jsonl", jl(r1), how="inplace")
    c.wait(lambda: not (c.inbox / "again.jsonl").exists(), 30, "admission of again.jsonl")
    with open(c.inbox / "again.jsonl", "ab") as fh:
        fh.write(jl(r2))
    return [Expect("again.jsonl", "results", [ok(r1)]), Expect("again.jsonl", "results", [ok(r2)])]


@kind("truncated_during_admission")
def _trunc(c: Campaign) -> list[Expect]:
    bad = [json.dumps({"id": f"t{i}", "x": [0.5] * (DIM + 1)}) for i in range(200)]
    c.put("trunc.jsonl", jl(*bad))
    time.sleep(0.01)
    try:
        os.truncate(c.inbox / "trunc.jsonl", 1000)
    except FileNotFoundError:  # already admitted: truncate it in the queue instead, mid-read perhaps
        for p in (c.state / "queue").glob("*-trunc.jsonl"):
            os.truncate(p, 1000)
    return [Expect("trunc.jsonl", "any")]


@kind("chmod_000_after_drop")
def _chmod(c: Campaign) -> list[Expect]:
    recs = [json.dumps({"id": "p", "x": "nope"})]
    c.put("locked.jsonl", jl(*recs), mode=0o000)
    c.put("locked2.jsonl", jl(*recs))
    for p in [c.inbox / "locked2.jsonl", *(c.state / "queue").glob("*-locked2.jsonl")]:
        try:
            os.chmod(p, 0)
        except FileNotFoundError:
            pass
    return [Expect("locked.jsonl", "failed" if os.geteuid() == 0 else "any", reason="unreadable"),
            Expect("locked2.jsonl", "any")]


def _racy(c: Campaign, name: str) -> list[Expect]:
    """However a race went: each outcome recorded for ``name`` must be neutral (nothing learned)."""
    c.wait(lambda: not os.path.lexists(c.inbox / name) or (c.inbox / name).is_dir() and False, 30, f"{name} gone")
    time.sleep(1.0)
    res, fail = c._index()
    n = len(res.get(name, [])) + len(fail.get(name, [])) - c.claimed.get(name, 0)
    return [Expect(name, "any") for _ in range(max(n, 1))]


@kind("replaced_by_directory")
def _replaced(c: Campaign) -> list[Expect]:
    c.put("flip.jsonl", jl({"id": "f", "x": [1] * 3}), how="inplace")
    try:
        os.unlink(c.inbox / "flip.jsonl")
        os.mkdir(c.inbox / "flip.jsonl")
        if os.geteuid() == 0:
            os.chown(c.inbox / "flip.jsonl", NOBODY, NOBODY)
    except FileNotFoundError:
        pass
    return _racy(c, "flip.jsonl")


@kind("replaced_by_symlink")
def _replaced_sym(c: Campaign) -> list[Expect]:
    c.put("flip2.jsonl", jl({"id": "f", "x": [1] * 3}))
    try:
        os.unlink(c.inbox / "flip2.jsonl")
        os.symlink("/etc/passwd", c.inbox / "flip2.jsonl")
    except FileNotFoundError:
        pass
    return _racy(c, "flip2.jsonl")


@kind("hard_link_storm")
def _links(c: Campaign) -> list[Expect]:
    rec = c.g.rec(id="linked")
    (c.src / "linked.jsonl").write_bytes(jl(rec))
    names = [f"hl-{i:03d}.jsonl" for i in range(40)]
    for n in names:
        os.link(c.src / "linked.jsonl", c.inbox / n)
    return [Expect(n, "results", [ok(rec)]) for n in names]


@kind("thousand_tiny_files")
def _tiny(c: Campaign) -> list[Expect]:
    out = []
    tmp = c.src / "tiny"
    tmp.mkdir()
    for i in range(1000):
        n = f"tiny-{i:04d}.jsonl"
        if i % 50 == 0:
            r = c.g.rec()
            data, e = jl(r), Expect(n, "results", [ok(r)])
        elif i % 3 == 0:
            data, e = b"", Expect(n, "failed", reason="empty")
        else:
            data, e = jl({"id": i, "x": [0.1] * (DIM - 1)}), Expect(n, "results", [err("wrong_dimension", "line 1")])
        (tmp / n).write_bytes(data)
        out.append(e)
    for i in range(1000):  # renamed in, in order (same-ctime ties fall back to the name)
        n = f"tiny-{i:04d}.jsonl"
        os.rename(tmp / n, c.inbox / n)
    return out


# content kinds
@kind("nul_byte")
def _nul(c: Campaign) -> list[Expect]:
    c.put("nul.jsonl", jl(c.g.rec(), c.g.rec()) + b'{"id": "a\x00b"}\n')
    return [Expect("nul.jsonl", "failed", reason="binary", where="line 3")]


@kind("utf8_bom")
def _bom(c: Campaign) -> list[Expect]:
    r1, r2 = c.g.rec(), c.g.rec()
    c.put("bom.jsonl", b"\xef\xbb\xbf" + jl(r1, r2))
    r3 = c.g.rec()
    c.put("bom.json", b"\xef\xbb\xbf" + json.dumps(r3).encode())
    return [Expect("bom.jsonl", "results", [ok(r1), ok(r2)]), Expect("bom.json", "results", [ok(r3)])]


@kind("utf16_with_bom")
def _utf16(c: Campaign) -> list[Expect]:
    c.put("u16.jsonl", jl(c.g.rec()).decode().encode("utf-16"))
    c.put("u16.txt", "hello".encode("utf-16"))
    return [Expect("u16.jsonl", "failed", reason=("not_utf8", "binary")),
            Expect("u16.txt", "failed", reason=("not_utf8", "binary"))]


@kind("utf16le_without_bom")
def _utf16le(c: Campaign) -> list[Expect]:
    c.put("u16le.jsonl", jl(c.g.rec()).decode().encode("utf-16-le"))
    return [Expect("u16le.jsonl", "failed", reason="binary", where="line 1")]


@kind("invalid_utf8_in_a_string")
def _badutf8(c: Campaign) -> list[Expect]:
    r1 = c.g.rec()
    c.put("badutf8.jsonl", jl(r1, b'{"id": "\xff\xfe", "text": "x"}'))
    return [Expect("badutf8.jsonl", "failed", reason="not_utf8", where="line 2")]


@kind("lone_surrogates_escaped")
def _surrogates(c: Campaign) -> list[Expect]:
    r1 = c.g.rec()
    lines = [
        (json.dumps(r1), "OK"),
        ('{"id": "s\\ud800", "text": "lone \\udc00 surrogate"}', "TEXT"),
        ('{"id": "s2", "x": ' + json.dumps([0.5] * DIM) + ', "label": "\\ud800"}', err("bad_label", "line 3")),
    ]
    c.put("surrogate.jsonl", "\n".join(ln for ln, _ in lines).encode() + b"\n")
    return [Expect("surrogate.jsonl", "results", [ok(r1), err("bad_format", "line 2"), err("bad_label", "line 3")])]


@kind("json_number_edge_cases")
def _numbers(c: Campaign) -> list[Expect]:
    good_negzero = c.g.rec()
    good_negzero["x"][0] = -0.0
    raw_negzero = json.dumps(good_negzero).replace('"x": [-0.0', '"x": [-0')
    xs = json.dumps([0.5] * (DIM - 1))[1:-1]
    entries = [
        (raw_negzero, ok(good_negzero)),
        ('{"id": "big", "x": [1e400, ' + xs + "]}", err("non_finite", "line 2")),
        ('{"id": "nan", "x": [NaN, ' + xs + "]}", err("malformed_json", "line 3")),
        ('{"id": "inf", "x": [Infinity, ' + xs + "]}", err("malformed_json", "line 4")),
        ('{"id": "ninf", "x": [-Infinity, ' + xs + "]}", err("malformed_json", "line 5")),
        ('{"id": "huge", "x": [1.7e308, -1.7e308, ' + json.dumps([0.1] * (DIM - 2))[1:-1] + "]}",
         err("out_of_range", "line 6")),
        ('{"id": "digits", "x": [' + "9" * 5000 + ", " + xs + "]}", err("malformed_json", "line 7")),
        ('{"id": "bigint", "x": [' + str(2**64) + ", " + xs + "]}", "INT"),
        ('{"id": "tiny", "x": [5e-324, ' + xs + "]}", "TINY"),
        ('{"id": "hex", "x": [0x10, ' + xs + "]}", err("malformed_json", "line 10")),
        ('{"id": "plus", "x": [+1, ' + xs + "]}", err("malformed_json", "line 11")),
        ('{"id": "dot", "x": [.5, ' + xs + "]}", err("malformed_json", "line 12")),
    ]
    c.put("numbers.jsonl", "\n".join(ln for ln, _ in entries).encode() + b"\n")
    tiny = {"id": "tiny", "x": [5e-324] + [0.5] * (DIM - 1)}
    exp = [err("bad_format", "line 8") if e == "INT" else ok(tiny) if e == "TINY" else e for _, e in entries]
    return [Expect("numbers.jsonl", "results", exp)]


@kind("x_shapes_and_types")
def _xshapes(c: Campaign) -> list[Expect]:
    objs = [
        ({"id": 1, "x": [0.5] * (DIM + 1)}, "wrong_dimension"),
        ({"id": 2, "x": []}, "wrong_dimension"),
        ({"id": 3, "x": "0.5,0.5"}, "bad_format"),
        ({"id": 4, "x": {"0": 0.5}}, "bad_format"),
        ({"id": 5, "x": [[0.5] * DIM]}, "wrong_dimension"),
        ({"id": 6, "x": [[0.5], [0.5]]}, "wrong_dimension"),
        ({"id": 7, "x": [[0.5, 0.5], [0.5]]}, "bad_format"),
        ({"id": 8, "x": [None] * DIM}, "bad_format"),
        ({"id": 9, "x": ["0.5"] * DIM}, "bad_format"),
        ({"id": 10, "x": 0.5}, "wrong_dimension"),
        ({"id": 11, "x": [0.5] * 100000}, "wrong_dimension"),
        ({"id": 13, "x": None, "text": None}, "bad_format"),
        ({"id": 14}, "bad_format"),
        ({"id": 15, "x": [0.5] * DIM, "text": "both"}, "bad_format"),
        ({"id": 16, "x": [0.5] * DIM, "extra": 1}, "bad_format"),
        ({"id": 17, "text": ""}, "empty_text"),
        ({"id": 18, "text": " \t\n"}, "empty_text"),
        ({"id": 19, "text": 5}, "bad_format"),
        ({"id": 20, "text": "x" * 6000}, "bad_format"),
        ({"id": 21, "x": [{"a": 1}] * DIM}, "bad_format"),
    ]
    c.put("xshapes.jsonl", jl(*[o for o, _ in objs]))
    return [Expect("xshapes.jsonl", "results", [err(r, f"line {i + 1}") for i, (_, r) in enumerate(objs)])]


@kind("labels_valid_unusual")
def _labels_ok(c: Campaign) -> list[Expect]:
    r1 = c.g.rec(label=7)  # an int label: the 4th and last vocabulary slot
    r2 = c.g.rec(label=_DROP)
    r3 = c.g.rec(label=None)
    c.put("labels-ok.jsonl", jl(r1, r2, r3))
    return [Expect("labels-ok.jsonl", "results", [ok(r1), ok(r2), ok(r3)])]


@kind("labels_bad")
def _labels_bad(c: Campaign) -> list[Expect]:
    x = [0.5] * DIM
    objs = [
        ({"id": "lb1", "x": x, "label": True}, "bad_label"),
        ({"id": "lb2", "x": x, "label": ""}, "bad_label"),
        ({"id": "lb3", "x": x, "label": "  "}, "bad_label"),
        ({"id": "lb4", "x": x, "label": 1.5}, "bad_label"),
        ({"id": "lb5", "x": x, "label": ["c0"]}, "bad_label"),
        ({"id": "lb6", "x": x, "label": {"c": 0}}, "bad_label"),
        ({"id": "lb7", "x": x, "label": "L" * 1_000_00}, "bad_label"),
    ]
    c.put("labels-bad.jsonl", jl(*[o for o, _ in objs]))
    return [Expect("labels-bad.jsonl", "results", [err(r, f"line {i + 1}") for i, (_, r) in enumerate(objs)])]


@kind("more_labels_than_max_labels")
def _vocab(c: Campaign) -> list[Expect]:
    recs = [c.g.rec(label=f"new{i}") for i in range(6)]
    recs.append(c.g.rec(label="c1"))
    c.put("vocab.jsonl", jl(*recs))
    return [Expect("vocab.jsonl", "results",
                   [err("vocabulary_full", f"line {i + 1}") for i in range(6)] + [ok(recs[-1])])]


@kind("rewards")
def _rewards(c: Campaign) -> list[Expect]:
    x = [0.5] * DIM
    g1, g2, g3 = c.g.rec(reward=-0.0), c.g.rec(reward=1), c.g.rec(reward=-1.0, label=_DROP)
    lines = [
        (json.dumps(g1), ok(g1)), (json.dumps(g2), ok(g2)), (json.dumps(g3), ok(g3)),
        (json.dumps({"id": "r1", "x": x, "reward": 1.5}), err("bad_reward", "line 4")),
        ('{"id": "r2", "x": ' + json.dumps(x) + ', "reward": 1e400}', err("bad_reward", "line 5")),
        (json.dumps({"id": "r3", "x": x, "reward": "0.5"}), err("bad_reward", "line 6")),
        (json.dumps({"id": "r4", "x": x, "reward": True}), err("bad_reward", "line 7")),
        (json.dumps({"id": "r5", "x": x, "reward": -1.0000001}), err("bad_reward", "line 8")),
        (json.dumps({"id": "r6", "x": x, "reward": [0.5]}), err("bad_reward", "line 9")),
    ]
    c.put("rewards.jsonl", "\n".join(ln for ln, _ in lines).encode() + b"\n")
    return [Expect("rewards.jsonl", "results", [e for _, e in lines])]


@kind("ids_of_every_json_type")
def _ids(c: Campaign) -> list[Expect]:
    a, b = c.g.rec(id="dup"), c.g.rec(id="dup")
    i1, i2, i3 = c.g.rec(id=42), c.g.rec(id=10**30), c.g.rec(id=None)
    x = [0.5] * DIM
    bad = [{"id": 1.5, "x": x}, {"id": True, "x": x}, {"id": [1], "x": x}, {"id": {"a": 1}, "x": x}]
    c.put("ids.jsonl", jl(a, b, i1, i2, i3, *bad))
    return [Expect("ids.jsonl", "results",
                   [ok(a), ok(b), ok(i1), ok(i2), ok(i3)] + [err("bad_format", f"line {6 + i}") for i in range(4)])]


@kind("jsonl_line_shapes")
def _jsonl_shapes(c: Campaign) -> list[Expect]:
    r1, r2 = c.g.rec(), c.g.rec()
    data = (json.dumps(r1) + "\r\n" + "[1, 2]\n" + "\"str\"\n" + "null\n" + "\x0b\n" + json.dumps(r2) + "   \n"
            + "{\"id\": 1,}\n" + "{" * 100000 + "\n" + "{\"id\": \"trunc\", \"x\": [0.5")
    c.put("shapes.jsonl", data.encode())
    return [Expect("shapes.jsonl", "results",
                   [ok(r1), err("bad_format", "line 2"), err("bad_format", "line 3"), err("bad_format", "line 4"),
                                                 err("malformed_json", "line 5"), ok(r2),
                    err("malformed_json", "line 7"), err("malformed_json", "line 8"), err("malformed_json", "line 9")])]


@kind("huge_line_100MB_no_newline")
def _huge(c: Campaign) -> list[Expect]:
    path = c.src / "huge.jsonl"
    with open(path, "wb") as fh:
        fh.write(b'{"id": "huge", "text": "')
        chunk = b"a" * (1 << 20)
        for _ in range(100):
            fh.write(chunk)
    os.rename(path, c.inbox / "huge.jsonl")
    return [Expect("huge.jsonl", "failed", reason="oversized")]


@kind("huge_line_written_in_place")
def _huge_inplace(c: Campaign) -> list[Expect]:
    with open(c.inbox / "huge2.txt", "wb") as fh:
        for _ in range(20):
            fh.write(b"b" * (1 << 20))
    return [Expect("huge2.txt", "failed", reason="oversized")]


@kind("exactly_max_file_bytes")
def _exact(c: Campaign) -> list[Expect]:
    r = c.g.rec()
    line = json.dumps(r).encode()
    pad = MAX_FILE_BYTES - len(line) - 1
    c.put("exact.jsonl", line + b"\n" + b" " * (pad - 1) + b"\n")
    c.put("exact1.jsonl", line + b"\n" + b" " * pad + b"\n")
    return [Expect("exact.jsonl", "results", [ok(r)]), Expect("exact1.jsonl", "failed", reason="oversized")]


@kind("json_documents")
def _json_docs(c: Campaign) -> list[Expect]:
    r1, r2 = c.g.rec(), c.g.rec()
    c.put("list.json", json.dumps([r1, 5, r2, None], indent=2).encode())
    c.put("scalar.json", b"42")
    c.put("trailing.json", json.dumps(r1).encode() + b"\n\n{}")
    c.put("deep.json", b"[" * 200000 + b"]" * 200000)
    c.put("emptylist.json", b"[]")
    c.put("two.json", jl(r1, r2))
    return [Expect("list.json", "results",
                   [ok(r1), err("bad_format", "record 1"), ok(r2), err("bad_format", "record 3")]),
            Expect("scalar.json", "failed", reason="bad_format"),
            Expect("trailing.json", "failed", reason="malformed_json", where="line 3"),
            Expect("deep.json", "failed", reason="malformed_json"),
            Expect("emptylist.json", "failed", reason="empty"),
            Expect("two.json", "failed", reason="malformed_json", where="line 2")]


def _npy(arr: np.ndarray, **kw: Any) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, **kw)
    return buf.getvalue()


def _rows(arr: np.ndarray, stem: str) -> list[dict[str, Any]]:
    a = arr if arr.ndim == 2 else arr[None, :]
    return [{"id": f"{stem}:{i}", "x": [float(v) for v in row.astype(np.float64)]} for i, row in enumerate(a)]


@kind("npy_variants")
def _npy_kinds(c: Campaign) -> list[Expect]:
    rng = np.random.default_rng(5)
    good2 = rng.random((3, DIM))
    fortran = np.asfortranarray(rng.random((2, DIM)))
    f16 = rng.random(DIM).astype(np.float16)
    be = rng.random((2, DIM)).astype(">f8")
    ints = np.arange(DIM, dtype=np.int16)
    withnan = rng.random((2, DIM))
    withnan[1, 3] = np.nan
    c.put("n-good.npy", _npy(good2))
    c.put("n-fortran.npy", _npy(fortran))
    c.put("n-f16.npy", _npy(f16))
    c.put("n-be.npy", _npy(be))
    c.put("n-int.npy", _npy(ints))
    c.put("n-nan.npy", _npy(withnan))
    c.put("n-object.npy", _npy(np.array([{"a": 1}, None], dtype=object), allow_pickle=True))
    c.put("n-0d.npy", _npy(np.float64(1.0)))
    c.put("n-3d.npy", _npy(np.zeros((1, 2, DIM))))
    c.put("n-complex.npy", _npy(np.zeros(DIM, dtype=complex)))
    c.put("n-str.npy", _npy(np.array(["a"] * DIM)))
    c.put("n-struct.npy", _npy(np.zeros(DIM, dtype=[("a", "f8"), ("b", "i4")])))
    hdr = _npy(np.zeros((2, DIM)))
    c.put("n-hugeshape.npy",
          hdr.replace(b"(2, 8)", b"(10000000000000, 8)").replace(b"(2, 8), }", b"(10000000000000, 8), }"))
    c.put("n-hugeshape1d.npy", _npy(np.zeros(DIM)).replace(b"(8,)", b"(99999999999999999999,)"))
    c.put("n-negshape.npy", hdr.replace(b"(2, 8)", b"(-2, -8)"))
    c.put("n-trunc.npy", _npy(good2)[:-10])
    c.put("n-extra.npy", _npy(good2) + b"\x00" * 8)
    c.put("n-v3.npy", b"\x93NUMPY\x03\x00" + _npy(good2)[8:])
    c.put("n-badmagic.npy", b"\x93NUMPX" + _npy(good2)[6:])
    c.put("n-text.npy", b"just some text\n")
    c.put("n-empty2d.npy", _npy(np.zeros((0, DIM))))
    c.put("n-evilheader.npy", b"\x93NUMPY\x01\x00" + (lambda h: len(h).to_bytes(2, "little") + h)(
        b"{'descr': '<f8', 'fortran_order': False, 'shape': (__import__('os').getpid(),), }".ljust(118) + b"\n"))
    return [
        Expect("n-good.npy", "results", [ok(r) for r in _rows(good2, "n-good")]),
        Expect("n-fortran.npy", "results", [ok(r) for r in _rows(fortran, "n-fortran")]),
        Expect("n-f16.npy", "results", [ok(r) for r in _rows(f16, "n-f16")]),
        Expect("n-be.npy", "results", [ok(r) for r in _rows(be, "n-be")]),
        Expect("n-int.npy", "results", [ok(r) for r in _rows(ints, "n-int")]),
        Expect("n-nan.npy", "results", [ok(_rows(withnan, "n-nan")[0]), err("non_finite", "row 1")]),
        Expect("n-object.npy", "failed", reason="bad_npy"),
        Expect("n-0d.npy", "failed", reason="wrong_dimension"),
        Expect("n-3d.npy", "failed", reason="wrong_dimension"),
        Expect("n-complex.npy", "failed", reason="bad_npy"),
        Expect("n-str.npy", "failed", reason="bad_npy"),
        Expect("n-struct.npy", "failed", reason="bad_npy"),
        Expect("n-hugeshape.npy", "failed", reason=("too_many_records", "bad_npy")),
        Expect("n-hugeshape1d.npy", "failed", reason="bad_npy"),
        Expect("n-negshape.npy", "failed", reason="bad_npy"),
        Expect("n-trunc.npy", "failed", reason="bad_npy"),
        Expect("n-extra.npy", "failed", reason="bad_npy"),
        Expect("n-v3.npy", "failed", reason="bad_npy"),
        Expect("n-badmagic.npy", "failed", reason="bad_npy"),
        Expect("n-text.npy", "failed", reason="bad_npy"),
        Expect("n-empty2d.npy", "failed", reason="empty"),
        Expect("n-evilheader.npy", "failed", reason="bad_npy"),
    ]


def _csv_row(r: dict[str, Any]) -> str:
    return ",".join(repr(v) for v in r["x"])


@kind("csv_variants")
def _csv_kinds(c: Campaign) -> list[Expect]:
    hdr = ",".join(f"f{i}" for i in range(DIM))
    r1, r2, r3 = c.g.rec(label=_DROP), c.g.rec(label=_DROP), c.g.rec(label=_DROP)
    c.put("c-onlyheader.csv", (hdr + ",label\n").encode())
    c.put("c-semicolon.csv",
          (";".join(repr(v) for v in r1["x"]) + "\n" + ";".join(repr(v) for v in r2["x"]) + "\n").encode())
    c.put("c-tab.csv", ("\t".join(repr(v) for v in r1["x"]) + "\n").encode())
    c.put("c-unbalanced.csv", (_csv_row(r1) + '\n"0.5,' + _csv_row(r2)[4:] + "\n" + _csv_row(r3) + "\n").encode())
    c.put("c-nan.csv", ("nan," + _csv_row(r1).split(",", 1)[1] + "\n" + _csv_row(r2) + "\n").encode())
    c.put("c-blank.csv", b"\n\n  \n")
    c.put("c-ragged.csv", (hdr + ",label\n" + _csv_row(r1) + ",c0\n" + _csv_row(r2) + "\n").encode())
    c.put("c-labelonly.csv", b"label\nc0\n")
    lab = c.g.rec()
    c.put("c-header-label.csv",
          (hdr + ",label,id,reward\n" + _csv_row(lab) + f",{lab['label']},{lab['id']},0.25\n").encode())
    lab_rec = {**lab, "reward": 0.25}
    r1n = dict(r1, id=None)
    r3n = dict(r3, id=None)
    return [
        Expect("c-onlyheader.csv", "failed", reason="empty"),
        Expect("c-semicolon.csv", "failed", reason="bad_csv", where="line 1"),
        Expect("c-tab.csv", "failed", reason="bad_csv", where="line 1"),
        Expect("c-unbalanced.csv", "results", [ok(r1n), err("bad_csv", "line 2"), ok(r3n)]),
        Expect("c-nan.csv", "results", [err("non_finite", "line 1"), ok(dict(r2, id=None))]),
        Expect("c-blank.csv", "failed", reason="empty"),
        Expect("c-ragged.csv", "results", [ok(dict(r1, id=None, label="c0")), err("bad_format", "line 3")]),
        Expect("c-labelonly.csv", "results", [err("wrong_dimension", "line 2")]),
        Expect("c-header-label.csv", "results", [ok(lab_rec)]),
    ]


@kind("txt_variants")
def _txt(c: Campaign) -> list[Expect]:
    c.put("t-long.txt", b"w" * 6000)
    c.put("t-ok.txt", "d\u00e9j\u00e0 vu \u2028 line\n".encode())
    c.put("t-binary.txt", bytes(range(256)))
    c.put("t-crlf.txt", b"one\r\ntwo\r\n")
    return [Expect("t-long.txt", "results", [err("bad_format", "record 0")]),
            Expect("t-ok.txt", "results", [ok({"id": "t-ok", "text": "d\u00e9j\u00e0 vu \u2028 line\n"})]),
            Expect("t-binary.txt", "failed", reason=("binary", "not_utf8")),
            Expect("t-crlf.txt", "results", [ok({"id": "t-crlf", "text": "one\r\ntwo\r\n"})])]


@kind("odd_names")
def _names(c: Campaign) -> list[Expect]:
    r = [c.g.rec() for _ in range(8)]
    nfc, nfd = unicodedata.normalize("NFC", "caf\u00e9.jsonl"), unicodedata.normalize("NFD", "caf\u00e9.jsonl")
    good_names = ["-rf.jsonl", "--help.jsonl", nfc, nfd, "sp ace.jsonl", "UPPER.JSONL", "a.jsonl.results.jsonl",
                  "\u00e9t\u00e9 \U0001f600.jsonl"]
    out = []
    for name, rec in zip(good_names, r, strict=True):
        c.put(name, jl(rec))
        out.append(Expect(name, "results", [ok(rec)]))
    for name in ["new\nline.jsonl", "back\\slash.jsonl", "tab\there.jsonl", "\u202eevil.jsonl",
                 "\u00e9" * 120 + ".jsonl"]:
        c.put(name, jl(c.g.rec()))
        out.append(Expect(name, "failed", reason="bad_name"))
    c.put(b"latin1-\xe9.jsonl", jl(c.g.rec()))
    out.append(Expect(os.fsdecode(b"latin1-\xe9.jsonl"), "failed", reason="bad_name"))
    for name in ["noext", "x.JSONL.gz", "x.pdf"]:
        c.put(name, b"data")
        out.append(Expect(name, "failed", reason="unsupported_extension"))
    for name in [".jsonl", "..x.jsonl", "y.jsonl.part"]:
        c.put(name, jl(c.g.rec()))
        out.append(Expect(name, "stays"))
    return out


@kind("mtime_future_and_1970")
def _mtimes(c: Campaign) -> list[Expect]:
    r1, r2, r3 = c.g.rec(), c.g.rec(), c.g.rec()
    for name, rec, t in (("future.jsonl", r1, time.time() + 10 * 365 * 86400), ("epoch.jsonl", r2, 0),
                         ("neg.jsonl", r3, -86400 * 365)):
        p = c.src / name
        p.write_bytes(jl(rec))
        os.utime(p, (t, t))
        os.rename(p, c.inbox / name)
        time.sleep(0.02)
    return [Expect("future.jsonl", "results", [ok(r1)]), Expect("epoch.jsonl", "results", [ok(r2)]),
            Expect("neg.jsonl", "results", [ok(r3)])]


@kind("mtime_future_written_in_place")
def _mtime_inplace(c: Campaign) -> list[Expect]:
    r = c.g.rec()
    p = c.inbox / "future2.jsonl"
    p.write_bytes(jl(r))
    t = time.time() + 3600
    os.utime(p, (t, t))
    return [Expect("future2.jsonl", "results", [ok(r)])]


@kind("same_name_twice_quickly")
def _same_name(c: Campaign) -> list[Expect]:
    r1, r2 = c.g.rec(), c.g.rec()
    c.put("twice.jsonl", jl(r1))
    c.wait(lambda: not (c.inbox / "twice.jsonl").exists(), 30, "admission of twice.jsonl")
    c.put("twice.jsonl", jl(r2))
    return [Expect("twice.jsonl", "results", [ok(r1)]), Expect("twice.jsonl", "results", [ok(r2)])]


@kind("many_records_and_limit")
def _many(c: Campaign) -> list[Expect]:
    c.put("toomany.jsonl", jl(*[{"id": i, "x": [0.5] * DIM} for i in range(201)]))
    c.put("toomany.csv", ("\n".join(",".join(["0.5"] * DIM) for _ in range(201)) + "\n").encode())
    c.put("toomany.npy", _npy(np.zeros((201, DIM))))
    return [Expect(n, "failed", reason="too_many_records") for n in ("toomany.jsonl", "toomany.csv", "toomany.npy")]


@kind("inbox_file_deleted_right_after_drop")
def _deleted(c: Campaign) -> list[Expect]:
    c.put("gone.jsonl", jl({"id": "g", "x": [1]}))
    try:
        os.unlink(c.inbox / "gone.jsonl")
        return []
    except FileNotFoundError:
        return [Expect("gone.jsonl", "any")]


# -- signals -----------------------------------------------------------------------------------
def _big(c: Campaign, name: str, n: int) -> tuple[list[dict[str, Any]], Expect]:
    recs = [c.g.rec() for _ in range(n)]
    c.put(name, jl(*recs))
    return recs, Expect(name, "results", [ok(r) for r in recs])


def _mid(c: Campaign, name: str, at: int) -> None:
    step0 = c.status().get("step", 0)
    c.wait(lambda: c.status().get("current_file") == name and c.status().get("step", 0) >= step0 + at, 120,
           f"{name} half-way")


@kind("sighup_mid_file")
def _hup(c: Campaign) -> list[Expect]:
    _recs, e = _big(c, "hup.jsonl", 60)
    _mid(c, "hup.jsonl", 10)
    c.cfg.write_text(CONFIG.replace("settle_seconds = 0.5", "settle_seconds = 0.4"))
    c.proc.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    c.proc.send_signal(signal.SIGUSR1)
    c.proc.send_signal(signal.SIGHUP)
    return [e]


@kind("sigterm_mid_file_and_restart")
def _term(c: Campaign) -> list[Expect]:
    _recs, e = _big(c, "term.jsonl", 60)
    _mid(c, "term.jsonl", 12)
    c.proc.send_signal(signal.SIGTERM)
    rc = c.proc.wait(60)
    if rc != 0:
        c.crashes.append(f"sigterm: exit {rc}")
    recs = c.g.rec()
    c.put("while-down.jsonl", jl(recs))
    c.start()
    return [e, Expect("while-down.jsonl", "results", [ok(recs)])]


@kind("sigkill_mid_file_and_restart")
def _kill(c: Campaign) -> list[Expect]:
    _recs, e = _big(c, "kill.jsonl", 70)
    _mid(c, "kill.jsonl", 17)
    c.proc.send_signal(signal.SIGKILL)
    c.proc.wait(60)
    r = c.g.rec()
    c.put("while-dead.jsonl", jl(r))
    c.start()
    return [e, Expect("while-dead.jsonl", "results", [ok(r)])]


@kind("sigkill_during_a_link_storm")
def _kill_storm(c: Campaign) -> list[Expect]:
    rec = c.g.rec(id="storm")
    (c.src / "storm.jsonl").write_bytes(jl(rec))
    names = [f"st-{i:03d}.jsonl" for i in range(30)]
    for n in names:
        os.link(c.src / "storm.jsonl", c.inbox / n)
    c.wait(lambda: len(list((c.state / "queue").glob("*-st-*"))) >= 5, 60, "storm admission")
    c.proc.send_signal(signal.SIGKILL)
    c.proc.wait(60)
    c.start()
    return [Expect(n, "results", [ok(rec)]) for n in names]


@kind("sigkill_during_startup")
def _kill_start(c: Campaign) -> list[Expect]:
    r = c.g.rec()
    c.put("startup.jsonl", jl(r))
    c.proc.send_signal(signal.SIGTERM)
    c.proc.wait(60)
    c.proc = None
    for delay in (0.3, 1.0, 2.0):  # killed while importing, restoring, admitting
        proc = _raw_start(c)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
    c.start()
    return [Expect("startup.jsonl", "results", [ok(r)])]


def _raw_start(c: Campaign) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "fumd", "run", "--state-dir", str(c.state), "--config", str(c.cfg)]
    if os.geteuid() == 0:
        cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *cmd]
    out = open(c.work / "state.log", "ab")
    env = {**os.environ, "PYTHONPATH": str(CODE_DIR[0]), "OMP_NUM_THREADS": "1",
           "NUMBA_CACHE_DIR": str(c.work / "numba-cache"), "HOME": str(c.work)}
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(CODE_DIR[0]))


# -- reference and digest --------------------------------------------------------------------------
def _strip(line: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in line.items() if k not in ("latency_ms", "seq", "file", "record", "where", "id")}


def reference(c: Campaign, order: list[tuple[int, list[dict[str, Any]]]]) -> tuple[str, list[dict[str, Any]]]:
    ref = c.work / "reference"
    (ref / "inbox").mkdir(parents=True)
    for i, (_seq, recs) in enumerate(order):
        tmp = ref / "inbox" / f".r{i:05d}.tmp"
        tmp.write_bytes(jl(*[{k: v for k, v in r.items() if k != "id" or v is not None} for r in recs]))
        os.rename(tmp, ref / "inbox" / f"r{i:05d}.jsonl")
        time.sleep(0.005)
    proc = c.start(state=ref, extra=("--exit-when-idle",))
    rc = proc.wait(3600)
    assert rc == 0, f"reference run exited {rc}"
    lines = []
    for i in range(len(order)):
        p = ref / "outbox" / f"r{i:05d}.jsonl.results.jsonl"
        lines += [json.loads(s) for s in p.read_text().splitlines()]
    return _inspect(ref), lines


def _inspect(state: Path) -> str:
    out = subprocess.run([sys.executable, "-m", "fumd", "inspect", str(state)], capture_output=True, text=True,
                         timeout=300, cwd=str(CODE_DIR[0]))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["state_sha256"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/fumd-hostile")
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    c = Campaign(Path(args.work))
    c.good = []
    c.setup()
    t0 = time.monotonic()
    c.start()
    only = set(filter(None, args.only.split(",")))
    for name, make in KINDS:
        if only and name not in only:
            continue
        c.run_kind(name, make, timeout=180 if "tiny" in name or "storm" in name else 90)
    # the log: no tracebacks, no crash
    c.proc.send_signal(signal.SIGTERM)
    rc = c.proc.wait(120)
    if rc != 0:
        c.crashes.append(f"final stop: exit {rc}")
    digest = _inspect(c.state)
    # every learned record, in learning (seq, record) order, against a reference fed only those
    by_seq: dict[int, list[tuple[int, dict[str, Any], dict[str, Any]]]] = {}
    for line, rec in c.good:
        by_seq.setdefault(line["seq"], []).append((line["record"], line, rec))
    order = [(seq, [rec for _r, _l, rec in sorted(v, key=lambda t: t[0])]) for seq, v in sorted(by_seq.items())]
    campaign_lines = [ln for _seq, v in sorted(by_seq.items()) for _r, ln, _rec in sorted(v, key=lambda t: t[0])]
    ref_digest, ref_lines = reference(c, order)
    mismatched = [i for i, (a, b) in enumerate(zip(campaign_lines, ref_lines, strict=False)) if _strip(a) != _strip(b)]
    log = (c.work / "state.log").read_text(errors="replace")
    summary = {
        "kinds": len(c.results), "kinds_ok": sum(r["ok"] for r in c.results),
        "failed_kinds": {r["kind"]: r["problems"][:6] for r in c.results if not r["ok"]},
        "good_records_learned": len(campaign_lines), "reference_records": len(ref_lines),
        "results_mismatched_vs_reference": len(mismatched) + abs(len(campaign_lines) - len(ref_lines)),
        "first_mismatch": mismatched[:3],
        "state_sha256": digest, "reference_state_sha256": ref_digest, "digest_equal": digest == ref_digest,
        "abnormal_exits": c.crashes,
        "tracebacks_in_log": log.count("Traceback"),
        "failed_dir_files": len(list((c.state / "failed").glob("*.error.json"))),
        "results_files": len(list((c.state / "outbox").glob("*.results.jsonl"))),
        "inbox_left": sorted(os.listdir(c.inbox)),
        "wall_s": round(time.monotonic() - t0, 1),
    }
    print(json.dumps(summary, indent=1))
    good = (summary["kinds_ok"] == summary["kinds"] and summary["digest_equal"] and not c.crashes
            and summary["results_mismatched_vs_reference"] == 0)
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
