"""One input record: what ``Engine.cycle`` accepts, validated before any state changes.

``x`` must be finite and inside +-``MAX_ABS_X`` (1e150): the encoder scales each vector by its
range (``max - min``) or by running means and variances (squares of the values), and values near
the float64 limit (1.8e308) overflow there to inf/NaN, which would then be learned and checkpointed.
Such a record is refused with ``ValueRangeError`` (reason ``out_of_range``) naming the element.

Strings (``id``, ``text``, ``label``) must be valid Unicode: JSON can escape a lone UTF-16
surrogate (``"\\ud800"``), which no UTF-8 writer can encode; such a label would enter the
vocabulary (and the checkpoints), and every results line that names it would carry it. A label is
at most ``MAX_LABEL_CHARS`` characters: it is stored in the vocabulary and echoed in results lines.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .errors import (
    DimensionError,
    EmptyTextError,
    InputError,
    LabelTypeError,
    NonFiniteError,
    RecordFormatError,
    RewardError,
)

MAX_ABS_X = 1e150  # |x| beyond this overflows the encoder's range / variance arithmetic in float64
MAX_LABEL_CHARS = 1000  # a label lives in the vocabulary (checkpointed) and in every results line naming it


class ValueRangeError(InputError):
    """An element of ``x`` is finite but so large that scaling it would overflow float64."""

    reason = "out_of_range"

Label = str


@dataclass(frozen=True)
class Record:
    """A validated input: exactly one of ``x`` (numeric vector) or ``text``.

    ``label`` (str or int, stored as str) yields an external reward by comparison with the
    decoded action; ``reward`` in [-1, 1] is an explicit external reward and wins over a label.
    """

    id: str | None
    x: np.ndarray | None = None
    text: str | None = None
    label: Label | None = None
    reward: float | None = None


def parse_record(data: Record | Mapping[str, Any], input_size: int, max_text_chars: int) -> Record:
    """Validate a mapping ``{"id", "x" | "text", "label"?, "reward"?}`` (or a Record)."""
    if isinstance(data, Record):
        data = {"id": data.id, "x": data.x, "text": data.text, "label": data.label, "reward": data.reward}
    if not isinstance(data, Mapping):
        raise RecordFormatError(f"record: expected an object, got {type(data).__name__}")
    unknown = set(data) - {"id", "x", "text", "label", "reward"}
    if unknown:
        raise RecordFormatError(f"record: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    rid = data.get("id")
    if rid is not None and (isinstance(rid, bool) or not isinstance(rid, (str, int))):
        raise RecordFormatError(f"id: expected a string or integer, got {type(rid).__name__}")
    if isinstance(rid, str):
        _check_unicode(rid, "id", RecordFormatError)
    x, text = data.get("x"), data.get("text")
    if (x is None) == (text is None):
        raise RecordFormatError("record: exactly one of 'x' or 'text' is required")
    vector = _parse_vector(x, input_size) if x is not None else None
    if text is not None:
        if not isinstance(text, str):
            raise RecordFormatError(f"text: expected a string, got {type(text).__name__}")
        _check_unicode(text, "text", RecordFormatError)
        if not text.strip():
            raise EmptyTextError("text: empty or whitespace-only text")
        if len(text) > max_text_chars:
            raise RecordFormatError(f"text: {len(text)} characters exceeds the limit of {max_text_chars}")
    return Record(
        id=None if rid is None else str(rid),
        x=vector,
        text=text,
        label=_parse_label(data.get("label")),
        reward=_parse_reward(data.get("reward")),
    )


def _parse_vector(x: Any, input_size: int) -> np.ndarray:
    if isinstance(x, (str, bytes, Mapping)):
        raise RecordFormatError(f"x: expected a list of numbers, got {type(x).__name__}")
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise RecordFormatError(f"x: not a numeric vector ({exc})") from exc
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise RecordFormatError(f"x: expected numbers, got elements of type {arr.dtype}")
    if arr.ndim != 1:
        raise DimensionError(f"x: expected a 1-D vector of length {input_size}, got shape {arr.shape}")
    if arr.shape[0] != input_size:
        raise DimensionError(f"x: expected length {input_size}, got {arr.shape[0]}")
    arr = arr.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise NonFiniteError(f"x[{bad[0]}] = {arr[bad[0]]}: values must be finite (no NaN or inf)")
    big = np.flatnonzero(np.abs(arr) > MAX_ABS_X)
    if big.size:
        raise ValueRangeError(f"x[{big[0]}] = {arr[big[0]]:.6g}: values must lie within +-{MAX_ABS_X:g} "
                              "(larger ones overflow the encoder's scaling)")
    return arr


def _parse_label(label: Any) -> Label | None:
    if label is None:
        return None
    if isinstance(label, bool) or not isinstance(label, (str, int)):
        raise LabelTypeError(f"label: expected a string or integer, got {type(label).__name__}")
    text = str(label)
    if not text.strip():
        raise LabelTypeError("label: empty label")
    if len(text) > MAX_LABEL_CHARS:
        raise LabelTypeError(f"label: {len(text)} characters exceeds the limit of {MAX_LABEL_CHARS}")
    _check_unicode(text, "label", LabelTypeError)
    return text


def _check_unicode(value: str, name: str, error: type[InputError]) -> None:
    """Refuse a lone surrogate (valid as a JSON escape, not as Unicode: no UTF-8 writer takes it)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise error(f"{name}: character {exc.start} is a lone UTF-16 surrogate (U+{ord(value[exc.start]):04X}), "
                    "not a Unicode character") from None


def _parse_reward(reward: Any) -> float | None:
    if reward is None:
        return None
    if isinstance(reward, bool) or not isinstance(reward, (int, float)):
        raise RewardError(f"reward: expected a number in [-1, 1], got {type(reward).__name__}")
    if not math.isfinite(reward) or not -1.0 <= reward <= 1.0:
        raise RewardError(f"reward: {reward} is outside [-1, 1]")
    return float(reward)
