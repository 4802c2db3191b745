"""The contract every input-time trigger check shares: one verdict type and one calibration.

``StripDetector``, ``LeaveOutDetector`` and ``WindowStripDetector`` each perturb an input, ask the
model again, and turn the answers into one score per input (higher = more suspicious). They share

* :class:`InputVerdicts`, what ``evaluate(X)`` returns: ``scores``, ``flags`` (True = flagged as
  carrying a trigger), ``predictions`` and ``n_perturbations``;
* :func:`conformal_threshold`, the threshold on clean calibration scores at a false-rejection
  rate (the finite-sample rule ``k = ceil((n + 1)(1 - rate))``);
* :class:`InputDetector`, the base class: ``fit(predict_proba, X_clean)`` sets ``threshold_``,
  ``expected_false_rejection_rate_``, ``scores_`` and ``flags_``; ``evaluate``,
  ``decision_function`` and ``predict`` score new inputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator

from poisonlab.exceptions import DataError, NotFittedError, ParameterError, check_param

PredictProba = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True, kw_only=True)
class InputVerdicts:
    """An input check's answer for a batch of ``N`` inputs (every array has length ``N``).

    Fields are keyword-only: the old ``StripVerdicts`` took ``n_perturbations`` third and
    ``predictions`` fourth, and a positional call in that order must fail, not swap them.

    Attributes
    ----------
    scores : ndarray of float, shape (N,)
        Higher means more suspicious.
    flags : ndarray of bool, shape (N,)
        True where the score is above the detector's ``threshold_`` (flagged as carrying a
        trigger).
    predictions : ndarray of int, shape (N,)
        The model's class for each unperturbed input.
    n_perturbations : ndarray of int, shape (N,)
        How many perturbed copies of each input the model was asked about (STRIP: before its
        verdict settled; the leave-out test: groups times rounds; windowed STRIP: windows times
        overlays).
    """

    scores: np.ndarray
    flags: np.ndarray
    predictions: np.ndarray
    n_perturbations: np.ndarray


def conformal_threshold(calibration_scores: np.ndarray, false_rejection_rate: float
                        ) -> tuple[float, float]:
    """The threshold on clean scores that flags a fresh clean input with probability <= the rate.

    Parameters
    ----------
    calibration_scores : array-like of float, shape (n,)
        Scores of clean calibration inputs (higher = more suspicious).
    false_rejection_rate : float in (0, 1)
        The largest share of fresh clean inputs the threshold may flag.

    Returns
    -------
    threshold : float
        The ``k = ceil((n + 1)(1 - rate))``-th smallest calibration score. An input is flagged
        when its score is *above* it.
    expected_rate : float
        ``(n + 1 - k) / (n + 1)``, the rate at which a fresh clean input scores above the
        threshold (for continuous scores); at most ``false_rejection_rate``.

    Raises
    ------
    ParameterError
        If ``false_rejection_rate`` is not a float in (0, 1).
    DataError
        If there are too few scores for the rate (``k > n``): at least ``ceil(1 / rate) - 1``.

    Examples
    --------
    >>> conformal_threshold(np.arange(1.0, 101.0), 0.01)
    (100.0, 0.009900990099009901)
    """
    scores = np.sort(np.asarray(calibration_scores, dtype=np.float64))
    n = len(scores)
    check_param("false_rejection_rate", "conformal_threshold",
                isinstance(false_rejection_rate, (int, float)) and 0 < false_rejection_rate < 1,
                "a float in (0, 1)", false_rejection_rate)
    k = math.ceil((n + 1) * (1 - false_rejection_rate))
    if k > n:
        need = math.ceil(1 / false_rejection_rate) - 1
        raise DataError(
            f"Calibrating at a {false_rejection_rate:.2%} false-rejection rate needs at least {need} "
            f"clean rows; got {n}."
        )
    return float(scores[k - 1]), (n + 1 - k) / (n + 1)


class InputDetector(BaseEstimator):
    """Base class of the input-time trigger checks: calibration, ``decision_function``, ``predict``.

    A subclass stores its constructor parameters (one of them ``false_rejection_rate``), and
    implements ``fit(predict_proba, X_clean)``, which ends with :meth:`_calibrate`, and
    ``evaluate(X)``, which returns :class:`InputVerdicts`.
    """

    false_rejection_rate: float

    # ------------------------------------------------------------------ fit helpers
    def _check_false_rejection_rate(self) -> None:
        """ParameterError unless ``false_rejection_rate`` is a number in (0, 1) (bools refused)."""
        rate = self.false_rejection_rate
        check_param("false_rejection_rate", type(self).__name__,
                    isinstance(rate, (int, float)) and not isinstance(rate, bool) and 0 < rate < 1,
                    "a float in (0, 1)", rate)

    def _check_predict_proba(self, predict_proba: object) -> None:
        if not callable(predict_proba):
            raise ParameterError(f"{type(self).__name__}.fit takes a predict_proba function first; "
                                 f"got {type(predict_proba).__name__}.")

    @staticmethod
    def _check_calibration_rows(n_rows: int, method: str, rows: str = "clean rows",
                                why: str = "") -> None:
        """DataError unless there are at least 2 calibration rows (each is perturbed with others)."""
        if n_rows < 2:
            raise DataError(f"{method} needs at least 2 {rows}{why}; got {n_rows}.")

    @staticmethod
    def _check_probabilities(P: np.ndarray, n_rows: int) -> None:
        """ParameterError unless ``predict_proba`` gave an (n_rows, K) array with K >= 2."""
        if P.ndim != 2 or len(P) != n_rows or P.shape[1] < 2:
            raise ParameterError(f"predict_proba returned shape {P.shape} for {n_rows} rows; "
                                 f"expected ({n_rows}, K) with K >= 2.")

    def _calibrate(self, calibration_scores: np.ndarray) -> np.ndarray:
        """Set ``threshold_`` and ``expected_false_rejection_rate_``; return the rows flagged.

        The threshold is :func:`conformal_threshold` of ``calibration_scores`` at
        ``false_rejection_rate``; a row is flagged when its score is above it.
        """
        scores = np.asarray(calibration_scores, dtype=np.float64)
        self.threshold_, self.expected_false_rejection_rate_ = conformal_threshold(
            scores, self.false_rejection_rate)
        flags: np.ndarray = scores > self.threshold_
        return flags

    # ------------------------------------------------------------------ scoring
    def _check_fitted(self) -> None:
        if not hasattr(self, "threshold_"):
            raise NotFittedError(f"This {type(self).__name__} is not fitted yet: call fit first.")

    def evaluate(self, X: np.ndarray) -> InputVerdicts:
        """Scores, flags, predictions and perturbations per input (deterministic per seed)."""
        raise NotImplementedError  # pragma: no cover

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Scores of ``X``: higher is more suspicious (``evaluate(X).scores``)."""
        return self.evaluate(X).scores

    def predict(self, X: np.ndarray) -> np.ndarray:
        """True where an input scores above ``threshold_`` (``evaluate(X).flags``)."""
        return self.evaluate(X).flags
