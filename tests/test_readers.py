"""Reader and record regressions of issue 10 (items 6-9): each reproduction as reported; records
built one at a time (issue #14)."""
from __future__ import annotations

import io
import json
import tracemalloc
from typing import Sequence

import numpy as np
import pytest

from fumd.errors import InputError, InputFileError, NonFiniteError
from fumd.io.readers import RecordProblem, read_input_file
from fumd.records import MAX_ABS_X, ValueRangeError, parse_record


def _kinds(items) -> list[tuple[str, str]]:
    return [(i.where, i.record.reason if isinstance(i.record, RecordProblem) else "ok") for i in items]


def test_a_depth_bomb_fails_only_its_own_line() -> None:
    """Item 6: {"x": [[[...100k deep...]]]} between two good lines: malformed_json for that line;
    the whole file used to fail as unreadable (RecursionError)."""
    bomb = '{"x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    data = "\n".join([json.dumps({"id": "a", "text": "one"}), bomb, json.dumps({"id": "b", "text": "two"})]).encode()
    items = read_input_file(data, "bomb.jsonl", 100)
    assert _kinds(items) == [("line 1", "ok"), ("line 2", "malformed_json"), ("line 3", "ok")]
    assert "nested too deeply" in items[1].record.message
    with pytest.raises(InputFileError) as info:
        read_input_file(bomb.encode(), "bomb.json", 100)
    assert info.value.reason == "malformed_json"


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\u0085", "\x1c", "\x1d", "\x1e", "\x0b", "\x0c", "\r"])
def test_unicode_line_separators_inside_json_strings_do_not_cut_records(separator: str) -> None:
    """Item 7: valid JSON written with ensure_ascii=False; JSON Lines are split on \\n only."""
    records = [{"id": f"r{i}", "text": f"before{separator}after {i}"} for i in range(3)]
    data = "\n".join(json.dumps(r, ensure_ascii=False)
                     for r in records[:2]) + "\n\n" + json.dumps(records[2], ensure_ascii=False) + "\r\n"
    items = read_input_file(data.encode(), "u.jsonl", 100)
    assert [i.where for i in items] == ["line 1", "line 2", "line 4"]
    assert [i.record for i in items] == records


def test_csv_first_row_with_one_non_number_is_data_not_a_header() -> None:
    """Item 8: '1,2,abc,4' used to become a header silently (no result for it); with repeated
    values the whole file failed as 'duplicate column names'."""
    items = read_input_file(b"1,2,abc,4\n5,6,7,8\n", "a.csv", 100)
    assert _kinds(items) == [("line 1", "bad_format"), ("line 2", "ok")]
    assert "column 3" in items[0].record.message and items[1].record["x"] == [5.0, 6.0, 7.0, 8.0]
    items = read_input_file(b"1,1,x,1\n2,2,2,2\n", "b.csv", 100)
    assert _kinds(items) == [("line 1", "bad_format"), ("line 2", "ok")]
    # a real header (no numeric cell) still names columns
    items = read_input_file(b"f0,f1,label\n0.5,0.25,cat\n", "c.csv", 100)
    assert items[0].record == {"id": "c:2", "x": [0.5, 0.25], "label": "cat"}


def test_csv_positions_are_physical_lines_after_a_quoted_newline() -> None:
    data = b'f0,label\n0.1,"two\nlines"\n\n0.2,x\n0.3,"a\r\nb\r\nc"\nbad,y\n'
    items = read_input_file(data, "q.csv", 100)
    assert _kinds(items) == [("line 2", "ok"), ("line 5", "ok"), ("line 6", "ok"), ("line 9", "bad_format")]
    assert items[0].record["label"] == "two\nlines" and "line 9, column 1" in items[3].record.message


def test_a_csv_row_the_csv_module_cannot_parse_fails_alone() -> None:
    items = read_input_file(b"0.5,0.5\n1,2\rx\n0.25,0.25\n", "cr.csv", 100)
    assert _kinds(items) == [("line 1", "ok"), ("line 2", "bad_csv"), ("line 3", "ok")]
    items = read_input_file(b"1,2\r3,4\r", "mac.csv", 100)  # no \n at all: classic Mac line ends
    assert [i.record["x"] for i in items] == [[1.0, 2.0], [3.0, 4.0]]


def test_huge_but_finite_x_is_refused_before_the_encoder() -> None:
    """Item 9: [1.7e308, -1.7e308, 0, ...] is finite, but max - min overflows to inf and min-max
    scaling gives NaN (which reached the checkpointed encoder and SIE history)."""
    x = [1.7e308, -1.7e308] + [0.0] * 14
    with pytest.raises(ValueRangeError) as info:
        parse_record({"x": x}, 16, 100)
    assert info.value.reason == "out_of_range" and "x[0]" in str(info.value) and isinstance(info.value, InputError)
    with pytest.raises(ValueRangeError):
        parse_record({"x": [0.0] * 15 + [-2 * MAX_ABS_X]}, 16, 100)
    ok = parse_record({"x": [MAX_ABS_X, -MAX_ABS_X] + [0.0] * 14}, 16, 100)
    span = ok.x.max() - ok.x.min()
    assert np.isfinite(span) and np.all(np.isfinite((ok.x - ok.x.min()) / span))
    with pytest.raises(NonFiniteError):
        parse_record({"x": [float("inf")] + [0.0] * 15}, 16, 100)


