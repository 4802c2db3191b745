"""One door for data with or without labels: ``load_dataset(..., require_labels=False)``.

``check`` reads live inputs that may come without a label column; it used to re-read such files
with a parser of its own, chosen by matching the text of the labelled reader's error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from poisonlab.data import Columns, load_dataset
from poisonlab.data.readers import UNLABELLED
from poisonlab.detect_inputs.check import load_inputs
from poisonlab.exceptions import DataError


def test_a_table_without_labels_reads_with_one_placeholder_class(tmp_path: Path) -> None:
    path = tmp_path / "live.csv"
    path.write_text("id,text,source\na,free money now,web\nb,lunch at noon?,mail\n", encoding="utf-8")
    with pytest.raises(DataError, match="no label column"):
        load_dataset(path)
    data = load_dataset(path, Columns(source="source"), require_labels=False)
    assert data.classes == (UNLABELLED,) and list(data.y) == [0, 0]
    assert list(data.X) == ["free money now", "lunch at noon?"] and list(data.ids) == ["a", "b"]
    assert list(data.source) == ["web", "mail"]  # the same reader: every column role is kept
    assert load_inputs(path).classes == (UNLABELLED,)


def test_labels_that_are_there_are_read_either_way(tmp_path: Path) -> None:
    path = tmp_path / "labelled.jsonl"
    path.write_text('{"text": "hi", "label": "ham"}\n{"text": "win", "label": "spam"}\n',
                    encoding="utf-8")
    assert load_dataset(path, require_labels=False).classes == ("ham", "spam")
    table = {"f1": [0.5, 1.5], "f2": [2.0, 3.0]}
    assert load_dataset(table, require_labels=False).X.shape == (2, 2)


def test_a_named_label_column_must_exist_even_when_labels_are_optional(tmp_path: Path) -> None:
    path = tmp_path / "live.csv"
    path.write_text("text\nhello\n", encoding="utf-8")
    with pytest.raises(DataError, match="no column 'kind' for the label"):
        load_dataset(path, Columns(label="kind"), require_labels=False)


def test_an_npz_without_y(tmp_path: Path) -> None:
    path = tmp_path / "images.npz"
    np.savez(path, X=np.zeros((3, 8, 8), dtype=np.uint8))
    with pytest.raises(DataError, match="no array 'y'"):
        load_dataset(path)
    data = load_dataset(path, require_labels=False)
    assert data.classes == (UNLABELLED,) and data.X.shape == (3, 8, 8, 1)


def test_unlabelled_inputs_go_through_the_hardened_reader(tmp_path: Path) -> None:
    # a field longer than the csv module's default 128 KiB limit is read as labelled data is
    path = tmp_path / "long.csv"
    path.write_text("text\n" + "x" * 200_000 + "\n", encoding="utf-8")
    assert len(load_inputs(path).X[0]) == 200_000


def test_source_and_labeler_columns_are_found_by_name_in_python_too(tmp_path: Path) -> None:
    # the command line found them by sniffing the file's header; Python's load_dataset took a
    # table's 'source' column as a feature. Now the reader picks both roles by their names.
    path = tmp_path / "rows.csv"
    path.write_text("label,f1,f2,source,labeler\n0,1.0,2.0,vendor-a,ann\n1,3.0,4.0,vendor-b,bob\n",
                    encoding="utf-8")
    data = load_dataset(path)
    assert data.feature_names == ("f1", "f2") and data.X.shape == (2, 2)
    assert list(data.source) == ["vendor-a", "vendor-b"] and list(data.labeler) == ["ann", "bob"]
