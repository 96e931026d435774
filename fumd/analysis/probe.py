"""``fumd probe``: what a network's populations make of a stream, measured offline (issue #15).

The engine is driven with learning off over a stream, on a snapshot of its state that is restored
afterwards (the network, the encoder's statistics, V, the RNG: ``state_digest`` is the same before
and after), and the spike count of every neuron over each input's cycle is recorded. From the
``[inputs, neurons]`` count matrix and the synapse list, per population (``input``: the encoder's
relay neurons; ``output``: the readout populations; ``hidden``: every other neuron; ``all``):

- ``cv_accuracy``: k-fold cross-validated accuracy (stratified, shuffled with the seed; the same
  folds for every population) of ``StandardScaler + LogisticRegression`` reading the counts, and
  of the same pipeline on the raw input features (``raw_features``) for reference. scikit-learn,
  offline, diagnostic only: nothing here is in the learning path.
- ``participation_ratio``: ``(sum l)^2 / sum l^2`` of the eigenvalues ``l`` of the counts'
  covariance, the number of dimensions the activity spreads over (1: all neurons move together;
  n: n independent, equally varied directions).
- ``mean_rate_hz``, ``active_fraction`` (neurons that spiked at least once).
- ``repeatability``: the first ``repeats`` inputs are shown again after the pass; per neuron the
  Pearson correlation, over those inputs, between its counts in the two presentations (the
  test-retest reliability: under ``count = signal(input) + noise`` it is the share of the count
  variance that the input determines), averaged over the neurons whose counts vary in both.

For the hidden population, from the weights and the mean counts:

- ``drive``: excitatory drive onto hidden neurons, ``sum w * mean presynaptic count`` over the
  excitatory synapses onto them, split into what comes from input neurons and from the other
  (recurrent) neurons; ``input_share`` = input / (input + recurrent). ``inhibition_to_excitation``
  is the inhibitory drive (``|w|`` times the global inhibition gain) over the excitatory total.
- ``convergence``: how many hidden neurons receive 0, 1, 2, 3+ synapses from input neurons.

Nothing heavy is imported at module level beyond numpy (torch, scikit-learn, the engine and River
are imported where used); the command imports this module only when it runs. See docs/probe.md.
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import FumdError, InputError

if TYPE_CHECKING:
    from ..engine import Engine

POPULATIONS = ("input", "feature", "output", "hidden", "all")
CONVERGENCE_BINS = ("0", "1", "2", "3+")
Sample = tuple[Any, Any]  # (features: numbers or a str, label or None)


class ProbeError(FumdError):
    """A bad ``fumd probe`` request (missing state directory, stream of the wrong width, ...)."""


# -- the figures: pure functions of count matrices and the synapse list ------------------------
def participation_ratio(counts: Any) -> float | None:
    """``(sum l)^2 / sum l^2`` of the covariance eigenvalues of ``counts`` [samples, neurons];
    None without two samples or without any variance. Computed from the smaller Gram matrix
    (``tr C = |X|_F^2``, ``tr C^2 = |X^T X|_F^2`` for centred X; the 1/(n-1) factors cancel)."""
    x = np.asarray(counts, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] == 0:
        return None
    x = x - x.mean(0)
    gram = x @ x.T if x.shape[0] <= x.shape[1] else x.T @ x
    total = float(np.trace(gram))
    if total <= 0.0:
        return None
    return total * total / float(np.sum(gram * gram))


def repeatability(first: Any, second: Any) -> tuple[float | None, int]:
    """Mean over neurons of the Pearson correlation between two presentations' counts
    (``first``, ``second``: [inputs, neurons], the same inputs in the same order), over the neurons
    whose counts vary in both; and how many neurons that is. (None, 0) when there are none."""
    a = np.asarray(first, dtype=np.float64)
    b = np.asarray(second, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[0] < 2:
        return None, 0
    a = a - a.mean(0)
    b = b - b.mean(0)
    norm = np.sqrt((a * a).sum(0) * (b * b).sum(0))
    ok = norm > 0
    if not ok.any():
        return None, 0
    r = (a * b).sum(0)[ok] / norm[ok]
    return float(r.mean()), int(ok.sum())


def cv_accuracy(features: Any, labels: Sequence[Any] | None, folds: int = 5, seed: int = 0) -> dict[str, Any] | None:
    """Stratified, shuffled ``folds``-fold accuracy of ``StandardScaler + LogisticRegression``
    on ``features`` [samples, d]: ``{"mean", "std", "folds"}``; None without labels, with one
    class, or with a class seen once. Constant columns are dropped (a silent neuron carries
    nothing); with none left the model sees one constant column and predicts the majority."""
    if labels is None:
        return None
    y = np.asarray([str(v) for v in labels])
    _classes, per_class = np.unique(y, return_counts=True)
    k = min(int(folds), int(per_class.min()))
    if len(per_class) < 2 or k < 2:
        return None
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(features, dtype=np.float64)
    x = x[:, x.std(0) > 0] if x.ndim == 2 else x.reshape(len(y), -1)
    if x.shape[1] == 0:
        x = np.zeros((len(y), 1))
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(model, x, y, cv=StratifiedKFold(k, shuffle=True, random_state=seed))
    return {"mean": float(scores.mean()), "std": float(scores.std()), "folds": k}


def drive_shares(pre: Any, post: Any, w: Any, n_exc_synapses: int, mean_counts: Any, input_mask: Any,
                 hidden_mask: Any, inhibition: float = 1.0) -> dict[str, Any]:
    """Synaptic drive onto hidden neurons per input, ``sum w * mean presynaptic count`` (per hidden
    neuron): excitatory synapses (positions below ``n_exc_synapses``) from input neurons and from
    the rest, and the inhibitory drive (``|w| * inhibition``). ``input_share`` = input / all
    excitatory (None when there is no excitatory drive)."""
    pre, post = np.asarray(pre, dtype=np.int64), np.asarray(post, dtype=np.int64)
    w, counts = np.asarray(w, dtype=np.float64), np.asarray(mean_counts, dtype=np.float64)
    input_mask, hidden_mask = np.asarray(input_mask, dtype=bool), np.asarray(hidden_mask, dtype=bool)
    contribution = w * counts[pre]
    onto = hidden_mask[post]
    exc = np.arange(len(w)) < n_exc_synapses
    from_input = float(contribution[exc & onto & input_mask[pre]].sum())
    recurrent = float(contribution[exc & onto & ~input_mask[pre]].sum())
    inhibitory = float(-contribution[~exc & onto].sum()) * inhibition
    excitatory = from_input + recurrent
    per = max(1, int(hidden_mask.sum()))
    return {
        "input_share": from_input / excitatory if excitatory > 0 else None,
        "excitatory_from_input": from_input / per,
        "excitatory_recurrent": recurrent / per,
        "inhibitory": inhibitory / per,
        "inhibition_to_excitation": inhibitory / excitatory if excitatory > 0 else None,
    }


def input_convergence(pre: Any, post: Any, input_mask: Any, hidden_mask: Any) -> dict[str, Any]:
    """How many hidden neurons receive 0, 1, 2, 3+ synapses from input neurons (shares and
    counts), the mean number per hidden neuron, and how many hidden neurons each input neuron
    reaches on average (divergence)."""
    pre, post = np.asarray(pre, dtype=np.int64), np.asarray(post, dtype=np.int64)
    input_mask, hidden_mask = np.asarray(input_mask, dtype=bool), np.asarray(hidden_mask, dtype=bool)
    n = len(input_mask)
    sel = input_mask[pre] & hidden_mask[post]
    per_hidden = np.bincount(post[sel], minlength=n)[hidden_mask]
    per_input = np.bincount(pre[sel], minlength=n)[input_mask]
    binned = np.minimum(per_hidden, 3)
    counts = {name: int((binned == k).sum()) for k, name in enumerate(CONVERGENCE_BINS)}
    total = max(1, len(per_hidden))
    return {
        "hidden_neurons": int(len(per_hidden)),
        "share": {name: c / total for name, c in counts.items()},
        "count": counts,
        "mean_inputs_per_hidden": float(per_hidden.mean()) if len(per_hidden) else None,
        "mean_hidden_per_input": float(per_input.mean()) if len(per_input) else None,
    }


def population_masks(input_idx: Any, output_idx: Any, n: int, feature_idx: Any = ()) -> dict[str, np.ndarray]:
    """Boolean masks over the ``n`` neurons: input, feature (the feature neurons, a part of
    hidden), output (every readout population), hidden (neither input nor output), all."""
    is_input = np.zeros(n, dtype=bool)
    is_input[np.asarray(input_idx, dtype=np.int64).reshape(-1)] = True
    is_output = np.zeros(n, dtype=bool)
    is_output[np.asarray(output_idx, dtype=np.int64).reshape(-1)] = True
    is_feature = np.zeros(n, dtype=bool)
    is_feature[np.asarray(feature_idx, dtype=np.int64).reshape(-1)] = True
    return {"input": is_input, "feature": is_feature, "output": is_output, "hidden": ~(is_input | is_output),
            "all": np.ones(n, dtype=bool)}


# -- driving the engine -----------------------------------------------------------------------
def engine_input(features: Any) -> dict[str, Any]:
    """The unlabelled record the engine sees (no label: nothing enters the vocabulary)."""
    return {"text": features} if isinstance(features, str) else {"x": np.asarray(features, dtype=np.float64)}


def raw_features(engine: Engine, samples: Sequence[Sample]) -> np.ndarray:
    """The input features as a matrix: numeric vectors as given, text as fumd's own hashed n-gram
    vectors (``coding/text.py``), the engine's width."""
    from ..coding.text import text_features

    enc = engine.config.encoder
    size = engine.config.network.input_size
    rows = [text_features(f, size, enc.text_ngram_max) if isinstance(f, str) else np.asarray(f, dtype=np.float64)
            for f, _label in samples]
    return np.stack(rows) if rows else np.zeros((0, size))


