"""What every attack returns, and the pieces attacks share.

An attack is a scikit-learn style object: keyword-only parameters stored unchanged, validation and
RNG resolution in ``apply``. ``apply`` takes a :class:`~poisonlab.data.Dataset` or data as it is in
Python (arrays, a list of strings, pandas, sparse, with labels ``y``), never mutates its input and
returns a :class:`PoisonedDataset` that says exactly which rows it changed (``poison_mask``), what
their labels were before, and for backdoors the :class:`~poisonlab.attacks.triggers.Trigger` to stamp
on test inputs.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from sklearn.base import BaseEstimator

from poisonlab.attacks.triggers import Trigger, trigger_from_dict
from poisonlab.data.arrays import dataset_from_arrays, is_series
from poisonlab.data.dataset import Dataset
from poisonlab.exceptions import DataError, ParameterError

if TYPE_CHECKING:
    from poisonlab.data.types import FeaturesLike, LabelsLike

RECORD_FILE = "poison.json"
RECORD_VERSION = 1

LabelForm = Literal["codes", "names", "numbers"]
"""How :attr:`PoisonedDataset.y` gives labels back: integer labels indexing ``dataset.classes``,
class names, or class names read as the integers they spell."""


@dataclass(frozen=True, eq=False)
class PoisonedDataset:
    """The poisoned training set with its ground truth.

    ``poison_mask[i]`` is True where row ``i`` was changed (relabeled, stamped with a trigger, or
    both); ``original_y`` holds every row's label before the attack; ``record`` is the attack's
    class name and parameters.

    Attributes
    ----------
    dataset : Dataset
        The poisoned data: features, integer labels indexing ``dataset.classes``, ids.
    poison_mask : numpy.ndarray of bool
        True where a row was changed.
    original_y : numpy.ndarray of int
        Every row's integer label (indexing ``dataset.classes``) before the attack.
    record : dict
        The attack's class name and parameters.
    trigger : Trigger or None
        For backdoors, the trigger to stamp on test inputs.
    target_label : int or None
        The integer label (indexing ``dataset.classes``) the poisoned rows now carry, where there
        is one.
    label_form : {"codes", "names", "numbers"}
        How :attr:`y` gives the labels back, set by :meth:`Attack.apply` from the labels it was
        given: ``"codes"`` for a Dataset or numeric ``y`` (the integers themselves), ``"names"``
        for ``y`` of class names, and for a DataFrame's label column ``"numbers"`` where every
        class name spells an integer, else ``"names"``.
    """

    dataset: Dataset
    poison_mask: np.ndarray
    original_y: np.ndarray
    record: dict[str, object]
    trigger: Trigger | None = None
    target_label: int | None = None
    label_form: LabelForm = "codes"

    @property
    def n_poison(self) -> int:
        """How many rows the attack changed: the number of True values in ``poison_mask``."""
        return int(self.poison_mask.sum())

    @property
    def X(self) -> np.ndarray:
        """The poisoned features, ``dataset.X``: an object array of ``str`` for text, float64 N×D
        for tables, float32 N×H×W×C in [0, 1] for images (how poisonlab reads image arrays, and
        the scale :meth:`apply_trigger` stamps on)."""
        return self.dataset.X

    @property
    def y(self) -> np.ndarray:
        """The poisoned labels in the form :meth:`Attack.apply` was given them (see ``label_form``).

        Integer labels (int64) for a Dataset or numeric ``y``, the same integers as given (so
        ``y`` of 0..9 comes back as 0..9); class names (an object array of ``str``) for ``y`` of
        names. ``original_y`` and ``target_label`` stay integer labels indexing
        ``dataset.classes``.
        """
        codes = self.dataset.y
        if self.label_form == "names":
            return np.array(self.dataset.classes, dtype=object)[codes]
        if self.label_form == "numbers":
            return np.array([int(c) for c in self.dataset.classes], dtype=np.int64)[codes]
        return codes

    def apply_trigger(self, X: np.ndarray, *, random_state: int | np.random.Generator | None = 0,
                      repetitions: int | None = None) -> np.ndarray:
        """Stamp this attack's trigger on test inputs (a new array; ``X`` is not changed)."""
        if self.trigger is None:
            raise ParameterError(f"{self.record.get('attack')} plants no trigger to apply.")
        return self.trigger.apply(X, random_state=random_state, repetitions=repetitions)

    def triggered_test(self, test: Dataset, *,
                       random_state: int | np.random.Generator | None = 0) -> Dataset:
        """The rows of ``test`` whose true class is not the target, with the trigger stamped on them
        as it would be at inference; labels stay the true ones, so a model's share of these rows
        predicted ``target_label`` is the attack success rate.

        ``test`` is matched to the training data by class name (it may hold fewer classes) and
        must hold data of the same kind and row shape. ``random_state`` places random text
        insertions.

        Raises
        ------
        ParameterError
            If the attack plants no trigger (label flipping).
        DataError
            If ``test`` is of another kind or shape, or holds no row outside the target class.
        """
        if self.trigger is None or self.target_label is None:
            raise ParameterError(f"{self.record.get('attack')} plants no trigger; a triggered test "
                                 "set needs a backdoor attack.")
        train = self.dataset
        if test.kind != train.kind:
            raise DataError(f"{test.name}: the test data is {test.kind} but the training data is "
                            f"{train.kind}.")
        if train.kind != "text" and test.X.shape[1:] != train.X.shape[1:]:
            raise DataError(f"{test.name}: test rows have shape {test.X.shape[1:]} but training rows "
                            f"have {train.X.shape[1:]}.")
        target_name = train.classes[self.target_label]
        names = np.array(test.classes, dtype=object)[test.y]
        keep = np.flatnonzero(names != target_name)
        if not len(keep):
            raise DataError(f"{test.name}: every test row is of the target class {target_name!r}; "
                            "nothing to trigger.")
        rows = test.subset(keep)
        X = self.trigger.apply(rows.X, random_state=random_state)
        return rows.with_data(X=X)

    # ------------------------------------------------------------------ files
    def to_record(self) -> dict[str, object]:
        """The ``poison.json`` document: the attack and its parameters, which rows it changed (positions and
        ids), their labels before the attack, the target label and the trigger, with class names for labels.
        """
        changed = np.flatnonzero(self.poison_mask)
        classes = self.dataset.classes
        return {
            "poisonlab_record": RECORD_VERSION,
            **self.record,
            "n_rows": len(self.dataset),
            "n_poison": len(changed),
            "target_label": None if self.target_label is None else classes[self.target_label],
            "trigger": None if self.trigger is None else self.trigger.to_dict(),
            "poisoned_rows": changed.tolist(),
            "poisoned_ids": [str(i) for i in self.dataset.ids[changed]],
            "original_labels": [classes[k] for k in self.original_y[changed]],
        }

    def save(self, out_dir: str | Path) -> Path:
        """Write ``data.<csv|npz>`` and ``poison.json`` (mask, original labels, trigger, params)."""
        from poisonlab.data import save_dataset

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        suffix = ".npz" if self.dataset.kind == "image" else ".csv"
        save_dataset(self.dataset, out / f"data{suffix}")
        tmp = out / (RECORD_FILE + ".partial")
        tmp.write_text(json.dumps(self.to_record(), indent=2))
        tmp.replace(out / RECORD_FILE)
        return out


