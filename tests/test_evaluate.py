"""``fumd evaluate`` (issue #9): streams, the prequential loop through the daemon's JobRunner, River
baselines, the JSON summary and its PNGs, the shift protocol and the learning-off control.

These tests check the harness, not fumd's accuracy (the learning rule has its own tests). They use
small networks and short streams so the whole file runs in seconds. River is in the ``test`` extra
(setup.sh installs it): a missing River fails here rather than skipping."""
from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from fumd.cli import main
from fumd.evaluation import EvaluationError
from fumd.evaluation.baselines import BASELINES, Baselines
from fumd.evaluation.prequential import (
    Options,
    Score,
    build_config,
    job_names,
    run_prequential,
    run_shift,
    split_classes,
)
from fumd.evaluation.streams import STREAMS, engine_record, get_stream, parse_streams, river_x

# a small network: fast enough for unit tests; input_size is the text stream's (numeric streams set their own)
NETWORK = {"neurons": 300, "synapses_per_neuron": 20, "input_size": 16, "population_size": 4}
# cheap jobs on short cadences, so that a run of ~100 inputs sees several runs of each
CHEAP_JOBS = {"decay": {"every_cycles": 10}, "persistence": {"every_cycles": 15},
              "clustering": {"enabled": False}, "tuning": {"enabled": False},
              "structural": {"enabled": False}, "criticality": {"every_cycles": 20}}


def options(**kw) -> Options:
    base = {"inputs": 60, "window": 20, "config": {"network": dict(NETWORK), "jobs": CHEAP_JOBS}}
    base.update(kw)
    return Options(**base)


# -- (a) streams ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(STREAMS))
def test_stream_is_deterministic_and_well_formed(name: str) -> None:
    stream = get_stream(name)
    first = stream.take(80, seed=3)
    assert first == stream.take(80, seed=3), "same seed, same stream"
    assert first != stream.take(80, seed=4), "another seed, another stream"
    assert len(first) == 80
    for features, label in first:
        assert isinstance(label, str) and label in stream.classes
        if stream.kind == "text":
            assert isinstance(features, str) and features.strip()
        else:
            assert isinstance(features, list) and len(features) == stream.n_features == len(stream.feature_names)
            assert all(isinstance(v, float) and math.isfinite(v) for v in features)
        record = engine_record(stream, (features, label), "r")
        assert record["label"] == label and ("text" in record) == (stream.kind == "text")
        x = river_x(stream, (features, label))
        assert list(x.values()) == ([features] if stream.kind == "text" else features)
    assert len({label for _f, label in stream.take(400, seed=3)}) >= 2


def test_stream_class_filter_and_repeats() -> None:
    iris = get_stream("iris")
    a, b = split_classes(iris)
    assert a == ("setosa",) and b == ("versicolor", "virginica")
    assert {label for _f, label in iris.take(50, seed=0, classes=b)} == set(b)
    # a small data set is repeated, each pass a fresh permutation of all 150 flowers
    rows = iris.take(300, seed=0)
    first, second = rows[:150], rows[150:]
    assert sorted(map(str, first)) == sorted(map(str, second)) and first != second


def test_unknown_stream_is_refused() -> None:
    with pytest.raises(EvaluationError, match="unknown stream 'nope'"):
        parse_streams("iris,nope")
    assert [s.name for s in parse_streams(None)] == list(STREAMS)


