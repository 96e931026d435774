"""Prequential (test-then-train) evaluation through the daemon's own code path.

Per input, exactly what ``fumd.daemon.service.Daemon._run_record`` does with a record read from a
file: ``engine.cycle(record)`` (the engine decides -- ``result.correct`` is the test -- and only
then learns from the label), ``metrics.observe_cycle``, ``jobs.after_cycle(engine, result)`` and
``jobs.run_due(engine)``, with the jobs built by ``build_jobs``/``job_cadences`` from the
``[jobs.*]`` sections of the same ``ServiceConfig`` the daemon reads. The River baselines see the
same input, in the same order, predict, then learn.

``deterministic = true`` is forced by default (cycle-clock jobs, bit-reproducible runs); with
``deterministic = false`` the jobs' wall-clock triggers run in APScheduler as in the daemon.
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
import logging
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..errors import ConfigError
from .baselines import BASELINES, Baselines
from .streams import Sample, Stream, engine_record, river_x

# Buckets of the hashed text encoder for text streams (coding/text.py): at the daemon's default
# input_size of 64, an offline logistic regression on the encoder's own vectors reaches only 0.75 on
# `topics` (0.86 at 256), so 64 would measure hash collisions rather than learning.
TEXT_INPUT_SIZE = 256


@dataclass(frozen=True)
class Options:
    inputs: int = 1500  # stream length (shift: inputs / 2 per training domain)
    neurons: int | None = None  # network.neurons (None: the config's)
    jobs: bool = True  # False: every [jobs.*] section disabled
    learning: bool = True  # False: engine.learning_enabled = False throughout (the control)
    force_deterministic: bool = True  # False: keep the config's `deterministic`
    window: int = 100  # rolling-accuracy window (inputs)
    config: Mapping[str, Any] = field(default_factory=dict)  # the parsed --config TOML


def load_mapping(path: Path | None) -> dict[str, Any]:
    """The ``--config`` TOML as a mapping (validated later, per stream, by ``config_from_mapping``)."""
    if path is None:
        return {}
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def build_config(stream: Stream, seed: int, opts: Options) -> Any:
    """The ``ServiceConfig`` for one run: the user's TOML plus the run's overrides."""
    from ..daemon.config import config_from_mapping

    data: dict[str, Any] = copy.deepcopy(dict(opts.config))
    net = data.setdefault("network", {})
    if not isinstance(net, dict):
        raise ConfigError(f"network: expected a table, got {type(net).__name__}")
    user_network = dict(net)
    net["seed"] = seed
    if opts.neurons is not None:
        net["neurons"] = opts.neurons
    if stream.n_features is not None:
        net["input_size"] = stream.n_features
    elif "input_size" not in user_network:  # text: the hashing encoder's width, unless configured
        net["input_size"] = TEXT_INPUT_SIZE
    if "max_labels" not in user_network:  # one output population per class of the stream
        net["max_labels"] = max(2, len(stream.classes))
    if opts.force_deterministic:
        data["deterministic"] = True
    if not opts.jobs:
        jobs = data.setdefault("jobs", {})
        for name in job_names():
            section = jobs.setdefault(name, {}) if isinstance(jobs, dict) else None
            if not isinstance(section, dict):
                raise ConfigError(f"jobs.{name}: expected a table")
            section["enabled"] = False
    return config_from_mapping(data)


def job_names() -> list[str]:
    """Every ``[jobs.<name>]`` section the daemon knows."""
    from ..jobs.config import JobsConfig

    return [f.name for f in dataclasses.fields(JobsConfig)]


def quiet_logger(level: int = logging.WARNING) -> Any:
    """The JobRunner's logger: warnings and job failures as JSON lines on stderr (stdout is the summary)."""
    import structlog

    return structlog.wrap_logger(
        structlog.PrintLogger(file=sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso", utc=True),
                    structlog.processors.format_exc_info, structlog.processors.JSONRenderer()],
    ).bind(command="evaluate")


