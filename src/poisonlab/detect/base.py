"""What every training-set detector shares: the ``contamination`` contract and input checks.

A detector is a scikit-learn style object. ``fit(features or pred_probs, y)`` sets

* ``scores_``: one float per row, **higher means more suspicious** (the opposite sign of
  scikit-learn's ``score_samples``);
* ``threshold_``: the cut on the score scale, from ``contamination`` (a float: that share of rows
  is flagged) or ``"auto"`` (a data-driven cut that needs no poison rate);
* ``flags_``: ``scores_ > threshold_``, ``True`` meaning flagged as poisoned or mislabeled.

The math lives in plain functions on arrays (``spectral_signature_scores``); the classes wrap them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, cast, overload

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator

from poisonlab.exceptions import NotFittedError, ParameterError

if TYPE_CHECKING:
    from numpy.typing import ArrayLike


@dataclass
class TriggerCandidate:
    """A suspected trigger and the class it sends rows to: what every trigger search returns.

    ``trigger`` is the trigger as text (a word or phrase; a table's planted value as
    ``"column = value"``) and ``target_label`` the class index it sends rows to. Each search adds
    the evidence it measures: :class:`~poisonlab.detect.triggers.DataTrigger` (found in a training
    set: label concentration, the off-label rate of its rows without it, a p-value) and
    :class:`~poisonlab.scan.text.ModelTrigger` (found in a model: the flip rate when inserted,
    the anomaly index among words, the absence test). ``to_dict(classes)`` is the JSON form of
    ``summary.json`` and ``scan.json``, with the target named when ``classes`` is given.
    """

    trigger: str
    target_label: int

    def to_dict(self, classes: Sequence[str] | None = None) -> dict[str, object]:
        """The JSON form: ``trigger`` and ``target_label`` (the class name when ``classes`` is given, else
        the integer label).
        """
        target: int | str = self.target_label if classes is None else classes[self.target_label]
        return {"trigger": self.trigger, "target_label": target}


class Detector(BaseEstimator):
    """Base class: subclasses implement ``fit`` and call :meth:`_set_threshold`."""

    contamination: float | str

    def _check_contamination(self) -> None:
        c = self.contamination
        if isinstance(c, str):
            if c != "auto":
                raise ParameterError(
                    f"The 'contamination' parameter of {type(self).__name__} must be 'auto' or a "
                    f"float in (0, 0.5]. Got {c!r} instead."
                )
            return
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 < c <= 0.5:
            raise ParameterError(
                f"The 'contamination' parameter of {type(self).__name__} must be 'auto' or a "
                f"float in (0, 0.5]. Got {c!r} instead."
            )

    def _set_threshold(self, scores: np.ndarray, auto_threshold: float) -> None:
        """Set ``scores_``, ``threshold_`` and ``flags_`` (a float contamination overrides auto)."""
        self.scores_ = np.asarray(scores, dtype=np.float64)
        if isinstance(self.contamination, str):
            self.threshold_ = float(auto_threshold)
        else:
            self.threshold_ = threshold_for_rate(self.scores_, float(self.contamination))
        self.flags_ = self.scores_ > self.threshold_

    def _check_fitted(self) -> None:
        if not hasattr(self, "scores_"):
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet: call fit first."
            )

    def fit_predict(self, *args: object, **kwargs: object) -> np.ndarray:
        """Fit and return ``flags_`` (the arguments are the subclass's ``fit`` arguments)."""
        self.fit(*args, **kwargs)
        return self.flags_


def threshold_for_rate(scores: np.ndarray, rate: float) -> float:
    """The cut that flags the ``rate`` share of rows with the highest scores (ties kept together).

    >>> threshold_for_rate(np.array([0.0, 1.0, 2.0, 3.0]), 0.25)
    2.0
    """
    n = len(scores)
    if n == 0:
        return float("inf")
    n_flag = round(rate * n)
    if n_flag <= 0:
        return float(np.max(scores))
    order = np.sort(scores)[::-1]
    return float(order[n_flag]) if n_flag < n else float(order[-1]) - 1.0


@overload
def check_features(features: ArrayLike | sp.spmatrix | sp.sparray, owner: str, *,
                   allow_sparse: Literal[False] = False) -> np.ndarray: ...


@overload
def check_features(features: ArrayLike | sp.spmatrix | sp.sparray, owner: str, *,
                   allow_sparse: bool) -> np.ndarray | sp.csr_matrix: ...


def check_features(features: ArrayLike | sp.spmatrix | sp.sparray, owner: str, *,
                   allow_sparse: bool = False) -> np.ndarray | sp.csr_matrix:
    """Features as a 2-D float array (or CSR matrix when ``allow_sparse``), finite, with rows."""
    if sp.issparse(features):
        if not allow_sparse:  # (scipy is untyped: issparse does not narrow, hence the cast)
            features = cast("sp.spmatrix", features).toarray()
        else:
            features = sp.csr_matrix(features, dtype=np.float64)
            if not np.isfinite(features.data).all():
                raise ParameterError(f"{owner}: features hold NaN or infinite values.")
            return features
    arr = np.asarray(features, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim > 2:
        arr = arr.reshape(len(arr), -1)
    if len(arr) == 0:
        raise ParameterError(f"{owner}: features have no rows.")
    if not np.isfinite(arr).all():
        raise ParameterError(f"{owner}: features hold NaN or infinite values.")
    return arr


def check_labels(y: ArrayLike, n_rows: int, owner: str, *, name: str = "features") -> np.ndarray:
    """Integer labels, one per row."""
    labels = np.asarray(y)
    if labels.ndim != 1:
        raise ParameterError(f"{owner}: y must be one-dimensional, got shape {labels.shape}.")
    if len(labels) != n_rows:
        raise ParameterError(f"{owner}: {name} has {n_rows} rows but y has {len(labels)}.")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ParameterError(f"{owner}: y must hold integer labels, got dtype {labels.dtype}.")
    if labels.size and labels.min() < 0:
        raise ParameterError(f"{owner}: y holds a negative label ({int(labels.min())}).")
    return labels.astype(np.int64, copy=False)


def check_pred_probs(pred_probs: ArrayLike, y: np.ndarray, owner: str) -> np.ndarray:
    """An N×K array of probabilities whose rows sum to one, with K above every label."""
    probs = np.asarray(pred_probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ParameterError(f"{owner}: pred_probs must be N×K, got shape {probs.shape}.")
    if len(probs) != len(y):
        raise ParameterError(f"{owner}: pred_probs has {len(probs)} rows but y has {len(y)}.")
    if not np.isfinite(probs).all() or probs.min() < 0:
        raise ParameterError(f"{owner}: pred_probs must be finite and non-negative.")
    if len(y) and y.max() >= probs.shape[1]:
        raise ParameterError(
            f"{owner}: y holds label {int(y.max())} but pred_probs has {probs.shape[1]} columns."
        )
    sums = probs.sum(axis=1)
    if np.abs(sums - 1).max(initial=0) > 1e-3:
        raise ParameterError(
            f"{owner}: each row of pred_probs must sum to 1 (one row sums to "
            f"{float(sums[np.argmax(np.abs(sums - 1))]):.4f})."
        )
    return probs


def check_positive_int(value: object, name: str, owner: str, *, minimum: int = 1) -> int:
    """``value`` as an int, or :class:`~poisonlab.exceptions.ParameterError` naming parameter ``name``
    of ``owner`` unless it is an int (not a bool) of at least ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ParameterError(
            f"The '{name}' parameter of {owner} must be an int >= {minimum}. Got {value!r} instead."
        )
    return int(value)


def robust_scale(values: np.ndarray) -> tuple[float, float]:
    """Median and MAD-based standard deviation (1.4826 × MAD), never zero."""
    if len(values) == 0:
        return 0.0, 1.0
    med = float(np.median(values))
    mad = float(np.median(np.abs(values - med))) * 1.4826
    if mad <= 1e-12:
        mad = float(np.std(values)) or 1.0
    return med, mad
