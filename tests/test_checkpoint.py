"""Crash-safe checkpoints (SPEC §9, issue 3 items 5-6): exact round trips in both formats, the
write protocol (LATEST, keep-K, sequence), and detection of every kind of damage with fallback to
the previous checkpoint."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from fumd.engine import Engine, states_equal
from fumd.persistence.checkpoint import (
    FORMATS,
    CheckpointError,
    LoadedCheckpoint,
    inspect_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_latest,
    snapshot,
    state_digest,
    write_checkpoint,
)
from tests.conftest import small_config


def record(i: int) -> dict:
    g = torch.Generator().manual_seed(1000 + i)
    return {"id": f"r{i}", "x": torch.rand(16, generator=g).tolist(), "label": f"c{i % 3}"}


def engine_from(state: dict) -> Engine:
    """A fresh engine holding a copy of ``state`` (Engine.load_state_dict keeps the given CPU
    tensors, so the fixture's state must not be handed over directly)."""
    engine = Engine(small_config())
    engine.load_state_dict(snapshot(state))
    return engine


@pytest.fixture(scope="module")
def trained() -> Engine:
    engine = Engine(small_config())
    for i in range(5):
        engine.cycle(record(i))
    return engine


@pytest.fixture(scope="module")
def state(trained) -> dict:
    return snapshot(trained.state_dict())


META = {"ledger": [{"file": "a.jsonl", "records": 5}], "queue_position": 5, "x": 0.1 + 0.2, "note": "ünïcode"}


def _write_two(directory: Path, state: dict, fmt: str) -> tuple[Path, Path, dict]:
    old = write_checkpoint(directory, state, META, step=5, fmt=fmt)
    engine = engine_from(state)
    engine.cycle(record(5))
    newer_state = snapshot(engine.state_dict())
    new = write_checkpoint(directory, newer_state, {"queue_position": 6}, step=6, fmt=fmt)
    return old.path, new.path, newer_state


@pytest.fixture(scope="module")
def pairs(tmp_path_factory, state) -> dict:
    """Per format, a directory with an older checkpoint of ``state`` (step 5) and a newer,
    different one (step 6); written once, copied by each test that damages it."""
    return {fmt: _write_two(tmp_path_factory.mktemp(fmt), state, fmt) for fmt in FORMATS}


@pytest.fixture
def two_checkpoints(tmp_path, pairs):
    def make(directory: Path, fmt: str = "zarr") -> tuple[Path, Path, dict]:
        old, new, newer_state = pairs[fmt]
        shutil.copytree(old.parent, directory, symlinks=True)
        return directory / old.name, directory / new.name, newer_state

    return make


def array_file(ckpt_dir: Path, fmt: str) -> Path:
    return ckpt_dir / ("state.zarr/network.w/c.0" if fmt == "zarr" else "state.h5")


# --- round trips ---------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_is_bit_identical_and_continues_identically(tmp_path, trained, state, fmt):
    ticks = []
    info = write_checkpoint(tmp_path, state, META, step=5, fmt=fmt, progress=lambda: ticks.append(1))
    assert info.format == fmt and info.step == 5 and info.bytes > 0 and info.seconds > 0 and ticks
    assert info.path.parent == tmp_path and info.path.name.startswith("ckpt-000000000005")

    loaded, meta = load_checkpoint(info.path)
    assert meta == META and repr(meta["x"]) == repr(0.1 + 0.2)
    assert states_equal(state, loaded)
    assert state_digest(loaded) == state_digest(state)
    for key, value in state.items():  # exact dtypes (float16 traces, uint8 RNG, bool tags), CPU
        if torch.is_tensor(value):
            assert loaded[key].dtype == value.dtype and loaded[key].shape == value.shape, key
            assert loaded[key].device.type == "cpu"
        else:
            assert type(loaded[key]) is type(value) and loaded[key] == value, key
    assert loaded["network.e"].dtype == torch.float16 and loaded["rng"].dtype == torch.uint8

    # an engine restored from the checkpoint continues exactly like the original
    original = engine_from(state)
    restored = engine_from(loaded)
    for i in range(5, 8):
        assert original.cycle(record(i)) == restored.cycle(record(i))
    assert states_equal(original.state_dict(), restored.state_dict())
    assert state_digest(original.state_dict()) == state_digest(restored.state_dict())


def test_engine_from_state_equals_build_then_load(tmp_path, state):
    """``Engine.from_state`` (the daemon's restore: no network built only to be overwritten) gives
    the state ``Engine(config)`` + ``load_state_dict`` gives, continues identically, and restores
    a checkpoint from before the feature pathway (no ``network.feature_idx``)."""
    info = write_checkpoint(tmp_path, state, META, step=5)
    loaded, _meta = load_checkpoint(info.path)
    direct = Engine.from_state(small_config(), snapshot(loaded))
    assert states_equal(direct.state_dict(), state)
    built = engine_from(loaded)
    for i in range(5, 8):
        assert built.cycle(record(i)) == direct.cycle(record(i))
    assert states_equal(built.state_dict(), direct.state_dict())

    old = {k: v for k, v in snapshot(loaded).items() if k != "network.feature_idx"}
    restored = Engine.from_state(small_config(), old)
    assert restored.state.feature_idx.numel() == 0
    assert states_equal({k: v for k, v in restored.state_dict().items() if k != "network.feature_idx"}, old)
    with pytest.raises(KeyError, match="network.w"):
        Engine.from_state(small_config(), {k: v for k, v in old.items() if k != "network.w"})
    # state from another fumd version: a clear refusal naming it, not a traceback or a silent drop
    newer = {**snapshot(loaded), "network.count_mean": torch.zeros(3)}
    with pytest.raises(CheckpointError, match=r"network\.count_mean.*another version of fumd"):
        Engine.from_state(small_config(), newer)
    with pytest.raises(CheckpointError, match=r"network\.count_mean"):
        engine_from(newer)


def test_edge_case_values_round_trip(tmp_path):
    odd = {
        "empty": torch.zeros(0, 3), "scalar_bf16": torch.tensor(1.5, dtype=torch.bfloat16),
        "transposed": torch.arange(12).reshape(3, 4).t(), "weird/key zarr.json": torch.tensor([True, False]),
        "neg_zero": torch.full((4,), -0.0, dtype=torch.float16),
        "f64": torch.tensor([1e-300, float("nan")], dtype=torch.float64),
        "float": 0.1 + 0.2, "inf": float("-inf"), "int": 2**62, "flag": True, "names": ["a", "b"], "none": None,
    }
    for fmt in FORMATS:
        info = write_checkpoint(tmp_path / fmt, odd, {}, step=0, fmt=fmt)
        loaded, _ = load_checkpoint(info.path)
        assert state_digest(loaded) == state_digest(odd), fmt  # raw bytes: -0.0 and NaN included
        assert loaded["transposed"].shape == (4, 3) and loaded["scalar_bf16"].shape == ()
        assert type(loaded["flag"]) is bool and type(loaded["int"]) is int


def test_digest_changes_after_a_cycle(trained, state):
    engine = engine_from(state)
    assert state_digest(engine.state_dict()) == state_digest(state)
    engine.cycle(record(99))
    assert state_digest(engine.state_dict()) != state_digest(state)
    # a snapshot is independent of the live state
    snap = snapshot(engine.state_dict())
    before = state_digest(snap)
    engine.cycle(record(100))
    assert state_digest(snap) == before != state_digest(engine.state_dict())


# --- write protocol ----------------------------------------------------------------------------
def test_keep_latest_pointer_and_sequence(tmp_path, state):
    infos = [write_checkpoint(tmp_path, state, {"i": i}, step=10 + i, keep=2, fmt=FORMATS[i % 2]) for i in range(4)]
    listed = list_checkpoints(tmp_path)
    assert listed == [infos[3].path, infos[2].path]
    assert (tmp_path / "LATEST").read_text().strip() == infos[3].path.name
    # a replaying run checkpoints an already-used step: unique name, and it is the newest
    again = write_checkpoint(tmp_path, state, {"i": "replay"}, step=11, keep=2, fmt="hdf5")
    assert again.path != infos[1].path and list_checkpoints(tmp_path)[0] == again.path
    loaded = load_latest(tmp_path)
    assert isinstance(loaded, LoadedCheckpoint) and loaded.path == again.path
    assert loaded.meta == {"i": "replay"} and loaded.skipped == []
    # keep=1 never deletes the one just written; nothing transient is left behind
    last = write_checkpoint(tmp_path, state, {}, step=20, keep=1, fmt="hdf5")
    assert list_checkpoints(tmp_path) == [last.path]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "LATEST", last.path.name]


