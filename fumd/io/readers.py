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

Positions (``where``) are physical lines of the file, counted from 1 at each ``\\n``:

* JSON Lines are split on ``\\n`` only (a trailing ``\\r`` is dropped): U+2028, U+0085 and the
  other characters that ``str.splitlines`` also treats as line breaks are valid inside JSON
  strings and never cut a record.
* A CSV row that spans several lines (a quoted newline) is reported at the line where it starts;
  a row the csv module cannot parse (a bare ``\r`` inside an unquoted cell, an unclosed quote)
  fails on its own (``bad_csv``). A file without any ``\n`` is split at ``\r`` (classic Mac).
* A CSV file has a header row when its first non-blank row has no numeric cell; a first row with
  numbers and one non-number is data, and that row fails (``bad_format``) on its own. A first row
  of numbers joined by ``;``, a tab or ``|`` fails the file (``bad_csv``): taken as a header, it
  would vanish, and every later row would fail.
* A quote that never closes (an odd number of ``"`` from its row to the end of the file) fails
  only the row where it opens (``bad_csv``); the lines after it are read as rows again.

Every reader refuses a file with more than ``max_records`` records before it builds them, and a
``.npy`` header is checked against the file's size before any array is allocated.

**Records are built one at a time** for the bulk formats (issue #14, a backlog): a ``.jsonl``
file is kept as its lines and each line is parsed when the daemon reaches it, a 2-D ``.npy`` as
its array and each row becomes a record when asked for, a ``.csv`` file as its lines with each
row's span (found by one pass of the csv module; the row is parsed again when reached)
(``LazyItems``). A file of small records parsed at once holds about 6x its size in Python objects
(a 64 MiB file: ~400 MiB); read this way it holds about its size. ``.json`` and ``.txt`` are
built at once.
"""
from __future__ import annotations

import csv
import io
import json
import math
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, Union, overload

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


class LazyItems(Sequence[InputItem]):
    """``n`` records, record ``i`` built by ``build(i)`` each time it is asked for (nothing cached:
    the daemon reads each record once, in order)."""

    def __init__(self, n: int, build: Callable[[int], InputItem]):
        self._n = n
        self._build = build

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: int) -> InputItem: ...

    @overload
    def __getitem__(self, i: slice) -> list[InputItem]: ...

    def __getitem__(self, i: int | slice) -> InputItem | list[InputItem]:
        if isinstance(i, slice):
            return [self._build(k) for k in range(*i.indices(self._n))]
        k = i + self._n if i < 0 else i
        if not 0 <= k < self._n:
            raise IndexError(i)
        return self._build(k)


def extension_of(name: str) -> str:
    return Path(name).suffix.lower()


def read_input_file(data: bytes, name: str, max_records: int) -> Sequence[InputItem]:
    """Parse the bytes of an inbox file named ``name`` into records (built when indexed, for
    ``.jsonl`` and ``.npy``: ``LazyItems``).

    Raises only ``InputFileError``; a problem confined to one record is returned in its place."""
    ext = extension_of(name)
    if not data:
        raise InputFileError("empty", f"{name}: the file is empty")
    items: Sequence[InputItem]
    if ext == ".npy":
        items = _read_npy(data, name, max_records)
    else:
        if ext not in SUPPORTED_EXTENSIONS:
            raise InputFileError("unsupported_extension",
                                 f"{name}: unsupported extension {ext or '(none)'}; allowed: "
                                 f"{', '.join(SUPPORTED_EXTENSIONS)}")
        text = _decode_utf8(data, name)
        del data  # a caller that passed a temporary (the daemon does) frees the bytes here
        if not text.strip():
            raise InputFileError("empty", f"{name}: the file contains only whitespace")
        if ext == ".jsonl":
            items = _read_jsonl(text, name, max_records)
        elif ext == ".json":
            items = _read_json(text, name)
        elif ext == ".csv":
            items = _read_csv(text, name, max_records)
        else:  # .txt
            items = [InputItem("record 0", {"id": Path(name).stem, "text": text})]
    if not len(items):
        raise InputFileError("empty", f"{name}: no records")
    if len(items) > max_records:
        raise InputFileError("too_many_records",
                             f"{name}: {len(items)} records exceeds inbox.max_records_per_file = {max_records}")
    return items


def _too_many(name: str, max_records: int) -> InputFileError:
    return InputFileError("too_many_records", f"{name}: more than inbox.max_records_per_file = {max_records} records")


def _decode_utf8(data: bytes, name: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputFileError("not_utf8", f"{name}: not valid UTF-8 at byte {exc.start} (line {line}): {exc.reason}",
                             where=f"line {line}") from exc
    if "\x00" in text:
        at = text.index("\x00")
        line = text.count("\n", 0, at) + 1
        raise InputFileError("binary", f"{name}: contains a NUL byte at character {at} (line {line}); expected text",
                             where=f"line {line}")
    return text.removeprefix("\ufeff")


def _strict_json(text: str) -> Any:
    """``json.loads`` without NaN/Infinity (not JSON; a NaN must not reach the network) and with
    nesting too deep for the parser reported as a ValueError, like any other malformed JSON."""
    def reject(token: str) -> Any:
        raise ValueError(f"{token} is not valid JSON")

    try:
        return json.loads(text, parse_constant=reject)
    except RecursionError:
        raise ValueError("nested too deeply (arrays or objects inside each other beyond the parser's limit)") from None


def _read_jsonl(text: str, name: str, max_records: int) -> LazyItems:
    lines = text.split("\n")
    del text
    numbers = [n for n, line in enumerate(lines) if line.strip(" \t\r")]  # JSON's whitespace only: blank
    if len(numbers) > max_records:
        raise _too_many(name, max_records)
    # only the record lines are kept (a file of blank lines holds nothing), indexed by record
    kept = [lines[n] for n in numbers]
    del lines
    return LazyItems(len(kept), lambda i: _jsonl_item(kept[i], numbers[i] + 1))


def _jsonl_item(line: str, number: int) -> InputItem:
    line = line.removesuffix("\r")
    where = f"line {number}"
    try:
        obj = _strict_json(line)
    except ValueError as exc:
        return InputItem(where, RecordProblem("malformed_json", f"{where}: malformed JSON ({exc})"))
    if not isinstance(obj, dict):
        problem = f"{where}: expected a JSON object, got {type(obj).__name__}"
        return InputItem(where, RecordProblem("bad_format", problem))
    return InputItem(where, obj)


def _read_json(text: str, name: str) -> list[InputItem]:
    try:
        obj = _strict_json(text)
    except json.JSONDecodeError as exc:
        raise InputFileError("malformed_json", f"{name}: malformed JSON ({exc})", where=f"line {exc.lineno}") from exc
    except ValueError as exc:
        raise InputFileError("malformed_json", f"{name}: malformed JSON ({exc})") from exc
    if isinstance(obj, dict):
        return [InputItem("record 0", obj)]
    if isinstance(obj, list):
        return [
            InputItem(f"record {i}", o if isinstance(o, dict)
                      else RecordProblem("bad_format", f"record {i}: expected a JSON object, got {type(o).__name__}"))
            for i, o in enumerate(obj)
        ]
    raise InputFileError("bad_format", f"{name}: expected a JSON object or a list of objects, got {type(obj).__name__}")


def _read_npy(data: bytes, name: str, max_records: int) -> LazyItems:
    shape, dtype = _npy_header(data, name)
    if dtype.kind not in "biuf":
        raise InputFileError("bad_npy", f"{name}: expected a numeric array, got dtype {dtype}")
    if len(shape) not in (1, 2):
        raise InputFileError("wrong_dimension", f"{name}: expected a 1-D or 2-D array, got shape {shape}")
    if len(shape) == 2 and shape[0] > max_records:
        raise InputFileError("too_many_records",
                             f"{name}: {shape[0]} records exceeds inbox.max_records_per_file = {max_records}")
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any parser failure is the file's fault
        raise InputFileError("bad_npy", f"{name}: cannot read as .npy ({type(exc).__name__}: {exc})") from exc
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf" or array.ndim not in (1, 2):
        raise InputFileError("bad_npy", f"{name}: not a plain 1-D or 2-D numeric array")
    if array.ndim == 1:
        array = array[None, :]
    rows = array.astype(np.float64, copy=False) if array.dtype.kind == "f" else array
    stem = Path(name).stem
    return LazyItems(len(rows), lambda i: InputItem(f"row {i}", {"id": f"{stem}:{i}", "x": rows[i].tolist()}))


def _npy_header(data: bytes, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the header, checked against the size of the data that follows."""
    fp = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, _fortran, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, _fortran, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise ValueError(f"format version {version[0]}.{version[1]} (only 1.0 and 2.0 hold plain numeric arrays)")
    except Exception as exc:  # noqa: BLE001 - a malformed header is the file's fault
        raise InputFileError("bad_npy",
                             f"{name}: not a plain numeric .npy array ({type(exc).__name__}: {exc})") from exc
    if dtype.hasobject:
        raise InputFileError("bad_npy", f"{name}: object arrays are never unpickled; expected a numeric array")
    expected = math.prod(shape) * dtype.itemsize
    if expected != len(data) - fp.tell():
        raise InputFileError("bad_npy", f"{name}: the header says shape {shape} of {dtype} ({expected} bytes) but "
                                        f"{len(data) - fp.tell()} bytes follow it")
    return tuple(shape), dtype


_META_COLUMNS = ("id", "label", "reward")


def _read_csv(text: str, name: str, max_records: int) -> LazyItems:
    # lines end at \n (\r\n too); only a file with no \n at all (classic Mac) is split at \r
    separator = "\n" if "\n" in text or "\r" not in text else "\r"
    lines = [line + "\n" for line in text.split(separator)]
    del text
    if lines[-1] == "\n":
        lines.pop()
    # one pass of the csv module finds the rows; each is kept as its span of physical lines
    # [start - 1, end) and parsed again when its record is built (a row's cells depend only on its
    # own lines). Only the first row's cells (a header?) and the rows that failed are kept.
    starts, ends = array("q"), array("q")  # 16 bytes a row (a list of tuples: ~110)
    problems: dict[int, RecordProblem] = {}  # row number -> why it failed
    first: list[str] | None = None
    pos = 0  # lines before this index are read
    while pos < len(lines):
        base = pos
        reader = csv.reader(iter(lines[base:]))
        while True:
            try:
                row: list[str] | RecordProblem = next(reader)
            except StopIteration:
                pos = len(lines)
                break
            except csv.Error as exc:  # the reader resumes at the next line: only this row fails
                row = RecordProblem("bad_csv", f"line {pos + 1}: {exc}")
            start, pos = pos + 1, base + reader.line_num
            if pos == len(lines) and pos - start >= 1 and "".join(lines[start - 1:pos]).count('"') % 2:
                # a quote that never closes swallowed every later line into one cell: only the
                # row where it opens fails, and reading resumes at the line after it
                problems[len(starts)] = RecordProblem("bad_csv", f"line {start}: a quote (\") opened in this row "
                                                                 "never closes")
                starts.append(start)
                ends.append(start)
                pos = start
                break
            if isinstance(row, RecordProblem) or any(c.strip() for c in row):
                if isinstance(row, RecordProblem):
                    problems[len(starts)] = row
                elif not starts:
                    first = row
                starts.append(start)
                ends.append(pos)
                if len(starts) > max_records + 1:  # + a header
                    raise _too_many(name, max_records)
    if not starts:
        raise InputFileError("empty", f"{name}: no rows")
    header = None
    first_line = starts[0]
    # a header names columns; a row with any number is data
    if first is not None and not any(_is_number(c) for c in first):
        for sep in (";", "\t", "|"):
            if any(len(parts := c.split(sep)) > 1 and sum(_is_number(p) for p in parts) >= 2 for c in first):
                # numbers joined by another separator: taken as a header, this row would vanish
                raise InputFileError("bad_csv", f"{name}: line {first_line}: the values are separated by {sep!r}; "
                                                "CSV files must be comma-separated", where=f"line {first_line}")
        header = [c.strip().lower() for c in first]
        if len(set(header)) != len(header):
            dup = next(h for h in header if header.count(h) > 1)
            raise InputFileError("bad_csv", f"{name}: line {first_line}: duplicate column name {dup!r} in the header",
                                 where=f"line {first_line}")
    skip = 1 if header is not None else 0
    stem = Path(name).stem

    def build(i: int) -> InputItem:
        r = i + skip
        start, end = starts[r], ends[r]
        if r in problems:
            return InputItem(f"line {start}", problems[r])
        return _csv_item(next(csv.reader(iter(lines[start - 1:end]))), start, header, stem)

    return LazyItems(len(starts) - skip, build)


def _csv_item(row: list[str], line: int, header: list[str] | None, stem: str) -> InputItem:
    where = f"line {line}"
    if header is not None and len(row) != len(header):
        return InputItem(where, RecordProblem("bad_format", f"{where}: {len(row)} cells, the header has {len(header)}"))
    record: dict[str, Any] = {"id": f"{stem}:{line}"}
    values: list[float] = []
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
            return InputItem(where, RecordProblem("bad_format",
                                                  f"{where}, column {col + 1}: {cell[:80]!r} is not a number"))
    return InputItem(where, {**record, "x": values})


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
