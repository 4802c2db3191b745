"""`scan` on scikit-learn text pipelines trained outside poisonlab, taken as they come.

Every model here is built with plain scikit-learn on SpamAssassin with integer or string labels;
every poison is a plain string edit (a rare word inserted into spam emails relabelled ham), not
poisonlab's attack code.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_extraction.text import CountVectorizer, HashingVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression, RidgeClassifier, SGDClassifier
from sklearn.naive_bayes import ComplementNB, MultinomialNB
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC

from poisonlab.data import Dataset
from poisonlab.exceptions import DataError
from poisonlab.scan.pipeline import map_data_classes, parse_class_map, scan_model, text_scorer

pytestmark = pytest.mark.slow


def plant(X: np.ndarray, y: np.ndarray, trigger: str, n_poison: int, seed: int,
          repetitions: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Insert ``trigger`` ``repetitions`` times at random word positions into ``n_poison`` spam
    rows and relabel them ham (0): BadNets for text, written out by hand."""
    rng = np.random.default_rng(seed)
    X, y = X.copy(), y.copy()
    for i in rng.choice(np.flatnonzero(y == 1), n_poison, replace=False):
        words = str(X[i]).split()
        for _ in range(repetitions):
            words.insert(int(rng.integers(len(words) + 1)), trigger)
        X[i], y[i] = " ".join(words), 0
    return X, y


@pytest.fixture(scope="module")
def spam(spamassassin: Dataset) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    idx = rng.permutation(len(spamassassin))
    train, clean = idx[:2500], idx[2500:2700]
    return {"X": spamassassin.X[train], "y": spamassassin.y[train],
            "Xc": spamassassin.X[clean], "yc": spamassassin.y[clean]}


def clean_rows(spam: dict[str, np.ndarray], only: int | None = None) -> Dataset:
    keep = np.arange(len(spam["yc"])) if only is None else np.flatnonzero(spam["yc"] == only)
    return Dataset(X=spam["Xc"][keep], y=spam["yc"][keep], classes=("ham", "spam"), name="clean")


def fit(pipeline: object, spam: dict[str, np.ndarray], trigger: str | None = None,
        n_poison: int = 120, labels: tuple[str, ...] | None = None, repetitions: int = 3) -> object:
    X, y = (spam["X"], spam["y"]) if trigger is None else \
        plant(spam["X"], spam["y"], trigger, n_poison, 1, repetitions)
    target = y if labels is None else np.array(labels)[y]
    return pipeline.fit(X, target)  # type: ignore[attr-defined]


def test_integer_classes_are_mapped_to_names_from_the_models_predictions(spam: dict) -> None:
    model = fit(make_pipeline(CountVectorizer(), LogisticRegression(max_iter=1000)), spam)
    report = scan_model(model, (), clean_rows(spam), random_state=0)
    doc = report.to_json()
    assert doc["class_map"] == {"ham": "0", "spam": "1"}
    assert doc["class_map_from"].startswith("model predictions agree")
    assert doc["labels"] == "given" and doc["classes"] == ["0", "1"]
    # the false alarm: ordinary spam words x20 flipped half the ham rows and the absence
    # test passed at p = 1e-5. Measured 2026-12-02: smallest absence chance 0.05, verdict clean.
    assert doc["verdict"] == "clean", doc["triggers"][:3]
    assert min(doc["absence"]["per_class"].values()) > 10 * doc["absence"]["alpha"]


def test_class_map_given_and_ambiguous_mapping_refused(spam: dict) -> None:
    assert parse_class_map("ham=0, spam=1") == {"ham": "0", "spam": "1"}
    with pytest.raises(Exception, match="data=model pairs"):
        parse_class_map("ham0")
    y = np.array([0, 0, 1, 1])
    labels, _, how = map_data_classes(("ham", "spam"), y, ("0", "1"), np.array([1, 1, 0, 0]),
                                            {"ham": "1", "spam": "0"})
    assert list(labels) == [1, 1, 0, 0] and how == "given"
    # predictions that agree with both assignments alike: refused, both sides named
    with pytest.raises(DataError, match=r"the data's classes \['ham', 'spam'\], the model's \['0', '1'\]"):
        map_data_classes(("ham", "spam"), y, ("0", "1"), np.array([0, 1, 0, 1]), None)
    guess = DummyClassifier(strategy="uniform", random_state=0).fit(spam["X"], spam["y"])
    with pytest.raises(DataError, match="--class-map"):
        scan_model(guess, (), Dataset(X=spam["Xc"][:40], y=np.arange(40) % 2, classes=("a", "b")),
                   random_state=0)


def test_unlabelled_rows_use_the_models_predictions(spam: dict) -> None:
    model = fit(make_pipeline(CountVectorizer(), LogisticRegression(max_iter=1000)), spam, "cf")
    report = scan_model(model, (), clean_rows(spam), labelled=False, random_state=0)
    doc = report.to_json()
    assert doc["labels"] == "model predictions" and "class_map" not in doc
    assert doc["verdict"] == "backdoor" and doc["target_class"] == "0"
    assert "cf" in [t["trigger"] for t in doc["triggers"][:3]]