class DaemonLoop:
    """An Engine and its JobRunner, driven per record exactly as the daemon's loop drives them."""

    def __init__(self, config: Any, log: Any = None):
        from ..engine import Engine
        from ..jobs.registry import build_jobs, job_cadences
        from ..jobs.runner import JobRunner
        from ..ops.metrics import Metrics

        self.config = config
        self.engine = Engine(config.engine)
        self.metrics = Metrics()
        self.jobs = JobRunner(build_jobs(config.jobs, seed=config.engine.network.seed),
                              job_cadences(config.jobs, config.deterministic), config.deterministic,
                              self.metrics, log if log is not None else quiet_logger(), wake=lambda: None)
        self.jobs.start()
        self.seconds = 0.0
        self.cycles = 0

    def step(self, record: Mapping[str, Any]) -> Any:
        started = time.perf_counter()
        self.jobs.run_due(self.engine)  # the loop's top: plans computed off-loop (wall-clock mode only)
        result = self.engine.cycle(record)
        cycle_seconds = time.perf_counter() - started
        counts = self.engine.last_cycle_spikes.counts if self.engine.last_cycle_spikes is not None else None
        lif = self.engine.config.lif
        variance = (float((counts.float() * (1000.0 / (lif.steps * lif.dt_ms))).var())
                    if counts is not None and counts.numel() > 1 else 0.0)
        self.metrics.observe_cycle(result, cycle_seconds, variance)
        self.jobs.after_cycle(self.engine, result)
        self.jobs.run_due(self.engine)
        self.seconds += time.perf_counter() - started
        self.cycles += 1
        return result

    def job_counts(self) -> dict[str, dict[str, int]]:
        """Runs and failures per enabled job, from the same Prometheus counters the daemon exports."""
        reg = self.metrics.registry
        return {name: {"runs": int(reg.get_sample_value("fumd_job_runs_total", {"job": name}) or 0),
                       "failures": int(reg.get_sample_value("fumd_job_failures_total", {"job": name}) or 0)}
                for name in self.jobs.jobs}

    def close(self) -> None:
        self.jobs.wait_idle(self.engine)
        self.jobs.shutdown()


class Score:
    """One model's prequential accuracy: overall, over the last third, and a rolling window."""

    def __init__(self, n: int, window: int):
        from river import metrics, utils

        self.last_start = n - n // 3
        self.overall = metrics.Accuracy()
        self.last_third = metrics.Accuracy()
        self.rolling = utils.Rolling(metrics.Accuracy, window_size=window)
        self.curve: list[float] = []
        self.seen = 0

    def update(self, label: str, prediction: str) -> None:
        self.overall.update(label, prediction)
        if self.seen >= self.last_start:
            self.last_third.update(label, prediction)
        self.rolling.update(label, prediction)
        self.curve.append(float(self.rolling.obj.get()))  # the windowed metric (Rolling forwards to .obj)
        self.seen += 1

    def summary(self) -> dict[str, float]:
        return {"accuracy": float(self.overall.get()), "accuracy_last_third": float(self.last_third.get())}


@dataclass
class RunResult:
    stream: str
    seed: int
    protocol: str  # "prequential" | "shift"
    summary: dict[str, Any]
    log: list[dict[str, Any]]  # one entry per input
    curves: dict[str, list[float]]  # model -> rolling accuracy per input
    phases: list[tuple[str, int, int]]  # (name, first input, end) for the plots
    loop: DaemonLoop = dataclasses.field(repr=False)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _log_entry(i: int, phase: str, result: Any, predictions: Mapping[str, str]) -> dict[str, Any]:
    return {"i": i, "phase": phase, "label": result.label, "action": result.action, "correct": bool(result.correct),
            "total_reward": float(result.total_reward), "components": dict(result.components),
            "rate_hz": float(result.rate_hz), "learned": getattr(result, "learned", None),
            "feature_active": getattr(result, "feature_active", None), "baselines": dict(predictions)}


