"""Random bytes and random table structures given to every reader: a Dataset or one line, never a traceback.

Deterministic (``derandomize=True``) with a fixed number of examples, so CI sees the same inputs
every run; about 15 s on one core.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poisonlab.data import Dataset, load_dataset
from poisonlab.exceptions import PoisonlabError

SUFFIXES = (".csv", ".tsv", ".jsonl", ".npz", ".parquet")
FUZZ = settings(max_examples=150, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def check_loads_or_says_one_line(path: Path) -> None:
    try:
        result = load_dataset(str(path))
    except PoisonlabError as exc:
        message = str(exc)
        assert message and "\n" not in message, repr(message)
        return
    assert isinstance(result, Dataset)


cells = st.one_of(st.text(max_size=12), st.integers(-10**20, 10**20).map(str),
                  st.floats(allow_nan=True, allow_infinity=True).map(repr),
                  st.sampled_from(["", "nan", "inf", "-inf", "1e400", "=cmd|' /C calc'!A0", "None", "\x00",
                                   '"', '""', "\r", "\n", "\ufeff", "label", "text"]))
tables = st.lists(st.lists(cells, min_size=0, max_size=5), min_size=0, max_size=8)


@FUZZ
@given(data=st.binary(max_size=600), suffix=st.sampled_from(SUFFIXES))
def test_random_bytes(tmp_path_factory: pytest.TempPathFactory, data: bytes, suffix: str) -> None:
    path = tmp_path_factory.mktemp("bytes") / f"data{suffix}"
    path.write_bytes(data)
    check_loads_or_says_one_line(path)


@FUZZ
@given(rows=tables, delimiter=st.sampled_from([",", "\t"]), header=st.sampled_from(
    [["text", "label"], ["label"], ["a", "b", "label"], ["label", "label"], [], ["id", "text", "label"]]))
def test_random_delimited(tmp_path_factory: pytest.TempPathFactory, rows: list[list[str]], delimiter: str,
                          header: list[str]) -> None:
    import csv

    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter)
    if header:
        writer.writerow(header)
    writer.writerows(rows)
    path = tmp_path_factory.mktemp("table") / ("data.tsv" if delimiter == "\t" else "data.csv")
    path.write_text(buffer.getvalue(), encoding="utf-8", errors="surrogatepass")
    check_loads_or_says_one_line(path)


json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30),
                                     st.floats(allow_nan=False), st.text(max_size=10)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                           max_leaves=6)
records = st.lists(st.one_of(st.dictionaries(st.sampled_from(["text", "label", "id", "x", "y"]), json_values,
                                             max_size=4), json_values), max_size=6)


@FUZZ
@given(lines=records, garbage=st.sampled_from(["", "{", "[1,", "\x00", "{\"label\": }", "not json"]))
def test_random_jsonl(tmp_path_factory: pytest.TempPathFactory, lines: list[object], garbage: str) -> None:
    text = "\n".join(json.dumps(line) for line in lines) + ("\n" + garbage if garbage else "")
    path = tmp_path_factory.mktemp("jsonl") / "data.jsonl"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    check_loads_or_says_one_line(path)


dtypes = st.sampled_from(["uint8", "float32", "float64", "int64", "bool", "complex64", "U3", "S2"])
shapes = st.lists(st.integers(0, 5), min_size=0, max_size=5).map(tuple)


@FUZZ
@given(x_shape=shapes, x_dtype=dtypes, y_shape=shapes, y_dtype=dtypes,
       keys=st.sampled_from([("X", "y"), ("X",), ("y",), ("X", "y", "ids"), ("X", "y", "classes"), ()]),
       damage=st.sampled_from(["none", "truncate", "flip", "empty", "huge-header"]), seed=st.integers(0, 2**16))
def test_random_npz(tmp_path_factory: pytest.TempPathFactory, x_shape: tuple[int, ...], x_dtype: str,
                    y_shape: tuple[int, ...], y_dtype: str, keys: tuple[str, ...], damage: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    arrays = {"X": (rng.random(x_shape) * 300).astype(x_dtype), "y": (rng.random(y_shape) * 3).astype(y_dtype)}
    arrays["ids"] = np.arange(max(x_shape[:1] or (0,))).astype(str)
    arrays["classes"] = np.array(["a", "b", "c"])
    buffer = io.BytesIO()
    np.savez(buffer, **{k: arrays[k] for k in keys})
    raw = bytearray(buffer.getvalue())
    if damage == "truncate":
        raw = raw[: rng.integers(0, len(raw) + 1)]
    elif damage == "flip" and raw:
        raw[rng.integers(0, len(raw))] ^= 0xFF
    elif damage == "empty":
        raw = bytearray()
    elif damage == "huge-header":  # an .npy whose header claims far more data than the member holds
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as archive:
            archive.writestr("X.npy", b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, "
                             b"'shape': (100000, 100000, 100000), }".ljust(118) + b"\n")
            archive.writestr("y.npy", buffer.getvalue()[:0])
        raw = bytearray(out.getvalue())
    path = tmp_path_factory.mktemp("npz") / "data.npz"
    path.write_bytes(bytes(raw))
    check_loads_or_says_one_line(path)
