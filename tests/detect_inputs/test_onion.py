"""ONION with a Kneser-Ney n-gram model fitted on the clean rows: the language model by hand, the
filter, the calibrated check on real SpamAssassin backdoors, and `poisonlab check --method onion`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from typer.testing import CliRunner

from poisonlab.attacks import AddSentAttack, BadNetsTextAttack
from poisonlab.cli import app
from poisonlab.data import Dataset, save_dataset
from poisonlab.detect_inputs.adapters import predict_proba_function
from poisonlab.detect_inputs.check import check_inputs
from poisonlab.detect_inputs.ngram import KneserNeyLM, lm_tokens
from poisonlab.detect_inputs.onion import OnionDetector, onion_keep, onion_suspicion
from poisonlab.exceptions import DataError, NotFittedError, ParameterError
from poisonlab.models import make_model
from poisonlab.models.io import save_model

runner = CliRunner()
CORPUS = ["the cat sat on the mat", "the dog sat on the log", "a cat ate the fish"]


def test_unigram_kneser_ney_by_hand() -> None:
    # order 1: P(w) = (c(w) - d) / N + d * V / N / (V + 1); "the" appears 5 times in 20 tokens
    lm = KneserNeyLM(order=1, discount=0.5).fit(CORPUS)
    N, V = 20, 11  # 17 words + 3 end tokens; 10 distinct words + the end token
    assert lm.n_tokens_ == N and lm.vocabulary_size_ == V
    assert math.isclose(lm.log_prob("the", []), math.log((5 - 0.5) / N + 0.5 * V / N / (V + 1)))
    assert math.isclose(lm.log_prob("zebra", []), math.log(0.5 * V / N / (V + 1)))


@pytest.mark.parametrize("context", [("the", "cat"), ("on", "the"), ("never", "seen"), ("<s>", "<s>")])
def test_probabilities_sum_to_one(context: tuple[str, str]) -> None:
    lm = KneserNeyLM().fit(CORPUS)
    vocabulary = {w for text in CORPUS for w in lm_tokens(text)} | {"</s>", "<unk-word>"}
    assert math.isclose(sum(math.exp(lm.log_prob(w, context)) for w in vocabulary), 1.0)


@given(words=st.lists(st.sampled_from(["the", "cat", "sat", "on", "mat", "cf", "dog", "zz"]),
                      min_size=1, max_size=12), order=st.integers(1, 4))
@settings(max_examples=60, deadline=None)
def test_deletions_match_rescoring(words: list[str], order: int) -> None:
    lm = KneserNeyLM(order=order).fit(CORPUS)
    base, without = lm.deletion_log_perplexities(words)
    assert math.isclose(base, -lm.token_log_probs(words).mean())
    for i in range(len(words)):
        rest = words[:i] + words[i + 1:]
        assert math.isclose(without[i], -lm.token_log_probs(rest).mean(), rel_tol=1e-9)


def test_planted_token_is_the_most_suspicious_word() -> None:
    lm = KneserNeyLM().fit(CORPUS * 3)
    words, suspicion = onion_suspicion(lm, "the cat sat cf on the mat")
    assert words[int(np.argmax(suspicion))] == "cf"
    assert onion_keep(np.array([-1.0, -2.0]), 0.0, None).all()
    assert onion_keep(np.array([5.0]), 0.0, None).tolist() == [True]  # one word always stays
    assert onion_keep(np.array([1.0, 4.0, 2.0]), 0.0, None).tolist() == [True, False, False]


@pytest.fixture(scope="module")
def backdoored(spam_split: tuple[Dataset, Dataset]) -> dict[str, object]:
    train, test = spam_split
    rng = np.random.default_rng(0)
    order = rng.permutation(len(test))
    calibration, rest = test.subset(np.sort(order[:600])), test.subset(np.sort(order[600:]))
    spam = train.label_index("spam")
    out: dict[str, object] = {"calibration": calibration, "rest": rest}
    for name, attack in (("badnets", BadNetsTextAttack), ("addsent", AddSentAttack)):
        poisoned = attack(poison_rate=0.1, target_label="ham", source_label="spam",
                          random_state=0).apply(train)
        model = make_model("logreg-text", random_state=0).fit(poisoned.X, poisoned.y)
        triggered = poisoned.apply_trigger(rest.X[rest.y == spam][:200], random_state=1)
        out[name] = (model, triggered[model.predict(triggered) != spam])
    return out


def test_onion_catches_planted_triggers_at_one_percent(backdoored: dict[str, object]) -> None:
    """Measured 2026-12-03 on this split (TF-IDF + logistic regression, 10% poisoned; the
    development run that chose max_removed=10): 77.3% of 141 successful badnets-text emails and
    68.9% of 177 addsent emails caught, 0.3% of 300 fresh clean emails flagged."""
    calibration, rest = backdoored["calibration"], backdoored["rest"]
    for name, floor in (("badnets", 0.65), ("addsent", 0.55)):
        model, triggered = backdoored[name]  # type: ignore[misc]
        detector = OnionDetector(false_rejection_rate=0.01).fit(
            predict_proba_function(model), calibration.X)  # type: ignore[attr-defined]
        assert detector.evaluate(triggered).flags.mean() >= floor, name
        assert detector.evaluate(rest.X[:300]).flags.mean() <= 0.03  # type: ignore[attr-defined]
    # the filter itself removes the planted tokens
    filtered = detector.filter(np.array(["please cf find the report attached mn"], dtype=object))
    assert "cf" not in filtered[0].split() and "mn" not in filtered[0].split()


def test_contract(small_text: Dataset) -> None:
    model = make_model("nb-text", random_state=0).fit(small_text.X, small_text.y)
    detector = OnionDetector(false_rejection_rate=0.2, n_folds=3)
    with pytest.raises(NotFittedError):
        detector.evaluate(small_text.X)
    detector.fit(model.predict_proba, small_text.X)
    first = detector.evaluate(small_text.X)
    again = clone(detector).fit(model.predict_proba, small_text.X).evaluate(small_text.X)
    assert np.array_equal(first.scores, again.scores)
    assert first.flags.dtype == bool and (first.n_perturbations == 1).all()
    assert np.array_equal(first.flags, first.scores > detector.threshold_)
    with pytest.raises(ParameterError, match="text inputs"):
        detector.evaluate(np.zeros((3, 4)))


@pytest.mark.parametrize(("params", "message"), [
    ({"max_removed": 0}, "max_removed"), ({"threshold": float("nan")}, "threshold"),
    ({"false_rejection_rate": 1.5}, "false_rejection_rate"), ({"n_folds": 0}, "n_folds"),
])
def test_bad_parameters(params: dict[str, object], message: str, small_text: Dataset) -> None:
    with pytest.raises(ParameterError, match=message):
        OnionDetector(**params).fit(lambda X: np.full((len(X), 2), 0.5), small_text.X)  # type: ignore[arg-type]


def test_too_few_clean_rows_for_the_rate(small_text: Dataset) -> None:
    with pytest.raises(DataError, match="at least 99"):
        check_inputs(make_model("nb-text").fit(small_text.X, small_text.y), small_text.X,
                     small_text.X, method="onion")


def test_check_cli_method_onion(tmp_path: Path, backdoored: dict[str, object]) -> None:
    model, triggered = backdoored["badnets"]  # type: ignore[misc]
    calibration = backdoored["calibration"]
    model_path = save_model(model, tmp_path / "model.skops", classes=("ham", "spam"),  # type: ignore[arg-type]
                            spec="logreg-text")
    inputs = Dataset(X=np.asarray(triggered[:40], dtype=object), y=np.zeros(40, dtype=int),
                     classes=("ham", "spam"), name="inputs")
    inputs_csv = save_dataset(inputs, tmp_path / "inputs.csv")
    clean_csv = save_dataset(calibration, tmp_path / "clean.csv")  # type: ignore[arg-type]
    out = tmp_path / "out"
    result = runner.invoke(app, ["check", str(model_path), "--data", str(inputs_csv), "--calibrate",
                                 str(clean_csv), "--method", "onion", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "ONION" and summary["n_flagged"] >= 20
    bad = runner.invoke(app, ["check", str(model_path), "--data", str(inputs_csv), "--calibrate",
                              str(clean_csv), "--method", "onions", "--out", str(tmp_path / "o2")])
    assert bad.exit_code == 2 and "--method must be one of" in bad.output
    assert not (tmp_path / "o2").exists()
