"""Rows of a data file, one at a time, for hashing in bounded memory.

:class:`RowStream` reads CSV/TSV and JSONL line by line, Parquet batch by batch and NPZ arrays row
by row, picking columns as :mod:`poisonlab.data.readers` does (explicit names first, then the usual
names for label, text and id), and yields :data:`Row` tuples in file order. Rows are the same rows,
in the same order, that :func:`poisonlab.data.load_dataset` gives, so that per-row results (audit
flags) line up with a manifest's rows.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import operator
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from poisonlab.data.dataset import Dataset
from poisonlab.data.readers import (
    ID_COLUMNS,
    LABELER_COLUMNS,
    SOURCE_COLUMNS,
    TEXT_COLUMNS,
    Columns,
    pick_column,
    pick_label_column,
)
from poisonlab.exceptions import DataError
from poisonlab.provenance.hashing import canonical_label

Kind = Literal["text", "tabular", "image"]
# (features: str for text or a numeric array, label: class name, id, source, labeler). The features
# stay Any: the hashing loop (manifest.hash_rows) branches on the layout's kind, not on their type.
Row = tuple[Any, str, "str | None", "str | None", "str | None"]
TABLE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
                 ".parquet": "parquet", ".npz": "npz"}
_PARQUET_BATCH = 65536


@dataclass(frozen=True)
class Layout:
    """Which columns a stream reads, resolved against the file: what a manifest records."""

    kind: Kind
    label: str
    text: str | None = None
    features: tuple[str, ...] | None = None
    id: str | None = None
    source: str | None = None
    labeler: str | None = None

    def to_dict(self) -> dict[str, object]:
        """The columns as a JSON-ready dict (label, text, features, id, source, labeler), as a manifest
        records them.
        """
        return {"label": self.label, "text": self.text,
                "features": None if self.features is None else list(self.features),
                "id": self.id, "source": self.source, "labeler": self.labeler}

    def as_columns(self) -> Columns:
        """The explicit :class:`Columns` that select exactly these columns again."""
        return Columns(label=self.label, text=self.text, features=self.features, id=self.id,
                       source=self.source, labeler=self.labeler)


def data_format(path: Path) -> str:
    """``csv``, ``tsv``, ``jsonl``, ``parquet`` or ``npz`` from the file name."""
    fmt = TABLE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"{path}: unknown data format {path.suffix!r}; use .csv, .tsv, .jsonl, .parquet or "
            ".npz."
        )
    return fmt


class RowStream:
    """The rows of ``data`` (a file path or an in-memory :class:`Dataset`), read lazily.

    ``layout`` is resolved on construction (reading only a header, a first line or a schema);
    iterating reads the rows. (Repeated ids are checked by the caller: :func:`check_unique_ids`.)
    """

    def __init__(self, data: str | Path | Dataset, columns: Columns | None = None, *,
                 layout: Layout | None = None) -> None:
        """``layout`` (from a manifest) names the exact columns to read, with no defaults."""
        self.columns = layout.as_columns() if layout is not None else (columns or Columns())
        self.expected = layout
        self.dataset: Dataset | None = None
        self.path: Path | None = None
        self.format: str
        if isinstance(data, Dataset):
            self.dataset = data
            self.format = "dataset"
            self.where = data.name
            self.layout = self._check(_dataset_layout(data))
            return
        path = Path(data)
        if not path.exists():
            raise DataError(f"{path}: no such file.")
        if path.is_dir():
            raise DataError(f"{path}: is a folder; a manifest describes one data file.")
        self.path = path
        self.where = str(path)
        self.format = data_format(path)
        self._first: dict[str, Any] | None = None
        if self.format in ("csv", "tsv"):
            names = self._csv_header()
        elif self.format == "jsonl":
            names = self._jsonl_names()
        elif self.format == "parquet":
            names = self._parquet_names()
        else:
            self.layout = self._check(self._npz_layout())
            return
        if layout is not None:
            for role, name in (("label", layout.label), ("text", layout.text),
                               ("id", layout.id), ("source", layout.source),
                               ("labeler", layout.labeler)):
                if name is not None and name not in names:
                    raise DataError(
                        f"{self.where}: no column {name!r}, which the manifest hashed as the "
                        f"{role}; columns are {list(names)}."
                    )
            missing = [c for c in layout.features or () if c not in names]
            if missing:
                raise DataError(
                    f"{self.where}: no column {missing[0]!r}, which the manifest hashed as a "
                    f"feature; columns are {list(names)}."
                )
            self.layout = layout
            return
        self.layout = _resolve(names, self.columns, self.where)

    def _check(self, found: Layout) -> Layout:
        """With an expected layout, the data must hold rows of the same kind and columns."""
        expected = self.expected
        if expected is None:
            return found
        if found.kind != expected.kind:
            raise DataError(f"{self.where}: holds {found.kind} rows but the manifest describes "
                            f"{expected.kind} rows.")
        for role in ("id", "source", "labeler"):
            if getattr(expected, role) is not None and getattr(found, role) is None:
                raise DataError(f"{self.where}: has no {role} column, but the manifest records "
                                f"one ({getattr(expected, role)!r}).")
        if self.format not in ("dataset", "npz"):
            return found
        # A dataset or an NPZ is compared by role, whatever its columns were called.
        return Layout(kind=found.kind, label=found.label, text=found.text,
                      features=found.features,
                      id=found.id if expected.id is not None else None,
                      source=found.source if expected.source is not None else None,
                      labeler=found.labeler if expected.labeler is not None else None)

    # ------------------------------------------------------------------ iteration
    def __iter__(self) -> Iterator[Row]:
        if self.dataset is not None:
            rows = _dataset_rows(self.dataset, self.layout)
        elif self.format in ("csv", "tsv"):
            rows = self._csv_rows()
        elif self.format == "jsonl":
            rows = self._jsonl_rows()
        elif self.format == "parquet":
            rows = self._parquet_rows()
        else:
            rows = self._npz_rows()
        yield from rows

    # ------------------------------------------------------------------ CSV and TSV
    def _open_text(self) -> Any:
        assert self.path is not None
        return self.path.open(newline="", encoding="utf-8")

    def _csv_header(self) -> list[str]:
        delimiter = "\t" if self.format == "tsv" else ","
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
        with self._decode_errors(), self._open_text() as handle:
            header = next(csv.reader(handle, delimiter=delimiter), None)
        if header is None:
            raise DataError(f"{self.where}: the file is empty.")
        header = [h.strip() for h in header]
        if header and header[0].startswith("\ufeff"):
            header[0] = header[0][1:]
        seen: set[str] = set()
        for h in header:
            if h in seen:
                raise DataError(f"{self.where}: column {h!r} appears twice in the header.")
            seen.add(h)
        self._header = header
        return header

    def _csv_rows(self) -> Iterator[Row]:
        delimiter = "\t" if self.format == "tsv" else ","
        header = self._header
        index = {h: j for j, h in enumerate(header)}
        pick = _Picker(self.layout, index.__getitem__, self.where)
        width = len(header)
        with self._decode_errors(), self._open_text() as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            next(reader, None)
            n = 0
            for number, record in enumerate(reader, start=1):
                if not record:
                    continue
                if len(record) != width:
                    raise DataError(
                        f"{self.where}: record {number} has {len(record)} fields but the header "
                        f"has {width}."
                    )
                yield pick(record, n)
                n += 1
        if n == 0:
            raise DataError(f"{self.where}: the file has a header but no rows.")

    @contextlib.contextmanager
    def _decode_errors(self) -> Iterator[None]:
        """Report a file that is not UTF-8, or not well-formed CSV, as one line."""
        try:
            yield
        except UnicodeDecodeError as exc:
            raise DataError(
                f"{self.where}: not UTF-8 text (byte {exc.object[exc.start]:#04x}); re-encode it "
                "as UTF-8."
            ) from None
        except csv.Error as exc:
            raise DataError(f"{self.where}: malformed {self.format.upper()}: {exc}.") from None

    # ------------------------------------------------------------------ JSONL
    def _jsonl_names(self) -> list[str]:
        with self._decode_errors(), self._open_text() as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    self._first = self._json_object(line, number)
                    return list(self._first)
        raise DataError(f"{self.where}: the file is empty.")

    def _json_object(self, line: str, number: int) -> dict[str, Any]:
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{self.where}: line {number} is not valid JSON ({exc.msg}).") from None
        if not isinstance(obj, dict):
            raise DataError(f"{self.where}: line {number} is not a JSON object.")
        return obj

    def _jsonl_rows(self) -> Iterator[Row]:
        pick = _Picker(self.layout, None, self.where)
        loads = json.loads
        with self._decode_errors(), self._open_text() as handle:
            n = 0
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    obj = loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(
                        f"{self.where}: line {number} is not valid JSON ({exc.msg})."
                    ) from None
                if not isinstance(obj, dict):
                    raise DataError(f"{self.where}: line {number} is not a JSON object.")
                yield pick(obj, n)
                n += 1

    # ------------------------------------------------------------------ Parquet
    def _parquet_file(self) -> Any:
        from poisonlab.exceptions import require

        require("pyarrow", "parquet")
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(self.path)
        except Exception as exc:  # pyarrow raises several unrelated types for a bad file
            raise DataError(f"{self.where}: not a readable Parquet file ({exc}).") from None

    def _parquet_names(self) -> list[str]:
        return list(self._parquet_file().schema_arrow.names)

    def _parquet_rows(self) -> Iterator[Row]:
        layout = self.layout
        wanted = [c for c in (layout.label, layout.text, layout.id, layout.source, layout.labeler)
                  if c is not None] + list(layout.features or ())
        wanted = list(dict.fromkeys(wanted))
        pick = _Picker(layout, None, self.where)
        n = 0
        try:
            batches = self._parquet_file().iter_batches(batch_size=_PARQUET_BATCH, columns=wanted)
            for batch in batches:
                cols = {name: batch.column(name).to_pylist() for name in wanted}
                for i in range(batch.num_rows):
                    yield pick({name: col[i] for name, col in cols.items()}, n)
                    n += 1
        except DataError:
            raise
        except Exception as exc:  # a damaged file fails part way through
            raise DataError(f"{self.where}: not a readable Parquet file ({exc}).") from None
        if n == 0:
            raise DataError(f"{self.where}: the file has no rows.")

    # ------------------------------------------------------------------ NPZ
    def _npz_load(self) -> dict[str, np.ndarray]:
        assert self.path is not None
        try:
            with np.load(self.path, allow_pickle=False) as archive:
                keys = set(archive.files)
                for key in ("X", "y"):
                    if key not in keys:
                        raise DataError(
                            f"{self.where}: the NPZ has no array {key!r} (it holds "
                            f"{sorted(keys)}); it needs 'X' and 'y'."
                        )
                return {k: archive[k] for k in ("X", "y", "ids", "classes") if k in keys}
        except (ValueError, OSError) as exc:
            raise DataError(
                f"{self.where}: not a readable NPZ archive without pickles ({exc})."
            ) from None

    def _npz_layout(self) -> Layout:
        arrays = self._npz_load()
        X, y = arrays["X"], arrays["y"]
        if X.ndim < 1 or y.ndim != 1 or len(y) != len(X):
            raise DataError(f"{self.where}: X has shape {X.shape} but y has shape {y.shape}.")
        # Against a manifest, _check compares kinds and roles; otherwise the options must fit.
        columns = Columns() if self.expected is not None else self.columns
        if columns.id not in (None, "ids"):
            raise DataError(f"{self.where}: an NPZ holds ids only in its array 'ids', not "
                            f"{columns.id!r} (--id-col).")
        for role, given in (("source", columns.source), ("labeler", columns.labeler)):
            if given is not None:
                raise DataError(f"{self.where}: an NPZ has no {role} column ({given!r}).")
        kind: Kind = "image" if X.ndim >= 3 else "tabular"
        return Layout(kind=kind, label="y", features=("X",),
                      id="ids" if "ids" in arrays else None)

    def _npz_rows(self) -> Iterator[Row]:
        arrays = self._npz_load()
        X, y = arrays["X"], arrays["y"]
        if X.dtype.hasobject or not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
            raise DataError(f"{self.where}: X has dtype {X.dtype}; rows must be numeric.")
        classes = arrays.get("classes")
        names: list[str | None]
        if classes is not None and np.issubdtype(y.dtype, np.integer):
            table = [str(c) for c in classes.astype(str)]
            if y.size and (y.min() < 0 or y.max() >= len(table)):
                raise DataError(f"{self.where}: y holds {int(y.max())}, outside the "
                                f"{len(table)} names in 'classes'.")
            names = [table[k] for k in y.tolist()]
        else:
            names = [canonical_label(v) for v in y.tolist()]
        ids = arrays["ids"].astype(str).tolist() if "ids" in arrays else None
        if ids is not None and len(ids) != len(X):
            raise DataError(f"{self.where}: X has {len(X)} rows but ids has {len(ids)}.")
        for i in range(len(X)):
            label = names[i]
            if label is None:
                raise DataError(f"{self.where}: label is missing on row {i}.")
            yield (X[i], label, None if ids is None else ids[i], None, None)


class _Picker:
    """Turns one record (a list by position, or a dict by name) into a :data:`Row`.

    One ``itemgetter`` call fetches every field a row needs; labels are canonicalized once per
    distinct raw value.
    """

    _CACHE_LIMIT = 100_000

    def __init__(self, layout: Layout, position: Any, where: str) -> None:
        self.layout = layout
        self.where = where
        key = position if position is not None else (lambda name: name)
        roles = [layout.label, layout.id, layout.source, layout.labeler]
        self.has = [r is not None for r in roles[1:]]
        data = [layout.text] if layout.text is not None else list(layout.features or ())
        self.names = [r for r in roles if r is not None] + data
        self.slots = [key(name) for name in self.names]
        self.fetch = operator.itemgetter(*self.slots)
        self.n_meta = 1 + sum(self.has)
        self.text = layout.text is not None
        self.labels: dict[Any, str] = {}

    def _label(self, raw: Any, n: int) -> str:
        label = canonical_label(raw)
        if label is None:
            raise DataError(
                f"{self.where}: column {self.layout.label!r}: label is missing on row {n}."
            )
        if raw.__class__ is str and len(self.labels) < self._CACHE_LIMIT:
            self.labels[raw] = label
        return label

    def __call__(self, record: Any, n: int) -> Row:
        try:
            values = self.fetch(record)
        except KeyError:  # a JSON object without some key: missing values are None
            values = tuple(record.get(k) for k in self.slots)
        raw = values[0]
        if raw.__class__ is str:  # only strings are cached: True, 1 and 1.0 are equal dict keys
            label = self.labels.get(raw) or self._label(raw, n)
        else:
            label = self._label(raw, n)
        pos = 1
        meta: list[str | None] = [None, None, None]
        for k in range(3):
            if self.has[k]:
                v = values[pos]
                meta[k] = v if v.__class__ is str else _string(v)
                pos += 1
        features: Any
        if self.text:
            text = values[pos]
            if text.__class__ is not str:
                if text is None:
                    raise DataError(
                        f"{self.where}: column {self.layout.text!r} is empty on row {n}."
                    )
                text = str(text)
            features = text
        else:
            features = self._features(values[pos:], n)
        return (features, label, meta[0], meta[1], meta[2])

    def _features(self, raw: Sequence[Any], n: int) -> np.ndarray:
        values = np.empty(len(raw), dtype=np.float64)
        names = self.names[self.n_meta:]
        for j, v in enumerate(raw):
            try:
                x = float(v)
            except (TypeError, ValueError):
                raise DataError(
                    f"{self.where}: column {names[j]!r} row {n} holds {str(v)[:40]!r}, not a "
                    "number; for a text column pass --text-col."
                ) from None
            if math.isnan(x) or math.isinf(x):
                raise DataError(f"{self.where}: column {names[j]!r} row {n} is {v!r} "
                                "(NaN or infinite).")
            values[j] = x
        return values


def _string(value: object) -> str:
    return "" if value is None else str(value)


def _resolve(names: Sequence[str], columns: Columns, where: str) -> Layout:
    """Pick label, text or feature, id, source and labeler columns as the readers do."""

    def pick(given: str | None, usual: Sequence[str], role: str, flag: str) -> str | None:
        return pick_column(names, given, usual, role, flag, where)

    label = pick_label_column(names, columns.label, where)
    id_col = pick(columns.id, ID_COLUMNS, "row id", "--id-col")
    source = pick(columns.source, SOURCE_COLUMNS, "source", "--source-col")
    labeler = pick(columns.labeler, LABELER_COLUMNS, "labeler", "--labeler-col")
    text = None if columns.features else pick(columns.text, TEXT_COLUMNS, "text", "--text-col")
    if text is not None:
        return Layout(kind="text", label=label, text=text, id=id_col, source=source,
                      labeler=labeler)
    reserved = {c for c in (label, id_col, source, labeler) if c}
    features = list(columns.features) if columns.features else [
        c for c in names if c not in reserved
    ]
    for c in features:
        if c not in names:
            raise DataError(
                f"{where}: no column {c!r} (--feature-cols); columns are {list(names)}."
            )
    if not features:
        raise DataError(f"{where}: no text or feature columns besides the label.")
    return Layout(kind="tabular", label=label, features=tuple(features), id=id_col, source=source,
                  labeler=labeler)


# ---------------------------------------------------------------------------------- datasets
def _dataset_layout(dataset: Dataset) -> Layout:
    n = len(dataset)
    positional = n > 0 and (
        str(dataset.ids[0]) == "0" and str(dataset.ids[-1]) == str(n - 1)
        and all(str(v) == str(i) for i, v in enumerate(dataset.ids.tolist()))
    )
    kind: Kind = dataset.kind
    names = dataset.feature_names
    return Layout(
        kind=kind,
        label="label",
        text=(names[0] if names else "text") if kind == "text" else None,
        features=None if kind == "text" else (names or ("X",)),
        id=None if positional else "id",
        source=None if dataset.source is None else "source",
        labeler=None if dataset.labeler is None else "labeler",
    )


def _dataset_rows(dataset: Dataset, layout: Layout) -> Iterator[Row]:
    classes = dataset.classes
    X = dataset.X
    ids = None if layout.id is None else [str(v) for v in dataset.ids.tolist()]
    source = None if dataset.source is None else [_string(v) for v in dataset.source.tolist()]
    labeler = None if dataset.labeler is None else [_string(v) for v in dataset.labeler.tolist()]
    text = layout.kind == "text"
    for i, k in enumerate(dataset.y.tolist()):
        yield (
            str(X[i]) if text else X[i],
            classes[k],
            None if ids is None else ids[i],
            None if source is None else source[i],
            None if labeler is None else labeler[i],
        )


def check_unique_ids(ids: Sequence[str], where: str, column: str | None) -> None:
    """Raise :class:`DataError` naming the first repeated id and the two rows that hold it."""
    if len(set(ids)) == len(ids):
        return
    seen: dict[str, int] = {}
    for i, rid in enumerate(ids):
        first = seen.setdefault(rid, i)
        if first != i:
            raise DataError(f"{where}: id {rid!r} in column {column!r} repeats (rows {first} and "
                            f"{i}).")
