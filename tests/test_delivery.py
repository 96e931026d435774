"""Issue 14 item 1: a published result never changes. Once a results file is visible in outbox/ it
is final byte for byte, and no input is published twice, whatever crash or replay follows."""
from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest

from fumd.io.outbox import Outbox
from tests.daemon_harness import drop, inspect, kill, labelled_files, run_to_idle, start, status, wait_for


def _write_results(outbox: Outbox, seq: int, name: str, lines: list[dict]) -> None:
    assert outbox.begin(seq, name, 0)
    for line in lines:
        outbox.append(line)


def test_replay_of_a_published_input_changes_nothing(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    _write_results(outbox, 0, "a.jsonl", [{"seq": 0, "action": 1}, {"seq": 0, "action": 2}])
    target = outbox.publish(0, "a.jsonl")
    first = target.read_bytes()
    # a replay (the state came back from a checkpoint taken before the publication) computes
    # other values: they must go nowhere
    assert not outbox.begin(0, "a.jsonl", 0)
    outbox.append({"seq": 0, "action": 3})
    assert outbox.publish(0, "a.jsonl") == target
    assert target.read_bytes() == first
    # ... also when the consumer has taken the file away meanwhile
    shutil.move(target, tmp_path / "taken.jsonl")
    assert not outbox.begin(0, "a.jsonl", 0)
    outbox.publish(0, "a.jsonl")
    assert not target.exists() and not list(outbox.dir.glob("*.results.jsonl"))


def test_a_crash_inside_publication_ends_in_exactly_one_publication(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    outbox = Outbox(tmp_path)

    def crash(*_a: object) -> None:
        raise SystemExit("killed")

    # killed after the commit record, before the rename: the next start publishes the committed bytes
    _write_results(outbox, 0, "a.jsonl", [{"seq": 0, "action": 1}])
    outbox.partial_bytes()
    committed = outbox.partial_path(0).read_bytes()
    assert committed
    monkeypatch.setattr(Outbox, "_expose", crash)
    with pytest.raises(SystemExit):
        outbox.publish(0, "a.jsonl")
    monkeypatch.undo()
    assert not list(outbox.dir.glob("*.results.jsonl"))
    restarted = Outbox(tmp_path)
    assert [p.name for p in restarted.recover()] == ["a.jsonl.results.jsonl"]
    assert (outbox.dir / "a.jsonl.results.jsonl").read_bytes() == committed
    assert not restarted.begin(0, "a.jsonl", 0)  # and the replay leaves it alone

    # killed before the commit record: nothing visible, the replay publishes afresh
    _write_results(restarted, 1, "b.jsonl", [{"seq": 1, "action": 1}])
    monkeypatch.setattr("fumd.io.outbox.atomic_write_json", crash)
    with pytest.raises(SystemExit):
        restarted.publish(1, "b.jsonl")
    monkeypatch.undo()
    again = Outbox(tmp_path)
    assert again.recover() == [] and not (outbox.dir / "b.jsonl.results.jsonl").exists()
    assert not list(again.published_dir.glob("*.staged"))
    _write_results(again, 1, "b.jsonl", [{"seq": 1, "action": 2}])
    assert again.publish(1, "b.jsonl").read_bytes() == b'{"action": 2, "seq": 1}\n'

    # records go once no checkpoint can send the daemon back before them
    assert again.prune_records_below(1) == 1
    assert again.published(0) is None and again.published(1) is not None


def test_sigkill_after_publication_before_a_checkpoint_republishes_nothing(tmp_path: Path) -> None:
    """The issue's repro, in the shipped default mode (deterministic = false, 300 s checkpoints):
    results published, some taken by the consumer, SIGKILL before any checkpoint covers them,
    restart: the replay re-learns every record (final step = record count) but the results left
    in the outbox are byte-identical and the ones taken do not come back."""
    inputs = labelled_files(tmp_path / "src", 4, 6, seed=2, dim=64)
    cfg = tmp_path / "fumd.toml"
    cfg.write_text("[metrics]\nport = 0\n")
    state = tmp_path / "state"
    outbox = state / "outbox"
    proc = start(state, cfg)
    try:
        wait_for(lambda: status(state).get("pid") == proc.pid and status(state).get("phase") in ("running", "idle"),
                 timeout=120, what="daemon start")
        drop(inputs, state / "inbox")
        wait_for(lambda: len(list(outbox.glob("*.results.jsonl"))) == 4, timeout=120, what="4 results files")
        first = {p.name: p.read_bytes() for p in outbox.glob("*.results.jsonl")}
        taken = sorted(first)[:2]
        for name in taken:  # the consumer takes these as they appear
            shutil.move(outbox / name, tmp_path / name)
        assert not list((state / "checkpoints").glob("ckpt-*"))  # nothing covers them yet
    finally:
        kill(proc, signal.SIGKILL)
    run_to_idle(state, cfg, timeout=300)
    now = {p.name: p.read_bytes() for p in outbox.glob("*.results.jsonl")}
    assert sorted(now) == sorted(set(first) - set(taken))  # nothing taken came back, nothing new
    for name, data in now.items():
        assert data == first[name], f"{name} changed after publication"
    assert inspect(state)["step"] == 4 * 6  # every record re-learned once, none twice
    log = (tmp_path / "state.log").read_text()
    assert log.count("already published") == 4
    assert len(list((state / "done").iterdir())) == 4 and not list((state / "queue").iterdir())
    assert json.loads((tmp_path / taken[0]).read_text().splitlines()[0])["record"] == 0
