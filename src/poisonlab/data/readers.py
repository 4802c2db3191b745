"""Readers for dataset files: CSV/TSV, JSONL, Parquet, NPZ images and image folders.

Every reader returns a :class:`~poisonlab.data.dataset.Dataset` and reports a bad file as one
:class:`~poisonlab.exceptions.DataError` line that names the file and the problem.
"""

from __future__ import annotations

import csv
import json
import math
import sys
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from poisonlab.data.dataset import Dataset, default_ids, encode_labels
from poisonlab.exceptions import DataError

LABEL_COLUMNS = ("label", "labels", "class", "target", "y", "category", "group")
TEXT_COLUMNS = ("text", "content", "body", "email", "message", "review", "sentence", "document")
ID_COLUMNS = ("id", "row_id", "uid")
SOURCE_COLUMNS = ("source",)
"""Where a row came from (a scraped site, a vendor, a folder): picked by this name, or ``--source-col``."""
LABELER_COLUMNS = ("labeler",)
"""Who gave the label: picked by this name, or ``--labeler-col``."""
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")
MAX_NPZ_BYTES = 8 * 1024**3
"""Largest uncompressed size of an NPZ's arrays that :func:`read_npz` reads (8 GiB; override with
the environment variable ``POISONLAB_MAX_NPZ_BYTES``): a zip member of zeros compresses a
thousandfold, so a small file can claim more memory than the machine has."""


@dataclass(frozen=True)
class Columns:
    """Which columns of a table hold what. ``None`` means: pick by the usual names."""

    label: str | None = None
    text: str | None = None
    features: tuple[str, ...] | None = None
    id: str | None = None
    source: str | None = None
    labeler: str | None = None


UNLABELLED = "__poisonlab_unlabelled__"
"""The one placeholder class of rows read with ``require_labels=False`` from a file without labels."""


def read_table_file(path: str | Path, columns: Columns | None = None, *,
                    require_labels: bool = True) -> Dataset:
    """Read a CSV, TSV, JSONL or Parquet file (the format from the extension).

    With ``require_labels=False`` a file without a label column is read too: every row gets the
    one placeholder class :data:`UNLABELLED` (live inputs to check come so).
    """
    path = Path(path)
    columns = columns or Columns()
    if not path.exists():
        raise DataError(f"{path}: no such file.")
    table = _read_by_suffix(path)
    return table_to_dataset(table, columns, where=str(path), name=path.stem,
                            require_labels=require_labels)


def read_columns(path: str | Path) -> dict[str, list[object]]:
    """The raw columns of a CSV, TSV, JSONL or Parquet file (the format from the extension), by
    name, as lists of cells: strings for CSV/TSV, JSON values (None where a key is absent) for
    JSONL, Python values (None for nulls) for Parquet. For tables that are not datasets (a long
    or wide table of annotations); every problem is one :class:`DataError` naming the file."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file.")
    if path.is_dir():
        raise DataError(f"{path}: a folder, not a table file.")
    table = _read_by_suffix(path)
    if not table:
        raise DataError(f"{path}: the file is empty (no columns).")
    return table


def _read_by_suffix(path: Path) -> dict[str, list[object]]:
    """The raw columns of a CSV, TSV, JSONL or Parquet file, the format told by the extension."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return _read_delimited(path, "\t" if suffix == ".tsv" else ",")
    if suffix in (".jsonl", ".ndjson"):
        return _read_jsonl(path)
    if suffix == ".parquet":
        return _read_parquet(path)
    raise DataError(f"{path}: unknown table format {suffix!r}; use .csv, .tsv, .jsonl or .parquet.")