def record_counts(engine: Engine, inputs: Sequence[Any], progress: Callable[[int], None] | None = None) -> np.ndarray:
    """One engine cycle per input (features or text); the spike count of every neuron in each
    cycle, [inputs, neurons] int32. Learning is whatever ``engine.learning_enabled`` says."""
    rows = []
    for features in inputs:
        engine.cycle(engine_input(features))
        record = engine.last_cycle_spikes
        assert record is not None  # Engine.cycle just set it
        rows.append(record.counts.cpu().numpy().astype(np.int32))
        if progress is not None:
            progress(1)
    return np.stack(rows) if rows else np.zeros((0, engine.state.n), dtype=np.int32)


def probe(engine: Engine, samples: Sequence[Sample], *, warmup: int = 200, repeats: int = 200, folds: int = 5,
          seed: int = 0, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Every figure of the module docstring for ``samples`` [(features, label | None)].

    Order of presentation: the first ``warmup`` samples (not recorded: the encoder's running
    statistics and V settle), every sample (recorded), the first ``repeats`` samples again
    (recorded, for ``repeatability``). Learning is off throughout and the engine's state is
    restored afterwards, whatever happens."""
    from ..persistence.checkpoint import snapshot

    if not samples:
        raise ProbeError("no inputs to probe")
    warmup, repeats = max(0, min(warmup, len(samples))), max(0, min(repeats, len(samples)))
    features = [f for f, _label in samples]
    saved = snapshot(engine.state_dict())
    was_learning, last_spikes = engine.learning_enabled, engine.last_cycle_spikes
    engine.learning_enabled = False
    started = time.perf_counter()
    try:
        record_counts(engine, features[:warmup], progress)
        counts = record_counts(engine, features, progress)
        again = record_counts(engine, features[:repeats], progress)
    finally:
        engine.load_state_dict(saved)
        engine.learning_enabled, engine.last_cycle_spikes = was_learning, last_spikes
    simulated = time.perf_counter() - started

    st, cfg = engine.state, engine.config
    cycle_s = cfg.lif.steps * cfg.lif.dt_ms / 1000.0
    masks = population_masks(st.input_idx.cpu().numpy(), st.output_idx.cpu().numpy(), st.n,
                             st.feature_idx.cpu().numpy())
    given = [label for _f, label in samples]
    labels = None if any(label is None for label in given) else [str(label) for label in given]
    populations = {}
    for name in POPULATIONS:
        m = masks[name]
        if name == "feature" and not m.any():  # a network without feature neurons (the default)
            continue
        x = counts[:, m]
        rep, rep_neurons = repeatability(counts[:repeats][:, m], again[:, m])
        populations[name] = {
            "neurons": int(m.sum()),
            "mean_rate_hz": float(x.mean() / cycle_s) if x.size else None,
            "active_fraction": float((x.sum(0) > 0).mean()) if x.size else None,
            "cv_accuracy": cv_accuracy(x, labels, folds, seed) if m.any() else None,
            "participation_ratio": participation_ratio(x),
            "repeatability": rep,
            "repeatability_neurons": rep_neurons,
        }
    raw = raw_features(engine, samples)
    pre, post = st.pre_index().cpu().numpy(), st.col.cpu().numpy()
    mean_counts = counts.mean(0)
    out: dict[str, Any] = {
        "inputs": len(samples), "warmup": warmup, "repeats": repeats,
        "classes": sorted(set(labels)) if labels else [],
        "chance": 1.0 / len(set(labels)) if labels else None,
        "majority": max(labels.count(c) for c in set(labels)) / len(labels) if labels else None,
        "populations": populations,
        "raw_features": {"features": int(raw.shape[1]), "cv_accuracy": cv_accuracy(raw, labels, folds, seed)},
        "drive": drive_shares(pre, post, st.w.cpu().numpy(), st.n_exc_synapses, mean_counts, masks["input"],
                              masks["hidden"], float(st.global_inhibition)),
        "convergence": input_convergence(pre, post, masks["input"], masks["hidden"]),
    }
    out["seconds"] = {"simulate": simulated, "analyse": time.perf_counter() - started - simulated}
    return out


# -- the command --------------------------------------------------------------------------------
def load_network(state_dir: Path) -> tuple[Any, dict[str, Any]]:
    """The engine of a state directory's newest valid checkpoint (or of a checkpoints directory),
    built with the engine config the checkpoint was written with."""
    from ..config import EngineConfig
    from ..engine import Engine
    from ..persistence.checkpoint import load_latest

    state_dir = Path(state_dir)
    if not state_dir.is_dir():
        raise ProbeError(f"{state_dir}: no such state directory")
    directory = state_dir / "checkpoints" if (state_dir / "checkpoints").is_dir() else state_dir
    loaded = load_latest(directory)
    if loaded is None:
        raise ProbeError(f"{state_dir}: no checkpoint in {directory}")
    saved = loaded.meta.get("config")
    if not isinstance(saved, Mapping):
        raise ProbeError(f"{loaded.path}: the checkpoint does not record its engine config (meta.config)")
    engine = Engine.from_state(EngineConfig.from_mapping(saved), loaded.state)
    return engine, {"network": "checkpoint", "checkpoint": str(loaded.path), "step": engine.steps_done}


def read_records(path: Path, limit: int) -> list[tuple[str, dict[str, Any]]]:
    """The first ``limit`` records of an input file in any format the daemon reads (JSON Lines,
    JSON, CSV, .npy); a record the reader cannot parse is an error naming its position."""
    from ..io.readers import RecordProblem, read_input_file

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ProbeError(f"{path}: cannot read the records file ({exc.strerror or exc})") from None
    records: list[tuple[str, dict[str, Any]]] = []
    for item in read_input_file(data, path.name, max_records=len(data) + 1):  # no cap: a file has fewer
        if isinstance(item.record, RecordProblem):
            raise ProbeError(f"{path} {item.record.message}")
        records.append((item.where, item.record))
        if len(records) >= limit:
            break
    return records


def _records_stream(path: Path, records: list[tuple[str, dict[str, Any]]]) -> Any:
    """A stand-in ``Stream`` for a records file, so that a fresh network is configured exactly as
    ``fumd evaluate`` configures one for a stream (input width, one population per label)."""
    from ..evaluation.streams import Stream

    first_x = next((r["x"] for _w, r in records if isinstance(r.get("x"), (list, tuple))), None)
    labels = sorted({str(r["label"]) for _w, r in records if r.get("label") is not None})
    kind, names = ("text", ("text",)) if first_x is None else ("numeric", tuple(range(len(first_x))))
    return Stream(path.name, kind, names, tuple(labels), f"records from {path}", factory=None)  # type: ignore[arg-type]


def run_probe(*, state_dir: Path | None = None, config: Path | None = None, neurons: int | None = None, seed: int = 0,
              stream: str | None = None, records: Path | None = None, inputs: int = 2000, warmup: int = 200,
              repeats: int = 200, folds: int = 5, progress: Callable[[int], None] | None = None,
              progress_total: Callable[[int], None] | None = None) -> dict[str, Any]:
    """``fumd probe``: build or load the network, read the stream, probe, return the JSON summary."""
    if (stream is None) == (records is None):
        raise ProbeError("give exactly one of --stream NAME or --records FILE")
    if state_dir is not None and (config is not None or neurons is not None):
        raise ProbeError("--config and --neurons configure a fresh network; a checkpoint (--state-dir) carries its own")
    if inputs < 10:
        raise ProbeError(f"--inputs {inputs}: at least 10 inputs are needed")
    if folds < 2 or warmup < 0 or repeats < 0:
        raise ProbeError("--folds must be >= 2, --warmup and --repeats >= 0")
    if state_dir is not None and not Path(state_dir).is_dir():
        raise ProbeError(f"{state_dir}: no such state directory")
    if stream is not None:
        from ..evaluation.streams import get_stream

        source = get_stream(stream)
        raw_records = None
    else:
        assert records is not None  # exactly one of stream and records, checked above
        raw_records = read_records(records, inputs)
        source = _records_stream(Path(records), raw_records)

    if state_dir is not None:
        engine, origin = load_network(state_dir)
    else:
        from ..engine import Engine
        from ..evaluation.prequential import Options, build_config, load_mapping

        engine = Engine(build_config(source, seed, Options(neurons=neurons, config=load_mapping(config))).engine)
        origin = {"network": "fresh", "checkpoint": None, "step": engine.steps_done}
    cfg = engine.config
    width = cfg.network.input_size
    if source.n_features is not None and source.n_features != width:
        raise ProbeError(f"{source.name}: {source.n_features} features per input, but the network's input_size is "
                         f"{width}"
                         + (" (probe it with --records of that width)" if state_dir is not None else ""))
    samples: list[Sample]
    if raw_records is None:
        samples = source.take(inputs, seed)
    else:
        from ..records import parse_record

        samples = []
        for where, data in raw_records:
            try:
                rec = parse_record(data, width, cfg.encoder.max_text_chars)
            except InputError as exc:
                raise ProbeError(f"{records} {where}: {exc}") from None
            samples.append((rec.x if rec.x is not None else rec.text, rec.label))
    n_warm, n_rep = min(warmup, len(samples)), min(repeats, len(samples))
    if progress_total is not None:
        progress_total(n_warm + len(samples) + n_rep)
    figures = probe(engine, samples, warmup=warmup, repeats=repeats, folds=folds, seed=seed, progress=progress)
    settings = {
        **origin, "neurons": engine.state.n, "synapses": engine.state.nnz, "network_seed": cfg.network.seed,
        "stream": stream, "records": None if records is None else str(records), "stream_seed": seed if stream else None,
        "input_size": width, "steps_per_input": cfg.lif.steps, "folds": folds,
    }
    from ..evaluation.report import rounded

    return rounded({"settings": settings, **figures})


def _num(value: Any, fmt: str = "{:.3f}") -> str:
    return "-" if value is None else fmt.format(value)


def format_table(summary: Mapping[str, Any]) -> str:
    """A short human reading of a probe summary."""
    s = summary["settings"]
    source = s["stream"] or s["records"]
    where = (f"checkpoint {s['checkpoint']} (step {s['step']})" if s["network"] == "checkpoint"
             else f"fresh network (seed {s['network_seed']})")
    lines = [f"fumd probe: {source}, {summary['inputs']} inputs; {where}, {s['neurons']} neurons, "
             f"{s['steps_per_input']} steps per input",
             f"{'population':<12}{'neurons':>8}{'rate Hz':>9}{'active':>8}{'cv acc':>8}{'PR':>8}{'repeat':>8}"]
    for name, p in summary["populations"].items():
        acc = p["cv_accuracy"]["mean"] if p["cv_accuracy"] else None
        lines.append(f"{name:<12}{p['neurons']:>8}{_num(p['mean_rate_hz'], '{:.1f}'):>9}"
                     f"{_num(p['active_fraction'], '{:.2f}'):>8}{_num(acc):>8}"
                     f"{_num(p['participation_ratio'], '{:.1f}'):>8}{_num(p['repeatability'], '{:.2f}'):>8}")
    raw = summary["raw_features"]
    raw_acc = raw['cv_accuracy']['mean'] if raw['cv_accuracy'] else None
    lines.append(f"{'raw inputs':<12}{raw['features']:>8}{'':>17}{_num(raw_acc):>8}")
    lines.append(f"chance {_num(summary['chance'])}, majority {_num(summary['majority'])}")
    d = summary["drive"]
    lines.append(f"drive onto hidden: {_num(d['input_share'])} of the excitation from input neurons, "
                 f"inhibition / excitation {_num(d['inhibition_to_excitation'], '{:.2f}')}")
    c = summary["convergence"]
    bins = ", ".join(f"{k}: {_num(v, '{:.2f}')}" for k, v in c["share"].items())
    lines.append(f"input synapses per hidden neuron: {bins} (mean {_num(c['mean_inputs_per_hidden'], '{:.2f}')}; "
                 f"each input neuron reaches {_num(c['mean_hidden_per_input'], '{:.1f}')} hidden neurons)")
    return "\n".join(lines)


def probe_command(args: Any) -> int:
    """``fumd probe`` from its parsed arguments (cli.py): the JSON summary on stdout (or the
    table with ``--table``), the same JSON in ``--out``, progress on stderr unless ``--quiet``."""
    import json
    import sys

    total = [0]
    done = [0]

    def tick(k: int) -> None:
        before = done[0]
        done[0] += k
        step = max(1, total[0] // 10)
        if not args.quiet and done[0] // step != before // step:
            print(f"fumd probe: {done[0]}/{total[0]} inputs simulated", file=sys.stderr, flush=True)

    summary = run_probe(state_dir=args.state_dir, config=args.config, neurons=args.neurons, seed=args.seed,
                        stream=args.stream, records=args.records, inputs=args.inputs, warmup=args.warmup,
                        repeats=args.repeats, folds=args.folds, progress=tick,
                        progress_total=lambda n: total.__setitem__(0, n))
    text = json.dumps(summary, indent=2)
    if args.out is not None:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    print(format_table(summary) if args.table else text)
    return 0