def load_ground_truth(dataset: Dataset, record_path: str | Path) -> PoisonedDataset:
    """Rebuild a :class:`PoisonedDataset` from data and the ``poison.json`` written beside it."""
    path = Path(record_path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable poison record ({exc}).") from None
    if not isinstance(record, dict) or "poisoned_rows" not in record:
        raise DataError(f"{path}: not a poison record written by `poisonlab attack`.")
    version = record.get("poisonlab_record", 0)
    if not isinstance(version, int) or version > RECORD_VERSION:
        raise DataError(f"{path}: written by a newer poisonlab; upgrade to read it.")
    if record.get("n_rows") != len(dataset):
        raise DataError(
            f"{path}: the record describes {record.get('n_rows')} rows but the data has {len(dataset)}."
        )
    rows, original_labels = _checked_rows(path, record, dataset)
    mask = np.zeros(len(dataset), dtype=bool)
    mask[rows] = True
    original = dataset.y.copy()
    original[rows] = [_class_index(path, dataset, c) for c in original_labels]
    target = record.get("target_label")
    try:
        trigger = trigger_from_dict(record["trigger"]) if record.get("trigger") else None
    except (ParameterError, KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: the trigger in the record is not valid ({exc}).") from None
    meta = {k: v for k, v in record.items() if k in ("attack", "params")}
    return PoisonedDataset(dataset, mask, original, meta, trigger,
                           None if target is None else _class_index(path, dataset, target))


def _checked_rows(path: Path, record: dict[str, Any], dataset: Dataset) -> tuple[np.ndarray, list[Any]]:
    """The record's poisoned rows and their original labels, checked against ``dataset``: row
    numbers in range and unique, one original label per row, and the ids the rows have there."""
    raw, labels = record["poisoned_rows"], record.get("original_labels")
    if not isinstance(raw, list) or not all(isinstance(r, int) and not isinstance(r, bool) for r in raw):
        raise DataError(f"{path}: 'poisoned_rows' must be a list of row numbers.")
    rows = np.asarray(raw, dtype=np.int64)
    bad = rows[(rows < 0) | (rows >= len(dataset))]
    if bad.size:
        raise DataError(f"{path}: poisoned row {int(bad[0])} is out of range for data of {len(dataset)} rows.")
    if len(np.unique(rows)) != len(rows):
        raise DataError(f"{path}: 'poisoned_rows' lists a row more than once.")
    if not isinstance(labels, list) or len(labels) != len(rows):
        raise DataError(f"{path}: 'original_labels' must list one label per poisoned row "
                        f"({len(rows)}).")
    ids = record.get("poisoned_ids")
    if ids is not None:
        if not isinstance(ids, list) or len(ids) != len(rows):
            raise DataError(f"{path}: 'poisoned_ids' must list one id per poisoned row ({len(rows)}).")
        for row, expected in zip(rows, ids, strict=True):
            if str(dataset.ids[row]) != str(expected):
                raise DataError(f"{path}: poisoned row {int(row)} has id {str(dataset.ids[row])!r} in "
                                f"the data but {str(expected)!r} in the record; the record is not "
                                "of this data.")
    return rows, labels


def _class_index(path: Path, dataset: Dataset, label: Any) -> int:
    try:
        return dataset.label_index(label)
    except ParameterError:
        raise DataError(f"{path}: the record names the class {label!r}, which the data does not "
                        f"have ({list(dataset.classes)}).") from None


class Attack(BaseEstimator):
    """Base class: :meth:`apply` reads the data once; subclasses implement
    ``_apply(dataset) -> PoisonedDataset`` on a :class:`~poisonlab.data.Dataset`."""

    def apply(self, X: Dataset | FeaturesLike, y: LabelsLike | None = None, *,
              classes: Sequence[str] | None = None) -> PoisonedDataset:
        """Poison a training set: a Dataset, or features ``X`` with labels ``y``.

        Parameters
        ----------
        X : Dataset, list of str, numpy array, pandas DataFrame or Series, or scipy sparse matrix
            A ``Dataset`` (then ``y`` and ``classes`` must be None); texts (a list or array of
            ``str``); a 2-D numeric table (N×D, a sparse matrix is densified); images (N×H×W or
            N×H×W×C, read as float32 in [0, 1]); or a DataFrame, with ``y`` or holding a label
            column. Read as :func:`poisonlab.data.dataset_from_arrays` reads it; never written to.
        y : list, numpy array or pandas Series, optional
            One label per row: class names or integers. ``source_label`` and ``target_label``
            name a class by these names (for integers, their decimal strings) or by its index.
        classes : sequence of str, optional
            Class names, in the order that integer labels index.

        Returns
        -------
        PoisonedDataset
            ``X``, ``y`` (labels in the form given: integers for integers, names for names) and
            ``poison_mask``; the rows and mask are those ``apply`` gives on the equivalent
            Dataset.

        Raises
        ------
        DataError
            If ``X`` and ``y`` cannot be read as one labelled dataset (different lengths, a
            Dataset with ``y`` or ``classes``, a 1-D numeric ``X``, ...).
        ParameterError
            If a parameter does not fit the data (an unknown label, too large a budget, ...).
        """
        try:
            dataset = dataset_from_arrays(X, y, classes=classes)
        except DataError as exc:
            raise DataError(f"{type(self).__name__}.apply: {exc}") from None
        poisoned = self._apply(dataset)
        form = _label_form(X, y, dataset)
        return poisoned if form == "codes" else replace(poisoned, label_form=form)

    def _apply(self, dataset: Dataset) -> PoisonedDataset:  # pragma: no cover - abstract
        raise NotImplementedError

    def _record(self) -> dict[str, Any]:
        params = {k: (v if isinstance(v, (int, float, str, bool, type(None), list, tuple, dict))
                      else repr(v)) for k, v in self.get_params().items()}
        return {"attack": type(self).__name__, "params": params}


def resolve_budget(owner: str, n_poison: int | None, poison_rate: float | None, n_rows: int,
                   n_candidates: int) -> int:
    """The number of rows to poison from exactly one of ``n_poison`` or ``poison_rate`` (of N)."""
    if (n_poison is None) == (poison_rate is None):
        raise ParameterError(
            f"{owner} takes exactly one of 'n_poison' (a count) or 'poison_rate' (a fraction of the "
            f"rows). Got n_poison={n_poison!r}, poison_rate={poison_rate!r}."
        )
    if poison_rate is not None:
        if not isinstance(poison_rate, (int, float)) or not 0 <= poison_rate <= 1:
            raise ParameterError(
                f"The 'poison_rate' parameter of {owner} must be a float in [0, 1]. "
                f"Got {poison_rate!r} instead."
            )
        n = round(poison_rate * n_rows)
    else:
        if isinstance(n_poison, bool) or not isinstance(n_poison, (int, np.integer)) or n_poison < 0:
            raise ParameterError(
                f"The 'n_poison' parameter of {owner} must be a non-negative int. "
                f"Got {n_poison!r} instead."
            )
        n = int(n_poison)
    if n > n_candidates:
        raise ParameterError(
            f"{owner} was asked to poison {n} rows but only {n_candidates} rows are eligible "
            f"(the rate is of all {n_rows} rows): ask for n_poison <= {n_candidates} or "
            f"poison_rate <= {n_candidates / max(n_rows, 1):.4f}."
        )
    return n


def check_real(owner: str, name: str, value: object, lo: float, hi: float, *, lo_open: bool,
               hi_open: bool = False, note: str = "") -> None:
    """Raise :class:`ParameterError` unless ``value`` is a finite real number in the interval from
    ``lo`` to ``hi`` (open at either end as asked); ``note`` follows the interval in the message."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(float(value)) \
        and (lo < float(value) if lo_open else lo <= float(value)) \
        and (float(value) < hi if hi_open else float(value) <= hi)
    if not ok:
        interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise ParameterError(f"The '{name}' parameter of {owner} must be a float in {interval}{note}. "
                             f"Got {value!r} instead.")


def target_class_budget(owner: str, dataset: Dataset, target_label: int | str | None,
                        n_poison: int | None, poison_rate: float | None) -> tuple[int, np.ndarray, int]:
    """For attacks that poison rows of the target class only (clean-label): the target's integer
    label, its rows, and how many to poison, from exactly one of ``n_poison`` or ``poison_rate``
    (of all N rows); one error when the class holds fewer rows."""
    target = check_label(owner, "target_label", target_label, dataset, required=True)
    if target is None:  # pragma: no cover - check_label raises when a required label is None
        raise ParameterError(f"{owner} needs 'target_label'.")
    y = dataset.y
    candidates = np.flatnonzero(y == target)
    n = resolve_budget(owner, n_poison, poison_rate, len(y), len(y))
    if n > len(candidates):
        raise ParameterError(
            f"{owner} poisons rows of the target class {dataset.classes[target]!r} only, which "
            f"holds {len(candidates)} rows; asked for {n}. Ask for n_poison <= {len(candidates)} "
            f"or poison_rate <= {len(candidates) / max(len(y), 1):.4f}.")
    return target, candidates, n


def check_label(owner: str, name: str, value: int | str | None, dataset: Dataset,
                *, required: bool) -> int | None:
    """Resolve a class given by name or index against ``dataset`` (None stays None)."""
    if value is None:
        if required:
            raise ParameterError(f"{owner} needs '{name}': one of {list(dataset.classes)}.")
        return None
    try:
        return dataset.label_index(value)
    except ParameterError:
        raise ParameterError(
            f"The '{name}' parameter of {owner} must be one of {list(dataset.classes)}. "
            f"Got {value!r} instead."
        ) from None


def _label_form(X: Any, y: Any, dataset: Dataset) -> LabelForm:
    """How the labels handed to :meth:`Attack.apply` read: as ``dataset.y``, or as class names,
    or (a DataFrame's label column of integers) as the integers the class names spell."""
    if isinstance(X, Dataset):
        return "codes"
    if y is None:  # a DataFrame holding a label column, encoded as a file's labels are
        return "numbers" if all(_spells_int(c) for c in dataset.classes) else "names"
    kind = np.asarray(y.tolist() if is_series(y) else y).dtype.kind
    return "names" if kind in "UO" else "codes"


def _spells_int(name: str) -> bool:
    try:
        return str(int(name)) == name
    except ValueError:
        return False