def _read_delimited(path: Path, delimiter: str) -> dict[str, list[object]]:
    # Real emails are longer than the csv module's default 128 KiB field limit.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            # blank lines before the header are skipped; a file of nothing else is empty
            header = next((r for r in reader if any(c.strip() for c in r)), None)
            if header is None:
                raise DataError(f"{path}: the file is empty (no header, no rows).")
            header = [h.strip() for h in header]
            if header and header[0].startswith("\ufeff"):
                header[0] = header[0][1:]
            if any("\x00" in h for h in header):
                raise DataError(f"{path}: the header holds a NUL byte; this looks like a binary file, not text.")
            _check_header(header, path)
            table: dict[str, list[object]] = {h: [] for h in header}
            for lineno, record in enumerate(reader, start=2):
                if not record:
                    continue
                if len(record) != len(header):
                    raise DataError(
                        f"{path}: record {lineno - 1} has {len(record)} fields but the header "
                        f"has {len(header)}."
                    )
                if any("\x00" in v for v in record):
                    raise DataError(f"{path}: record {lineno - 1} holds a NUL byte; this looks like a "
                                    "binary file, not text.")
                for h, v in zip(header, record, strict=True):
                    table[h].append(v)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
            "re-encode it as UTF-8."
        ) from None
    except csv.Error as exc:
        raise DataError(f"{path}: malformed {'TSV' if delimiter == chr(9) else 'CSV'}: {exc}.") from None
    return table


def _check_header(header: Sequence[str], path: Path) -> None:
    seen: set[str] = set()
    for h in header:
        if h in seen:
            raise DataError(f"{path}: column {h!r} appears twice in the header.")
        seen.add(h)


def _read_jsonl(path: Path) -> dict[str, list[object]]:
    table: dict[str, list[object]] = {}
    n = 0
    try:
        with path.open(encoding="utf-8") as handle:
            for lineno, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                line = line.rstrip("\r\n")
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(
                        f"{path}: line {lineno} is not valid JSON ({exc.msg} at column {exc.colno}): "
                        f"{_snippet(line, exc.pos)}."
                    ) from None
                if not isinstance(obj, dict):
                    raise DataError(f"{path}: line {lineno} is not a JSON object.")
                for key in obj:
                    if key not in table:
                        table[key] = [None] * n
                for key, col in table.items():
                    col.append(obj.get(key))
                n += 1
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
            "re-encode it as UTF-8."
        ) from None
    if n == 0:
        raise DataError(f"{path}: the file is empty (no JSON objects, one a line).")
    return table