def test_stale_temporary_dirs_are_cleaned_and_bad_requests_rejected(tmp_path, state):
    stale = tmp_path / ".tmp-ckpt-000000000009-000009-1234"
    stale.mkdir(parents=True)
    (stale / "junk").write_bytes(b"x")
    write_checkpoint(tmp_path, state, {}, step=1)
    assert not stale.exists()
    with pytest.raises(CheckpointError, match="format"):
        write_checkpoint(tmp_path, state, {}, step=2, fmt="npz")
    with pytest.raises(CheckpointError, match="keep"):
        write_checkpoint(tmp_path, state, {}, step=2, keep=0)
    with pytest.raises(CheckpointError, match="bad"):
        write_checkpoint(tmp_path, {**state, "bad": object()}, {}, step=2)
    with pytest.raises(CheckpointError, match="meta"):
        write_checkpoint(tmp_path, state, {"m": object()}, step=2)
    assert len(list_checkpoints(tmp_path)) == 1 and not list(tmp_path.glob(".tmp-*"))


def test_empty_or_missing_directory_has_no_checkpoint(tmp_path):
    assert load_latest(tmp_path) is None
    assert load_latest(tmp_path / "nope") is None
    assert list_checkpoints(tmp_path / "nope") == []


# --- damage detection and fallback ------------------------------------------------------------
def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


