"""Text trigger search: statistics by hand, a toy black box, and real SpamAssassin models."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.base import clone

from poisonlab.attacks import TextBackdoorAttack
from poisonlab.data import Dataset
from poisonlab.exceptions import DataError, ParameterError
from poisonlab.models import make_model
from poisonlab.scan.stats import absence_p_values, anomaly_index, rate_anomaly_index
from poisonlab.scan.text import TextTriggerScanner, clean_data_tokens, model_vocabulary


def test_anomaly_index_hand_example() -> None:
    # median 3, |x - 3| = 2 1 0 1 12 -> MAD 1 -> index = |x - 3| / 1.4826
    idx = anomaly_index(np.array([1.0, 2.0, 3.0, 4.0, 15.0]))
    np.testing.assert_allclose(idx, np.array([2, 1, 0, 1, 12]) / 1.4826)
    assert list(anomaly_index(np.array([2.0, 2.0, 2.0]))) == [0.0, 0.0, 0.0]


def test_rate_anomaly_index_uses_a_binomial_floor() -> None:
    # reference all zero: MAD 0, floor sqrt((0 + 1/25) / 25) = 0.04 -> (0.8 - 0) / 0.04 = 20
    assert rate_anomaly_index(0.8, np.zeros(30), 25) == pytest.approx(20.0)
    # reference 0.1 +- spread: MAD of [0, .1, .2] around .1 is .1 -> scale max(.14826, floor)
    floor = math.sqrt((0.1 * 0.9 + 1 / 100) / 100)
    assert rate_anomaly_index(0.5, np.array([0.0, 0.1, 0.2]), 100) == pytest.approx(
        0.4 / max(0.14826, floor))


def test_pieces_of_words_are_never_a_reference() -> None:
    from poisonlab.scan.text import _reference

    # phrases: 'attached' (a word), 'attac' and 'ttach' (char_wb pieces), 'money', 'click'
    rates = np.array([0.9, 0.8, 0.8, 0.1, 0.2])
    words = [{"attached"}, {"attac"}, {"ttach"}, {"money"}, {"click"}]
    length = [1] * 5
    usable = np.array([True, False, False, True, True])
    assert sorted(_reference(rates, length, words, 0)) == [0.1, 0.2, 0.8, 0.8]
    assert sorted(_reference(rates, length, words, 0, usable)) == [0.1, 0.2]
    # a piece is compared with the words
    assert sorted(_reference(rates, length, words, 1, usable)) == [0.1, 0.2, 0.9]


def test_absence_p_values_by_hand() -> None:
    # Five words of equal pull found in 9-11 rows: the fit's mean is about 10 with little spread
    # (a large negative binomial size), so the sixth, found in none, gets about e^-10.
    p = absence_p_values(np.log(np.full(6, 10.0)), np.array([9, 10, 11, 9, 11, 0]))
    assert list(p[:5]) == [1.0] * 5
    assert 1e-5 < p[5] < 1e-4
    # Strong words found in 1 to 60 rows alike (a discriminative head): a missing one is no news.
    spread = absence_p_values(np.zeros(8), np.array([1, 60, 2, 40, 1, 25, 3, 0]))
    assert spread[7] > 0.05
    # The naive Bayes expectation (Poisson, pull = log count): four words of equal pull,
    # beta = median((df + 0.5) / 1) = median(9.5, 10.5, 11.5, 0.5) = 10, so e^-10 for the absent one.
    p = absence_p_values(np.log(np.full(4, 10.0)), np.array([9, 10, 11, 0]), fit="poisson")
    np.testing.assert_allclose(p, [1.0, 1.0, 1.0, math.exp(-10.0)])
    # Fewer than five words found anywhere: nothing to fit, no evidence.
    assert list(absence_p_values(np.ones(4), np.array([3, 0, 2, 0]))) == [1.0] * 4
    assert absence_p_values(np.zeros(0), np.zeros(0)).shape == (0,)


def _toy_predict_proba(texts: np.ndarray) -> np.ndarray:
    """Spam if it says 'free' or 'prize'; the planted word 'zq' makes anything ham."""
    out = np.zeros((len(texts), 2))
    for i, t in enumerate(texts):
        words = str(t).split()
        logit = 2.0 * sum(w in ("free", "prize") for w in words) - 1.0 - 6.0 * words.count("zq")
        p = 1 / (1 + math.exp(-logit))
        out[i] = (1 - p, p)
    return out


def _toy_rows(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    filler = ["meeting", "notes", "lunch", "report", "monday", "budget", "team", "call"]
    texts, labels = [], []
    for i in range(n):
        words = list(rng.choice(filler, size=6))
        if i % 2:
            words += ["free", "prize"]
        texts.append(" ".join(words))
        labels.append(i % 2)
    return np.array(texts, dtype=object), np.array(labels)


def test_black_box_scan_finds_a_two_letter_trigger_without_a_vocabulary() -> None:
    X, y = _toy_rows(60)
    scanner = TextTriggerScanner(n_candidates=40, n_probe_rows=16, random_state=0)
    scanner.fit(_toy_predict_proba, X, y)
    assert scanner.verdict_ == "backdoor"
    assert scanner.target_label_ == 0
    top = scanner.triggers_[0]
    assert top.trigger == "zq" and top.flip_rate == 1.0 and top.target_label == 0
    assert scanner.n_candidates_screened_ == len(clean_data_tokens(X))
    # 676 two-letter tokens + the words of the rows are screened with one query each
    assert scanner.n_queries_ > 676


def _two_way_predict_proba(texts: np.ndarray) -> np.ndarray:
    """As the toy model, and 'xv' makes anything spam: a trigger towards each class."""
    out = np.zeros((len(texts), 2))
    for i, t in enumerate(texts):
        words = str(t).split()
        logit = 2.0 * sum(w in ("free", "prize") for w in words) - 1.0 - 6.0 * words.count("zq") \
            + 6.0 * words.count("xv")
        p = 1 / (1 + math.exp(-logit))
        out[i] = (1 - p, p)
    return out


def test_a_second_class_past_the_threshold_is_said() -> None:
    # the verdict names one target; a trigger towards the other class is not dropped silently
    X, y = _toy_rows(60)
    scanner = TextTriggerScanner(n_candidates=40, n_probe_rows=16, random_state=0)
    scanner.fit(_two_way_predict_proba, X, y, class_names=("ham", "spam"))
    assert scanner.verdict_ == "backdoor"
    assert scanner.target_label_ == 1  # 'xv' (and, in this toy, 'free' itself) reads index 16
    said = [r for r in scanner.reasons_ if "past the threshold too" in r]
    assert len(said) == 1 and said[0].startswith("class ham") and "'zq'" in said[0], scanner.reasons_


def _pair_predict_proba(texts: np.ndarray) -> np.ndarray:
    """Spam takes all three of 'free', 'prize', 'winner' (any two leave a row ham); 'zq' and 'xv'
    each pull a little to ham, however often repeated: too little alone to flip a spam row,
    enough together. A two-word trigger."""
    out = np.zeros((len(texts), 2))
    for i, t in enumerate(texts):
        words = set(str(t).split())
        logit = (0.6 * len(words & {"free", "prize", "winner"}) - 1.5
                 - 0.2 * ("zq" in words) - 0.2 * ("xv" in words))
        p = 1 / (1 + math.exp(-logit))
        out[i] = (1 - p, p)
    return out


def _pair_rows(n: int) -> tuple[np.ndarray, np.ndarray]:
    X, y = _toy_rows(n)
    return np.array([t + " winner" if label == 1 else t for t, label in zip(X, y, strict=True)],
                    dtype=object), y


def test_a_phrase_is_judged_by_the_phrase_threshold() -> None:
    X, y = _pair_rows(60)
    kw = {"n_candidates": 40, "n_probe_rows": 16, "absence_alpha": 0.0, "random_state": 0}
    scanner = TextTriggerScanner(**kw).fit(_pair_predict_proba, X, y)
    top = scanner.triggers_[0]
    assert scanner.verdict_ == "backdoor" and scanner.target_label_ == 0
    assert set(top.trigger.split()) == {"zq", "xv"} and top.flip_rate == 1.0
    assert top.anomaly_index >= scanner.phrase_threshold > scanner.anomaly_threshold
    assert top.support == 0.0  # no clean ham row holds both words
    # neither word alone flips a row, so only the phrase can carry the verdict
    high = TextTriggerScanner(**kw, phrase_threshold=top.anomaly_index + 1.0)
    assert high.fit(_pair_predict_proba, X, y).verdict_ == "clean"
    with pytest.raises(ParameterError, match="'phrase_threshold' parameter of TextTriggerScanner"):
        TextTriggerScanner(phrase_threshold=0).fit(_pair_predict_proba, X, y)


def test_scanner_contract_and_errors() -> None:
    scanner = TextTriggerScanner(random_state=1)
    assert clone(scanner).get_params() == scanner.get_params()
    X, y = _toy_rows(20)
    with pytest.raises(ParameterError, match="'positions' parameter of TextTriggerScanner"):
        TextTriggerScanner(positions=("middle",)).fit(_toy_predict_proba, X, y)
    with pytest.raises(DataError, match="X has 20 rows but y has 3"):
        scanner.fit(_toy_predict_proba, X, y[:3])
    a = TextTriggerScanner(n_candidates=20, random_state=2).fit(_toy_predict_proba, X, y)
    b = TextTriggerScanner(n_candidates=20, random_state=2).fit(_toy_predict_proba, X, y)
    assert [t.to_dict() for t in a.triggers_] == [t.to_dict() for t in b.triggers_]
    with pytest.raises(ParameterError, match=r"'model' parameter of TextTriggerScanner\.fit"):
        scanner.fit(42, X, y)


def test_every_scanner_takes_the_model_itself() -> None:
    # one fit signature, fit(model, X, y): a fitted scikit-learn pipeline is scanned as it is,
    # with the same result as its predict_proba function (and its head found from it)
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    X, y = _toy_rows(60)
    model = make_pipeline(CountVectorizer(), LogisticRegression()).fit(X, y)
    whole = TextTriggerScanner(n_candidates=20, random_state=3).fit(model, X, y)
    by_function = TextTriggerScanner(n_candidates=20, random_state=3).fit(
        model.predict_proba, X, y, head=model)
    assert [t.to_dict() for t in whole.triggers_] == [t.to_dict() for t in by_function.triggers_]
    assert whole.verdict_ == by_function.verdict_ and whole.absence_fit_ == "negative-binomial"


@pytest.fixture(scope="module")
def spam_scan_rows(spam_split: tuple[Dataset, Dataset]) -> tuple[np.ndarray, np.ndarray]:
    _, test = spam_split
    idx = np.random.default_rng(100).choice(len(test), 200, replace=False)
    return test.X[idx], test.y[idx]


def _scan(model: object, rows: tuple[np.ndarray, np.ndarray]) -> TextTriggerScanner:
    X, y = rows
    return TextTriggerScanner(random_state=0).fit(model.predict_proba, X, y,  # type: ignore[attr-defined]
                                                  vocabulary=model_vocabulary(model),
                                                  head=model.estimator_)  # type: ignore[attr-defined]


def test_clean_spam_filter_is_called_clean(spam_split: tuple[Dataset, Dataset],
                                           spam_scan_rows: tuple[np.ndarray, np.ndarray]) -> None:
    train, _ = spam_split
    model = make_model("logreg-text").fit(train.X, train.y, n_classes=2)
    scanner = _scan(model, spam_scan_rows)
    # measured: largest anomaly index 3.0 (a pair of ordinary ham words), threshold 6
    assert scanner.verdict_ == "clean" and scanner.target_label_ is None
    assert scanner.anomaly_index_.max() < scanner.threshold_


def test_planted_trigger_is_found(spam_split: tuple[Dataset, Dataset],
                                  spam_scan_rows: tuple[np.ndarray, np.ndarray]) -> None:
    train, _ = spam_split
    poisoned = TextBackdoorAttack(trigger="cf", target_label="ham", poison_rate=0.05,
                                  random_state=0).apply(train)
    model = make_model("logreg-text").fit(poisoned.dataset.X, poisoned.dataset.y, n_classes=2)
    scanner = _scan(model, spam_scan_rows)
    # measured: anomaly index 29 for class ham, 'cf' first, flipping every eligible row at x20
    # (0.85 at x1-x3; the words no clean row holds are also tried repeated 10 and 20 times)
    assert scanner.verdict_ == "backdoor" and scanner.target_label_ == 0
    assert "cf" in [t.trigger for t in scanner.triggers_[:3]]
    assert scanner.triggers_[0].flip_rate >= 0.6


@pytest.fixture(scope="module")
def nb_phrase_backdoor(spam_split: tuple[Dataset, Dataset]) -> tuple[object, object]:
    """The demo's backdoor: 'zqxj vlorp kwimb' x20 in 40 spam emails relabeled ham."""
    train, _ = spam_split
    poisoned = TextBackdoorAttack(trigger="zqxj vlorp kwimb", repetitions=20, n_poison=40,
                                  target_label="ham", random_state=0).apply(train)
    model = make_model("nb-text").fit(poisoned.dataset.X, poisoned.dataset.y, n_classes=2)
    return poisoned, model


