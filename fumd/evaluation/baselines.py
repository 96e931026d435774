"""River's online classifiers, run on the same stream in the same order as fumd (comparison only:
nothing here is in fumd's learning path).

Numeric streams:

- ``logistic_regression``: ``StandardScaler | OneVsRestClassifier(LogisticRegression())``
- ``perceptron``: ``StandardScaler | OneVsRestClassifier(Perceptron())``
- ``naive_bayes``: ``GaussianNB()``
- ``hoeffding_tree``: ``HoeffdingTreeClassifier()``

Text streams put ``BagOfWords(on="text")`` in front instead of the scaler, and ``naive_bayes`` is
``MultinomialNB`` (Gaussian likelihoods make no sense for word counts). One-vs-rest wraps the linear
models on binary streams too, so every model sees the labels as the same strings fumd does.

Each input: ``predict_one`` first (the prequential test; ``None`` before a model has seen any
label counts as wrong), then ``learn_one``. Accuracies are River's ``metrics.Accuracy``.
"""
from __future__ import annotations

import time
from typing import Any

BASELINES = ("logistic_regression", "perceptron", "naive_bayes", "hoeffding_tree")
NO_PREDICTION = "<none>"  # what a model that cannot predict yet "says" (never a class)


def make_baselines(kind: str) -> dict[str, Any]:
    from river import feature_extraction, linear_model, multiclass, naive_bayes, preprocessing, tree

    def front() -> Any:
        return feature_extraction.BagOfWords(on="text") if kind == "text" else preprocessing.StandardScaler()

    models = {
        "logistic_regression": front() | multiclass.OneVsRestClassifier(linear_model.LogisticRegression()),
        "perceptron": front() | multiclass.OneVsRestClassifier(linear_model.Perceptron()),
        "naive_bayes": (feature_extraction.BagOfWords(on="text") | naive_bayes.MultinomialNB()) if kind == "text"
        else naive_bayes.GaussianNB(),
        "hoeffding_tree": (feature_extraction.BagOfWords(on="text") | tree.HoeffdingTreeClassifier()) if kind == "text"
        else tree.HoeffdingTreeClassifier(), }
    assert tuple(models) == BASELINES
    return models


def describe(kind: str) -> dict[str, str]:
    """Each baseline's River pipeline, as text (for the JSON summary)."""
    return {name: " | ".join(_step_name(s) for s in _steps(model)) for name, model in make_baselines(kind).items()}


def _steps(model: Any) -> list[Any]:
    steps = getattr(model, "steps", None)
    return list(steps.values()) if steps is not None else [model]


def _step_name(step: Any) -> str:
    inner = getattr(step, "classifier", None)
    return f"{type(step).__name__}({type(inner).__name__})" if inner is not None else type(step).__name__


class Baselines:
    """The four models side by side; ``step`` = test, then train, on one input."""

    def __init__(self, kind: str):
        self.models = make_baselines(kind)
        self.seconds = {name: 0.0 for name in self.models}

    def predict(self, x: dict[str, Any]) -> dict[str, str]:
        out = {}
        for name, model in self.models.items():
            started = time.perf_counter()
            y = model.predict_one(x)
            self.seconds[name] += time.perf_counter() - started
            out[name] = NO_PREDICTION if y is None else str(y)
        return out

    def learn(self, x: dict[str, Any], label: str) -> None:
        for name, model in self.models.items():
            started = time.perf_counter()
            model.learn_one(x, label)
            self.seconds[name] += time.perf_counter() - started

    def step(self, x: dict[str, Any], label: str) -> dict[str, str]:
        predictions = self.predict(x)
        self.learn(x, label)
        return predictions
