"""One door for data handed over from Python: arrays, lists, pandas, sparse matrices, a
:class:`~poisonlab.data.Dataset`, a path or a corpus name, each turned into a ``Dataset``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import numpy as np

from poisonlab.data import Columns, Dataset
from poisonlab.data.arrays import MAX_DENSE_CELLS as MAX_DENSE_CELLS
from poisonlab.data.arrays import dataset_from_arrays, features_from_array, is_dataframe
from poisonlab.data.types import FeaturesLike, LabelsLike
from poisonlab.exceptions import DataError

if TYPE_CHECKING:
    from poisonlab.attacks import PoisonedDataset

DataLike: TypeAlias = Dataset | str | Path | FeaturesLike
"""What :func:`as_dataset` reads: a Dataset, a path or corpus name, or rows in memory
(:data:`poisonlab.data.FeaturesLike`)."""


def as_dataset(
    X: DataLike,
    y: LabelsLike | None = None,
    *,
    classes: Sequence[str] | None = None,
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
    if isinstance(X, (str, Path)):
        if classes is not None:
            raise DataError(f"X is the path {str(X)!r}, whose classes come from the file; pass "
                            "classes only with arrays.")
        if y is not None:
            raise DataError(f"X is the path {str(X)!r}, whose labels come from the file; pass y only "
                            "with arrays.")
        if labels:
            return read_training_data(X, columns, data_dir=data_dir)[0]
        from poisonlab.data import load_dataset

        return load_dataset(X, columns, data_dir=data_dir, require_labels=False)
    if y is None and not isinstance(X, Dataset) and not (labels and is_dataframe(X)):
        features, feature_names = features_from_array(X, columns)  # X's errors come first
        if labels:
            raise DataError("Labels are needed: pass y (class names or integers) with X, or a path "
                            "or DataFrame holding a label column.")
        from poisonlab.data.readers import UNLABELLED

        return Dataset(X=features, y=np.zeros(len(features), dtype=np.int64), classes=(UNLABELLED,),
                       feature_names=feature_names, name=name or "array")
    return dataset_from_arrays(X, y, classes=classes, columns=columns, name=name)


def read_training_data(path: str | Path, columns: Columns | None = None, *,
                       data_dir: str | Path | None = None) -> tuple[Dataset, PoisonedDataset | None]:
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
