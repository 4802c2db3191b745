"""Dataset takes class names as labels and plain lists; load_dataset takes a DataFrame."""

from __future__ import annotations

import numpy as np
import pytest

from poisonlab.data import Columns, Dataset, load_dataset
from poisonlab.exceptions import DataError


def test_dataset_takes_string_labels_and_lists() -> None:
    """The defect: Dataset(texts, ["ham", ...]) demanded integer labels."""
    texts = ["win cash", "lunch at noon", "cheap pills", "notes"]
    ds = Dataset(texts, ["spam", "ham", "spam", "ham"])
    assert ds.kind == "text" and ds.X.dtype == object
    assert ds.classes == ("ham", "spam") and list(ds.y) == [1, 0, 1, 0]
    ordered = Dataset(texts, ["spam", "ham", "spam", "ham"], classes=("spam", "ham"))
    assert list(ordered.y) == [0, 1, 0, 1]
    numeric = Dataset(np.zeros((3, 2)), [0, 2, 1])
    assert numeric.classes == ("0", "1", "2") and numeric.kind == "tabular"
    as_strings = Dataset(np.zeros((3, 2)), ["10", "2", "2"])
    assert as_strings.classes == ("2", "10")  # numbers as names sort numerically
    with pytest.raises(DataError, match=r"labels \['x'\] are not among the classes \['y'\]"):
        Dataset(["a"], ["x"], classes=("y",))
    with pytest.raises(DataError, match="mixed label types"):
        Dataset(["a", "b"], ["ham", "3"])
    assert list(Dataset(np.zeros((2, 1)), np.array([1.0, 0.0])).y) == [1, 0]
    with pytest.raises(DataError, match=r"y must hold class names or integers; row 1 has 0\.5"):
        Dataset(np.zeros((2, 1)), np.array([1.0, 0.5]))
    with pytest.raises(DataError, match="X has 2 rows but y has 1"):
        Dataset(["a", "b"], ["ham"])


def test_load_dataset_takes_a_dataframe() -> None:
    """The defect: load_dataset(df) was a TypeError."""
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"id": ["m1", "m2", "m3"], "text": ["win cash", "lunch", "cheap pills"],
                       "label": ["spam", "ham", "spam"], "source": ["a", "b", "a"]})
    ds = load_dataset(df, Columns(source="source"))
    assert ds.kind == "text" and list(ds.ids) == ["m1", "m2", "m3"] and list(ds.source) == ["a", "b", "a"]
    assert ds.classes == ("ham", "spam")
    table = pd.DataFrame({"x1": [0.5, 1.5, 2.5], "x2": [1, 0, 1], "label": [0, 1, 0]})
    tab = load_dataset(table)
    assert tab.kind == "tabular" and tab.feature_names == ("x1", "x2")
    np.testing.assert_allclose(tab.X, table[["x1", "x2"]].to_numpy())
    assert load_dataset({"text": ["a", "b"], "label": ["x", "y"]}).classes == ("x", "y")
    with pytest.raises(DataError, match="corpus name, a path or a DataFrame"):
        load_dataset(42)  # type: ignore[arg-type]
