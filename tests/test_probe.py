"""``fumd probe`` (issue #15 item 3): the figures' pure functions, the summary of a tiny network,
the network left untouched, the checkpoint path of the command and its errors."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fumd.analysis.probe import (
    CONVERGENCE_BINS,
    POPULATIONS,
    drive_shares,
    input_convergence,
    participation_ratio,
    population_masks,
    probe,
    repeatability,
)
from fumd.cli import main
from fumd.config import EngineConfig
from fumd.engine import Engine
from fumd.persistence.checkpoint import inspect_checkpoint, state_digest, write_checkpoint

INPUT_SIZE, CLASSES = 8, 3


def tiny_engine(seed: int = 3) -> Engine:
    return Engine(EngineConfig.from_mapping({"network": {"neurons": 1000, "seed": seed, "input_size": INPUT_SIZE,
                                                         "max_labels": CLASSES}, "deterministic": True}))


def blobs(n: int, seed: int = 0) -> list[tuple[list[float], str]]:
    """Three well-separated Gaussian classes in 8 dimensions."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(size=(CLASSES, INPUT_SIZE)) * 2.0
    labels = rng.integers(CLASSES, size=n)
    return [((centres[c] + 0.5 * rng.normal(size=INPUT_SIZE)).tolist(), f"c{c}") for c in labels]


# -- pure functions ----------------------------------------------------------------------------
def test_participation_ratio_of_rank_one_and_isotropic_counts() -> None:
    rng = np.random.default_rng(0)
    assert participation_ratio(rng.normal(size=(500,
                                                1)) @ rng.normal(size=(1, 40)) + 7.0) == pytest.approx(1.0, abs=1e-9)
    assert participation_ratio(rng.normal(size=(20000, 20))) == pytest.approx(20.0, rel=0.03)
    for shape in ((30, 80), (80, 30)):  # both Gram matrices agree with the eigenvalues
        x = rng.normal(size=shape) * rng.uniform(0.1, 3.0, size=shape[1])
        lam = np.linalg.eigvalsh(np.cov(x, rowvar=False))
        assert participation_ratio(x) == pytest.approx(lam.sum() ** 2 / (lam ** 2).sum(), rel=1e-9)
    assert participation_ratio(np.ones((10, 5))) is None and participation_ratio(np.ones((1, 5))) is None


def test_repeatability_is_the_mean_test_retest_correlation() -> None:
    rng = np.random.default_rng(1)
    signal = rng.normal(size=(4000, 30))
    assert repeatability(signal, signal) == (pytest.approx(1.0), 30)
    r, k = repeatability(signal, rng.normal(size=signal.shape))
    assert abs(r) < 0.05 and k == 30
    r, _ = repeatability(signal + rng.normal(size=signal.shape), signal + rng.normal(size=signal.shape))
    assert r == pytest.approx(0.5, abs=0.03)  # half of the variance is the input's
    silent = np.zeros((50, 3))
    assert repeatability(silent, silent) == (None, 0)


def test_drive_shares_and_convergence_on_a_hand_built_network() -> None:
    # neurons 0, 1 input; 2 recurrent excitatory; 3 inhibitory; 4, 5, 6 hidden targets
    pre = np.array([0, 0, 1, 2, 3])  # excitatory synapses first (positions < 4), then inhibitory
    post = np.array([4, 5, 4, 4, 4])
    w = np.array([0.5, 0.5, 0.25, 1.0, -0.5])
    counts = np.array([2.0, 4.0, 1.0, 2.0, 0.0, 0.0, 0.0])
    input_mask = np.array([1, 1, 0, 0, 0, 0, 0], dtype=bool)
    hidden = ~input_mask
    d = drive_shares(pre, post, w, 4, counts, input_mask, hidden, inhibition=3.0)
    assert d["input_share"] == pytest.approx(3.0 / 4.0)  # 0.5*2 + 0.5*2 + 0.25*4 from inputs, 1.0 recurrent
    assert d["inhibition_to_excitation"] == pytest.approx(3.0 * 0.5 * 2.0 / 4.0)
    c = input_convergence(pre, post, input_mask, hidden)
    assert c["count"] == {"0": 3, "1": 1, "2": 1, "3+": 0}  # hidden 2, 3, 6: none; 5: one; 4: two
    assert sum(c["share"].values()) == pytest.approx(1.0) and c["mean_hidden_per_input"] == pytest.approx(1.5)


# -- a tiny network ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def probed() -> tuple[dict[str, Any], str, str]:
    engine = tiny_engine()
    for features, label in blobs(20, seed=5):  # some learning first: a network with a history
        engine.cycle({"x": features, "label": label})
    before = state_digest(engine.state_dict())
    summary = probe(engine, blobs(300), warmup=40, repeats=80, folds=5, seed=0)
    return summary, before, state_digest(engine.state_dict())


