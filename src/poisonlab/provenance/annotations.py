"""Several labels per row: who said what, read from a long or wide table, or from a dataset's
``labeler`` column.

Two layouts are read (CSV, TSV, JSONL or Parquet through :func:`poisonlab.data.readers.read_columns`,
or a DataFrame / mapping of columns):

- *long*: one record per label, with a row id column (``row``, ``row_id``, ``id``, ``item``), an
  annotator column (``annotator``, ``annotator_id``, ``worker``, ``labeler``) and a label column
  (``label``, ``class``, ...). Row ids are the data's ids (``"0".."N-1"`` for data without an id
  column).
- *wide*: one column per annotator and, optionally, a row id column; a blank cell (empty string,
  null, NaN) means the annotator did not label that row. Without an id column the table's rows are
  the data's rows, in order.

The layout is *long* when the table has an annotator column and a label column, *wide* otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from poisonlab.data.dataset import Dataset
from poisonlab.data.readers import LABEL_COLUMNS, UNLABELLED, in_memory_table, pick_column, read_columns
from poisonlab.exceptions import DataError

ROW_COLUMNS = ("row", "row_id", "id", "item", "example")
"""Names of the row id column of an annotation table, in the order they are looked for."""
ANNOTATOR_COLUMNS = ("annotator", "annotator_id", "worker", "worker_id", "labeler")
"""Names of the annotator column of a long annotation table, in the order they are looked for."""

MISSING = -1
"""The entry of :attr:`Annotations.labels` where an annotator gave a row no label."""


@dataclass(frozen=True)
class AnnotationColumns:
    """Which columns of an annotation table hold what (``None``: look for the usual names)."""

    row: str | None = None
    annotator: str | None = None
    label: str | None = None


@dataclass(frozen=True, eq=False)
class Annotations:
    """Labels given by several annotators to the rows of a dataset.

    Attributes
    ----------
    labels : ndarray of int, N×M
        ``labels[i, m]`` is annotator ``m``'s class (an index into ``classes``) for row ``i``, or
        :data:`MISSING` (-1) where annotator ``m`` did not label row ``i``.
    annotators : tuple of str
        The M annotator names, in column order.
    classes : tuple of str
        Class names.
    ids : ndarray of str
        The N row ids (the dataset's).
    layout : {"long", "wide", "labeler"}
        Where the labels came from: a long or wide table, or a dataset's ``labeler`` column.
    where : str
        The file or object they were read from (for messages).
    """

    labels: np.ndarray
    annotators: tuple[str, ...]
    classes: tuple[str, ...]
    ids: np.ndarray
    layout: str = "long"
    where: str = "the annotations"

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels)
        if labels.ndim != 2 or labels.shape[1] != len(self.annotators):
            raise DataError(f"{self.where}: labels has shape {labels.shape} but there are "
                            f"{len(self.annotators)} annotators.")
        if labels.shape[0] != len(self.ids):
            raise DataError(f"{self.where}: labels has {labels.shape[0]} rows but ids has {len(self.ids)}.")
        if labels.size and (labels.min() < MISSING or labels.max() >= len(self.classes)):
            raise DataError(f"{self.where}: labels must be -1 (no label) or a class index in "
                            f"range({len(self.classes)}); got values from {labels.min()} to {labels.max()}.")
        object.__setattr__(self, "labels", labels.astype(np.int64))

    @property
    def n_rows(self) -> int:
        """N, the number of rows of the data (labelled or not)."""
        return int(self.labels.shape[0])

    @property
    def n_annotators(self) -> int:
        """M, the number of annotators."""
        return len(self.annotators)

    @property
    def n_classes(self) -> int:
        """K, the number of classes."""
        return len(self.classes)

    @property
    def labels_per_row(self) -> np.ndarray:
        """How many annotators labelled each row (N ints)."""
        return (self.labels != MISSING).sum(axis=1)

    @property
    def labels_per_annotator(self) -> np.ndarray:
        """How many rows each annotator labelled (M ints)."""
        return (self.labels != MISSING).sum(axis=0)


def read_annotations(spec: str | Path | Any, dataset: Dataset, *,  # Any: a DataFrame (duck-typed)
                     columns: AnnotationColumns | None = None,
                     classes: Sequence[str] | None = None) -> Annotations:
    """Read a long or wide annotation table (see the module docstring) for the rows of ``dataset``.

    Parameters
    ----------
    spec : str, Path, pandas.DataFrame or mapping of column name to values
        A ``.csv``/``.tsv``/``.jsonl``/``.parquet`` file, or the same table in memory.
    dataset : Dataset
        The rows the labels are about: its ``ids`` match the row id column, and its classes
        (unless it was read without labels) are the classes a label may name.
    columns : AnnotationColumns, optional
        The row id, annotator and label columns, when they are not named as usual.
    classes : sequence of str, optional
        The classes a label may name (default: the dataset's; for a dataset without labels, the
        labels found, sorted as :func:`poisonlab.data.encode_labels` sorts them).

    Returns
    -------
    Annotations

    Raises
    ------
    DataError
        A label that names no class, a row id that is not one of the data's, an annotator who
        labels a row twice, an empty annotator name, a wide table whose row count differs from
        the data's, or a table without any label.

    References
    ----------
    .. [1] Wickham, "Tidy Data", Journal of Statistical Software 59(10), 2014 (long and wide
       layouts). https://doi.org/10.18637/jss.v059.i10
    """
    columns = columns or AnnotationColumns()
    table = in_memory_table(spec)
    if table is not None:
        where = "the annotations DataFrame" if hasattr(spec, "columns") else "the annotations table"
    elif isinstance(spec, (str, Path)):
        where = str(spec)
        table = read_columns(spec)
    else:
        raise DataError(f"annotations must be a path, a DataFrame or a mapping of columns; got a "
                        f"{type(spec).__name__}.")
    names = list(table)
    if not names or not table[names[0]]:
        raise DataError(f"{where}: the table has no rows.")
    row_col = pick_column(names, columns.row, ROW_COLUMNS, "row id", "--row-col", where)
    annotator_col = pick_column(names, columns.annotator, ANNOTATOR_COLUMNS, "annotator",
                                "--annotator-col", where)
    label_col = pick_column(names, columns.label, LABEL_COLUMNS, "label", "--annotation-label-col", where)
    known = _known_classes(dataset, classes)
    if annotator_col is not None and label_col is not None:
        if row_col is None:
            raise DataError(f"{where}: a long annotation table needs a row id column (one of "
                            f"{list(ROW_COLUMNS)}); columns are {names}.")
        return _long(table, row_col, annotator_col, label_col, dataset, known, where)
    return _wide(table, row_col, dataset, known, where)


def annotations_from_labelers(dataset: Dataset) -> Annotations:
    """One label per row: the dataset's label, given by the row's ``labeler``.

    Raises
    ------
    DataError
        The dataset has no ``labeler`` column, a row's labeler is blank, or the dataset has no labels.
    """
    if dataset.labeler is None:
        raise DataError(f"{dataset.name}: the data has no labeler column (--labeler-col) and no annotations "
                        "were given (--annotations).")
    if dataset.classes == (UNLABELLED,):
        raise DataError(f"{dataset.name}: the data has no labels for its labelers to have given.")
    names = np.asarray([str(v) for v in dataset.labeler], dtype=object)
    blank = np.flatnonzero(np.char.str_len(names.astype(str)) == 0)
    if blank.size:
        raise DataError(f"{dataset.name}: row {int(blank[0])} (id {dataset.ids[blank[0]]!r}) has a blank "
                        f"labeler ({blank.size} rows in all).")
    annotators, codes = np.unique(names, return_inverse=True)
    labels = np.full((len(dataset), len(annotators)), MISSING, dtype=np.int64)
    labels[np.arange(len(dataset)), codes] = dataset.y
    return Annotations(labels=labels, annotators=tuple(str(a) for a in annotators),
                       classes=tuple(dataset.classes), ids=np.asarray(dataset.ids, dtype=object),
                       layout="labeler", where=dataset.name)


# ---------------------------------------------------------------------------------- parsing
def _cell(value: object) -> str | None:
    """A label or id cell as a string; None for a blank (None, empty, NaN)."""
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
    if isinstance(value, bool):
        return str(value).lower()
    text = str(value).strip()
    return text or None


def _known_classes(dataset: Dataset, classes: Sequence[str] | None) -> tuple[str, ...] | None:
    if classes is not None:
        return tuple(str(c) for c in classes)
    if dataset.classes == (UNLABELLED,):
        return None
    return tuple(dataset.classes)


def _encode(values: list[str], known: tuple[str, ...] | None, where: str,
            records: list[int]) -> tuple[np.ndarray, tuple[str, ...]]:
    if known is None:
        from poisonlab.data.dataset import encode_labels

        codes, found = encode_labels(values, where=f"{where}: labels")
        return codes, tuple(found)
    index = {c: k for k, c in enumerate(known)}
    out = np.empty(len(values), dtype=np.int64)
    for j, v in enumerate(values):
        k = index.get(v)
        if k is None:
            bad = sorted({u for u in values if u not in index})
            raise DataError(f"{where}: record {records[j]} has the label {v!r}, which is not a class of the "
                            f"data; classes are {list(known)} ({len(bad)} unknown labels in all: "
                            f"{bad[:5]}).")
        out[j] = k
    return out, known


def _long(table: dict[str, list[object]], row_col: str, annotator_col: str, label_col: str,
          dataset: Dataset, known: tuple[str, ...] | None, where: str) -> Annotations:
    id_index = {str(v): i for i, v in enumerate(dataset.ids)}
    rows: list[int] = []
    who: list[str] = []
    values: list[str] = []
    records: list[int] = []
    unknown: list[str] = []
    for rec, (r, a, v) in enumerate(zip(table[row_col], table[annotator_col], table[label_col],
                                        strict=True), start=1):
        rid, name, label = _cell(r), _cell(a), _cell(v)
        if rid is None:
            raise DataError(f"{where}: record {rec} has no row id (column {row_col!r}).")
        if name is None:
            raise DataError(f"{where}: record {rec} has no annotator (column {annotator_col!r}).")
        if label is None:  # a blank label: the annotator skipped the row
            continue
        i = id_index.get(rid)
        if i is None:
            unknown.append(rid)
            continue
        rows.append(i)
        who.append(name)
        values.append(label)
        records.append(rec)
    if unknown:
        sample = ", ".join(repr(u) for u in unknown[:3])
        ids = ", ".join(repr(str(v)) for v in dataset.ids[:3])
        raise DataError(f"{where}: {len(unknown)} of {len(unknown) + len(rows)} labels name row ids that "
                        f"are not ids of {dataset.name} (first: {sample}); its ids are {ids}, ... "
                        f"(name the data's id column with --id-col, or the table's with --row-col).")
    if not rows:
        raise DataError(f"{where}: no labels (every label cell is blank).")
    codes, found = _encode(values, known, where, records)
    annotators, who_codes = np.unique(np.asarray(who, dtype=object), return_inverse=True)
    labels = np.full((len(dataset), len(annotators)), MISSING, dtype=np.int64)
    seen = np.full(labels.shape, 0, dtype=np.int64)
    for i, m, k, rec in zip(rows, who_codes, codes, records, strict=True):
        if seen[i, m]:
            raise DataError(f"{where}: annotator {annotators[m]!r} labels row {dataset.ids[i]!r} twice "
                            f"(records {seen[i, m]} and {rec}).")
        seen[i, m] = rec
        labels[i, m] = k
    return Annotations(labels=labels, annotators=tuple(str(a) for a in annotators), classes=found,
                       ids=np.asarray(dataset.ids, dtype=object), layout="long", where=where)


def _wide(table: dict[str, list[object]], row_col: str | None, dataset: Dataset,
          known: tuple[str, ...] | None, where: str) -> Annotations:
    names = [c for c in table if c != row_col]
    if not names:
        raise DataError(f"{where}: no annotator columns (a wide table has one column per annotator; a long "
                        f"one has columns {ROW_COLUMNS[0]!r}, {ANNOTATOR_COLUMNS[0]!r} and 'label').")
    n_records = len(table[names[0]])
    if row_col is None:
        if n_records != len(dataset):
            raise DataError(f"{where}: the table has {n_records} rows but {dataset.name} has {len(dataset)}; "
                            "a wide table without a row id column must list the data's rows in order.")
        positions = np.arange(n_records)
    else:
        id_index = {str(v): i for i, v in enumerate(dataset.ids)}
        positions = np.empty(n_records, dtype=np.int64)
        missing: list[str] = []
        first: dict[int, int] = {}
        for rec, r in enumerate(table[row_col], start=1):
            rid = _cell(r)
            i = id_index.get(rid) if rid is not None else None
            if i is None:
                missing.append(repr(rid))
                continue
            if i in first:
                raise DataError(f"{where}: row id {rid!r} appears twice (records {first[i]} and {rec}).")
            first[i] = rec
            positions[rec - 1] = i
        if missing:
            ids = ", ".join(repr(str(v)) for v in dataset.ids[:3])
            raise DataError(f"{where}: {len(missing)} of {n_records} records name row ids that are not ids "
                            f"of {dataset.name} (first: {', '.join(missing[:3])}); its ids are {ids}, ...")
    cells: list[tuple[int, int, str, int]] = []
    for m, name in enumerate(names):
        if not name.strip():
            raise DataError(f"{where}: column {m + 1} has an empty name; name every annotator column.")
        for rec, v in enumerate(table[name], start=1):
            label = _cell(v)
            if label is not None:
                cells.append((int(positions[rec - 1]), m, label, rec))
    if not cells:
        raise DataError(f"{where}: no labels (every cell is blank).")
    codes, found = _encode([c[2] for c in cells], known, where, [c[3] for c in cells])
    labels = np.full((len(dataset), len(names)), MISSING, dtype=np.int64)
    for (i, m, _, _), k in zip(cells, codes, strict=True):
        labels[i, m] = k
    return Annotations(labels=labels, annotators=tuple(names), classes=found,
                       ids=np.asarray(dataset.ids, dtype=object), layout="wide", where=where)