DAMAGE = {
    "flipped_byte": (lambda c, fmt: flip_byte(array_file(c, fmt)), "corrupt"),
    "truncated_file": (lambda c, fmt: truncate(array_file(c, fmt)), "truncated"),
    "missing_file": (lambda c, fmt: array_file(c, fmt).unlink(), "missing"),
    "missing_manifest": (lambda c, fmt: (c / "manifest.json").unlink(), "manifest missing"),
    "edited_manifest": (
        lambda c, fmt: (c / "manifest.json").write_text(
            (c / "manifest.json").read_text().replace('"queue_position": 6', '"queue_position": 7')),
        "manifest checksum",
    ),
    "truncated_manifest": (lambda c, fmt: truncate(c / "manifest.json"), "not valid JSON"),
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_newest_falls_back_to_previous(tmp_path, state, two_checkpoints, fmt, damage):
    old, new, _ = two_checkpoints(tmp_path / "c", fmt)
    harm, reason = DAMAGE[damage]
    harm(new, fmt)
    with pytest.raises(CheckpointError, match=reason):
        load_checkpoint(new)
    loaded = load_latest(tmp_path / "c")
    assert loaded.path == old and states_equal(loaded.state, state) and loaded.meta == META
    assert [p for p, _ in loaded.skipped] == [new]
    assert reason in loaded.skipped[0][1]


def test_partial_tmp_dir_is_ignored_and_reported(tmp_path, state, two_checkpoints):
    old, new, newer_state = two_checkpoints(tmp_path / "c")
    partial = tmp_path / "c" / ".tmp-ckpt-000000000007-000003-4242"  # a writer killed mid-write
    shutil.copytree(new, partial)
    (partial / "manifest.json").unlink()
    loaded = load_latest(tmp_path / "c")
    assert loaded.path == new and states_equal(loaded.state, newer_state)
    assert [p for p, _ in loaded.skipped] == [partial] and "interrupted write" in loaded.skipped[0][1]
    with pytest.raises(CheckpointError, match="manifest missing"):
        load_checkpoint(partial)


def test_latest_pointing_to_missing_dir_falls_back(tmp_path, state, two_checkpoints):
    old, new, _ = two_checkpoints(tmp_path / "c")
    shutil.rmtree(new)
    loaded = load_latest(tmp_path / "c")
    assert loaded.path == old and states_equal(loaded.state, state)
    assert loaded.skipped == [(new, f"LATEST points to {new.name}, which is missing")]
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(new)


def test_no_usable_checkpoint_is_an_error_not_a_fresh_start(tmp_path, state, two_checkpoints):
    old, new, _ = two_checkpoints(tmp_path / "c")
    flip_byte(array_file(new, "zarr"))
    (old / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="no usable checkpoint") as err:
        load_latest(tmp_path / "c")
    assert new.name in str(err.value) and old.name in str(err.value)


# --- inspect ------------------------------------------------------------------------------------
def test_inspect_checkpoint_summary(tmp_path, state, two_checkpoints):
    state_dir = tmp_path / "state"
    old, new, newer_state = two_checkpoints(state_dir / "checkpoints", "hdf5")
    by_dir = inspect_checkpoint(new)
    assert json.loads(json.dumps(by_dir, allow_nan=False)) == by_dir
    assert by_dir["state_sha256"] == state_digest(newer_state)
    assert by_dir["format"] == "hdf5" and by_dir["step"] == 6
    assert by_dir["bytes"] == sum(f.stat().st_size for f in new.rglob("*") if f.is_file())
    assert by_dir["neurons"] == 400 and by_dir["synapses"] == state["network.col"].numel()
    assert by_dir["arrays"]["network.e"] == {"dtype": "float16", "shape": list(state["network.e"].shape)}
    assert by_dir["meta_keys"] == ["queue_position"] and by_dir["created"]
    assert inspect_checkpoint(state_dir)["path"] == by_dir["path"]
    assert inspect_checkpoint(state_dir / "checkpoints")["state_sha256"] == by_dir["state_sha256"]
    flip_byte(array_file(new, "hdf5"))
    summary = inspect_checkpoint(state_dir)
    assert summary["state_sha256"] == state_digest(state) and summary["skipped"][0]["path"] == str(new)
    with pytest.raises(CheckpointError):
        inspect_checkpoint(new)


# --- a writer killed at a random moment ----------------------------------------------------------
WRITER = r"""
import sys, torch
from fumd.persistence.checkpoint import write_checkpoint
torch.set_num_threads(1)
g = torch.Generator().manual_seed(0)
state = {"w": torch.rand(1_000_000, generator=g), "e": torch.rand(500_000, generator=g).half(),
         "flag": torch.zeros(1000, dtype=torch.bool), "rng": g.get_state(), "step": 0}
for step in range(1, 10_000):
    state["w"][step] = step
    state["step"] = step
    write_checkpoint(sys.argv[1], state, {"step": step}, step=step, keep=2)
    print(step, flush=True)
"""


def test_sigkill_during_writes_leaves_a_loadable_newest(tmp_path):
    import random
    import signal
    import subprocess
    import sys
    import time

    directory = tmp_path / "ckpts"
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(directory)], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parents[1])
    try:
        written = [int(child.stdout.readline()) for _ in range(2)]
        time.sleep(random.uniform(0.0, 0.3))  # somewhere inside a later write
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    loaded = load_latest(directory)
    assert loaded is not None and loaded.state["step"] >= written[-1] and loaded.meta == {"step": loaded.state["step"]}
    assert float(loaded.state["w"][loaded.state["step"]]) == loaded.state["step"]
    assert all(p.name.startswith(".tmp-") for p, _ in loaded.skipped)
    write_checkpoint(directory, loaded.state, loaded.meta, step=loaded.state["step"] + 1, keep=2)
    assert not list(directory.glob(".tmp-*")) and len(list_checkpoints(directory)) == 2