def check_figures(s: dict[str, Any]) -> None:
    """Every figure is there and in its range."""
    pops = s["populations"]
    assert set(pops) == set(POPULATIONS)  # feature neurons by default (network.feature_neurons)
    assert pops["input"]["neurons"] + pops["output"]["neurons"] + pops["hidden"]["neurons"] == pops["all"]["neurons"]
    assert pops["input"]["neurons"] == 2 * INPUT_SIZE and pops["output"]["neurons"] == CLASSES * 32
    for name, p in pops.items():
        assert 0.0 < p["mean_rate_hz"] < 500.0, name
        assert 0.0 < p["active_fraction"] <= 1.0, name
        assert 1.0 <= p["participation_ratio"] <= p["neurons"], name
        assert -1.0 <= p["repeatability"] <= 1.0 and 0 < p["repeatability_neurons"] <= p["neurons"], name
        acc = p["cv_accuracy"]
        assert 0.0 <= acc["mean"] <= 1.0 and acc["std"] >= 0.0 and acc["folds"] == 5, name
    # the input neurons relay well-separated classes: readable, and their counts repeat
    assert pops["input"]["cv_accuracy"]["mean"] > 0.8 and pops["input"]["repeatability"] > 0.5
    assert s["raw_features"]["features"] == INPUT_SIZE and s["raw_features"]["cv_accuracy"]["mean"] > 0.9
    assert s["chance"] == pytest.approx(1.0 / CLASSES, abs=1e-3) and s["chance"] <= s["majority"] <= 1.0
    d = s["drive"]
    assert 0.0 < d["input_share"] < 1.0 and d["inhibition_to_excitation"] >= 0.0
    assert d["excitatory_from_input"] > 0.0 and d["excitatory_recurrent"] > 0.0
    c = s["convergence"]
    assert c["hidden_neurons"] == pops["hidden"]["neurons"] == sum(c["count"].values())
    assert list(c["share"]) == list(CONVERGENCE_BINS) and sum(c["share"].values()) == pytest.approx(1.0, abs=1e-3)
    assert c["mean_inputs_per_hidden"] >= 0.0 and c["mean_hidden_per_input"] > 0.0


def test_probe_reports_every_figure_in_range(probed) -> None:
    summary, _before, _after = probed
    assert (summary["inputs"], summary["warmup"], summary["repeats"]) == (300, 40, 80)
    check_figures(summary)


def test_probe_does_not_change_the_network(probed) -> None:
    _summary, before, after = probed
    assert before == after


def test_input_drive_share_is_one_without_recurrent_weights() -> None:
    engine = tiny_engine(seed=4)
    st = engine.state
    is_input = population_masks(st.input_idx.numpy(), st.output_idx.numpy(), st.n)["input"]
    recurrent = ~is_input[st.pre_index().numpy()]
    st.w[recurrent] = 0.0  # only the input neurons' synapses are left
    s = probe(engine, blobs(60), warmup=10, repeats=0, folds=2)
    assert s["drive"]["input_share"] == 1.0 and s["drive"]["excitatory_recurrent"] == 0.0
    assert s["drive"]["inhibitory"] == 0.0 and s["populations"]["input"]["mean_rate_hz"] > 0.0


# -- the command -------------------------------------------------------------------------------
def test_command_probes_a_checkpoint_without_touching_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    engine = tiny_engine(seed=6)
    for features, label in blobs(10, seed=7):
        engine.cycle({"x": features, "label": label})
    state = tmp_path / "state"
    write_checkpoint(state / "checkpoints", engine.state_dict(), {"config": engine.config.to_dict()},
                     step=engine.steps_done)
    digest = inspect_checkpoint(state)["state_sha256"]
    records = tmp_path / "blobs.jsonl"
    records.write_text("".join(json.dumps({"id": str(i), "x": x, "label": y}) + "\n" for i,
                               (x, y) in enumerate(blobs(400, seed=8))))
    out = tmp_path / "probe.json"
    code = main(["probe", "--state-dir", str(state), "--records", str(records), "--inputs", "250", "--warmup", "30",
                 "--repeats", "60", "--quiet", "--out", str(out)])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary == json.loads(out.read_text())
    assert summary["settings"]["network"] == "checkpoint" and summary["settings"]["step"] == 10
    assert summary["settings"]["records"] == str(records) and summary["inputs"] == 250
    check_figures(summary)
    assert inspect_checkpoint(state)["state_sha256"] == digest
    assert main(["probe", "--state-dir", str(state), "--records", str(records), "--inputs", "40", "--warmup", "0",
                 "--repeats", "20", "--folds", "2", "--quiet", "--table"]) == 0
    table = capsys.readouterr().out
    assert "hidden" in table and "input synapses per hidden neuron" in table


@pytest.mark.parametrize("args, message", [
    (["--stream", "nope", "--neurons", "500"], "unknown stream 'nope'"),
    (["--state-dir", "{tmp}/missing", "--stream", "rbf"], "no such state directory"),
    (["--state-dir", "{tmp}", "--stream", "rbf"], "no checkpoint"),
    (["--state-dir", "{tmp}", "--stream", "rbf", "--neurons", "500"],
     "--config and --neurons configure a fresh network"), ])
def test_bad_requests_fail_with_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    args: list[str], message: str) -> None:
    code = main(["probe", *[a.format(tmp=tmp_path) for a in args]])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("fumd: ") and message in err


def test_population_masks_feature_neurons_are_a_part_of_hidden() -> None:
    m = population_masks([0, 1], [[2, 3]], 8, feature_idx=[4, 5])
    assert m["feature"].tolist() == [False] * 4 + [True, True, False, False]
    assert bool(m["hidden"][m["feature"]].all()) and not bool((m["feature"] & (m["input"] | m["output"])).any())