def _feed(loop: DaemonLoop, baselines: Baselines, stream: Stream, samples: Iterable[Sample], phase: str, start: int,
          scores: Mapping[str, Score] | None, log: list[dict[str, Any]], learn: bool) -> None:
    """Test-then-train (``learn``) or test only (learning off, baselines not updated) on ``samples``."""
    for k, sample in enumerate(samples):
        i = start + k
        x = river_x(stream, sample)
        predictions = baselines.step(x, sample[1]) if learn else baselines.predict(x)
        result = loop.step(engine_record(stream, sample, f"{stream.name}-{i}"))
        if scores is not None:
            scores["fumd"].update(sample[1], result.action)
            for name in BASELINES:
                scores[name].update(sample[1], predictions[name])
        log.append(_log_entry(i, phase, result, predictions))


def collapse_check(log: list[dict[str, Any]], classes: Iterable[str], skip: int | None = None) -> dict[str, Any]:
    """Decision shares against class shares after the first ``skip`` inputs (default min(200, n/2)).
    ``collapsed``: some action's share of decisions exceeds twice its class share."""
    n = len(log)
    skip = min(200, n // 2) if skip is None else skip
    tail = log[skip:]
    if not tail:
        return {"after": skip, "inputs": 0, "collapsed": False}
    m = len(tail)
    classes = list(classes)
    action_share = {c: 0.0 for c in classes}
    class_share = {c: 0.0 for c in classes}
    for e in tail:
        action_share[e["action"]] = action_share.get(e["action"], 0.0) + 1.0 / m
        class_share[e["label"]] = class_share.get(e["label"], 0.0) + 1.0 / m
    top = max(action_share, key=lambda a: action_share[a])
    ratios = {a: (s / class_share.get(a, 0.0) if class_share.get(a, 0.0) > 0 else (float("inf") if s > 0 else 0.0))
              for a, s in action_share.items()}
    worst = max(ratios.values()) if ratios else 0.0
    return {
        "after": skip, "inputs": m,
        "max_action": top, "max_action_share": round(action_share[top], 4),
        "class_share_of_max_action": round(class_share.get(top, 0.0), 4),
        "worst_share_ratio": None if worst == float("inf") else round(worst, 4),
        "collapsed": bool(worst > 2.0),
        "action_shares": {a: round(s, 4) for a, s in action_share.items()},
        "class_shares": {c: round(s, 4) for c, s in class_share.items()},
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def run_prequential(stream: Stream, seed: int, opts: Options, log: Any = None) -> RunResult:
    """One prequential pass of ``opts.inputs`` inputs through fumd's daemon loop and the baselines."""
    config = build_config(stream, seed, opts)
    loop = DaemonLoop(config, log)
    loop.engine.learning_enabled = opts.learning and loop.engine.learning_enabled
    baselines = Baselines(stream.kind)
    n = opts.inputs
    scores = {name: Score(n, opts.window) for name in ("fumd", *BASELINES)}
    entries: list[dict[str, Any]] = []
    try:
        _feed(loop, baselines, stream, itertools.islice(stream.samples(seed, n), n), "prequential", 0, scores, entries,
              learn=True)
    finally:
        loop.close()
    labels = [e["label"] for e in entries]
    fumd = scores["fumd"].summary()
    base = {name: {**scores[name].summary(), "seconds_per_input": baselines.seconds[name] / max(1, n)}
            for name in BASELINES}
    lr_last = base["logistic_regression"]["accuracy_last_third"]
    summary = {
        "fumd": {
            **fumd,
            "seconds_per_input": loop.seconds / max(1, n),
            "mean_rate_hz": sum(e["rate_hz"] for e in entries) / max(1, n),
            "mean_feature_active": _mean([e["feature_active"] for e in entries if e.get("feature_active") is not None]),
            "mean_total_reward": sum(e["total_reward"] for e in entries) / max(1, n),
            "collapse": collapse_check(entries, stream.classes),
            "jobs": loop.job_counts(),
            "learning": bool(loop.engine.learning_enabled),
        },
        "baselines": base,
        "ratio_last_third": _ratio(fumd["accuracy_last_third"], lr_last),
        "chance": 1.0 / len(stream.classes),
        "majority": max(labels.count(c) for c in set(labels)) / max(1, n) if labels else None,
        "inputs": n,
    }
    curves = {name: s.curve for name, s in scores.items()}
    return RunResult(stream.name, seed, "prequential", summary, entries, curves, [("prequential", 0, n)], loop)


def split_classes(stream: Stream) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Domains A and B of the shift protocol: the first and second half of the stream's classes."""
    half = len(stream.classes) // 2
    return stream.classes[:half], stream.classes[half:]


def run_shift(stream: Stream, seed: int, opts: Options, log: Any = None) -> RunResult:
    """Train on domain A, test A (learning off), train on B, test A again and test B (learning off).

    ``opts.inputs // 2`` training inputs per domain, ``max(20, opts.inputs // 5)`` held-out A inputs
    (the A records that follow the training ones), the same test inputs both times, and as many
    held-out B inputs (the B records that follow B's training ones). Retention =
    acc(A after B) / acc(A before B), for fumd and for each baseline; ``test_B_after`` is the
    other side of the trade (a learner that kept A by not learning B would show it there). The
    jobs run as configured throughout, test phases included."""
    config = build_config(stream, seed, opts)
    loop = DaemonLoop(config, log)
    learning = opts.learning and loop.engine.learning_enabled
    loop.engine.learning_enabled = learning
    baselines = Baselines(stream.kind)
    a, b = split_classes(stream)
    n_train, n_test = max(1, opts.inputs // 2), max(20, opts.inputs // 5)
    total = 2 * n_train + 2 * n_test
    a_stream = stream.samples(seed, total, a)
    train_a = list(itertools.islice(a_stream, n_train))
    test_a = list(itertools.islice(a_stream, n_test))
    b_stream = stream.samples(seed, total, b)
    train_b = list(itertools.islice(b_stream, n_train))
    test_b = list(itertools.islice(b_stream, n_test))
    names = ("fumd", *BASELINES)
    plan = [("train_A", train_a, True), ("test_A_before", test_a, False), ("train_B", train_b, True),
            ("test_A_after", test_a, False), ("test_B_after", test_b, False)]
    scores: dict[str, dict[str, Score]] = {}
    curves: dict[str, list[float]] = {name: [] for name in names}
    phases: list[tuple[str, int, int]] = []
    entries: list[dict[str, Any]] = []
    start = 0
    try:
        for phase, samples, train in plan:
            scores[phase] = {name: Score(len(samples), opts.window) for name in names}
            loop.engine.learning_enabled = learning if train else False
            _feed(loop, baselines, stream, samples, phase, start, scores[phase], entries, learn=train)
            for name in names:
                curves[name].extend(scores[phase][name].curve)
            phases.append((phase, start, start + len(samples)))
            start += len(samples)
    finally:
        loop.engine.learning_enabled = learning
        loop.close()

    def block(name: str) -> dict[str, Any]:
        acc = {phase: float(scores[phase][name].overall.get()) for phase, _s, _t in plan}
        return {**{f"{phase}_accuracy": v for phase, v in acc.items()},
                "retention": _ratio(acc["test_A_after"], acc["test_A_before"])}

    summary = {
        "domains": {"A": list(a), "B": list(b)},
        "degenerate": len(a) < 2 or len(b) < 2,  # one class per domain: "accuracy" is then a bias check
        "train_inputs_per_domain": n_train, "test_inputs": n_test,
        "fumd": {**block("fumd"), "seconds_per_input": loop.seconds / max(1, loop.cycles),
                 "jobs": loop.job_counts(), "learning": learning},
        "baselines": {name: block(name) for name in BASELINES},
        "chance_A": 1.0 / len(a) if a else None,
    }
    return RunResult(stream.name, seed, "shift", summary, entries, curves, phases, loop)
