"""Datasets: the :class:`Dataset` type, file readers and writers, named real corpora, and
:func:`dataset_from_arrays` for data already in Python (arrays, lists, pandas, sparse)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from poisonlab.data.arrays import dataset_from_arrays
from poisonlab.data.dataset import Dataset, encode_labels
from poisonlab.data.readers import Columns, in_memory_table, read_image_folder, read_npz, read_table_file
from poisonlab.data.types import FeaturesLike, LabelsLike, TableLike
from poisonlab.exceptions import DataError

CORPORA = ("spamassassin", "digits", "mnist")

__all__ = [
    "CORPORA",
    "Columns",
    "Dataset",
    "FeaturesLike",
    "LabelsLike",
    "TableLike",
    "dataset_from_arrays",
    "encode_labels",
    "load_dataset",
    "save_dataset",
]


def load_dataset(
    spec: str | Path | TableLike,
    columns: Columns | None = None,
    *,
    data_dir: str | Path | None = None,
    require_labels: bool = True,
) -> Dataset:
    """Load a named corpus, a file or folder, or a table already in memory.

    Parameters
    ----------
    spec : str, Path, pandas.DataFrame or mapping of column name to values
        A named corpus (``spamassassin``, ``digits``, ``mnist``); a file: ``.csv``/``.tsv``/
        ``.jsonl``/``.parquet`` (text or tabular columns), ``.npz`` images; a folder of
        ``<class>/<image>`` files or one written by ``poisonlab attack``; or a DataFrame (or a
        dict of equal-length columns), read like a table file: a label column, then a text
        column or numeric feature columns, optional id, source and labeler columns.
    columns : Columns, optional
        Which columns play which role (default: the usual names, as for files).
    data_dir : str or Path, optional
        Where named corpora are cached.
    require_labels : bool, default True
        False for inputs that may come without labels (what ``check`` reads): a table without a
        label column or an NPZ without ``y`` is then read with the one placeholder class
        :data:`~poisonlab.data.readers.UNLABELLED`. Labels that are there are read either way.

    Returns
    -------
    Dataset

    References
    ----------
    .. [1] McKinney, "Data Structures for Statistical Computing in Python", SciPy 2010 (pandas).
       https://doi.org/10.25080/Majora-92bf1922-00a
    """
    from poisonlab.data import corpora

    table = in_memory_table(spec)
    if table is not None:
        from poisonlab.data.readers import table_to_dataset

        where = "the DataFrame" if hasattr(spec, "columns") else "the table"
        return table_to_dataset(table, columns or Columns(), where=where, name="dataframe",
                                require_labels=require_labels)
    if not isinstance(spec, (str, Path)):
        raise DataError(f"load_dataset takes a corpus name, a path or a DataFrame; got a "
                        f"{type(spec).__name__}.")
    name = str(spec)
    if name == "spamassassin":
        return corpora.load_spamassassin(data_dir)
    if name == "digits":
        return corpora.load_digits_dataset()
    if name == "mnist":
        return corpora.load_mnist_sample()
    path = Path(spec)
    if path.is_dir():
        inner = sorted(path.glob("data.*"))
        if inner:
            return load_dataset(inner[0], columns, require_labels=require_labels)
        return read_image_folder(path)
    if not path.exists():
        raise DataError(
            f"{path}: no such file, and not a named corpus ({', '.join(CORPORA)})."
        )
    if path.suffix.lower() == ".npz":
        return read_npz(path, require_labels=require_labels)
    return read_table_file(path, columns, require_labels=require_labels)


def save_dataset(dataset: Dataset, path: str | Path) -> Path:
    """Write ``dataset`` so that :func:`load_dataset` reads it back identically.

    Text and tabular data go to ``.csv`` or ``.jsonl`` (labels written by class name), images to
    ``.npz``. The file is written to a temporary name and moved into place.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    suffix = path.suffix.lower()
    labels = [dataset.classes[k] for k in dataset.y]
    if dataset.kind == "image":
        if suffix != ".npz":
            raise DataError(f"{path}: images are saved as .npz, not {suffix!r}.")
        with tmp.open("wb") as handle:
            np.savez_compressed(
                handle, X=dataset.X, y=dataset.y, ids=dataset.ids.astype(str),
                classes=np.array(dataset.classes),
            )
    else:
        header, columns = _columns(dataset)
        header.append("label")
        columns.append(labels)
        if suffix == ".csv":
            with tmp.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(header)
                writer.writerows(zip(*columns, strict=True))
        elif suffix == ".jsonl":
            with tmp.open("w", encoding="utf-8") as handle:
                for row in zip(*columns, strict=True):
                    handle.write(json.dumps(dict(zip(header, row, strict=True))) + "\n")
        else:
            raise DataError(f"{path}: text and tabular data are saved as .csv or .jsonl.")
    tmp.replace(path)
    return path


def _columns(dataset: Dataset) -> tuple[list[str], list[list[object]]]:
    header: list[str] = ["id"]
    columns: list[list[object]] = [list(dataset.ids)]
    if dataset.kind == "text":
        header.append("text")
        columns.append(list(dataset.X))
    else:
        names = dataset.feature_names or tuple(f"x{j}" for j in range(dataset.X.shape[1]))
        for j, name in enumerate(names):
            header.append(name)
            columns.append([repr(float(v)) for v in dataset.X[:, j]])
    for col in ("source", "labeler"):
        value = getattr(dataset, col)
        if value is not None:
            header.append(col)
            columns.append(list(value))
    return header, columns
