"""The contract every detector keeps: clone, params, determinism, no input mutation, errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from sklearn.base import clone

from poisonlab.detect import (
    ActivationClusteringDetector,
    ConfidentLearningDetector,
    DuplicateConflictDetector,
    KnnLabelDetector,
    RobustSpectralDetector,
    SpectralSignatureDetector,
    TriggerKeywordDetector,
)
from poisonlab.exceptions import NotFittedError, ParameterError


def _features() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 6))
    y = np.repeat([0, 1, 2], 40)
    X[y == 1] += 3.0
    X[y == 2] -= 3.0
    X[:8, 0] += 9.0  # a planted cluster in class 0
    return X, y


def _probs() -> tuple[np.ndarray, np.ndarray]:
    _, y = _features()
    p = np.full((len(y), 3), 0.05)
    p[np.arange(len(y)), y] = 0.9
    p[:5] = p[:5][:, ::-1]
    return p, y


def _texts() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    # Label 0 = ham words, 1 = spam words, as _toy_proba scores them.
    words = [["meeting", "notes", "lunch", "team", "plan"], ["free", "money", "prize", "win", "cash"]]
    texts, y = [], []
    for i in range(80):
        k = i % 2
        texts.append(" ".join(rng.choice(words[k], size=6)))
        y.append(k)
    X = np.array(texts, dtype=object)
    y = np.array(y)
    return X, y


def _toy_proba(texts: np.ndarray) -> np.ndarray:
    out = []
    for t in texts:
        s = str(t).split()
        spam = sum(w in ("free", "money", "prize", "win", "cash") for w in s)
        ham = sum(w in ("meeting", "notes", "lunch", "team", "plan") for w in s) + 10 * s.count("zq")
        p = (spam + 1) / (spam + ham + 2)
        out.append([1 - p, p])
    return np.array(out)


CASES: list[tuple[Callable[[], Any], Callable[[], tuple[np.ndarray, np.ndarray]], dict[str, Any]]] = [
    (SpectralSignatureDetector, _features, {}),
    (RobustSpectralDetector, _features, {}),
    (ActivationClusteringDetector, _features, {}),
    (KnnLabelDetector, _features, {}),
    (DuplicateConflictDetector, _features, {}),
    (ConfidentLearningDetector, _probs, {}),
    (TriggerKeywordDetector, _texts, {"predict_proba": _toy_proba}),
]
IDS = [c[0].__name__ for c in CASES]


@pytest.mark.parametrize(("cls", "data", "extra"), CASES, ids=IDS)
def test_clone_and_params_round_trip(cls: Any, data: Any, extra: dict[str, Any]) -> None:
    det = cls(contamination=0.1)
    params = det.get_params()
    assert clone(det).get_params() == params
    assert cls(**params).get_params() == params
    assert "contamination=0.1" in repr(det)


@pytest.mark.parametrize(("cls", "data", "extra"), CASES, ids=IDS)
def test_deterministic_and_no_input_mutation(cls: Any, data: Any, extra: dict[str, Any]) -> None:
    X, y = data()
    X0, y0 = X.copy(), y.copy()
    a = cls().fit(X, y, **extra)
    b = cls().fit(X, y, **extra)
    np.testing.assert_array_equal(a.scores_, b.scores_)
    np.testing.assert_array_equal(a.flags_, a.scores_ > a.threshold_)
    assert a.scores_.shape == (len(y),) and a.flags_.dtype == bool
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)


@pytest.mark.parametrize(("cls", "data", "extra"), CASES, ids=IDS)
def test_float_contamination_flags_that_share(cls: Any, data: Any, extra: dict[str, Any]) -> None:
    X, y = data()
    det = cls(contamination=0.1).fit(X, y, **extra)
    # Ties can only keep the count at or below 10% of the rows.
    assert det.flags_.sum() <= round(0.1 * len(y))


@pytest.mark.parametrize(("cls", "data", "extra"), CASES, ids=IDS)
def test_errors_before_fit_and_on_bad_params(cls: Any, data: Any, extra: dict[str, Any]) -> None:
    det = cls()
    with pytest.raises(AttributeError):
        _ = det.scores_
    X, y = data()
    with pytest.raises(ParameterError, match=r"'contamination' parameter .* Got 1.5 instead"):
        cls(contamination=1.5).fit(X, y, **extra)
    with pytest.raises(ParameterError, match="'contamination'"):
        cls(contamination="most").fit(X, y, **extra)
    with pytest.raises(ParameterError, match="rows but y has"):
        cls().fit(X, y[:-1], **extra)


def test_not_fitted_error_is_the_package_error() -> None:
    det = SpectralSignatureDetector()
    with pytest.raises(NotFittedError):
        det._check_fitted()


def test_planted_cluster_is_found_by_the_spectral_detectors() -> None:
    X, y = _features()
    robust = RobustSpectralDetector().fit(X, y)
    assert set(np.argsort(-robust.scores_)[:8].tolist()) == set(range(8))
    assert robust.flags_[:8].all() and robust.significant_.tolist() == [True, False, False]
    # Plain spectral signatures rank within a class (the paper removes rows per class).
    plain = SpectralSignatureDetector().fit(X, y)
    assert set(np.argsort(-plain.scores_[:40])[:8].tolist()) == set(range(8))


def test_parameter_errors_name_the_parameter() -> None:
    X, y = _features()
    with pytest.raises(ParameterError, match="'n_components' parameter of SpectralSignatureDetector"):
        SpectralSignatureDetector(n_components=0).fit(X, y)
    with pytest.raises(ParameterError, match="'reduce' parameter"):
        ActivationClusteringDetector(reduce="tsne").fit(X, y)
    with pytest.raises(ParameterError, match="'n_neighbors' parameter of KnnLabelDetector"):
        KnnLabelDetector(n_neighbors=0).fit(X, y)
    with pytest.raises(ParameterError, match="features hold NaN"):
        X2 = X.copy()
        X2[0, 0] = np.nan
        RobustSpectralDetector().fit(X2, y)
    p, y = _probs()
    with pytest.raises(ParameterError, match="must sum to 1"):
        ConfidentLearningDetector().fit(p * 2, y)


def test_trigger_phrase_is_grown_and_repetition_counted() -> None:
    X, y = _texts()
    X = X.copy()
    planted = np.flatnonzero(y == 1)[:12]
    for i in planted:  # spam rows get the phrase "zq team" twice, relabeled ham
        X[i] = X[i] + " zq team zq team"
    y = y.copy()
    y[planted] = 0
    det = TriggerKeywordDetector(min_count=5).fit(X, y, _toy_proba)
    assert [t.trigger for t in det.triggers_] == ["zq team"]
    assert det.triggers_[0].repetitions == 2.0
    assert set(np.flatnonzero(det.flags_)) == set(planted.tolist())
