"""Input-file formats -> records (one record = one cycle).

| extension        | content                                                                  |
|------------------|--------------------------------------------------------------------------|
| `.jsonl`         | one JSON object per line: `{"id", "x": [...] or "text": "...", "label"?, "reward"?}` |
| `.json`          | one such object, or a list of them                                        |
| `.npy`           | numeric array, 1-D = one record, 2-D = one record per row (never unpickled) |
| `.csv`           | numeric rows; an optional header row may name `label`, `id`, `reward` columns |
| `.txt`           | the whole file is one text record                                          |

A problem with the file as a whole raises ``InputFileError`` (the file goes to ``failed/``); a
problem with one record is returned in its place (``RecordProblem``) so that only that record fails.
Record content (dimension, NaN/inf, label type, ...) is validated by ``fumd.records.parse_record``
inside ``Engine.cycle``, before any state changes.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

from ..errors import InputFileError

SUPPORTED_EXTENSIONS = (".jsonl", ".json", ".npy", ".csv", ".txt")


@dataclass(frozen=True)
class RecordProblem:
    """A record that could not even be read (e.g. a malformed JSON line)."""

    reason: str
    message: str


@dataclass(frozen=True)
class InputItem:
    where: str  # "line 3", "row 2", "record 0": where in the file, for error reports
    record: Union[dict[str, Any], RecordProblem]


def extension_of(name: str) -> str:
    return Path(name).suffix.lower()


def read_input_file(data: bytes, name: str, max_records: int) -> list[InputItem]:
    """Parse the bytes of an inbox file named ``name`` into records."""
    ext = extension_of(name)
    if not data:
        raise InputFileError("empty", f"{name}: the file is empty")
    if ext == ".npy":
        items = _read_npy(data, name)
    else:
        text = _decode_utf8(data, name)
        if not text.strip():
            raise InputFileError("empty", f"{name}: the file contains only whitespace")
        if ext == ".jsonl":
            items = _read_jsonl(text, name)
        elif ext == ".json":
            items = _read_json(text, name)
        elif ext == ".csv":
            items = _read_csv(text, name)
        elif ext == ".txt":
            items = [InputItem("record 0", {"id": Path(name).stem, "text": text})]
        else:
            raise InputFileError("unsupported_extension",
                                 f"{name}: unsupported extension {ext or '(none)'}; allowed: {', '.join(SUPPORTED_EXTENSIONS)}")
    if not items:
        raise InputFileError("empty", f"{name}: no records")
    if len(items) > max_records:
        raise InputFileError("too_many_records", f"{name}: {len(items)} records exceeds inbox.max_records_per_file = {max_records}")
    return items


def _decode_utf8(data: bytes, name: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputFileError("not_utf8", f"{name}: not valid UTF-8 at byte {exc.start} (line {line}): {exc.reason}",
                             where=f"byte {exc.start}") from exc
    if "\x00" in text:
        raise InputFileError("binary", f"{name}: contains NUL bytes at character {text.index(chr(0))}; expected text")
    return text.removeprefix("\ufeff")


def _strict_json(text: str) -> Any:
    # Python's json accepts NaN/Infinity; JSON does not, and a NaN must not reach the network.
    def reject(token: str) -> Any:
        raise ValueError(f"{token} is not valid JSON")

    return json.loads(text, parse_constant=reject)


def _read_jsonl(text: str, name: str) -> list[InputItem]:
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            obj = _strict_json(line)
        except ValueError as exc:
            items.append(InputItem(where, RecordProblem("malformed_json", f"{where}: malformed JSON ({exc})")))
            continue
        if not isinstance(obj, dict):
            items.append(InputItem(where, RecordProblem("bad_format", f"{where}: expected a JSON object, got {type(obj).__name__}")))
            continue
        items.append(InputItem(where, obj))
    return items


def _read_json(text: str, name: str) -> list[InputItem]:
    try:
        obj = _strict_json(text)
    except ValueError as exc:
        raise InputFileError("malformed_json", f"{name}: malformed JSON ({exc})") from exc
    if isinstance(obj, dict):
        return [InputItem("record 0", obj)]
    if isinstance(obj, list):
        return [
            InputItem(f"record {i}", o if isinstance(o, dict) else RecordProblem("bad_format", f"record {i}: expected a JSON object, got {type(o).__name__}"))
            for i, o in enumerate(obj)
        ]
    raise InputFileError("bad_format", f"{name}: expected a JSON object or a list of objects, got {type(obj).__name__}")


def _read_npy(data: bytes, name: str) -> list[InputItem]:
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:  # object arrays need pickle: refused
        raise InputFileError("bad_npy", f"{name}: not a plain numeric .npy array ({exc})") from exc
    except Exception as exc:  # noqa: BLE001 - any parser failure is the file's fault
        raise InputFileError("bad_npy", f"{name}: cannot read as .npy ({type(exc).__name__}: {exc})") from exc
    if not isinstance(array, np.ndarray):
        raise InputFileError("bad_npy", f"{name}: expected one array, got {type(array).__name__}")
    if array.dtype.kind not in "biuf":
        raise InputFileError("bad_npy", f"{name}: expected a numeric array, got dtype {array.dtype}")
    if array.ndim == 1:
        array = array[None, :]
    elif array.ndim != 2:
        raise InputFileError("wrong_dimension", f"{name}: expected a 1-D or 2-D array, got shape {array.shape}")
    stem = Path(name).stem
    return [InputItem(f"row {i}", {"id": f"{stem}:{i}", "x": row.tolist()}) for i, row in enumerate(array)]


_META_COLUMNS = ("id", "label", "reward")


def _read_csv(text: str, name: str) -> list[InputItem]:
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise InputFileError("bad_csv", f"{name}: {exc}") from exc
    rows = [(i, r) for i, r in enumerate(rows, start=1) if any(c.strip() for c in r)]
    if not rows:
        raise InputFileError("empty", f"{name}: no rows")
    header = None
    first_line, first = rows[0]
    if any(not _is_number(c) for c in first):
        header = [c.strip().lower() for c in first]
        rows = rows[1:]
        if len(set(header)) != len(header):
            raise InputFileError("bad_csv", f"{name}: line {first_line}: duplicate column names in the header")
    stem = Path(name).stem
    items = []
    for line, row in rows:
        where = f"line {line}"
        if header is not None and len(row) != len(header):
            items.append(InputItem(where, RecordProblem("bad_format", f"{where}: {len(row)} cells, the header has {len(header)}")))
            continue
        record: dict[str, Any] = {"id": f"{stem}:{line}"}
        values: list[float] = []
        problem = None
        for col, cell in enumerate(row):
            key = header[col] if header is not None else None
            cell = cell.strip()
            if key in ("label", "id"):
                if cell:
                    record[key] = cell
            elif key == "reward":
                if cell:
                    record["reward"] = float(cell) if _is_number(cell) else cell
            elif _is_number(cell):
                values.append(float(cell))
            else:
                problem = RecordProblem("bad_format", f"{where}, column {col + 1}: {cell!r} is not a number")
                break
        items.append(InputItem(where, problem if problem else {**record, "x": values}))
    return items


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
