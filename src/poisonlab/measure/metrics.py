"""Every metric poisonlab reports, in one place: clean accuracy, attack success rate, per-class
recall and bootstrap confidence intervals for models and attacks; and, re-exported from
:mod:`poisonlab.detect.metrics` (the detectors' layer computes it too), ``detection_metrics``:
precision, recall, AUROC and average precision of a detector's flags against the planted rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from poisonlab.detect.metrics import detection_metrics as detection_metrics
from poisonlab.exceptions import ParameterError


@dataclass(frozen=True)
class Estimate:
    """A rate with a bootstrap confidence interval."""

    value: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        """The estimate as a dict: ``value``, ``low``, ``high`` and ``n``."""
        return {"value": self.value, "low": self.low, "high": self.high, "n": self.n}


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Share of rows predicted correctly (``nan`` for no rows)."""
    y_true, y_pred = _pair(y_true, y_pred)
    return float(np.mean(y_true == y_pred)) if len(y_true) else float("nan")


def target_rate(y_true: np.ndarray, y_pred: np.ndarray, target_label: int) -> float:
    """Share of rows whose true label is not ``target_label`` that are predicted as it.

    On triggered inputs this is the attack success rate; on clean inputs, the base rate an attack
    has to beat.
    """
    y_true, y_pred = _pair(y_true, y_pred)
    keep = y_true != target_label
    return float(np.mean(y_pred[keep] == target_label)) if keep.any() else float("nan")


def attack_success_rate(predict: Callable[[np.ndarray], np.ndarray], X_triggered: np.ndarray,
                        y_true: np.ndarray, target_label: int) -> float:
    """Share of triggered non-target inputs that ``predict`` puts in ``target_label``."""
    keep = np.asarray(y_true) != target_label
    if not keep.any():
        return float("nan")
    return float(np.mean(predict(X_triggered[keep]) == target_label))


def per_class_recall(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Recall of each class (``nan`` for a class with no rows)."""
    y_true, y_pred = _pair(y_true, y_pred)
    out = np.full(n_classes, np.nan)
    for k in range(n_classes):
        rows = y_true == k
        if rows.any():
            out[k] = float(np.mean(y_pred[rows] == k))
    return out


def bootstrap_rate(hits: np.ndarray, *, n_resamples: int = 1000, confidence: float = 0.95,
                   random_state: int | np.random.Generator | None = 0) -> Estimate:
    """Mean of a 0/1 array with a percentile bootstrap interval."""
    hits = np.asarray(hits, dtype=float)
    if not 0 < confidence < 1:
        raise ParameterError(
            f"The 'confidence' parameter of bootstrap_rate must be a float in (0, 1). "
            f"Got {confidence!r} instead."
        )
    if hits.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    rng = np.random.default_rng(random_state)
    # The mean of a resample is a binomial draw over the hit rate: sample counts directly.
    counts = rng.binomial(hits.size, hits.mean(), size=n_resamples) if _binary(hits) else \
        np.array([rng.choice(hits, hits.size).sum() for _ in range(n_resamples)])
    means = counts / hits.size
    alpha = (1 - confidence) / 2
    return Estimate(float(hits.mean()), float(np.quantile(means, alpha)),
                    float(np.quantile(means, 1 - alpha)), int(hits.size))


def spread(values: list[float]) -> dict[str, float]:
    """Mean, min and max over seeds."""
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "min": float(arr.min()), "max": float(arr.max())}


def _binary(hits: np.ndarray) -> bool:
    return bool(np.all((hits == 0) | (hits == 1)))


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ParameterError(f"y_true has {len(a)} rows but y_pred has {len(b)}.")
    return a, b
