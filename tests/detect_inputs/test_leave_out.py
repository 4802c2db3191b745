"""The leave-out test for text and tabular inputs: reference values, perturbations, calibration,
models with only a decision function, and ``check_inputs`` choosing it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from poisonlab.detect_inputs import LeaveOutDetector, leave_out_scores
from poisonlab.detect_inputs.adapters import margin_probabilities, predict_proba_function
from poisonlab.detect_inputs.check import check_inputs
from poisonlab.exceptions import NotFittedError, ParameterError


def _blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(3, size=n)
    centers = np.array([[0, 0, 0, 0, 0, 0], [2, 2, 0, 0, 2, 0], [0, 2, 2, 0, 0, 2]], dtype=float)
    return centers[y] + rng.normal(size=(n, 6)), y


def test_leave_out_scores_reference() -> None:
    # log 0.9 - log 0.09 = log 10; the smaller of the two left-out probabilities counts
    assert leave_out_scores(np.array([0.9]), np.array([[0.8, 0.09]]))[0] == pytest.approx(math.log(10))
    # probabilities are clipped to [1e-6, 1 - 1e-6]: a certain prediction gone to 0 is log(1e6)
    assert leave_out_scores(np.array([1.0]), np.array([[0.0]]))[0] == pytest.approx(
        math.log(1 - 1e-6) - math.log(1e-6), abs=1e-6)


def test_margin_probabilities() -> None:
    np.testing.assert_allclose(margin_probabilities(np.array([0.0, math.log(3)])),
                               [[0.5, 0.5], [0.25, 0.75]])
    P = margin_probabilities(np.array([[0.0, 0.0, math.log(2)]]))
    np.testing.assert_allclose(P, [[0.25, 0.25, 0.5]])


def test_text_groups_remove_every_occurrence_of_their_words() -> None:
    seen: list[str] = []

    def predict_proba(texts: np.ndarray) -> np.ndarray:
        seen.extend(str(t) for t in texts)
        p = np.array([0.9 if "cf" in str(t).lower().split() else 0.4 for t in texts])
        return np.column_stack([1 - p, p])

    clean = np.array([f"meeting notes {i} lunch today" for i in range(150)], dtype=object)
    det = LeaveOutDetector(n_groups=4, n_strongest=0, random_state=0).fit(predict_proba, clean)
    seen.clear()
    out = det.evaluate(np.array(["CF budget cf. cf team call"], dtype=object))
    # six words -> four runs of consecutive words; a run holding one "cf" removes all three,
    # whatever their case or punctuation, and the other runs keep all three
    assert out.n_perturbations.tolist() == [4]
    perturbed = seen[1:]
    assert len(perturbed) == 4
    counts = [t.lower().split().count("cf") + t.lower().count("cf.") for t in perturbed]
    assert set(counts) <= {0, 3} and 0 in counts
    assert sum(len(t.split()) for t in perturbed) < 4 * 6
    assert out.scores[0] == pytest.approx(math.log(0.9) - math.log(0.4))
    assert out.flags[0]


def test_the_strongest_words_go_together_in_one_more_copy() -> None:
    # three planted words spread over a long text fall in different runs, and each run alone
    # leaves two of them pushing; the copy without the input's three strongest words has none
    planted = ("qx", "zv", "jw")

    def predict_proba(texts: np.ndarray) -> np.ndarray:
        n = np.array([sum(w in planted for w in str(t).split()) for t in texts])
        p = np.where(n >= 1, 0.95, 0.3)
        return np.column_stack([1 - p, p])

    filler = [f"word{i}" for i in range(60)]
    clean = np.array([" ".join(filler[j:] + filler[:j]) for j in range(120)], dtype=object)
    text = " ".join([*filler[:20], "qx", *filler[20:40], "zv", *filler[40:], "jw"])
    for k, caught in ((0, False), (3, True)):
        det = LeaveOutDetector(n_groups=8, n_strongest=k, random_state=0).fit(predict_proba, clean)
        out = det.evaluate(np.array([text], dtype=object))
        assert bool(out.flags[0]) is caught, (k, out.scores)
        assert out.n_perturbations.tolist() == [8 + (k > 0)]
    with pytest.raises(ParameterError, match="'n_strongest' parameter of LeaveOutDetector"):
        LeaveOutDetector(n_strongest=-1).fit(predict_proba, clean)


def test_tabular_groups_take_the_clean_median() -> None:
    X, y = _blobs(300, 0)
    model = LogisticRegression(max_iter=500).fit(X, y)
    det = LeaveOutDetector(n_groups=6, random_state=0).fit(model.predict_proba, X)
    np.testing.assert_allclose(det.fill_, np.median(X, axis=0))
    assert det.kind_ == "tabular"
    assert det.evaluate(X[:5]).n_perturbations.tolist() == [6] * 5


@pytest.mark.parametrize("rate", [0.01, 0.05])
def test_false_rejection_rate_on_fresh_clean_inputs_is_close_to_the_one_asked(rate: float) -> None:
    X, y = _blobs(600, 0)
    model = LogisticRegression(max_iter=500).fit(X, y)
    X_cal, _ = _blobs(2000, 1)
    X_new, _ = _blobs(6000, 2)
    det = LeaveOutDetector(false_rejection_rate=rate, random_state=0).fit(model.predict_proba, X_cal)
    assert det.expected_false_rejection_rate_ == pytest.approx(rate, abs=1e-3)
    frr = det.predict(X_new).mean()
    # measured 2026-12-02: 0.0090 at 0.01, 0.0478 at 0.05; tolerance about three binomial sds
    assert abs(frr - rate) < 3 * math.sqrt(rate * (1 - rate) * (1 / 2000 + 1 / 6000)) + 1e-3


def test_contract_clone_params_determinism_and_no_mutation() -> None:
    X, y = _blobs(300, 0)
    model = LogisticRegression(max_iter=500).fit(X, y)
    X_cal, _ = _blobs(300, 1)
    before = X_cal.copy()
    det = LeaveOutDetector(n_groups=3, n_rounds=2, random_state=3)
    assert clone(det).get_params() == det.get_params()
    with pytest.raises(NotFittedError):
        det.predict(X_cal)
    a = det.fit(model.predict_proba, X_cal).evaluate(X[:50])
    b = clone(det).fit(model.predict_proba, X_cal).evaluate(X[:50])
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(X_cal, before)
    assert set(a.n_perturbations.tolist()) == {6}


def test_errors_are_one_clear_line() -> None:
    X, y = _blobs(200, 0)
    model = LogisticRegression(max_iter=500).fit(X, y)
    with pytest.raises(ParameterError, match="'n_groups' parameter of LeaveOutDetector must be an int >= 1"):
        LeaveOutDetector(n_groups=0).fit(model.predict_proba, X)
    with pytest.raises(ParameterError, match="text or tabular inputs; got image inputs"):
        LeaveOutDetector().fit(model.predict_proba, np.zeros((200, 4, 4)))
    det = LeaveOutDetector().fit(model.predict_proba, X)
    with pytest.raises(ParameterError, match="calibration rows have 6"):
        det.evaluate(np.zeros((3, 7)))
    with pytest.raises(ParameterError, match="one of \\['auto', 'strip', 'leave-out', 'onion'\\]"):
        check_inputs(model, X, X, method="entropy")


def test_a_linear_svc_is_checked_through_its_decision_values() -> None:
    X, y = _blobs(400, 0)
    svc = LinearSVC().fit(X, y)
    X_cal, _ = _blobs(300, 1)
    report = check_inputs(svc, X[:100], X_cal)
    assert report.method == "leave-out"
    assert report.summary()["method"] == "leave-out"
    assert report.flags.shape == (100,)
    predict = predict_proba_function(svc)
    np.testing.assert_array_equal(predict(X[:50]).argmax(axis=1), svc.predict(X[:50]))
    with pytest.raises(ParameterError, match="neither predict_proba nor decision_function"):
        predict_proba_function(object())


def test_strip_still_runs_when_asked() -> None:
    X, y = _blobs(400, 0)
    model = LogisticRegression(max_iter=500).fit(X, y)
    report = check_inputs(model, X[:50], X[50:350], method="strip", n_perturbations=8)
    assert report.method == "strip"
    assert report.summary()["method"] == "STRIP"
