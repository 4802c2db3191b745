"""One door for data handed over from Python: arrays, lists, pandas, sparse matrices, a
:class:`~poisonlab.data.Dataset`, a path or a corpus name, each turned into a ``Dataset``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from poisonlab.data import Columns, Dataset
from poisonlab.exceptions import DataError

MAX_DENSE_CELLS = 200_000_000
"""A sparse matrix is densified (the detectors read dense rows); above this many cells it is refused."""


def as_dataset(
    X: Any,
    y: Any = None,
    *,
    classes: Any = None,
    columns: Columns | None = None,
    labels: bool = True,
    name: str | None = None,
    data_dir: str | Path | None = None,
) -> Dataset:
    """``X`` (and ``y``) as a :class:`~poisonlab.data.Dataset`.

    Parameters
    ----------
    X : Dataset, str, Path, pandas.DataFrame or Series, scipy sparse matrix, list or array
        A ``Dataset`` is returned as it is. A path or corpus name is read with
        :func:`poisonlab.data.load_dataset` (labels come from the file). A DataFrame without
        ``y`` is read like a table file (a label column, then a text or numeric feature columns);
        with ``y``, its one text column or its numeric columns are the features. A list or
        array of strings is text; a 2-D numeric array (or sparse matrix, densified) is tabular;
        an N×H×W or N×H×W×C array is images (scaled to float32 in [0, 1]).
    y : list, array or pandas Series, optional
        Labels: class names or integers. Needed for arrays unless ``labels`` is False.
    classes : sequence of str, optional
        Class names, in the order that integer labels index.
    columns : Columns, optional
        Column roles for a path or a DataFrame.
    labels : bool
        False for inputs that may come without labels (``check``): every row gets one
        placeholder class.
    name : str, optional
        The dataset's name in reports (default: the file's stem, or ``"array"``).
    data_dir : str or Path, optional
        Where named corpora are cached.

    Returns
    -------
    Dataset

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
        if classes is not None:
            raise DataError(f"X is the path {str(X)!r}, whose classes come from the file; pass "
                            "classes only with arrays.")
        if y is not None:
            raise DataError(f"X is the path {str(X)!r}, whose labels come from the file; pass y only "
                            "with arrays.")
        if labels:
            return read_training_data(X, columns, data_dir=data_dir)[0]
        from poisonlab.detect_inputs.check import load_inputs

        return load_inputs(X, columns, data_dir=data_dir)
    if _is_dataframe(X) and y is None and labels:
        from poisonlab.data import load_dataset

        return load_dataset(X, columns)
    feature_names: tuple[str, ...] | None = None
    if _is_dataframe(X):
        X, feature_names = _frame_features(X, columns)
    features = _features(X)
    n = len(features)
    if y is None:
        if labels:
            raise DataError("Labels are needed: pass y (class names or integers) with X, or a path "
                            "or DataFrame holding a label column.")
        from poisonlab.detect_inputs.check import UNLABELLED

        y_arr: Any = np.zeros(n, dtype=np.int64)
        classes = (UNLABELLED,)
    else:
        y_arr = _labels(y)
        if len(y_arr) != n:
            raise DataError(f"X has {n} rows but y has {len(y_arr)}.")
    if classes is not None:
        classes = tuple(str(c) for c in classes)
    ids: Any = None
    if hasattr(y, "index") and _is_series(y):
        ids = np.array([str(i) for i in y.index], dtype=object)
        if len(set(ids)) != len(ids):
            ids = None
    return Dataset(X=features, y=y_arr, classes=classes, ids=ids, feature_names=feature_names,
                   name=name or "array")


def read_training_data(path: str | Path, columns: Columns | None = None, *,
                       data_dir: str | Path | None = None) -> tuple[Dataset, Any]:
    """A labelled dataset from a path or corpus name, read as ``poisonlab audit`` and ``defend``
    read theirs, and for a folder written by ``poisonlab attack`` its ground truth.

    Without ``columns``, columns named ``source`` and ``labeler`` are read as each row's source and
    labeler; a folder written by ``poisonlab attack`` names the dataset after the folder.

    Returns
    -------
    (Dataset, PoisonedDataset or None)

    References
    ----------
    .. [1] Gebru et al., "Datasheets for Datasets", CACM 64(12), 2021.
       https://arxiv.org/abs/1803.09010
    """
    from dataclasses import replace

    from poisonlab.data import load_dataset

    where = Path(path)
    if columns is None:
        header = _header(where)
        columns = Columns(source="source" if "source" in header else None,
                          labeler="labeler" if "labeler" in header else None)
    ds = load_dataset(path, columns, data_dir=data_dir)
    if where.is_dir() and ds.name == "data":
        ds = replace(ds, name=where.name)
    truth = None
    if where.is_dir() and (where / "poison.json").exists():
        from poisonlab.attacks import load_ground_truth

        truth = load_ground_truth(ds, where / "poison.json")
    return ds, truth


def _header(path: Path) -> set[str]:
    """Column names on the first line of a CSV, TSV or JSONL file (empty for anything else)."""
    import csv
    import json

    if path.is_dir():
        inner = sorted(path.glob("data.*"))
        path = inner[0] if inner else path
    suffix = path.suffix.lower()
    if not path.is_file() or suffix not in (".csv", ".tsv", ".jsonl"):
        return set()
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            first = handle.readline()
    except (OSError, UnicodeDecodeError):
        return set()
    if suffix == ".jsonl":
        try:
            obj = json.loads(first)
        except json.JSONDecodeError:
            return set()
        return set(obj) if isinstance(obj, dict) else set()
    row = next(csv.reader([first], delimiter="\t" if suffix == ".tsv" else ","), [])
    return {h.strip().lstrip("\ufeff") for h in row}


def _is_dataframe(value: Any) -> bool:
    return type(value).__name__ == "DataFrame" and hasattr(value, "columns") and hasattr(value, "dtypes")


def _is_series(value: Any) -> bool:
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
    if _is_series(X):
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
        from poisonlab.data.readers import to_unit_images

        return to_unit_images(arr)
    if arr.ndim != 2:
        raise DataError(f"X has shape {arr.shape}: pass rows (N×D), images (N×H×W[×C]) or texts.")
    if not np.all(np.isfinite(arr)):
        raise DataError("X holds NaN or infinite values; impute or drop them first.")
    return np.asarray(arr, dtype=np.float64)


def _labels(y: Any) -> np.ndarray:
    if _is_series(y):
        y = y.tolist()
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise DataError(f"y must be one label per row; got shape {arr.shape}.")
    if arr.dtype.kind in "UO":
        return np.array([str(v) for v in arr], dtype=object)
    return arr
