"""Named evaluation streams: deterministic given a seed, each yielding ``(features, label)`` pairs.

``features`` is a ``list[float]`` in the stream's fixed ``feature_names`` order (numeric streams)
or a ``str`` (the text stream); ``label`` is always a ``str``. Numeric values are passed raw: fumd's
engine scales its inputs itself, and the River baselines put their own ``StandardScaler`` in front.

Suite (``STREAMS``):

============  =========================================================================  =====  =======
name          source                                                                      feats  classes
============  =========================================================================  =====  =======
led           River ``synth.LED(noise_percentage=0.1)``: seven-segment digit, 10 % flips  7      10
rbf           River ``synth.RandomRBF(n_classes=4, n_features=10)``: 50 Gaussian centroids 10    4
sea           River ``synth.SEA`` (noise 0.1), abrupt-ish drift variant 0 -> 2 mid-stream  3      2
agrawal       River ``synth.Agrawal``, drift classification function 0 -> 2 mid-stream     9      2
hyperplane    River ``synth.Hyperplane`` (10 features, 2 drifting, mag_change 0.001)       10     2
phishing      River ``datasets.Phishing`` (1,250 real web pages; ships in the wheel)       9      2
bananas       River ``datasets.Bananas`` (5,300 points, two banana shapes; in the wheel)   2      2
wine          scikit-learn ``load_wine`` (178 wines; bundled)                              13     3
iris          scikit-learn ``load_iris`` (150 flowers; bundled)                            4      3
digits        scikit-learn ``load_digits`` (1,797 8x8 handwritten digits; bundled)        64     10
cancer        scikit-learn ``load_breast_cancer`` (569 tumours; majority class 0.63)    30     2
topics        synthetic text: short sentences from four topic vocabularies (below)        text   4
============  =========================================================================  =====  =======

Drift (``sea``, ``agrawal``) uses River's ``ConceptDriftStream`` centred on the middle of the
requested stream length (``position = length // 2``, ``width = length // 20``), so the drift falls
inside every run whatever ``--inputs`` is. Finite data sets (``phishing``, ``bananas``, ``wine``,
``iris``, ``digits``, ``cancer``) are shuffled with the seed and repeated, reshuffled each pass, as
long as the run needs;
``wine`` and ``iris`` are so small that a 1,500-input run is 8-10 passes, which is what
makes them a learning-speed test rather than a generalisation test (documented in
docs/evaluation.md). Nothing is downloaded at run time: River's two data sets ship inside its wheel
and scikit-learn's inside its own.

``topics`` is generated here (no text corpus ships with River or scikit-learn): each record is 6-14
words; each word is drawn from its class's topic vocabulary (p = 0.40), from a pool shared by all
classes (function words and ambiguous words such as "record", "high", "season"; p = 0.45) or from
another topic's vocabulary (p = 0.15, noise).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable, Collection, Iterator

import numpy as np

from . import EvaluationError, require_river

Sample = tuple[Any, str]  # (list[float] | str, label)


@dataclass(frozen=True)
class Stream:
    name: str
    kind: str  # "numeric" | "text"
    feature_names: tuple[str, ...]  # numeric: the fixed order of the features; text: ("text",)
    classes: tuple[str, ...]
    description: str
    # (seed, length) -> endless iterator of raw (x, y); x a dict keyed by feature name, or a str
    factory: Callable[[int, int], Iterator[tuple[Any, Any]]]

    @property
    def n_features(self) -> int | None:
        """Numeric features per record; None for text (the engine's ``input_size`` applies)."""
        return len(self.feature_names) if self.kind == "numeric" else None

    def samples(self, seed: int, length: int, classes: Collection[str] | None = None) -> Iterator[Sample]:
        """Endless, deterministic ``(features, label)`` pairs; ``classes``: keep only those labels.
        ``length`` is the run's length (drifting streams put their drift at its middle)."""
        keep = None if classes is None else {str(c) for c in classes}
        for x, y in self.factory(seed, length):
            label = _label(y)
            if keep is not None and label not in keep:
                continue
            if self.kind == "text":
                yield str(x), label
            else:
                yield [float(x.get(name, 0.0)) for name in self.feature_names], label

    def take(self, n: int, seed: int, length: int | None = None,
             classes: Collection[str] | None = None) -> list[Sample]:
        return list(itertools.islice(self.samples(seed, length or n, classes), n))


def engine_record(stream: Stream, sample: Sample, rid: str) -> dict[str, Any]:
    """The record the daemon would read from a file: ``{"id", "x" | "text", "label"}``."""
    features, label = sample
    key = "text" if stream.kind == "text" else "x"
    return {"id": rid, key: features, "label": label}


def river_x(stream: Stream, sample: Sample) -> dict[str, Any]:
    """The same input as a River feature dict (same values, same order)."""
    features, _label_ = sample
    if stream.kind == "text":
        return {"text": features}
    return dict(zip(stream.feature_names, features, strict=False))


def _label(y: Any) -> str:
    if isinstance(y, (bool, np.bool_)):
        return "True" if y else "False"
    if isinstance(y, (float, np.floating)) and float(y).is_integer():
        return str(int(y))
    return str(y)


# -- River synthetic generators ---------------------------------------------------------------
def _led(seed: int, length: int) -> Iterator[tuple[Any, Any]]:
    from river.datasets import synth

    return iter(synth.LED(seed=seed, noise_percentage=0.1))


def _rbf(seed: int, length: int) -> Iterator[tuple[Any, Any]]:
    from river.datasets import synth

    return iter(synth.RandomRBF(seed_model=seed, seed_sample=seed + 10_000, n_classes=4, n_features=10))


def _drift(length: int) -> tuple[int, int]:
    return max(1, length // 2), max(1, length // 20)


def _sea(seed: int, length: int) -> Iterator[tuple[Any, Any]]:
    from river.datasets import synth

    position, width = _drift(length)
    return iter(synth.ConceptDriftStream(
        stream=synth.SEA(variant=0, noise=0.1, seed=seed),
        drift_stream=synth.SEA(variant=2, noise=0.1, seed=seed + 10_000),
        position=position, width=width, seed=seed + 20_000))


def _agrawal(seed: int, length: int) -> Iterator[tuple[Any, Any]]:
    from river.datasets import synth

    position, width = _drift(length)
    return iter(synth.ConceptDriftStream(
        stream=synth.Agrawal(classification_function=0, seed=seed),
        drift_stream=synth.Agrawal(classification_function=2, seed=seed + 10_000),
        position=position, width=width, seed=seed + 20_000))


def _agrawal2(seed: int, length: int) -> Iterator[tuple[Any, Any]]:
    from river.datasets import synth

    return iter(synth.Agrawal(classification_function=2, seed=seed))


def _parity(seed: int, length: int) -> Iterator[tuple[Any, Any]]:
    """Six random bits; the label is the parity of the first three, flipped with p = 0.05: no
    linear function of the bits beats chance (issue #15)."""
    rng = np.random.default_rng(seed)
    while True:
        bits = rng.integers(0, 2, 6)
        y = int(bits[0] ^ bits[1] ^ bits[2]) ^ int(rng.random() < 0.05)
        yield {f"b{i}": float(b) for i, b in enumerate(bits)}, y


def _hyperplane(seed: int, length: int) -> Iterator[tuple[Any, Any]]:
    from river.datasets import synth

    return iter(synth.Hyperplane(seed=seed, n_features=10, n_drift_features=2, mag_change=0.001, noise_percentage=0.05,
                                 sigma=0.1))


# -- finite data sets: shuffled with the seed, repeated, reshuffled each pass ------------------
def _repeat(rows: list[tuple[Any, Any]], seed: int) -> Iterator[tuple[Any, Any]]:
    rng = np.random.default_rng(seed)
    while True:
        for i in rng.permutation(len(rows)):
            yield rows[int(i)]


_CACHE: dict[str, list[tuple[Any, Any]]] = {}


def _rows(name: str, load: Callable[[], list[tuple[Any, Any]]]) -> list[tuple[Any, Any]]:
    if name not in _CACHE:
        _CACHE[name] = load()
    return _CACHE[name]


def _river_rows(cls_name: str) -> Callable[[], list[tuple[Any, Any]]]:
    def load() -> list[tuple[Any, Any]]:
        from river import datasets

        return [(dict(x), y) for x, y in getattr(datasets, cls_name)()]

    return load


def _sklearn_rows(loader: str) -> Callable[[], list[tuple[Any, Any]]]:
    def load() -> list[tuple[Any, Any]]:
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, loader)()
        names = [str(n) for n in bunch.feature_names]
        return [(dict(zip(names, map(float, row), strict=True)), str(bunch.target_names[t]))
                for row, t in zip(bunch.data, bunch.target, strict=True)]

    return load


def _finite(name: str, load: Callable[[], list[tuple[Any, Any]]]) -> Callable[[int, int], Iterator[tuple[Any, Any]]]:
    return lambda seed, length: _repeat(_rows(name, load), seed)


# -- the text stream --------------------------------------------------------------------------
TOPICS: dict[str, tuple[str, ...]] = {
    "sport": ("match", "goal", "team", "player", "coach", "league", "score", "referee", "stadium", "victory",
              "defeat", "penalty", "striker", "keeper", "tournament", "final", "fans", "injury", "transfer",
              "pitch", "tackle", "champion", "derby", "midfield"),
    "weather": ("rain", "storm", "wind", "cloud", "forecast", "temperature", "sunny", "snow", "frost", "humid",
                "thunder", "breeze", "flood", "drought", "heatwave", "celsius", "showers", "fog", "hail",
                "chilly", "gust", "drizzle", "monsoon", "icy"),
    "finance": ("market", "stock", "shares", "price", "investor", "bank", "inflation", "bond", "dividend",
                "profit", "loss", "earnings", "currency", "trading", "fund", "debt", "credit", "revenue",
                "quarter", "merger", "budget", "equity", "broker", "tariff"),
    "science": ("cell", "protein", "gene", "experiment", "laboratory", "molecule", "theory", "hypothesis",
                "species", "enzyme", "physics", "atom", "telescope", "neuron", "evolution", "sample",
                "microscope", "dna", "orbit", "quantum", "fossil", "particle", "genome", "bacteria"),
}
SHARED_WORDS = ("the", "a", "of", "to", "and", "in", "on", "for", "with", "is", "was", "it", "this", "that",
                "at", "by", "from", "as", "today", "new", "report", "said", "after", "before", "very", "more",
                "record", "high", "low", "season", "pressure", "rate", "level", "strong", "week", "growth",
                "change", "first", "big", "early")


def _topics(seed: int, length: int) -> Iterator[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    names = list(TOPICS)
    while True:
        c = int(rng.integers(len(names)))
        words = []
        for _ in range(int(rng.integers(6, 15))):
            u = rng.random()
            if u < 0.40:
                pool = TOPICS[names[c]]
            elif u < 0.85:
                pool = SHARED_WORDS
            else:
                pool = TOPICS[names[(c + 1 + int(rng.integers(len(names) - 1))) % len(names)]]
            words.append(pool[int(rng.integers(len(pool)))])
        yield " ".join(words), names[c]


CANCER_FEATURES = (  # load_breast_cancer().feature_names, in order
    "mean radius", "mean texture", "mean perimeter", "mean area", "mean smoothness", "mean compactness",
    "mean concavity", "mean concave points", "mean symmetry", "mean fractal dimension", "radius error",
    "texture error", "perimeter error", "area error", "smoothness error", "compactness error", "concavity error",
    "concave points error", "symmetry error", "fractal dimension error", "worst radius", "worst texture",
    "worst perimeter", "worst area", "worst smoothness", "worst compactness", "worst concavity",
    "worst concave points", "worst symmetry", "worst fractal dimension")


# -- the suite --------------------------------------------------------------------------------
def _build() -> dict[str, Stream]:
    def names(prefix: str, n: int) -> tuple[str, ...]:
        return tuple(f"{prefix}{i}" for i in range(n))

    phishing_features = ("empty_server_form_handler", "popup_window", "https", "request_from_other_domain",
                         "anchor_from_other_domain", "is_popular", "long_url", "age_of_domain", "ip_in_url")
    agrawal_features = ("salary", "commission", "age", "elevel", "car", "zipcode", "hvalue", "hyears", "loan")
    wine_features = ("alcohol", "malic_acid", "ash", "alcalinity_of_ash", "magnesium", "total_phenols", "flavanoids",
                     "nonflavanoid_phenols", "proanthocyanins", "color_intensity", "hue",
                     "od280/od315_of_diluted_wines", "proline")
    iris_features = ("sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)")
    specs = [
        Stream("led", "numeric", tuple(range(7)), tuple(str(i) for i in range(10)),  # type: ignore[arg-type]
               "River synth.LED(noise_percentage=0.1): 7 segments of a digit, each flipped with p = 0.1", _led),
        Stream("rbf", "numeric", tuple(range(10)), tuple(str(i) for i in range(4)),  # type: ignore[arg-type]
               "River synth.RandomRBF(n_classes=4, n_features=10, 50 centroids)", _rbf),
        Stream("sea", "numeric", tuple(range(3)), ("False", "True"),  # type: ignore[arg-type]
               "River synth.SEA(noise=0.1), ConceptDriftStream variant 0 -> 2 at the middle of the run", _sea),
        Stream("agrawal", "numeric", agrawal_features, ("0", "1"),
               "River synth.Agrawal, ConceptDriftStream classification function 0 -> 2 at the middle of the run",
               _agrawal),
        Stream("agrawal2", "numeric", agrawal_features, ("0", "1"),
               "River synth.Agrawal(classification_function=2): a nonlinear rule of age and salary", _agrawal2),
        Stream("parity", "numeric", tuple(f"b{i}" for i in range(6)), ("0", "1"),
               "3-bit parity among 6 random bits, 5 % label noise (linearly inseparable)", _parity),
        Stream("hyperplane", "numeric", tuple(range(10)), ("0", "1"),  # type: ignore[arg-type]
               "River synth.Hyperplane(n_features=10, n_drift_features=2, mag_change=0.001, noise 0.05)", _hyperplane),
        Stream("phishing", "numeric", phishing_features, ("False", "True"),
               "River datasets.Phishing (1,250 web pages), shuffled with the seed, repeated",
               _finite("phishing", _river_rows("Phishing"))),
        Stream("bananas", "numeric", ("1", "2"), ("False", "True"),
               "River datasets.Bananas (5,300 points), shuffled with the seed, repeated",
               _finite("bananas", _river_rows("Bananas"))),
        Stream("wine", "numeric", wine_features, ("class_0", "class_1", "class_2"),
               "scikit-learn load_wine (178 samples), shuffled with the seed, repeated (reshuffled each pass)",
               _finite("wine", _sklearn_rows("load_wine"))),
        Stream("iris", "numeric", iris_features, ("setosa", "versicolor", "virginica"),
               "scikit-learn load_iris (150 samples), shuffled with the seed, repeated (reshuffled each pass)",
               _finite("iris", _sklearn_rows("load_iris"))),
        Stream("digits", "numeric", tuple(f"pixel_{r}_{c}" for r in range(8) for c in range(8)),
               tuple(str(i) for i in range(10)),
               "scikit-learn load_digits (1,797 8x8 images), shuffled with the seed, repeated (reshuffled each pass)",
               _finite("digits", _sklearn_rows("load_digits"))),
        Stream("cancer", "numeric", CANCER_FEATURES, ("malignant", "benign"),
               "scikit-learn load_breast_cancer (569 tumours, 30 features), shuffled with the seed, repeated",
               _finite("cancer", _sklearn_rows("load_breast_cancer"))),
        Stream("topics", "text", ("text",), tuple(TOPICS),
               "synthetic text: 6-14 words from four topic vocabularies, a shared pool and 15 % other-topic noise",
               _topics), ]
    return {s.name: s for s in specs}


STREAMS: dict[str, Stream] = _build()


def get_stream(name: str) -> Stream:
    require_river()
    try:
        return STREAMS[name]
    except KeyError:
        raise EvaluationError(f"unknown stream {name!r} (known: {', '.join(STREAMS)})") from None


def parse_streams(text: str | None) -> list[Stream]:
    """``"a,b,c"`` -> streams (None or "" or "all": the whole suite)."""
    if not text or text.strip() == "all":
        require_river()
        return list(STREAMS.values())
    return [get_stream(part.strip()) for part in text.split(",") if part.strip()]