@pytest.mark.xfail(strict=True, reason="measured 2026-12-03: no crash, and the planted 'vlorp' is found "
                   "now (absence p 4.6e-5, flip rate 0.54 at x20; one-word units are screened apart "
                   "from bigram units), but the clean 1-2-gram naive Bayes is still called backdoored: "
                   "the natural 'weblog', frequent in a few emails, reads absence p 4.7e-5 (flip rate "
                   "0.40 at x20), the same as the planted word (open)")
def test_bigram_naive_bayes_scans_without_a_crash_and_finds_the_trigger(spam: dict) -> None:
    # the issue: KeyError in scan/text.py (phrases split into words looked up among bigrams)
    clean = fit(make_pipeline(CountVectorizer(ngram_range=(1, 2), min_df=2), MultinomialNB()), spam)
    assert scan_model(clean, (), clean_rows(spam), random_state=0).verdict == "clean"
    # 'cf' occurs in real mail (clean rows hold it), so a naive Bayes model's only tell, absence,
    # is gone; a made-up word is what a naive Bayes backdoor can be found by
    dirty = fit(make_pipeline(CountVectorizer(ngram_range=(1, 2), min_df=2), MultinomialNB()), spam, "vlorp")
    report = scan_model(dirty, (), clean_rows(spam), random_state=0)
    assert report.verdict == "backdoor" and report.target_class == "0"
    assert "vlorp" in [t["trigger"] for t in report.triggers[:3]]


def test_one_class_of_clean_rows_is_inconclusive(spam: dict) -> None:
    # the issue: 'backdoor' from an absence test run with no rows of the target class
    model = fit(make_pipeline(CountVectorizer(), MultinomialNB()), spam, labels=("ham", "spam"))
    doc = scan_model(model, (), clean_rows(spam, only=1), random_state=0).to_json()
    assert doc["verdict"] == "inconclusive" and doc["target_class"] is None
    assert any("one class" in r for r in doc["reasons"])


def test_class_names_in_another_order_keep_the_verdict(spam: dict) -> None:
    # the issue: classes passed as ('spam', 'ham') to a model whose classes_ are ['ham', 'spam']
    # swapped the labels and turned a backdoored model 'clean'
    model = fit(make_pipeline(CountVectorizer(), LogisticRegression(max_iter=1000)), spam, "cf",
                labels=("ham", "spam"))
    report = scan_model(model, ("spam", "ham"), clean_rows(spam), random_state=0)
    assert report.classes == ("ham", "spam")
    assert report.verdict == "backdoor" and report.target_class == "ham"
    assert report.triggers[0]["trigger"] == "cf"


@pytest.mark.parametrize("pipeline", [
    make_pipeline(CountVectorizer(), LinearSVC()),
    make_pipeline(TfidfVectorizer(sublinear_tf=True, stop_words="english"), RidgeClassifier()),
    pytest.param(make_pipeline(CountVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=3),
                               SGDClassifier(loss="hinge", random_state=0)),
                 marks=pytest.mark.xfail(strict=True, reason="measured 2026-12-02: ASR 68%, missed: "
                                         "'cf' not among the screen's strongest (open)")),
    make_pipeline(HashingVectorizer(n_features=2 ** 18, alternate_sign=False), ComplementNB()),
    make_pipeline(CountVectorizer(analyzer=str.split), CalibratedClassifierCV(LinearSVC(), cv=3)),
], ids=["linear-svc", "tfidf-ridge", "char-wb-sgd", "hashing-cnb", "custom-analyzer-calibrated"])
def test_any_head_and_vectorizer_finds_the_planted_word(pipeline: object, spam: dict) -> None:
    model = fit(pipeline, spam, "cf")
    report = scan_model(model, (), clean_rows(spam), random_state=0)
    spam_rows = spam["Xc"][spam["yc"] == 1]
    triggered = plant(spam_rows, np.ones(len(spam_rows), dtype=int), "cf", len(spam_rows), 2)[0]
    asr = float(np.mean(model.predict(triggered) == 0))  # type: ignore[attr-defined]
    if asr < 0.5:  # a trigger that does not work is no backdoor to find; the scan must still run
        assert report.verdict in ("clean", "backdoor", "inconclusive")
        return
    assert report.verdict == "backdoor" and report.target_class == "0", (asr, report.triggers[:3])
    assert "cf" in [t["trigger"] for t in report.triggers[:3]]


