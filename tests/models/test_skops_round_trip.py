"""Genuinely fitted scikit-learn models still load through the skops allow-list, saved either way."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as sio
from sklearn.datasets import load_digits

from poisonlab.models.allowlist import allowed_types, audit_skops
from poisonlab.models.io import load_model, save_model


def _text() -> tuple[Any, np.ndarray]:
    words = ["free", "money", "now", "meeting", "noon", "prize", "notes", "lunch", "win", "cash"]
    rng = np.random.default_rng(0)
    y = np.arange(80) % 2
    X = np.array([" ".join(rng.choice(words[5 * c:5 * c + 5] + words[:2], size=6)) for c in y], dtype=object)
    return X, y


def _digits() -> tuple[Any, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return X[:300], y[:300]


def _table() -> tuple[Any, np.ndarray]:
    rng = np.random.default_rng(0)
    table = np.column_stack([rng.integers(0, 3, 90), rng.normal(size=90)])  # a category code and a number
    return table, (table[:, 1] > 0).astype(int)


def _models() -> dict[str, tuple[Callable[[], Any], Callable[[], tuple[Any, np.ndarray]]]]:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
        StackingClassifier,
        VotingClassifier,
    )
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import FeatureUnion, make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
    from sklearn.svm import SVC, LinearSVC
    from sklearn.tree import DecisionTreeClassifier

    return {
        "tfidf-ngrams-logreg": (lambda: make_pipeline(TfidfVectorizer(ngram_range=(1, 2)), LogisticRegression()),
                                _text),
        "count-char-nb": (lambda: make_pipeline(CountVectorizer(analyzer="char_wb", ngram_range=(2, 4)),
                                                MultinomialNB()), _text),
        "tfidf-char-linear-svc": (lambda: make_pipeline(TfidfVectorizer(analyzer="char"), LinearSVC()), _text),
        "tfidf-sgd": (lambda: make_pipeline(TfidfVectorizer(), SGDClassifier(loss="log_loss", random_state=0)), _text),
        "feature-union": (lambda: make_pipeline(FeatureUnion([("w", TfidfVectorizer()),
                                                              ("c", CountVectorizer(analyzer="char"))]),
                                                LogisticRegression()), _text),
        "random-forest": (lambda: RandomForestClassifier(n_estimators=5, random_state=0), _digits),
        "extra-trees": (lambda: ExtraTreesClassifier(n_estimators=5, random_state=0), _digits),
        "hist-gradient-boosting": (lambda: HistGradientBoostingClassifier(max_iter=5, random_state=0), _digits),
        "gradient-boosting": (lambda: GradientBoostingClassifier(n_estimators=3, random_state=0), _digits),
        "mlp": (lambda: make_pipeline(StandardScaler(), MLPClassifier(max_iter=30, random_state=0)), _digits),
        "svc-probability": (lambda: SVC(probability=True, random_state=0), _digits),
        "knn": (lambda: KNeighborsClassifier(), _digits),
        "knn-kd-tree": (lambda: KNeighborsClassifier(algorithm="kd_tree"), _digits),
        "log1p-logreg": (lambda: make_pipeline(FunctionTransformer(np.log1p), LogisticRegression(max_iter=500)),
                         _digits),
        "calibrated-linear-svc": (lambda: CalibratedClassifierCV(LinearSVC(), cv=3), _digits),
        "voting": (lambda: VotingClassifier([("l", LogisticRegression(max_iter=500)),
                                             ("t", DecisionTreeClassifier(random_state=0))], voting="soft"), _digits),
        "stacking": (lambda: StackingClassifier([("l", LogisticRegression(max_iter=500)),
                                                 ("t", DecisionTreeClassifier(random_state=0))]), _digits),
        "column-transformer": (lambda: make_pipeline(
            ColumnTransformer([("onehot", OneHotEncoder(handle_unknown="ignore"), [0]),
                               ("scale", StandardScaler(), [1])]), LogisticRegression()), _table),
    }


MODELS = _models()


def _proba(model: Any, X: Any) -> np.ndarray:
    if hasattr(model, "predict_proba"):
        return np.asarray(model.predict_proba(X))
    return np.asarray(model.decision_function(X))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_fitted_model_round_trips(name: str, tmp_path: Path) -> None:
    make, data = MODELS[name]
    X, y = data()
    estimator = make().fit(X, y)
    classes = tuple(str(c) for c in np.unique(y))
    if not hasattr(estimator, "predict_proba"):  # LinearSVC: loads, but poisonlab needs probabilities
        _check_plain_dump_audits(estimator, tmp_path)
        return
    path = save_model(estimator, tmp_path / "model", classes=classes, spec=None)
    saved = load_model(path)
    assert saved.classes == classes
    np.testing.assert_allclose(saved.model.predict_proba(X), estimator.predict_proba(X))
    plain = tmp_path / "plain.skops"
    sio.dump(estimator, plain)  # saved outside poisonlab
    np.testing.assert_allclose(load_model(plain).model.predict_proba(X), estimator.predict_proba(X))


def _check_plain_dump_audits(estimator: Any, tmp_path: Path) -> None:
    plain = tmp_path / "plain.skops"
    sio.dump(estimator, plain)
    found = audit_skops(plain)
    loaded = sio.load(plain, trusted=found)
    assert type(loaded) is type(estimator)


def test_allow_list_holds_no_file_or_process_access() -> None:
    names = allowed_types()
    assert "sklearn.pipeline.Pipeline" in names
    assert "sklearn.compose._column_transformer.ColumnTransformer" in names
    assert "poisonlab.models.sklearn.SklearnModel" in names
    for name in names:
        assert not name.startswith(("os.", "posix.", "subprocess.", "io.", "pathlib.", "shutil.",
                                    "numpy.lib.", "numpy.ctypeslib")), name
        assert name.rpartition(".")[2] not in ("memmap", "load", "loadtxt", "fromfile", "save", "open",
                                               "eval", "exec", "getattr", "type", "object"), name
