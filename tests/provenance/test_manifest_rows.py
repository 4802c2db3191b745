"""The streaming row reader reads the same rows, in the same order, as load_dataset."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from manifest_helpers import MAIL_HEADER, mail_rows, write_csv

from poisonlab.data import Columns, load_dataset
from poisonlab.exceptions import DataError
from poisonlab.provenance import RowStream, create_manifest


def _write_all_formats(tmp_path: Path, fmt: str) -> dict[str, Path]:
    """The same rows as CSV, TSV and JSONL; as Parquet too when ``fmt`` asks for it (skipped
    without pyarrow, the ``parquet`` extra)."""
    rows = mail_rows(10)
    rows.insert(4, ["m900", 'quoted, "comma"\nand a newline', "ham", "feed-0", "ann-0"])
    paths = {"csv": write_csv(tmp_path / "d.csv", MAIL_HEADER, rows)}
    with (tmp_path / "d.csv").open("a", encoding="utf-8") as handle:
        handle.write("\n")  # a blank record, skipped by both readers
    tsv = tmp_path / "d.tsv"
    tsv.write_text("\n".join("\t".join(r) for r in [MAIL_HEADER] + [
        [c.replace("\n", " ") for c in r] for r in rows]) + "\n", encoding="utf-8")
    paths["tsv"] = tsv
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("\n\n".join(json.dumps(dict(zip(MAIL_HEADER, r, strict=True))) for r in rows),
                     encoding="utf-8")
    paths["jsonl"] = jsonl
    if fmt != "parquet":
        return paths
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({h: [r[k] for r in rows] for k, h in enumerate(MAIL_HEADER)})
    pq.write_table(table, tmp_path / "d.parquet", row_group_size=4)
    paths["parquet"] = tmp_path / "d.parquet"
    return paths


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet"])
def test_rows_match_load_dataset(tmp_path: Path, fmt: str) -> None:
    path = _write_all_formats(tmp_path, fmt)[fmt]
    columns = Columns(source="source", labeler="labeler")
    ds = load_dataset(path, columns)
    stream = RowStream(path, columns)
    rows = list(stream)
    assert stream.layout.kind == "text" and stream.layout.id == "id"
    assert [r[0] for r in rows] == list(ds.X)
    assert [r[1] for r in rows] == [ds.classes[k] for k in ds.y]
    assert [r[2] for r in rows] == list(ds.ids)
    assert [r[3] for r in rows] == list(ds.source)  # type: ignore[arg-type]
    assert [r[4] for r in rows] == list(ds.labeler)  # type: ignore[arg-type]
    # and a manifest of the file equals a manifest of the dataset loaded from it
    assert create_manifest(path, columns).merkle_root == create_manifest(ds).merkle_root


def test_text_formats_need_no_pyarrow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes `import pyarrow` raise ImportError, as on an install without
    # the parquet extra: the CSV/TSV/JSONL cases still run, the Parquet case skips.
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    assert sorted(_write_all_formats(tmp_path, "csv")) == ["csv", "jsonl", "tsv"]
    with pytest.raises(pytest.skip.Exception):
        _write_all_formats(tmp_path, "parquet")


def test_tabular_and_numeric_labels_match_load_dataset(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", ["a", "b", "target"],
                     [["1.5", "2", "1"], ["0", "-3e2", "0"], ["7", "8", "1.0"]])
    ds = load_dataset(path)
    from_file, from_ds = create_manifest(path), create_manifest(ds)
    assert from_file.kind == "tabular" and from_file.layout.features == ("a", "b")
    assert from_file.labels == ("0", "1") and from_file.merkle_root == from_ds.merkle_root


def test_npz_rows_hash_the_raw_arrays(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(5, 4, 4), dtype=np.uint8)
    np.savez(tmp_path / "img.npz", X=X, y=np.array([0, 1, 1, 0, 1]),
             classes=np.array(["cat", "dog"]), ids=np.array([f"i{k}" for k in range(5)]))
    m = create_manifest(tmp_path / "img.npz")
    assert m.kind == "image" and m.ids == [f"i{k}" for k in range(5)]
    assert list(m.row_labels()) == ["cat", "dog", "dog", "cat", "dog"]
    X2 = X.copy()
    X2[3, 0, 0] ^= 1  # one bit of one pixel
    np.savez(tmp_path / "img2.npz", X=X2, y=np.array([0, 1, 1, 0, 1]),
             classes=np.array(["cat", "dog"]), ids=np.array([f"i{k}" for k in range(5)]))
    m2 = create_manifest(tmp_path / "img2.npz")
    changed = np.flatnonzero(np.any(m.content != m2.content, axis=1))
    assert changed.tolist() == [3]


@pytest.mark.parametrize(("body", "columns", "message"), [
    ("text,label\n", Columns(), "header but no rows"),
    ("", Columns(), "empty"),
    ("text,label\nhi,spam,extra\n", Columns(), "record 1 has 3 fields"),
    ("text,lbl\nhi,spam\n", Columns(), "no label column found"),
    ("text,label\nhi,spam\n", Columns(text="body"), "no column 'body' for the text"),
    ("text,label\nhi,\n", Columns(), "label is missing on row 0"),
    ("id,text,label\na,x,1\na,y,0\n", Columns(), "id 'a' in column 'id' repeats"),
    ("a,label\nzz,1\n", Columns(), "holds 'zz', not a number"),
    ("text,text,label\n", Columns(), "appears twice"),
])
def test_bad_files_are_one_clear_line(tmp_path: Path, body: str, columns: Columns,
                                      message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(DataError, match=message) as info:
        create_manifest(path, columns)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_bad_paths(tmp_path: Path) -> None:
    (tmp_path / "bytes.csv").write_bytes(b"text,label\n\xff\xfe,1\n")
    with pytest.raises(DataError, match="not UTF-8"):
        create_manifest(tmp_path / "bytes.csv")
    with pytest.raises(DataError, match="no such file"):
        create_manifest(tmp_path / "missing.csv")
    (tmp_path / "x.xlsx").write_text("nope")
    with pytest.raises(DataError, match="unknown data format"):
        create_manifest(tmp_path / "x.xlsx")
    (tmp_path / "l.jsonl").write_text('{"text": "a", "label": 1}\n[1, 2]\n')
    with pytest.raises(DataError, match="line 2 is not a JSON object"):
        create_manifest(tmp_path / "l.jsonl")