def _snippet(text: str, at: int, width: int = 60) -> str:
    """``text`` around offset ``at``, quoted on one line, with ... where it was shortened."""
    start = max(0, min(at, len(text)) - width // 2)
    piece = text[start:start + width]
    return ("..." if start else "") + repr(piece) + ("..." if start + width < len(text) else "")


def _read_parquet(path: Path) -> dict[str, list[object]]:
    from poisonlab.exceptions import require

    require("pyarrow", "parquet")
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise DataError(f"{path}: not a readable Parquet file ({_first_line(exc)}).") from None
    return {name: table.column(name).to_pylist() for name in table.column_names}


def pick_column(names: Sequence[str], given: str | None, usual: Sequence[str], role: str,
                flag: str, where: str) -> str | None:
    """The column for a role: the one the user named (an error naming the columns when there is
    none such), else the first of the ``usual`` names present (case-insensitive), else None."""
    if given is not None:
        if given not in names:
            raise DataError(
                f"{where}: no column {given!r} for the {role} ({flag}); columns are {list(names)}."
            )
        return given
    lowered = {n.lower(): n for n in names}
    return next((lowered[u] for u in usual if u in lowered), None)


def pick_label_column(names: Sequence[str], given: str | None, where: str) -> str:
    """The label column (see :func:`pick_column`); an error when none is found."""
    label = pick_column(names, given, LABEL_COLUMNS, "label", "--label-col", where)
    if label is None:
        raise DataError(
            f"{where}: no label column found (looked for {list(LABEL_COLUMNS)}); name it with "
            f"--label-col. Columns are {list(names)}."
        )
    return label


def in_memory_table(spec: Any) -> dict[str, list[object]] | None:  # Any: a duck-typed DataFrame
    """The columns of a pandas DataFrame or a mapping of columns, as lists, with missing cells
    (None, NaN) as None; None for anything else."""
    if isinstance(spec, Mapping):
        return {str(k): list(v) for k, v in spec.items()}
    if type(spec).__name__ == "DataFrame" and hasattr(spec, "columns") and hasattr(spec, "to_dict"):
        out: dict[str, list[object]] = {}
        for col in spec.columns:
            values = spec[col].tolist()
            out[str(col)] = [None if _missing_cell(v) else v for v in values]
        if len(out) != len(spec.columns):
            raise DataError("The DataFrame has two columns with the same name.")
        return out
    return None


def _missing_cell(value: object) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def table_to_dataset(
    table: dict[str, list[object]], columns: Columns, *, where: str, name: str,
    require_labels: bool = True,
) -> Dataset:
    """Turn named columns into a dataset: pick the label, text or feature columns and check them.

    Without a label column (and none named in ``columns``) the table is refused, or, with
    ``require_labels=False``, read with the one placeholder class :data:`UNLABELLED`.
    """
    names = list(table)
    if not names:
        raise DataError(f"{where}: the file is empty (no columns).")
    if not table[names[0]]:
        raise DataError(f"{where}: the file has a header ({', '.join(map(repr, names[:8]))}) but no rows.")

    def pick(given: str | None, usual: Sequence[str], role: str, flag: str) -> str | None:
        return pick_column(names, given, usual, role, flag, where)

    label_col = pick_label_column(names, columns.label, where) if require_labels else \
        pick(columns.label, LABEL_COLUMNS, "label", "--label-col")
    id_col = pick(columns.id, ID_COLUMNS, "row id", "--id-col")
    source_col = pick(columns.source, SOURCE_COLUMNS, "source", "--source-col")
    labeler_col = pick(columns.labeler, LABELER_COLUMNS, "labeler", "--labeler-col")
    reserved = {c for c in (label_col, id_col, source_col, labeler_col) if c}

    if label_col is not None:
        y, classes = encode_labels(table[label_col], where=f"{where}: column {label_col!r}")
    else:
        y, classes = np.zeros(len(table[names[0]]), dtype=np.int64), (UNLABELLED,)
    n = len(y)
    ids = _ids(table[id_col], where, id_col) if id_col else None
    source = _strings(table[source_col]) if source_col else None
    labeler = _strings(table[labeler_col]) if labeler_col else None

    text_col = None if columns.features else pick(columns.text, TEXT_COLUMNS, "text", "--text-col")
    if text_col is not None:
        texts = table[text_col]
        missing = [i for i, t in enumerate(texts) if t is None]
        if missing:
            raise DataError(
                f"{where}: column {text_col!r} is empty on row {missing[0]} "
                f"({len(missing)} rows in all)."
            )
        X = np.empty(n, dtype=object)
        X[:] = [str(t) for t in texts]
        return Dataset(X=X, y=y, classes=classes, ids=default_ids(n) if ids is None else ids,
                       source=source, labeler=labeler,
                       feature_names=(text_col,), name=name)

    feature_cols = list(columns.features) if columns.features else [
        c for c in names if c not in reserved
    ]
    for c in feature_cols:
        if c not in table:
            raise DataError(f"{where}: no column {c!r} (--feature-cols); columns are {names}.")
    if not feature_cols:
        raise DataError(f"{where}: no feature columns besides the label.")
    X = np.empty((n, len(feature_cols)), dtype=np.float64)
    for j, c in enumerate(feature_cols):
        for i, v in enumerate(table[c]):
            try:
                x = float(v)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise DataError(
                    f"{where}: column {c!r} row {i} holds {str(v)[:40]!r}, not a number; for a "
                    "text column pass --text-col."
                ) from None
            if math.isnan(x) or math.isinf(x):
                raise DataError(f"{where}: column {c!r} row {i} is {v!r} (NaN or infinite).")
            X[i, j] = x
    return Dataset(X=X, y=y, classes=classes, ids=default_ids(n) if ids is None else ids,
                       source=source, labeler=labeler,
                   feature_names=tuple(feature_cols), name=name)


def _ids(values: list[object], where: str, col: str) -> np.ndarray:
    ids = _strings(values)
    seen: dict[str, int] = {}
    for i, v in enumerate(ids):
        if v in seen:
            raise DataError(f"{where}: id {v!r} in column {col!r} repeats (rows {seen[v]} and {i}).")
        seen[v] = i
    return ids


def _strings(values: list[object]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = ["" if v is None else str(v) for v in values]
    return out


# ---------------------------------------------------------------------------------- images
def read_npz(path: str | Path, *, require_labels: bool = True) -> Dataset:
    """Images from an NPZ with ``X`` (N×H×W or N×H×W×C) and ``y``; optional ``ids``, ``classes``.

    With ``require_labels=False`` an NPZ without ``y`` is read too, every image with the one
    placeholder class :data:`UNLABELLED`.

    Pixel values are scaled to float32 in [0, 1]: uint8 by 255, other ranges by their maximum.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file.")
    if path.is_dir():
        raise DataError(f"{path}: a folder, not an NPZ file.")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty (0 bytes); an NPZ is a zip archive of .npy arrays "
                        "'X' and 'y' (numpy.savez).")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not an NPZ archive (truncated, damaged, or another format); an NPZ is "
                        "a zip archive of .npy arrays 'X' and 'y' (numpy.savez).")
    try:
        with zipfile.ZipFile(path) as members:
            _check_npz_members(path, members)
        with np.load(path, allow_pickle=False) as archive:
            keys = set(archive.files)
            for key in ("X", "y") if require_labels or "y" in keys else ("X",):
                if key not in keys:
                    raise DataError(
                        f"{path}: the NPZ has no array {key!r} (it holds {sorted(keys)}); it needs "
                        "'X' (N×H×W or N×H×W×C) and 'y'."
                    )
            X = archive["X"]
            y_raw = archive["y"] if "y" in keys else None
            ids = archive["ids"].astype(str).astype(object) if "ids" in keys else None
            classes = tuple(archive["classes"].astype(str)) if "classes" in keys else None
    except DataError:
        raise
    except (ValueError, OSError, EOFError, KeyError, RuntimeError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{path}: a damaged NPZ archive ({_first_line(exc)}).") from None
    if X.ndim not in (3, 4):
        raise DataError(
            f"{path}: X has shape {X.shape}; images must be N×H×W or N×H×W×C."
        )
    if X.ndim == 4 and X.shape[-1] not in (1, 3, 4):
        raise DataError(f"{path}: X has {X.shape[-1]} channels in its last axis; expected 1, 3 or 4.")
    if X.size == 0:
        raise DataError(f"{path}: X has shape {X.shape}: no pixels, so no images to read.")
    if ids is not None and ids.shape != (len(X),):
        raise DataError(f"{path}: X has {len(X)} rows but ids has shape {ids.shape}.")
    if y_raw is not None and (y_raw.ndim != 1 or len(y_raw) != len(X)):
        raise DataError(f"{path}: X has {len(X)} rows but y has shape {y_raw.shape}.")
    if X.dtype.kind not in "uif":
        raise DataError(f"{path}: X has dtype {X.dtype}; images must be integer or float pixels.")
    if np.issubdtype(X.dtype, np.floating) and not np.isfinite(X).all():
        raise DataError(f"{path}: X holds NaN or infinite pixel values.")
    images = to_unit_images(X)
    if y_raw is None:
        return Dataset(X=images, y=np.zeros(len(images), dtype=np.int64), classes=(UNLABELLED,),
                       ids=ids if ids is not None else default_ids(len(images)), name=path.stem)
    if classes is not None and np.issubdtype(y_raw.dtype, np.integer):
        y = y_raw.astype(np.int64)
    else:
        y, classes = encode_labels(list(y_raw), where=f"{path}: y")
    return Dataset(X=images, y=y, classes=classes,
                   ids=ids if ids is not None else default_ids(len(images)), name=path.stem)


def _check_npz_members(path: Path, archive: zipfile.ZipFile) -> None:
    """Refuse object arrays, arrays whose header claims more data than their member holds, and
    archives that unpack to more than :data:`MAX_NPZ_BYTES`.

    Only the .npy headers are read: numpy would allocate the claimed size before reading the data.
    """
    import os

    from numpy.lib import format as npy

    limit = MAX_NPZ_BYTES
    env = os.environ.get("POISONLAB_MAX_NPZ_BYTES")
    if env:
        try:
            limit = int(env)
        except ValueError:
            raise DataError(f"POISONLAB_MAX_NPZ_BYTES={env!r} is not a number of bytes.") from None
    total = sum(info.file_size for info in archive.infolist() if info.filename.endswith(".npy"))
    if total > limit:
        raise DataError(f"{path}: its arrays unpack to {total} bytes, above the {limit}-byte limit "
                        "(POISONLAB_MAX_NPZ_BYTES raises it); refusing to read it into memory.")
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            continue
        key = info.filename[:-4]
        with archive.open(info) as handle:
            version = npy.read_magic(handle)
            if version == (1, 0):
                shape, _, dtype = npy.read_array_header_1_0(handle)
            elif version in ((2, 0), (3, 0)):
                shape, _, dtype = npy.read_array_header_2_0(handle)
            else:
                raise ValueError(f"array {key!r} has .npy format version {version}")
        if dtype.hasobject:
            raise DataError(f"{path}: array {key!r} holds Python objects (a pickle); poisonlab reads NPZ "
                            "files without pickles: save X as numbers and y, ids, classes as numbers "
                            "or strings.")
        claimed = math.prod(shape) * dtype.itemsize
        if claimed > info.file_size:
            raise DataError(f"{path}: array {key!r} claims shape {tuple(shape)} ({claimed} bytes) but "
                            f"its member holds {info.file_size} bytes; the archive is damaged.")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def to_unit_images(X: np.ndarray) -> np.ndarray:
    """N×H×W[×C] numeric pixels as float32 N×H×W×C in [0, 1]."""
    if X.ndim == 3:
        X = X[..., None]
    if X.dtype == np.uint8:
        return (X.astype(np.float32) / 255.0)
    X = X.astype(np.float32)
    lo, hi = float(X.min()), float(X.max())
    if lo < 0:
        X = X - lo
        hi -= lo
    if hi > 1.0:
        X = X / (255.0 if hi > 16 else hi)
    return np.clip(X, 0.0, 1.0)


def read_image_folder(path: str | Path) -> Dataset:
    """Images under ``path/<class name>/*.png`` (any format Pillow reads), one folder a class."""
    from PIL import Image, UnidentifiedImageError

    root = Path(path)
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{root}: no class folders; expected {root}/<class>/<image files>.")
    arrays: list[np.ndarray] = []
    labels: list[int] = []
    ids: list[str] = []
    shape: tuple[int, ...] | None = None
    for k, d in enumerate(class_dirs):
        for f in sorted(d.iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(f) as img:
                    arr = np.asarray(img.convert("L" if img.mode in ("1", "L", "P") else "RGB"))
            except (UnidentifiedImageError, OSError) as exc:
                raise DataError(f"{f}: not a readable image ({exc}).") from None
            if shape is None:
                shape = arr.shape
            elif arr.shape != shape:
                raise DataError(
                    f"{f}: image is {arr.shape} but earlier images are {shape}; resize them to one size."
                )
            arrays.append(arr)
            labels.append(k)
            ids.append(f"{d.name}/{f.name}")
    if not arrays:
        raise DataError(f"{root}: no image files in the class folders.")
    X = to_unit_images(np.stack(arrays).astype(np.uint8))
    return Dataset(X=X, y=np.array(labels), classes=tuple(d.name for d in class_dirs),
                   ids=np.array(ids, dtype=object), name=root.name)
