"""The :class:`Dataset` every part of poisonlab passes around.

Glossary (CONTRIBUTING.md): ``N`` rows, ``K`` classes; ``X`` the features (a numeric array, an image
array N×H×W×C of float32 in [0, 1], or an object array of ``str`` for text); ``y`` integer labels in
``range(K)`` indexing ``classes``; ``ids`` stable row ids (strings) that survive subsetting and
shuffling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from poisonlab.exceptions import DataError, ParameterError

Kind = Literal["text", "image", "tabular"]


@dataclass(frozen=True, eq=False)
class Dataset:
    """Features, integer labels with class names, stable ids and optional provenance columns.

    Instances are immutable by convention: methods return new datasets and never write into the
    arrays of ``self``.

    Parameters
    ----------
    X : array-like
        Numeric rows N×D, images N×H×W×C, or text (a list or array of ``str``, stored as an
        object array).
    y : array-like
        N labels: integers in ``range(len(classes))``, or class names (strings). Without
        ``classes``, names are sorted alphabetically and integers numerically, as
        :func:`encode_labels` does for files.
    classes : sequence of str, optional
        Class names; ``classes[y[i]]`` names row ``i``'s label. With string labels, every label
        must be one of them, and their order sets the integer labels.

    References
    ----------
    .. [1] Northcutt, Athalye and Mueller, "Pervasive Label Errors in Test Sets Destabilize
       Machine Learning Benchmarks", NeurIPS 2021 (datasets with named classes and stable ids).
       https://arxiv.org/abs/2103.14749
    """

    X: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...] = None  # type: ignore[assignment]  # from y when not given
    ids: np.ndarray = None  # type: ignore[assignment]  # "0".."N-1" when not given
    source: np.ndarray | None = None
    labeler: np.ndarray | None = None
    feature_names: tuple[str, ...] | None = None
    name: str = "dataset"

    def __post_init__(self) -> None:
        X = self.X
        if not isinstance(X, np.ndarray):
            if hasattr(X, "toarray"):
                raise DataError(f"{self.name}: X is a sparse matrix; pass X.toarray(), or pass it to "
                                "poisonlab.audit/scan/check, which densify it.")
            X = np.asarray(X, dtype=object if _all_strings(X) else None)
        if X.dtype.kind == "U":
            X = X.astype(object)
        object.__setattr__(self, "X", X)
        n = len(X)
        y = np.asarray(self.y)
        if y.ndim != 1:
            raise DataError(f"{self.name}: y must be one-dimensional, got shape {y.shape}.")
        if len(y) != n:
            raise DataError(f"{self.name}: X has {n} rows but y has {len(y)}.")
        if y.dtype == bool:
            y = y.astype(np.int64)
        if y.size and not np.issubdtype(y.dtype, np.integer):
            y = self._label_codes(y)
        elif self.classes is None:
            top = int(y.max()) + 1 if y.size else 0
            object.__setattr__(self, "classes", tuple(str(k) for k in range(top)))
        object.__setattr__(self, "y", y.astype(np.int64, copy=False))
        if y.size and (y.min() < 0 or y.max() >= len(self.classes)):
            raise DataError(
                f"{self.name}: labels must lie in [0, {len(self.classes)}) to index "
                f"{len(self.classes)} class names; found {int(y.min())}..{int(y.max())}."
            )
        ids = self.ids
        if ids is None:
            ids = np.array([str(i) for i in range(n)], dtype=object)
        ids = np.asarray(ids, dtype=object)
        if len(ids) != n:
            raise DataError(f"{self.name}: X has {n} rows but ids has {len(ids)}.")
        object.__setattr__(self, "ids", ids)
        for col in ("source", "labeler"):
            value = getattr(self, col)
            if value is not None:
                value = np.asarray(value, dtype=object)
                if len(value) != n:
                    raise DataError(f"{self.name}: X has {n} rows but {col} has {len(value)}.")
                object.__setattr__(self, col, value)
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))

    def _label_codes(self, y: np.ndarray) -> np.ndarray:
        """Integer labels for class names (or integral floats), setting ``classes`` if missing."""
        if y.dtype.kind in "fc":
            bad = ~np.isfinite(y) | (y != np.round(y)) if y.dtype.kind == "f" else np.ones(len(y), bool)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise DataError(f"{self.name}: y must hold class names or integers; row {i} has "
                                f"{y[i].item()!r} ({int(bad.sum())} rows in all).")
            y = y.astype(np.int64)
            if self.classes is None:
                top = int(y.max()) + 1
                object.__setattr__(self, "classes", tuple(str(k) for k in range(top)))
            return y
        if self.classes is None:
            codes, classes = encode_labels(list(y), where=f"{self.name}: y")
            object.__setattr__(self, "classes", classes)
            return codes
        names = [str(c) for c in self.classes]
        lookup = {c: i for i, c in enumerate(names)}
        unknown = sorted({str(v) for v in y} - set(lookup))
        if unknown:
            raise DataError(f"{self.name}: labels {unknown[:5]} are not among the classes {names}.")
        return np.array([lookup[str(v)] for v in y], dtype=np.int64)

    # ------------------------------------------------------------------ shape and kind
    def __len__(self) -> int:
        return len(self.X)

    @property
    def kind(self) -> Kind:
        """``"text"`` for strings, ``"image"`` for N×H×W×C arrays, ``"tabular"`` otherwise."""
        if self.X.dtype == object:
            return "text"
        if self.X.ndim == 4:
            return "image"
        return "tabular"

    @property
    def n_classes(self) -> int:
        """The number of classes, ``len(classes)`` (K)."""
        return len(self.classes)

    def label_index(self, label: str | int) -> int:
        """The integer label of a class given by name, or by index when no class has that name."""
        key = str(label)
        if key in self.classes:
            return self.classes.index(key)
        try:
            idx = int(key)
        except ValueError:
            idx = -1
        if 0 <= idx < len(self.classes):
            return idx
        raise ParameterError(
            f"Unknown label {label!r}: the classes of {self.name} are {list(self.classes)}."
        )

    # ------------------------------------------------------------------ derived datasets
    def subset(self, index: Sequence[int] | np.ndarray) -> Dataset:
        """Rows at ``index`` (positions or a boolean mask), ids and provenance kept."""
        idx = np.asarray(index)
        return replace(
            self,
            X=self.X[idx],
            y=self.y[idx],
            ids=self.ids[idx],
            source=None if self.source is None else self.source[idx],
            labeler=None if self.labeler is None else self.labeler[idx],
        )

    def with_data(self, X: np.ndarray | None = None, y: np.ndarray | None = None) -> Dataset:
        """A copy with new features and/or labels, everything else kept."""
        return replace(self, X=self.X if X is None else X, y=self.y if y is None else y)

    def split(
        self, *, test_size: float = 0.3, random_state: int | None = 0
    ) -> tuple[Dataset, Dataset]:
        """A stratified train/test split, deterministic for a given ``random_state``."""
        from sklearn.model_selection import train_test_split

        if not 0 < test_size < 1:
            raise ParameterError(
                f"The 'test_size' parameter of Dataset.split must be a float in (0, 1). "
                f"Got {test_size!r} instead."
            )
        counts = np.bincount(self.y, minlength=self.n_classes)
        stratify = self.y if counts[counts > 0].min() >= 2 else None
        train, test = train_test_split(
            np.arange(len(self)), test_size=test_size, random_state=random_state,
            stratify=stratify,
        )
        return self.subset(np.sort(train)), self.subset(np.sort(test))

    def __repr__(self) -> str:
        counts = np.bincount(self.y, minlength=self.n_classes)
        per_class = ", ".join(f"{c}={n}" for c, n in zip(self.classes, counts, strict=True))
        return f"Dataset({self.name!r}, kind={self.kind}, N={len(self)}, {per_class})"


def _all_strings(values: object) -> bool:
    if not isinstance(values, (list, tuple)):
        return False
    return len(values) > 0 and all(isinstance(v, str) for v in values)


def default_ids(n: int) -> np.ndarray:
    """Row ids "0".."N-1", for data that brings none."""
    return np.array([str(i) for i in range(n)], dtype=object)


def encode_labels(raw: Sequence[object], *, where: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Map raw labels (names or integers as read from a file) to ``(y, classes)``.

    Integers sort numerically and strings alphabetically; a column mixing numbers and names is an
    error, since it usually means a shifted or corrupted column.
    """
    values = [str(v).strip() for v in raw]
    if not values:
        raise DataError(f"{where}: no rows.")
    empty = [i for i, v in enumerate(values) if v in ("", "nan", "NaN", "None")]
    if empty:
        raise DataError(f"{where}: label is missing on row {empty[0]} ({len(empty)} rows in all).")
    numeric = [_is_int(v) for v in values]
    if all(numeric):
        ints = [int(float(v)) for v in values]
        uniq = sorted(set(ints))
        classes = tuple(str(u) for u in uniq)
        lookup = {u: i for i, u in enumerate(uniq)}
        y = np.array([lookup[v] for v in ints], dtype=np.int64)
    elif any(numeric):
        first_num = values[numeric.index(True)]
        first_str = values[numeric.index(False)]
        raise DataError(
            f"{where}: mixed label types: numbers (e.g. {first_num!r}) and names "
            f"(e.g. {first_str!r}) in one label column."
        )
    else:
        classes = tuple(sorted(set(values)))
        lookup_s = {c: i for i, c in enumerate(classes)}
        y = np.array([lookup_s[v] for v in values], dtype=np.int64)
    return y, classes


def _is_int(value: str) -> bool:
    try:
        int(value)
    except ValueError:
        try:
            f = float(value)
        except ValueError:
            return False
        return f.is_integer()
    return True