def test_evaluate_help_names_every_stream(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    text = "".join(capsys.readouterr().out.split())  # argparse wraps the list anywhere
    listed = text.split("comma-separated:")[1].split("(default")[0]
    assert set(listed.split(",")) == set(STREAMS)


# -- config ---------------------------------------------------------------------------------------
def test_config_overrides() -> None:
    iris, topics = get_stream("iris"), get_stream("topics")
    nondeterministic = {"network": dict(NETWORK), "deterministic": False}
    cfg = build_config(iris, 7, options(config=nondeterministic, neurons=350))
    assert cfg.deterministic and cfg.engine.network.seed == 7 and cfg.engine.network.neurons == 350
    assert cfg.engine.network.input_size == 4
    assert cfg.engine.network.readout_fan_in <= 4  # until the engine copes with few features itself
    assert not build_config(iris, 0, options(config=nondeterministic, force_deterministic=False)).deterministic
    assert build_config(topics, 0, options()).engine.network.input_size == NETWORK["input_size"]
    off = build_config(iris, 0, options(jobs=False))
    assert not any(section.enabled for _name, section in off.jobs.items())
    assert [section for _name, section in off.jobs.items()] == [getattr(off.jobs, name) for name in job_names()]


# -- (b) the daemon's loop: engine.cycle, then the JobRunner --------------------------------------
def test_prequential_goes_through_the_job_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    from fumd.engine import Engine
    from fumd.jobs.runner import JobRunner

    calls: list[str] = []
    for cls, method in ((Engine, "cycle"), (JobRunner, "after_cycle"), (JobRunner, "run_due")):
        original = getattr(cls, method)

        def spy(self, *args, _original=original, _name=method, **kw):
            calls.append(_name)
            return _original(self, *args, **kw)

        monkeypatch.setattr(cls, method, spy)
    run = run_prequential(get_stream("iris"), 0, options(inputs=40))
    # per record, as Daemon._loop/_run_record: run_due (loop top), cycle, after_cycle, run_due
    assert calls[:8] == ["run_due", "cycle", "after_cycle", "run_due"] * 2
    assert calls.count("cycle") == calls.count("after_cycle") == 40
    jobs = run.summary["fumd"]["jobs"]
    assert set(jobs) == {"decay", "persistence", "criticality"}
    assert jobs["decay"]["runs"] == 40 // 10 and jobs["persistence"]["runs"] >= 1 and jobs["criticality"]["runs"] >= 1
    assert all(j["failures"] == 0 for j in jobs.values())
    assert run.loop.jobs.cycles == 40


def test_jobs_off_runs_no_job() -> None:
    run = run_prequential(get_stream("iris"), 0, options(inputs=30, jobs=False))
    assert run.summary["fumd"]["jobs"] == {} and run.loop.jobs.jobs == {}
    assert run.loop.jobs.cycles == 30  # the runner still sees every cycle


# -- (c) baselines --------------------------------------------------------------------------------
@pytest.mark.parametrize("name,floor", [("iris", 0.8), ("wine", 0.9)])
def test_baselines_learn_an_easy_stream(name: str, floor: float) -> None:
    stream = get_stream(name)
    n = 450
    baselines = Baselines(stream.kind)
    scores = {model: Score(n, 50) for model in BASELINES}
    for sample in stream.take(n, seed=0):
        predictions = baselines.step(river_x(stream, sample), sample[1])
        for model, y in predictions.items():
            scores[model].update(sample[1], y)
    assert scores["logistic_regression"].summary()["accuracy_last_third"] > floor
    assert all(scores[m].summary()["accuracy_last_third"] > 0.6 for m in BASELINES)


def test_text_baselines_learn_topics() -> None:
    stream = get_stream("topics")
    baselines = Baselines("text")
    score = Score(600, 50)
    for sample in stream.take(600, seed=0):
        score.update(sample[1], baselines.step(river_x(stream, sample), sample[1])["logistic_regression"])
    assert score.summary()["accuracy_last_third"] > 0.6  # chance 0.25


# -- (d) the command: JSON summary and PNGs -------------------------------------------------------
@pytest.fixture(scope="module")
def cli_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    tmp = tmp_path_factory.mktemp("evaluate")
    cfg = tmp / "fumd.toml"
    lines = ["[network]"] + [f"{k} = {v}" for k, v in NETWORK.items()]
    for job, section in CHEAP_JOBS.items():
        lines.append(f"[jobs.{job}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in section.items()]
    cfg.write_text("\n".join(lines) + "\n")
    out = tmp / "out"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["evaluate", "--streams", "iris,topics", "--inputs", "30", "--seeds", "0,1", "--config", str(cfg),
                   "--window", "10", "--out", str(out), "--quiet"])
    assert rc == 0
    return json.loads(buf.getvalue()), out


def test_summary_has_the_fields(cli_run: tuple[dict, Path]) -> None:
    summary, out = cli_run
    settings = summary["settings"]
    assert settings["protocol"] == "prequential" and settings["seeds"] == [0, 1] and settings["inputs"] == 30
    assert settings["deterministic"] is True and settings["jobs"] == "on" and settings["neurons"] == 300
    assert set(summary["streams"]) == {"iris", "topics"}
    for block in summary["streams"].values():
        assert set(block["seeds"]) == {"0", "1"}
        for run in block["seeds"].values():
            fumd = run["fumd"]
            for key in ("accuracy", "accuracy_last_third", "seconds_per_input", "mean_rate_hz", "collapse", "jobs"):
                assert key in fumd, key
            assert 0.0 <= fumd["accuracy"] <= 1.0 and fumd["seconds_per_input"] > 0
            assert {"max_action_share", "class_share_of_max_action", "collapsed", "after"} <= set(fumd["collapse"])
            assert set(run["baselines"]) == set(BASELINES)
            for model in run["baselines"].values():
                assert 0.0 <= model["accuracy_last_third"] <= 1.0
            lr = run["baselines"]["logistic_regression"]["accuracy_last_third"]
            if lr:
                assert run["ratio_last_third"] == pytest.approx(fumd["accuracy_last_third"] / lr, rel=1e-3, abs=1e-3)
            assert run["chance"] == pytest.approx(1 / len(block["classes"]), abs=1e-3)
            lines = Path(run["records"]).read_text().splitlines()
            assert len(lines) == 30
            entry = json.loads(lines[0])
            assert {"label", "action", "correct", "total_reward", "components", "rate_hz", "baselines"} <= set(entry)
        assert "ratio_last_third" in block["mean"]
    suite = summary["suite"]
    assert suite["streams"] == 2 and "mean_ratio_last_third" in suite and "collapsed_streams" in suite
    assert json.loads((out / "summary.json").read_text())["suite"] == suite


def test_pngs_exist(cli_run: tuple[dict, Path]) -> None:
    from matplotlib.image import imread

    summary, out = cli_run
    for name in ("iris", "topics"):
        for seed in (0, 1):
            path = out / f"{name}-seed{seed}.png"
            assert summary["streams"][name]["seeds"][str(seed)]["plot"] == str(path)
            image = imread(path)
            assert image.shape[0] > 400 and image.shape[1] > 400
            assert float(np.std(image)) > 0.01  # not blank


def test_same_seed_same_summary(cli_run: tuple[dict, Path]) -> None:
    summary, _out = cli_run
    again = run_prequential(get_stream("iris"), 1, options(inputs=30, window=10))
    first = summary["streams"]["iris"]["seeds"]["1"]
    assert again.summary["fumd"]["accuracy"] == pytest.approx(first["fumd"]["accuracy"], abs=1e-4)
    assert again.summary["baselines"]["logistic_regression"]["accuracy"] == pytest.approx(
        first["baselines"]["logistic_regression"]["accuracy"], abs=1e-4)


# -- (e) the learning-off control, and the shift protocol ----------------------------------------
def _plastic_state(engine) -> dict[str, torch.Tensor]:
    st = engine.state
    return {"w": st.w.clone(), "e": st.e.clone(), "v_th": st.v_th.clone(), "tau_mem": st.tau_mem.clone()}


def test_learning_off_leaves_the_network_unchanged() -> None:
    from fumd.engine import Engine

    iris = get_stream("iris")
    opts = options(inputs=40, jobs=False, learning=False)
    run = run_prequential(iris, 0, opts)
    assert run.summary["fumd"]["learning"] is False and not run.loop.engine.learning_enabled
    assert all(entry["correct"] in (True, False) for entry in run.log)
    fresh = _plastic_state(Engine(build_config(iris, 0, opts).engine))
    after = _plastic_state(run.loop.engine)
    for key, tensor in fresh.items():
        assert torch.equal(tensor, after[key]), key
    assert run.loop.engine.steps_done == 40


def test_shift_protocol_reports_retention() -> None:
    iris = get_stream("iris")
    run = run_shift(iris, 0, options(inputs=20, jobs=False))
    s = run.summary
    assert s["domains"] == {"A": ["setosa"], "B": ["versicolor", "virginica"]} and s["degenerate"]
    assert [p[0] for p in run.phases] == ["train_A", "test_A_before", "train_B", "test_A_after", "test_B_after"]
    assert len(run.log) == 2 * 10 + 3 * 20  # inputs / 2 per training domain, max(20, inputs / 5) test inputs
    test_b = [e for e in run.log if e["phase"] == "test_B_after"]
    assert {e["label"] for e in test_b} <= {"versicolor", "virginica"}
    for block in (s["fumd"], *s["baselines"].values()):
        for key in ("train_A_accuracy", "test_A_before_accuracy", "train_B_accuracy", "test_A_after_accuracy",
                    "test_B_after_accuracy", "retention"):
            assert key in block
    before, after = s["fumd"]["test_A_before_accuracy"], s["fumd"]["test_A_after_accuracy"]
    assert s["fumd"]["retention"] == (pytest.approx(after / before) if before else None)
    # the test phases ran with learning off, and the engine's own setting is back afterwards
    assert run.loop.engine.learning_enabled
    assert {e["phase"] for e in run.log} == {"train_A", "test_A_before", "train_B", "test_A_after", "test_B_after"}
    assert all(e["label"] == "setosa" for e in run.log if e["phase"].startswith("test_A"))
    assert all(e["learned"] is e["phase"].startswith("train") for e in run.log)


def test_parity_stream_labels_are_the_parity_of_three_bits_with_five_percent_noise() -> None:
    samples = get_stream("parity").take(2000, seed=1)
    agree = [int(x[0]) ^ int(x[1]) ^ int(x[2]) == int(y) for x, y in samples]
    assert all(v in (0.0, 1.0) for x, _y in samples for v in x)
    assert 0.93 <= sum(agree) / len(agree) <= 0.97