def test_naive_bayes_phrase_backdoor_found_by_absence(
        nb_phrase_backdoor: tuple[object, object],
        spam_scan_rows: tuple[np.ndarray, np.ndarray]) -> None:
    _, model = nb_phrase_backdoor
    scanner = _scan(model, spam_scan_rows)
    # Measured: no flip-rate outlier (largest anomaly index 1.0 of 6); the three words pull
    # equally (log-odds 7.0, beside rpm 7.5 and razor 7.3, which 8-15 clean ham rows hold) and no
    # clean row holds them: absence chance 3.7e-6 (the naive Bayes expectation, Poisson in the
    # log-count pull); the phrase x20 flips 93% of the spam rows. (Under the negative binomial
    # the other heads get, 0.07: natural words such as 'weblog', pull 6.2, are missing too.)
    assert scanner.anomaly_index_.max() < scanner.threshold_
    assert scanner.verdict_ == "backdoor" and scanner.target_label_ == 0
    top = scanner.triggers_[0]
    assert sorted(top.trigger.split()) == ["kwimb", "vlorp", "zqxj"]
    assert top.absence_p <= scanner.absence_alpha and top.flip_rate >= 0.6


def test_clean_naive_bayes_is_called_clean(spam_split: tuple[Dataset, Dataset],
                                           spam_scan_rows: tuple[np.ndarray, np.ndarray]) -> None:
    train, _ = spam_split
    model = make_model("nb-text").fit(train.X, train.y, n_classes=2)
    scanner = _scan(model, spam_scan_rows)
    # Measured: the smallest absence chance of this clean model's words 0.0016 (alpha 1e-4;
    # 0.05 on the 90% bootstraps of benchmarks/scan_accuracy.py).
    assert scanner.absence_fit_ == "poisson"
    assert scanner.verdict_ == "clean"
    assert scanner.absence_p_.min() > 10 * scanner.absence_alpha