def test_npy_header_is_checked_before_any_allocation() -> None:
    """A header claiming 10^10 rows over 128 bytes of data is refused from the header alone."""
    forged = io.BytesIO()
    np.lib.format.write_array_header_1_0(forged, {"descr": "<f8", "fortran_order": False, "shape": (10**10, 16)})
    forged.write(np.zeros(16).tobytes())
    with pytest.raises(InputFileError) as info:
        read_input_file(forged.getvalue(), "big.npy", 10**12)
    assert info.value.reason == "bad_npy" and "follow" in str(info.value)
    buf = io.BytesIO()
    np.save(buf, np.zeros((4, 16)))
    with pytest.raises(InputFileError) as info:
        read_input_file(buf.getvalue(), "rows.npy", 3)
    assert info.value.reason == "too_many_records"


def test_too_many_records_is_refused_before_the_records_are_built() -> None:
    with pytest.raises(InputFileError) as info:
        read_input_file(b"{}\n" * 1000, "many.jsonl", 10)
    assert info.value.reason == "too_many_records"
    with pytest.raises(InputFileError) as info:
        read_input_file(b"1,2\n" * 1000, "many.csv", 10)
    assert info.value.reason == "too_many_records"


def test_csv_unclosed_quote_fails_only_its_row_and_later_rows_are_read() -> None:
    """Hostile campaign 2: a quote that never closes used to swallow every later line into one
    cell, so the good rows after it were silently lost."""
    data = b'0.1,0.2\n"0.3,0.4\n0.5,0.6\n0.7,0.8\n'
    items = read_input_file(data, "q.csv", 100)
    assert [i.where for i in items] == ["line 1", "line 2", "line 3", "line 4"]
    assert isinstance(items[1].record, RecordProblem) and items[1].record.reason == "bad_csv"
    assert [i.record["x"] for i in (items[0], items[2], items[3])] == [[0.1, 0.2], [0.5, 0.6], [0.7, 0.8]]
    # a quoted newline that does close is still one row
    items = read_input_file(b'label,f0\n"a\nb",0.5\n', "ok.csv", 100)
    assert [(i.where, i.record["label"]) for i in items] == [("line 2", "a\nb")]


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_csv_with_another_separator_fails_the_file_instead_of_losing_its_first_row(sep: str) -> None:
    """Hostile campaign 2: '0.5;0.3' rows were read as a one-column header (row 1 silently gone)
    and one bad_format per later row."""
    data = f"0.5{sep}0.3\n0.1{sep}0.2\n".encode()
    with pytest.raises(InputFileError) as exc:
        read_input_file(data, "semi.csv", 100)
    assert exc.value.reason == "bad_csv" and exc.value.where == "line 1" and repr(sep) in str(exc.value)
    # a real header is still a header
    assert len(read_input_file(b"f0,label\n0.5,a\n", "h.csv", 100)) == 1


def _held_after_read(data: bytes, name: str) -> tuple[int, Sequence]:
    tracemalloc.start()
    try:
        items = read_input_file(data, name, 10**6)
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return held, items


def test_jsonl_records_are_built_one_at_a_time_so_a_large_file_holds_about_its_size():
    """Issue #14 (a backlog of large files): parsed at once, 20,000 records of 16 numbers hold ~6x
    the file's size in Python objects; kept as lines and parsed when reached, about 1.5x."""
    rng = np.random.default_rng(0)
    lines = [json.dumps({"id": i, "x": [round(float(v), 4) for v in rng.normal(size=16)], "label": i % 4})
             for i in range(20_000)]
    data = ("\n\n".join(lines) + "\n").encode()  # blank lines between records: positions must hold
    held, items = _held_after_read(data, "big.jsonl")
    assert held < 2.0 * len(data), f"{held / len(data):.1f} x the file's size held after reading"
    assert len(items) == 20_000
    assert items[19_999].where == "line 39999" and items[19_999].record["id"] == 19_999
    assert items[-1].record == json.loads(lines[-1]) and [i.record["id"] for i in items[2:4]] == [2, 3]
    with pytest.raises(IndexError):
        items[20_000]


def test_npy_rows_become_records_when_reached():
    array = np.random.default_rng(0).normal(size=(20_000, 16))
    buf = io.BytesIO()
    np.save(buf, array)
    held, items = _held_after_read(buf.getvalue(), "big.npy")
    assert held < 1.5 * array.nbytes  # the array itself, not 20,000 lists of Python floats (~5x)
    assert len(items) == 20_000 and items[7].record == {"id": "big:7", "x": array[7].tolist()}
    assert items[7].where == "row 7"


def test_csv_rows_are_parsed_again_when_reached_so_a_large_file_holds_about_its_size():
    rng = np.random.default_rng(1)
    rows = ["f0,f1,f2,f3,f4,f5,f6,f7,label"] + [",".join(f"{v:.4f}" for v in rng.normal(size=8)) + f",c{i % 3}"
                                               for i in range(20_000)]
    rows.insert(5000, '0.1,0.2,0.3,0.4,0.5,0.6,0.7,"0.8\n",x')  # a quoted newline: one row over two lines
    data = ("\n".join(rows) + "\n").encode()
    held, items = _held_after_read(data, "big.csv")
    assert held < 3.0 * len(data), f"{held / len(data):.1f} x the file's size held after reading"
    assert len(items) == 20_001
    assert items[0].record == {"id": "big:2", "x": [float(v) for v in rows[1].split(",")[:8]], "label": "c0"}
    assert items[4999].where == "line 5001" and items[4999].record["label"] == "x"
    assert items[5000].where == "line 5003" and items[-1].where == "line 20003"
