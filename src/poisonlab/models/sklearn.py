"""Adapter for any scikit-learn classifier or pipeline, and the built-in scikit-learn specs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.pipeline import Pipeline

from poisonlab.exceptions import NotFittedError

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from poisonlab.models.protocols import LearnedFeatures, MarginClassifier, ProbabilisticClassifier


def as_matrix(X: ArrayLike | sp.spmatrix | sp.sparray) -> np.ndarray | sp.spmatrix | sp.sparray:
    """Text stays a 1-D object array; images and tables become 2-D rows; sparse rows stay sparse."""
    if sp.issparse(X):
        return X
    X = np.asarray(X)
    if X.dtype == object or X.dtype.kind == "U":
        return X.astype(object)
    return X.reshape(len(X), -1)


class SklearnModel(ClassifierMixin, BaseEstimator):
    """Wrap a scikit-learn classifier or pipeline with poisonlab's model contract.

    ``fit`` clones ``estimator`` (the given one is never changed), flattens images to rows, and
    records ``n_classes_``; ``predict_proba`` always returns ``n_classes_`` columns, even when a
    class was absent from the training rows; ``features`` returns what the final step sees.

    An ``estimator`` that is fitted already predicts without ``fit``: the first prediction adopts
    it as ``estimator_`` (not a copy), with one column per entry of its ``classes_`` in that order
    (string class names included; names other than ``0..K-1`` are kept in ``class_names_``).

    Parameters
    ----------
    estimator : scikit-learn classifier or Pipeline
        Anything with ``fit`` and ``predict_proba``.
    spec : str, optional
        The built-in spec name this estimator came from, recorded in reports.

    References
    ----------
    .. [1] Buitinck et al., "API design for machine learning software: experiences from the
       scikit-learn project", 2013. https://arxiv.org/abs/1309.0238
    """

    def __init__(self, *, estimator: ProbabilisticClassifier | MarginClassifier | None = None,
                 spec: str | None = None) -> None:
        self.estimator = estimator
        self.spec = spec

    def fit(self, X: np.ndarray, y: np.ndarray, *, n_classes: int | None = None) -> SklearnModel:
        """Fit a clone of ``estimator`` on ``X`` (images flattened to rows) and integer labels ``y``;
        ``n_classes`` (default ``y.max() + 1``) fixes how many columns :meth:`predict_proba` returns.
        Returns ``self``.
        """
        y = np.asarray(y)
        self.n_classes_ = int(n_classes if n_classes is not None else y.max() + 1)
        self.classes_ = np.arange(self.n_classes_)
        self.estimator_ = clone(self.estimator)
        self.estimator_.fit(as_matrix(X), y)
        return self

    def fitted_estimator(self) -> Any:  # the user's scikit-learn estimator: untyped, any class
        """The fitted scikit-learn estimator behind this adapter: the one ``fit`` trained, or the
        fitted estimator it was given (adopted as it is)."""
        self._check()
        return self.estimator_

    def _check(self) -> None:
        if hasattr(self, "estimator_"):
            return
        from poisonlab.models.fitted import is_fitted

        if self.estimator is None or not is_fitted(self.estimator):
            raise NotFittedError("This model is not fitted yet: call fit first.")
        labels = np.asarray(getattr(self.estimator, "classes_", []))
        if not len(labels):
            raise NotFittedError(f"The fitted {type(self.estimator).__name__} has no classes_: "
                                 "call fit on this wrapper instead.")
        self.estimator_ = self.estimator
        self.n_classes_ = len(labels)
        self.classes_ = np.arange(self.n_classes_)
        if not np.array_equal(labels, np.arange(len(labels))):
            self.class_names_ = tuple(str(c) for c in labels)  # names (or shifted numbers) it was fit on

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities; for a head with only ``decision_function`` (``LinearSVC``, a hinge
        ``SGDClassifier``), the sigmoid or softmax of its decision values: a ranking of the
        classes, not calibrated probabilities."""
        self._check()
        if not hasattr(self.estimator_, "predict_proba") and hasattr(self.estimator_, "decision_function"):
            proba = margin_probabilities(self.estimator_.decision_function(as_matrix(X)))
        else:
            proba = np.asarray(self.estimator_.predict_proba(as_matrix(X)))
        if proba.shape[1] == self.n_classes_:
            return proba
        seen = np.asarray(self.estimator_.classes_, dtype=np.int64)
        full = np.zeros((len(proba), self.n_classes_))
        full[:, seen] = proba
        return full

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The most probable integer label of each row, shape (N,)."""
        return np.argmax(self.predict_proba(X), axis=1)

    def features(self, X: np.ndarray) -> LearnedFeatures:
        """The input of the final estimator: the vectorized text or scaled rows.

        Wide sparse matrices (a text vocabulary) stay sparse; everything else is a dense array.
        """
        self._check()
        Z: Any = as_matrix(X)
        if isinstance(self.estimator_, Pipeline) and len(self.estimator_.steps) > 1:
            Z = self.estimator_[:-1].transform(Z)
        if sp.issparse(Z):
            return Z.tocsr() if Z.shape[1] > 4096 else Z.toarray()
        return np.asarray(Z, dtype=np.float64)


def builtin_estimator(spec: str, random_state: int | None) -> BaseEstimator:
    """The scikit-learn pipeline behind a built-in spec name."""
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    if spec == "nb-text":
        return Pipeline([("vectorize", CountVectorizer(lowercase=True)), ("classify", MultinomialNB())])
    if spec == "logreg-text":
        return Pipeline([
            ("vectorize", TfidfVectorizer(lowercase=True, sublinear_tf=True)),
            ("classify", LogisticRegression(C=10.0, max_iter=2000)),
        ])
    if spec in ("embed-text", "embed-mlp-text"):
        from poisonlab.models.embed import SentenceEmbedder

        # 5-fold accuracy on 3,000 SpamAssassin emails (2026-12-03): scaled LR C=1 0.966 (C=10 on
        # the raw vectors 0.965); scaled MLP(128) 0.980 (TF-IDF + LR: logreg-text, 0.98-0.99)
        head = LogisticRegression(C=1.0, max_iter=3000) if spec == "embed-text" else \
            MLPClassifier(hidden_layer_sizes=(128,), max_iter=300, random_state=random_state)
        return Pipeline([("embed", SentenceEmbedder()), ("scale", StandardScaler()), ("classify", head)])
    if spec == "logreg":
        return Pipeline([("scale", StandardScaler()), ("classify", LogisticRegression(max_iter=2000))])
    if spec == "mlp":
        return Pipeline([
            ("scale", StandardScaler()),
            ("classify", MLPClassifier(hidden_layer_sizes=(128,), max_iter=300, early_stopping=False,
                                       random_state=random_state)),
        ])
    raise KeyError(spec)


def margin_probabilities(decision: np.ndarray) -> np.ndarray:
    """Sigmoid (a 1-D array of two-class decision values) or softmax (N×K) of decision values."""
    D = np.asarray(decision, dtype=np.float64)
    if D.ndim == 1:
        p = 1.0 / (1.0 + np.exp(-np.clip(D, -500, 500)))
        return np.column_stack([1.0 - p, p])
    Z = np.exp(D - D.max(axis=1, keepdims=True))
    return Z / Z.sum(axis=1, keepdims=True)
