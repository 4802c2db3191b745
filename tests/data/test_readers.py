from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from poisonlab.data import Columns, Dataset, load_dataset, save_dataset
from poisonlab.exceptions import DataError


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    return path


def test_csv_text_round_trip_with_a_field_larger_than_the_csv_default(tmp_path: Path) -> None:
    long_email = "word " * 60_000  # 300 KB, above the csv module's 128 KiB default field limit
    path = write_csv(tmp_path / "mail.csv", [["id", "text", "label"], ["a", long_email, "spam"],
                                              ["b", "hello", "ham"]])
    ds = load_dataset(path)
    assert ds.kind == "text"
    assert ds.classes == ("ham", "spam")
    assert list(ds.y) == [1, 0]
    assert list(ds.ids) == ["a", "b"]
    assert len(ds.X[0]) == len(long_email)
    save_dataset(ds, tmp_path / "copy.csv")
    again = load_dataset(tmp_path / "copy.csv")
    assert list(again.X) == list(ds.X) and list(again.y) == list(ds.y)


def test_tabular_csv_with_named_columns(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", [["a", "b", "target", "who"], ["1", "2.5", "0", "x"],
                                           ["3", "4", "1", "y"]])
    ds = load_dataset(path, Columns(features=("a", "b"), labeler="who"))
    assert ds.kind == "tabular"
    np.testing.assert_allclose(ds.X, [[1, 2.5], [3, 4]])
    assert list(ds.labeler) == ["x", "y"]
    assert ds.classes == ("0", "1")


def test_jsonl_and_tsv(tmp_path: Path) -> None:
    (tmp_path / "r.jsonl").write_text(
        "\n".join(json.dumps({"review": r, "class": c}) for r, c in [("good", "pos"), ("bad", "neg")]))
    ds = load_dataset(tmp_path / "r.jsonl")
    assert list(ds.X) == ["good", "bad"] and ds.classes == ("neg", "pos")
    (tmp_path / "r.tsv").write_text("text\tlabel\nfine\t1\nawful\t0\n")
    assert load_dataset(tmp_path / "r.tsv").classes == ("0", "1")


def test_parquet(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["a b", "c d"], "label": ["x", "y"]}), tmp_path / "d.parquet")
    assert load_dataset(tmp_path / "d.parquet").classes == ("x", "y")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty"),
        ("text,label\n", "no rows"),
        ("text\nhello\n", "no label column"),
        ("text,label\nhi,1\nyo,spam\n", "mixed label types"),
        ("x,label\n1.0,0\nnan,1\n", "NaN"),
        ("x,label\n1.0,0\nabc,1\n", "not a number"),
        ("text,label\nhi,\n", "label is missing"),
        ("id,text,label\na,hi,0\na,yo,1\n", "repeats"),
        ("text,label\nhi,0,extra\n", "fields"),
    ],
)
def test_bad_csv_gets_one_clear_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as info:
        load_dataset(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_named_column_and_non_utf8(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", [["body", "label"], ["x", "0"]])
    with pytest.raises(DataError, match="no column 'message'"):
        load_dataset(path, Columns(text="message"))
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\ncaf\xe9,0\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        load_dataset(latin)


def test_npz_images(tmp_path: Path) -> None:
    X = np.random.default_rng(0).integers(0, 256, size=(5, 6, 6), dtype=np.uint8)
    np.savez(tmp_path / "im.npz", X=X, y=np.array([0, 1, 0, 1, 1]))
    ds = load_dataset(tmp_path / "im.npz")
    assert ds.kind == "image" and ds.X.shape == (5, 6, 6, 1) and ds.X.dtype == np.float32
    np.testing.assert_allclose(ds.X[..., 0], X / 255.0, rtol=1e-6)
    save_dataset(ds, tmp_path / "copy.npz")
    again = load_dataset(tmp_path / "copy.npz")
    np.testing.assert_array_equal(again.X, ds.X)
    assert list(again.ids) == list(ds.ids)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"X": np.zeros((4, 8)), "y": np.zeros(4)}, "N×H×W"),
        ({"X": np.zeros((4, 8, 8)), "y": np.zeros(3)}, "4 rows but y"),
        ({"y": np.zeros(3)}, "no array 'X'"),
        ({"X": np.zeros((2, 4, 4, 7)), "y": np.zeros(2)}, "channels"),
    ],
)
def test_bad_npz(tmp_path: Path, arrays: dict[str, np.ndarray], message: str) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message):
        load_dataset(tmp_path / "bad.npz")


def test_npz_that_unpacks_past_the_limit_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 64 MB of zeros compress to about 64 kB: the size check reads the zip headers, not the data.
    X = np.zeros((1000, 256, 256), dtype=np.uint8)
    np.savez_compressed(tmp_path / "bomb.npz", X=X, y=np.zeros(1000, dtype=np.int64))
    assert (tmp_path / "bomb.npz").stat().st_size < 1_000_000
    monkeypatch.setenv("POISONLAB_MAX_NPZ_BYTES", str(10_000_000))
    with pytest.raises(DataError, match=r"unpack to 65544\d* bytes, above the 10000000-byte limit"):
        load_dataset(tmp_path / "bomb.npz")
    monkeypatch.setenv("POISONLAB_MAX_NPZ_BYTES", "lots")
    with pytest.raises(DataError, match="not a number of bytes"):
        load_dataset(tmp_path / "bomb.npz")
    monkeypatch.delenv("POISONLAB_MAX_NPZ_BYTES")
    assert len(load_dataset(tmp_path / "bomb.npz")) == 1000


def test_image_folder(tmp_path: Path) -> None:
    from PIL import Image

    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(2):
            Image.fromarray(np.full((4, 4), 50 * i, dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    ds = load_dataset(tmp_path)
    assert ds.classes == ("cat", "dog") and ds.X.shape == (4, 4, 4, 1)
    assert list(ds.ids) == ["cat/0.png", "cat/1.png", "dog/0.png", "dog/1.png"]


def test_unknown_path_names_the_corpora(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a named corpus"):
        load_dataset(tmp_path / "nope.csv")


def test_dataset_checks_and_split() -> None:
    with pytest.raises(DataError, match="3 rows but y has 2"):
        Dataset(X=np.zeros((3, 2)), y=np.array([0, 1]), classes=("a", "b"))
    ds = Dataset(X=np.arange(20.0).reshape(10, 2), y=np.array([0, 1] * 5), classes=("a", "b"))
    train, test = ds.split(test_size=0.3, random_state=1)
    assert len(train) == 7 and len(test) == 3
    assert set(train.ids) | set(test.ids) == set(ds.ids)
    assert not set(train.ids) & set(test.ids)