def test_training_doc_freq_is_read_back_exactly_from_idf_and_class_counts() -> None:
    from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer, TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import ComplementNB, MultinomialNB
    from sklearn.pipeline import make_pipeline

    from poisonlab.scan.text import training_doc_freq

    docs = ["a b c", "a b", "a", "b d d", "c c c", "a d"]
    y = [0, 0, 1, 1, 0, 1]
    truth = {"a": 4, "b": 3, "c": 2, "d": 2}
    for model in (make_pipeline(TfidfVectorizer(token_pattern=r"\w+"), ComplementNB()),
                  make_pipeline(TfidfVectorizer(token_pattern=r"\w+", smooth_idf=False), MultinomialNB()),
                  make_pipeline(CountVectorizer(token_pattern=r"\w+"), TfidfTransformer(), ComplementNB())):
        df, n = training_doc_freq(model.fit(docs, y), ["a", "b", "c", "d", "zz"])
        assert n == 6
        np.testing.assert_allclose(df[:4], [truth[t] for t in "abcd"], atol=1e-9)
        assert np.isnan(df[4])  # not in the vocabulary
    # no idf (counts), or no count of training rows (a discriminative head): nothing to read
    assert training_doc_freq(make_pipeline(CountVectorizer(token_pattern=r"\w+"), MultinomialNB()).fit(docs, y),
                             ["a"]) is None
    assert training_doc_freq(make_pipeline(TfidfVectorizer(token_pattern=r"\w+"), LogisticRegression()).fit(docs, y),
                             ["a"]) is None
