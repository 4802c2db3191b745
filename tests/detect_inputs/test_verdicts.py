"""One contract for every input check: the verdict type, the shared calibration, the errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from poisonlab.detect_inputs import (
    InputDetector,
    InputVerdicts,
    LeaveOutDetector,
    StripDetector,
    StripVerdicts,
    WindowStripDetector,
    conformal_threshold,
)
from poisonlab.exceptions import DataError, NotFittedError, ParameterError

Case = tuple[Callable[[np.ndarray], np.ndarray], np.ndarray, np.ndarray]


@pytest.fixture(scope="module")
def images() -> Case:
    digits = load_digits()
    X = (digits.data / 16.0).astype(np.float32)
    model = LogisticRegression(max_iter=1000).fit(X[:600], digits.target[:600])

    def predict_proba(Z: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict_proba(np.asarray(Z, dtype=np.float32).reshape(len(Z), -1)))

    img = X.reshape(-1, 8, 8, 1)
    return predict_proba, img[600:660], img[660:690]


@pytest.fixture(scope="module")
def table() -> Case:
    data = load_breast_cancer()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(
        data.data[:300], data.target[:300])
    return model.predict_proba, data.data[300:360], data.data[360:390]


@pytest.fixture(scope="module")
def texts() -> Case:
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(30)]
    X = np.array([" ".join(rng.choice(vocab, size=int(rng.integers(4, 12)))) for _ in range(200)],
                 dtype=object)
    y = np.array([int(" w1 " in f" {t} ") for t in X])
    y[:3] = 1 - y[:3]
    model = make_pipeline(CountVectorizer(), LogisticRegression(max_iter=1000)).fit(X[:100], y[:100])
    return model.predict_proba, X[100:160], X[160:190]


RATE = 0.05  # 60 calibration rows: at least 19 are needed at 5%
Make = Callable[[], InputDetector]
DETECTORS: list[tuple[str, Make]] = [
    ("images", lambda: StripDetector(n_perturbations=8, false_rejection_rate=RATE, random_state=0)),
    ("table", lambda: StripDetector(n_perturbations=8, false_rejection_rate=RATE, random_state=0)),
    ("texts", lambda: StripDetector(n_perturbations=8, false_rejection_rate=RATE, random_state=0)),
    ("table", lambda: LeaveOutDetector(n_groups=4, false_rejection_rate=RATE, random_state=0)),
    ("texts", lambda: LeaveOutDetector(n_groups=4, false_rejection_rate=RATE, random_state=0)),
    ("images", lambda: WindowStripDetector(n_overlays=2, false_rejection_rate=RATE, random_state=0)),
]
CASES = [pytest.param(case, make, id=f"{type(make()).__name__}-{case}") for case, make in DETECTORS]
# StripDetector calibrates the same function on its sequential rule's critical values, not scores_
ON_SCORES = [p for p, (_, make) in zip(CASES, DETECTORS, strict=True) if type(make()) is not StripDetector]


@pytest.mark.parametrize(("case", "make"), CASES)
def test_every_detector_returns_one_verdict_type(case: str, make: Make,
                                                 request: pytest.FixtureRequest) -> None:
    predict_proba, X_cal, X = request.getfixturevalue(case)
    det = make().fit(predict_proba, X_cal)
    v = det.evaluate(X)
    assert type(v) is InputVerdicts
    for name in ("scores", "flags", "predictions", "n_perturbations"):
        assert len(getattr(v, name)) == len(X), name
    assert v.scores.dtype.kind == "f" and v.flags.dtype == bool
    assert v.predictions.dtype.kind == "i" and v.n_perturbations.dtype.kind == "i"
    assert np.all(v.n_perturbations >= 1)
    # one polarity: flagged exactly where the score is above the threshold
    np.testing.assert_array_equal(v.flags, v.scores > det.threshold_)
    np.testing.assert_array_equal(v.predictions, np.asarray(predict_proba(X)).argmax(axis=1))
    # decision_function and predict are evaluate's scores and flags
    np.testing.assert_array_equal(det.decision_function(X), v.scores)
    np.testing.assert_array_equal(det.predict(X), v.flags)
    # calibration attributes, one per calibration row
    assert len(det.scores_) == len(det.flags_) == len(X_cal)
    assert 0 < det.expected_false_rejection_rate_ <= RATE


@pytest.mark.parametrize(("case", "make"), ON_SCORES)
def test_threshold_is_the_shared_calibration_of_the_clean_scores(
        case: str, make: Make, request: pytest.FixtureRequest) -> None:
    predict_proba, X_cal, _ = request.getfixturevalue(case)
    det = make().fit(predict_proba, X_cal)
    assert (det.threshold_, det.expected_false_rejection_rate_) == conformal_threshold(det.scores_, RATE)
    np.testing.assert_array_equal(det.flags_, det.scores_ > det.threshold_)


def test_window_verdicts_count_windows_times_overlays(images: Case) -> None:
    predict_proba, X_cal, X = images
    det = WindowStripDetector(n_overlays=2, false_rejection_rate=RATE, random_state=0).fit(
        predict_proba, X_cal)
    assert det.evaluate(X).n_perturbations.tolist() == [det.n_windows_ * 2] * len(X)
    empty = det.evaluate(X[:0])
    assert type(empty) is InputVerdicts
    assert [len(a) for a in (empty.scores, empty.flags, empty.predictions, empty.n_perturbations)] == [0] * 4


def test_strip_verdicts_is_the_one_type_and_takes_keywords_only() -> None:
    assert StripVerdicts is InputVerdicts
    one = np.zeros(1)
    v = StripVerdicts(scores=one, flags=one > 0, predictions=np.zeros(1, dtype=np.int64),
                      n_perturbations=np.ones(1, dtype=np.int64))
    assert v.n_perturbations.tolist() == [1]
    # the old positional order (scores, flags, n_perturbations, predictions) must not swap fields
    with pytest.raises(TypeError):
        InputVerdicts(one, one > 0, one, one)  # type: ignore[misc]


def test_conformal_threshold_on_hand_computed_scores() -> None:
    scores = np.random.default_rng(0).permutation(np.arange(1.0, 101.0))  # n = 100, shuffled
    # rate 0.01: k = ceil(101 * 0.99) = ceil(99.99) = 100 -> the largest score; a fresh clean
    # score exceeds it with probability (100 + 1 - 100) / 101 = 1/101
    assert conformal_threshold(scores, 0.01) == (100.0, 1 / 101)
    # rate 0.05: k = ceil(101 * 0.95) = ceil(95.95) = 96 -> 96.0, expected (101 - 96) / 101
    assert conformal_threshold(scores, 0.05) == (96.0, 5 / 101)
    # rate 0.5: k = ceil(50.5) = 51 -> 51.0, expected 50 / 101
    assert conformal_threshold(scores, 0.5) == (51.0, 50 / 101)
    # ties: the threshold is the tied value, and tied rows are not flagged (flags are "above")
    tied = np.r_[np.zeros(95), np.arange(1.0, 6.0)]
    threshold, _ = conformal_threshold(tied, 0.05)
    assert threshold == 1.0 and int((tied > threshold).sum()) == 4
    # too few rows for the rate: ceil(1 / 0.01) - 1 = 99 are needed
    with pytest.raises(DataError, match="at least 99 clean rows; got 98"):
        conformal_threshold(scores[:98], 0.01)
    assert conformal_threshold(scores[:99], 0.01)[1] == 1 / 100


@pytest.mark.parametrize("rate", [0, 1, 1.5, -0.1, True, "0.1", None])
def test_conformal_threshold_refuses_a_bad_rate(rate: Any) -> None:
    with pytest.raises(ParameterError, match=r"'false_rejection_rate' parameter of conformal_threshold "
                                             r"must be a float in \(0, 1\)\. Got"):
        conformal_threshold(np.arange(100.0), rate)


CLASSES = [StripDetector, LeaveOutDetector, WindowStripDetector]
FIXTURE_OF = {StripDetector: "table", LeaveOutDetector: "table", WindowStripDetector: "images"}


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("rate", [0.0, 1.0, 1.5, -0.1, True, "0.1", None])
def test_bad_false_rejection_rate_is_a_parameter_error(cls: type[InputDetector], rate: Any,
                                                       request: pytest.FixtureRequest) -> None:
    predict_proba, X_cal, _ = request.getfixturevalue(FIXTURE_OF[cls])
    message = (rf"The 'false_rejection_rate' parameter of {cls.__name__} must be a float in \(0, 1\)\. "
               rf"Got {rate!r} instead\.")
    with pytest.raises(ParameterError, match=message):
        cls(false_rejection_rate=rate).fit(predict_proba, X_cal)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_fit_errors_are_clear(cls: type[InputDetector], request: pytest.FixtureRequest) -> None:
    predict_proba, X_cal, X = request.getfixturevalue(FIXTURE_OF[cls])
    with pytest.raises(ParameterError, match=f"{cls.__name__}.fit takes a predict_proba function "
                                             "first; got ndarray"):
        cls().fit(X_cal, X_cal)  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"needs at least 2 clean (rows|images)( to mix)?; got 1\."):
        cls().fit(predict_proba, X_cal[:1])
    with pytest.raises(DataError, match="at least 99 clean rows; got 60"):
        cls(false_rejection_rate=0.01).fit(predict_proba, X_cal)
    if cls is not LeaveOutDetector:  # (the leave-out test checks each batch of perturbed inputs)
        with pytest.raises(ParameterError, match=r"predict_proba returned shape \(60, 1\)"):
            cls().fit(lambda Z: np.ones((len(Z), 1)), X_cal)
    unfitted = cls()
    for method in (unfitted.evaluate, unfitted.decision_function, unfitted.predict):
        with pytest.raises(NotFittedError, match=f"This {cls.__name__} is not fitted yet"):
            method(X)
