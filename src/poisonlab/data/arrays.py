"""Python data as a :class:`~poisonlab.data.Dataset`: numpy arrays, lists of strings, pandas
DataFrames and Series, and scipy sparse matrices.

Paths and corpus names are not read here (:func:`poisonlab.data.load_dataset` reads them); this
is the conversion every layer above shares, so that ``attack.apply(texts, labels)`` and
``poisonlab.audit(texts, labels)`` read the same inputs the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np

from poisonlab.data.dataset import Dataset
from poisonlab.data.readers import Columns, to_unit_images
from poisonlab.exceptions import DataError

if TYPE_CHECKING:
    import pandas as pd

    from poisonlab.data.types import FeaturesLike, LabelsLike

MAX_DENSE_CELLS = 200_000_000
"""A sparse matrix is densified (the detectors read dense rows); above this many cells it is refused."""


def dataset_from_arrays(
    X: Dataset | FeaturesLike,
    y: LabelsLike | None = None,
    *,
    classes: Sequence[str] | None = None,
    columns: Columns | None = None,
    name: str | None = None,
) -> Dataset:
    """``X`` and ``y`` as a :class:`~poisonlab.data.Dataset`.

    Parameters
    ----------
    X : Dataset, pandas.DataFrame or Series, scipy sparse matrix, list or array
        A ``Dataset`` is returned as it is (then ``y`` and ``classes`` must be None). A DataFrame
        without ``y`` is read like a table file (a label column, then a text column or numeric
        feature columns); with ``y``, its one text column or its numeric columns are the
        features. A list or array of strings is text; a 2-D numeric array (or sparse matrix,
        densified) is tabular; an N×H×W or N×H×W×C array is images (scaled to float32 in
        [0, 1]). Paths are not read here: use :func:`poisonlab.data.load_dataset`.
    y : list, array or pandas Series, optional
        One label per row: class names (strings) or integers. Needed unless ``X`` is a Dataset
        or a DataFrame holding a label column. The index of a Series with unique values becomes
        the row ids.
    classes : sequence of str, optional
        Class names, in the order that integer labels index. Without it, names are sorted
        alphabetically and integers are their own labels (``classes`` "0".."max").
    columns : Columns, optional
        Column roles for a DataFrame.
    name : str, optional
        The dataset's name in reports (default ``"array"``).

    Returns
    -------
    Dataset
        Features in poisonlab's form (an object array of ``str`` for text, float64 N×D for
        tables, float32 N×H×W×C in [0, 1] for images) and integer labels indexing ``classes``.
        The input arrays are never written to.

    Raises
    ------
    DataError
        If ``X`` cannot be read as rows of one kind, ``y`` is missing or has another length, or
        ``y`` or ``classes`` come with a Dataset.

    References
    ----------
    .. [1] Harris et al., "Array programming with NumPy", Nature 585, 2020.
       https://doi.org/10.1038/s41586-020-2649-2
    .. [2] Virtanen et al., "SciPy 1.0: fundamental algorithms for scientific computing in
       Python", Nature Methods 17, 2020. https://doi.org/10.1038/s41592-019-0686-2
    """
    if isinstance(X, Dataset):
        if y is not None or classes is not None:
            raise DataError("X is a Dataset, which carries its labels and classes; pass y and "
                            "classes only with arrays.")
        return X
    if isinstance(X, (str, Path)):
        raise DataError(f"X is the path or name {str(X)!r}; pass arrays here, or read the file first "
                        "with poisonlab.load_dataset.")
    if is_dataframe(X) and y is None:  # read like a table file, as load_dataset reads a DataFrame
        from poisonlab.data.readers import in_memory_table, table_to_dataset

        table = in_memory_table(X)
        if table is None:
            raise DataError(f"X is a {type(X).__name__} that does not read as a table.")
        return table_to_dataset(table, columns or Columns(), where="the DataFrame", name="dataframe")
    features, feature_names = features_from_array(X, columns)
    n = len(features)
    if y is None:
        raise DataError("Labels are needed: pass y (class names or integers) with X, or a DataFrame "
                        "holding a label column.")
    y_arr = _labels(y)
    if len(y_arr) != n:
        raise DataError(f"X has {n} rows but y has {len(y_arr)}.")
    names = None if classes is None else tuple(str(c) for c in classes)
    ids: Any = None
    if is_series(y):
        ids = np.array([str(i) for i in y.index], dtype=object)
        if len(set(ids)) != len(ids):
            ids = None
    return Dataset(X=features, y=y_arr, classes=names, ids=ids,  # type: ignore[arg-type]
                   feature_names=feature_names, name=name or "array")


def features_from_array(X: FeaturesLike, columns: Columns | None = None) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """The features of ``X`` in poisonlab's form, with their names where ``X`` is a DataFrame.

    Parameters
    ----------
    X : pandas.DataFrame or Series, scipy sparse matrix, list or array
        As for :func:`dataset_from_arrays`, without labels: a DataFrame's one text column or its
        numeric columns (or those ``columns`` names) are the features.
    columns : Columns, optional
        Which DataFrame columns are the text or the features.

    Returns
    -------
    features : numpy.ndarray
        An object array of ``str`` (text), float64 N×D (tables) or float32 N×H×W×C in [0, 1]
        (images).
    feature_names : tuple of str or None
        The DataFrame's feature column names; None for other inputs.

    Raises
    ------
    DataError
        If ``X`` is not text, a 2-D numeric table or an image array, holds NaN or infinite
        values, or is a sparse matrix too large to densify.
    """
    feature_names: tuple[str, ...] | None = None
    if is_dataframe(X):
        X, feature_names = _frame_features(X, columns)
    return _features(X), feature_names


def is_dataframe(value: object) -> TypeGuard[pd.DataFrame]:
    """True for a pandas DataFrame (checked without importing pandas)."""
    return type(value).__name__ == "DataFrame" and hasattr(value, "columns") and hasattr(value, "dtypes")


def is_series(value: object) -> TypeGuard[pd.Series]:
    """True for a pandas Series (checked without importing pandas)."""
    return type(value).__name__ == "Series" and hasattr(value, "index") and hasattr(value, "dtype")


def _frame_features(frame: Any, columns: Columns | None) -> tuple[Any, tuple[str, ...] | None]:
    """A DataFrame's text column, or its numeric columns, as an array and their names."""
    if columns is not None and columns.text is not None:
        return frame[columns.text].tolist(), (str(columns.text),)
    if columns is not None and columns.features is not None:
        chosen = list(columns.features)
        return frame[chosen].to_numpy(dtype=np.float64), tuple(str(c) for c in chosen)
    text = [c for c in frame.columns if frame[c].dtype == object]
    if len(text) == 1 and len(frame.columns) == 1:
        return frame[text[0]].tolist(), (str(text[0]),)
    if text:
        raise DataError(f"The DataFrame has non-numeric columns {[str(c) for c in text][:5]}: pass "
                        "one text column, or numeric feature columns only (or columns=Columns(...)).")
    return frame.to_numpy(dtype=np.float64), tuple(str(c) for c in frame.columns)