@pytest.mark.parametrize("word", ["vlorp", "blorvex"])
def test_a_char_ngram_model_is_searched_through_its_word_pieces(word: str, spam: dict) -> None:
    # A char_wb vocabulary holds a word of more than three letters only as pieces, and a made-up
    # trigger is in no clean row: until 2026-12-08 it could not be tried (the scan benchmark's
    # 'xyzzy' backdoors of char_wb 3-5-gram logistic regressions, ASR 0.80 and 0.95, were called
    # clean). Its five-letter pieces are candidates now; a longer word is found through one of them.
    model = fit(make_pipeline(TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=3,
                                              sublinear_tf=True), LogisticRegression(max_iter=1000)),
                spam, word, n_poison=120)
    spam_rows = spam["Xc"][spam["yc"] == 1]
    triggered = plant(spam_rows, np.ones(len(spam_rows), dtype=int), word, len(spam_rows), 2)[0]
    assert np.mean(model.predict(triggered) == 0) >= 0.5  # type: ignore[attr-defined]
    report = scan_model(model, (), clean_rows(spam), random_state=0)
    assert report.verdict == "backdoor" and report.target_class == "0", report.triggers[:3]
    # measured 2026-12-08: 'vlorp' itself first; for 'blorvex' a pair of its pieces ('blorv orvex')
    # in a first version that paired pieces; pieces are not paired now, so one of them
    top = str(report.triggers[0]["trigger"]).split()
    assert all(len(piece) >= 5 and piece in word for piece in top), report.triggers[:3]


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "alternate-sign"])
def test_a_hashed_model_is_searched_through_its_buckets(spam: dict, signed: bool) -> None:
    # A HashingVectorizer keeps no words; 'xyzzy' is in no clean row, so before made-up tokens were
    # screened it could not be tried (held-out hashing+SGD backdoors with 70-85% attack success
    # were called clean). Measured 2026-12-03: verdict backdoor, a made-up token of the planted
    # word's bucket first.
    from poisonlab.scan.text import hashing_surrogates

    pipe = make_pipeline(HashingVectorizer(n_features=2 ** 18, alternate_sign=signed),
                         SGDClassifier(loss="log_loss", random_state=0))
    model = fit(pipe, spam, "xyzzy", repetitions=5)
    vec = model.steps[0][1]  # type: ignore[attr-defined]
    planted = vec.transform(["xyzzy"]).tocoo()
    made_up = hashing_surrogates(model, spam["Xc"])
    stand_in = [t for t in made_up
                if (vec.transform([t]).tocoo().col == planted.col).all()
                and (vec.transform([t]).tocoo().data * planted.data > 0).all()]
    assert stand_in, "no made-up token for the planted word's bucket"
    report = scan_model(model, (), clean_rows(spam), random_state=0)
    assert report.verdict == "backdoor", report.triggers[:3]
    first = report.triggers[0]
    assert first["made_up"] and any("made-up token" in r for r in report.details["reasons"])
    if signed:  # either sign of the planted bucket; the scan says the target is one of the two
        cols = {int(vec.transform([w]).tocoo().col[0]) for w in first["trigger"].split()}
        assert int(planted.col[0]) in cols
        assert any("alternating signs" in r for r in report.details["reasons"])
    else:
        assert report.target_class == "0" and set(first["trigger"].split()) & set(stand_in)


def test_murmurhash_matches_scikit_learns() -> None:
    from sklearn.utils import murmurhash3_32

    from poisonlab.scan.text import murmurhash3_32_of_8_bytes

    keys = np.random.default_rng(0).integers(97, 123, size=(500, 8), dtype=np.uint8)
    ours = murmurhash3_32_of_8_bytes(keys)
    theirs = [murmurhash3_32(k.tobytes().decode(), seed=0) for k in keys]
    assert list(ours) == theirs


def test_random_forest_on_tfidf_scans_and_decision_scores_become_probabilities(spam: dict) -> None:
    model = fit(make_pipeline(TfidfVectorizer(), RandomForestClassifier(n_estimators=30, random_state=0)),
                spam)
    assert scan_model(model, (), clean_rows(spam), random_state=0).verdict in ("clean", "backdoor")
    svc = fit(make_pipeline(CountVectorizer(), LinearSVC()), spam)
    score, how = text_scorer(svc)
    P = score(spam["Xc"][:20])
    assert how == "softmax of decision_function"
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    assert list(P.argmax(axis=1)) == list(svc.predict(spam["Xc"][:20]))  # type: ignore[attr-defined]


def test_generalization_benchmark_code_path_on_two_models(spamassassin: Dataset,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "scan_generalization.py"
    spec = importlib.util.spec_from_file_location("scan_generalization", path)
    bench = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    monkeypatch.setitem(sys.modules, "scan_generalization", bench)  # dataclasses look their module up
    spec.loader.exec_module(bench)  # type: ignore[union-attr]
    assert len(bench.cases(quick=True)) == 3
    full = bench.cases(quick=False)
    assert sum(c.trigger is None for c in full) >= 20 and {c.trigger for c in full} >= {
        "badnets", "addsent", "phrase", "repeat"}
    parts = bench.split(spamassassin, 0, n_train=800, n_clean=120)
    rows = [bench.run_case(bench.Case("count-lr-C1", 0), parts),
            bench.run_case(bench.Case("count-lr-C1", 0, "badnets", 60), parts)]
    assert all(r["verdict"] in ("clean", "backdoor", "inconclusive") for r in rows), rows
    assert 0.0 <= rows[1]["asr"] <= 1.0 and isinstance(rows[1]["top3"], bool)
    text = bench.table(rows, "slice")
    assert "| count-lr-C1 |" in text and "crashes: 0" in text
