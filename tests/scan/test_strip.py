"""STRIP: reference values, overlay draws, calibration of the false-rejection rate, real backdoors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression

from poisonlab.attacks import PatchBackdoorAttack
from poisonlab.data import Dataset
from poisonlab.detect_inputs import (
    StripDetector,
    conformal_threshold,
    draw_overlays,
    infer_kind,
    perturbation_scores,
)
from poisonlab.exceptions import DataError, NotFittedError, ParameterError


# ------------------------------------------------------------------------------ reference values
def test_perturbation_scores_reference() -> None:
    P = np.array([[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]])
    g = perturbation_scores(P)
    # uniform: H / log K = 1 -> -log(1.001); certain: -log(0 + 0.001) = log(1000);
    # two equal classes out of four: H = log 2, H / log 4 = 0.5 -> -log(0.501)
    assert g[0] == pytest.approx(-math.log(1.001), abs=1e-8)
    assert g[1] == pytest.approx(math.log(1000), abs=1e-6)
    assert g[2] == pytest.approx(-math.log(0.501), abs=1e-6)
    with pytest.raises(ParameterError, match="K >= 2"):
        perturbation_scores(np.ones((3, 1)))


def test_conformal_threshold_hand_example() -> None:
    scores = np.arange(1.0, 100.0)  # n = 99
    # k = ceil(100 * 0.99) = 99 -> the largest score; a fresh score exceeds it with prob 1/100
    assert conformal_threshold(scores, 0.01) == (99.0, pytest.approx(0.01))
    # k = ceil(100 * 0.9) = 90 -> 90.0, expected rate (99 + 1 - 90) / 100
    assert conformal_threshold(scores, 0.1) == (90.0, pytest.approx(0.10))
    with pytest.raises(DataError, match="at least 99 clean rows; got 50"):
        conformal_threshold(scores[:50], 0.01)


def test_draw_overlays_skips_own_group_and_self() -> None:
    groups = [np.arange(0, 10), np.arange(10, 20), np.arange(20, 30), np.arange(30, 40)]
    rng = np.random.default_rng(0)
    skip = np.array([0, 1, 2, 3, -1] * 20)
    exclude = np.arange(100) % 40
    sel = draw_overlays(100, 9, groups, rng, skip, exclude)
    group_of = sel // 10
    for i in range(100):
        if skip[i] >= 0:
            assert skip[i] not in group_of[i]
            # each cycle of three visits the three other groups once
            assert sorted(group_of[i, :3]) == sorted(set(range(4)) - {skip[i]})
        assert exclude[i] not in sel[i]


def test_infer_kind() -> None:
    assert infer_kind(np.array(["a b", "c"], dtype=object)) == "text"
    assert infer_kind(np.zeros((2, 8, 8, 1))) == "image"
    assert infer_kind(np.zeros((2, 5))) == "tabular"


# ------------------------------------------------------------------------------ calibration
def _blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(3, size=n)
    centers = np.array([[0, 0, 0, 0], [2, 2, 0, 0], [0, 2, 2, 0]], dtype=float)
    return centers[y] + rng.normal(size=(n, 4)), y


@pytest.mark.parametrize("rate", [0.01, 0.05])
def test_false_rejection_rate_on_fresh_clean_inputs_is_close_to_the_one_asked(rate: float) -> None:
    X, y = _blobs(600, 0)
    model = LogisticRegression(max_iter=500).fit(X, y)
    X_cal, _ = _blobs(2000, 1)
    X_new, _ = _blobs(8000, 2)
    det = StripDetector(n_perturbations=16, false_rejection_rate=rate, random_state=0).fit(
        model.predict_proba, X_cal)
    assert det.kind_ == "tabular"
    assert det.expected_false_rejection_rate_ == pytest.approx(rate, abs=1e-3)
    frr = det.predict(X_new).mean()
    # measured: 0.0060 at rate 0.01 and 0.0450 at rate 0.05 (seed 0); the tolerance is about
    # three binomial standard deviations of the calibration quantile plus the test sample
    assert abs(frr - rate) < 3 * math.sqrt(rate * (1 - rate) * (1 / 2000 + 1 / 8000)) + 1e-3
    assert det.flags_.mean() <= rate + 1e-9


def test_contract_clone_params_determinism_and_no_mutation() -> None:
    X, y = _blobs(300, 0)
    model = LogisticRegression(max_iter=500).fit(X, y)
    X_cal, _ = _blobs(300, 1)
    before = X_cal.copy()
    det = StripDetector(n_perturbations=8, min_perturbations=2, random_state=3)
    assert clone(det).get_params() == det.get_params()
    with pytest.raises(NotFittedError):
        det.predict(X_cal)
    a = det.fit(model.predict_proba, X_cal).evaluate(X[:50])
    b = clone(det).fit(model.predict_proba, X_cal).evaluate(X[:50])
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.n_perturbations, b.n_perturbations)
    np.testing.assert_array_equal(X_cal, before)
    assert set(np.unique(a.n_perturbations)) <= {2, 4, 8}


@pytest.mark.parametrize(("param", "value", "message"), [
    ("n_perturbations", 0, "'n_perturbations' parameter of StripDetector must be an int >= 1"),
    ("min_perturbations", 0, "'min_perturbations' parameter of StripDetector must be an int >= 1"),
    ("false_rejection_rate", 1.5, "must be a float in \\(0, 1\\). Got 1.5 instead"),
    ("superimpose", "blend", "must be one of \\['max', 'add', 'average'\\]. Got 'blend' instead"),
])
def test_parameter_errors_name_the_parameter(param: str, value: object, message: str) -> None:
    X, y = _blobs(200, 0)
    model = LogisticRegression(max_iter=500).fit(X, y)
    with pytest.raises(ParameterError, match=message):
        StripDetector(**{param: value}).fit(model.predict_proba, X)


def test_text_inputs_are_mixed_with_words_from_clean_rows() -> None:
    seen: list[str] = []

    def predict_proba(texts: np.ndarray) -> np.ndarray:
        seen.extend(texts[:3])
        spam = np.array([("free" in t) + 0.5 * ("cf" in t) for t in texts], dtype=float)
        p = 1 / (1 + np.exp(-3 * (spam - 0.5)))
        return np.column_stack([1 - p, p])

    clean = np.array([f"meeting notes {i} lunch" if i % 2 else f"free prize {i} now"
                      for i in range(200)], dtype=object)
    det = StripDetector(n_perturbations=8, random_state=0).fit(predict_proba, clean)
    assert det.kind_ == "text"
    out = det.evaluate(np.array(["cf meeting notes", "free"], dtype=object))
    assert out.scores.shape == (2,) and out.flags.dtype == bool
    # a mixed input keeps all its own words and gains as many words from one clean row
    mixed = [t for t in seen if t.startswith("cf meeting notes ")]
    assert mixed and all(len(t.split()) == 6 for t in mixed)


def test_calibration_and_inputs_must_match() -> None:
    X, y = _blobs(200, 0)
    model = LogisticRegression(max_iter=500).fit(X, y)
    det = StripDetector(n_perturbations=4, random_state=0).fit(model.predict_proba, X)
    with pytest.raises(ParameterError, match="calibration rows have"):
        det.evaluate(np.zeros((3, 7)))
    with pytest.raises(ParameterError, match="calibrated on tabular inputs; got text"):
        det.evaluate(np.array(["a"], dtype=object))


# ------------------------------------------------------------------------------ real backdoors
@pytest.mark.torch
def test_strip_detects_a_patch_backdoor_on_digits(digits: Dataset) -> None:
    pytest.importorskip("torch")
    from poisonlab.detect_inputs.adapters import predict_proba_function
    from poisonlab.models import make_model

    train, test = digits.split(test_size=0.45, random_state=0)
    poisoned = PatchBackdoorAttack(target_label=0, poison_rate=0.1, random_state=0).apply(train)
    model = make_model("cnn", random_state=0, n_threads=1).fit(
        poisoned.dataset.X, poisoned.dataset.y, n_classes=10)
    fast = predict_proba_function(model)
    np.testing.assert_allclose(fast(test.X[:50]), model.predict_proba(test.X[:50]), atol=1e-4)
    calibration, fresh = test.subset(np.arange(400)), test.subset(np.arange(400, len(test)))
    det = StripDetector(random_state=0).fit(fast, calibration.X)
    clean = det.evaluate(fresh.X)
    triggered = det.evaluate(poisoned.apply_trigger(fresh.X[fresh.y != 0]))
    # measured (seed 0): 0.73% of clean inputs flagged, 94.4% of triggered inputs detected,
    # 33.8 mixes per input on average of 128; the model sends 98.1% of triggered inputs to 0
    assert clean.flags.mean() <= 0.03
    assert triggered.flags.mean() >= 0.90
    assert np.mean(triggered.predictions == 0) > 0.95


# ------------------------------------------------------------------------------ text and tables
def test_on_text_the_leave_out_test_finds_a_token_trigger(spam_split: tuple[Dataset, Dataset]) -> None:
    from poisonlab.attacks import TextBackdoorAttack
    from poisonlab.detect_inputs import LeaveOutDetector
    from poisonlab.models import make_model

    train, test = spam_split
    poisoned = TextBackdoorAttack(trigger="cf", target_label="ham", poison_rate=0.1, repetitions=3,
                                  position="random", random_state=0).apply(train)
    model = make_model("logreg-text").fit(poisoned.dataset.X, poisoned.dataset.y, n_classes=2)
    idx = np.random.default_rng(0).permutation(len(test))
    cal, fresh = test.subset(idx[:300]), test.subset(idx[300:600])
    X_trig = poisoned.apply_trigger(fresh.X[fresh.y != 0])
    leave = LeaveOutDetector(random_state=0).fit(model.predict_proba, cal.X)
    a, b = leave.evaluate(fresh.X), leave.evaluate(X_trig)
    # measured 2026-12-02 (seed 0): 0.0% of clean inputs flagged, 86.7% of triggered ones detected,
    # AUROC 0.995; StripDetector() on the same inputs detected 13.3%
    assert a.flags.mean() <= 0.03
    assert b.flags.mean() >= 0.80


def test_on_tables_the_leave_out_test_finds_a_feature_trigger() -> None:
    from sklearn.datasets import load_breast_cancer

    from poisonlab.attacks import FeatureBackdoorAttack
    from poisonlab.detect_inputs import LeaveOutDetector
    from poisonlab.models import make_model

    bc = load_breast_cancer()
    table = Dataset(X=bc.data.astype(np.float64), y=bc.target,
                    classes=tuple(str(c) for c in bc.target_names), name="breast_cancer")
    train, test = table.split(test_size=0.5, random_state=0)
    poisoned = FeatureBackdoorAttack(target_label=0, poison_rate=0.1, random_state=0).apply(train)
    model = make_model("logreg").fit(poisoned.dataset.X, poisoned.dataset.y, n_classes=2)
    half = len(test) // 2
    cal, fresh = test.subset(np.arange(half)), test.subset(np.arange(half, len(test)))
    X_trig = poisoned.apply_trigger(fresh.X[fresh.y != 0])
    leave = LeaveOutDetector(false_rejection_rate=0.05, random_state=0).fit(model.predict_proba, cal.X)
    strip = StripDetector(false_rejection_rate=0.05, random_state=0).fit(model.predict_proba, cal.X)
    a, b = leave.evaluate(fresh.X), leave.evaluate(X_trig)
    # measured 2026-12-02 (seed 0, 142 calibration rows at 5%): leave-out 0.7% of clean flagged,
    # 71.0% of triggered detected, AUROC 0.988; STRIP 0.0% detected
    assert a.flags.mean() <= 0.08
    assert b.flags.mean() >= 0.6
    assert strip.evaluate(X_trig).flags.mean() < 0.2