def _features(X: Any) -> np.ndarray:
    if hasattr(X, "toarray") and hasattr(X, "nnz"):  # scipy sparse
        cells = int(X.shape[0]) * int(X.shape[1])
        if cells > MAX_DENSE_CELLS:
            raise DataError(f"X is a sparse {X.shape[0]}×{X.shape[1]} matrix; poisonlab reads dense "
                            f"rows and refuses more than {MAX_DENSE_CELLS:,} cells. Reduce its width "
                            "first (e.g. TruncatedSVD), or pass the raw texts.")
        return np.asarray(X.toarray(), dtype=np.float64)
    if is_series(X):
        X = X.tolist()
    if isinstance(X, (list, tuple)) and X and all(isinstance(v, str) for v in X):
        out = np.empty(len(X), dtype=object)
        out[:] = list(X)
        return out
    try:
        arr = np.asarray(X)
    except (TypeError, ValueError) as exc:
        raise DataError(f"X cannot be read as an array ({exc}).") from None
    if arr.dtype.kind in "UO":
        if arr.ndim != 1:
            raise DataError(f"Text X must be one string per row; got shape {arr.shape}.")
        bad = [i for i, v in enumerate(arr) if not isinstance(v, str)]
        if bad:
            raise DataError(f"X mixes text and other values: row {bad[0]} is a "
                            f"{type(arr[bad[0]]).__name__} ({len(bad)} rows in all).")
        return arr.astype(object)
    if arr.dtype.kind not in "biuf":
        raise DataError(f"X must hold numbers or strings; got dtype {arr.dtype}.")
    if arr.ndim == 1:
        raise DataError(f"X has shape {arr.shape}: pass rows (N×D), images (N×H×W[×C]) or texts.")
    if arr.ndim in (3, 4):
        return to_unit_images(arr)
    if arr.ndim != 2:
        raise DataError(f"X has shape {arr.shape}: pass rows (N×D), images (N×H×W[×C]) or texts.")
    if not np.all(np.isfinite(arr)):
        raise DataError("X holds NaN or infinite values; impute or drop them first.")
    return np.asarray(arr, dtype=np.float64)


def _labels(y: Any) -> np.ndarray:
    if is_series(y):
        y = y.tolist()
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise DataError(f"y must be one label per row; got shape {arr.shape}.")
    if arr.dtype.kind in "UO":
        return np.array([str(v) for v in arr], dtype=object)
    return arr
