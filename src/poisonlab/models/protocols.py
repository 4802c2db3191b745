"""What poisonlab needs a model to offer, as :class:`typing.Protocol` classes, in one place.

* :class:`ProbabilisticClassifier`: ``predict_proba(X) -> (N, K)``; what scanning and checking
  read (a fitted scikit-learn classifier or pipeline, poisonlab's adapters).
* :class:`Classifier`: ``predict_proba`` and ``predict``; what a loaded model file holds.
* :class:`MarginClassifier`: ``decision_function(X)``; a classifier without probabilities
  (``LinearSVC``), whose margins poisonlab maps to a ranking of the classes.
* :class:`ModelAdapter`: the full contract every model inside poisonlab follows (fit, predict,
  features).
* :data:`ModelLike`: what a user may hand over as ``model`` (see
  :func:`poisonlab.models.resolve_model`).

scikit-learn ships no type hints, so its estimators are ``Any`` to a type checker and pass as
any of these; torch is imported for type checking only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, TypeAlias, Union, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    import scipy.sparse as sp
    from torch import nn

__all__ = [
    "Classifier",
    "LearnedFeatures",
    "MarginClassifier",
    "ModelAdapter",
    "ModelLike",
    "ProbabilisticClassifier",
]

LearnedFeatures: TypeAlias = Union[np.ndarray, "sp.csr_matrix"]
"""What :meth:`ModelAdapter.features` returns: a dense N×D array, or a sparse CSR matrix for a wide
text vocabulary."""


class ProbabilisticClassifier(Protocol):
    """A fitted classifier with ``predict_proba``: N rows in, an N×K array of class probabilities out."""

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities of the rows of ``X``, shape (N, K); each row sums to 1."""
        ...


class Classifier(ProbabilisticClassifier, Protocol):
    """A fitted classifier with ``predict_proba`` and ``predict`` (class indices): what a loaded model
    file holds (an adapter, or an ensemble a defense saved)."""

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The predicted class index of each row of ``X``, shape (N,)."""
        ...


class MarginClassifier(Protocol):
    """A fitted classifier with ``decision_function`` only: N (two classes) or N×K margins."""

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Margins of the rows of ``X``: shape (N,) for two classes (above 0 for the second), else (N, K)."""
        ...


@runtime_checkable
class ModelAdapter(Protocol):
    """The contract every model inside poisonlab follows.

    ``fit`` takes integer labels in ``range(n_classes)`` and returns the fitted model;
    ``predict_proba`` returns ``n_classes`` columns even when a class was absent from the training
    rows; ``features`` returns what the model learned about each row (a dense array, or a sparse
    matrix for a wide text vocabulary).

    References
    ----------
    .. [1] Buitinck et al., "API design for machine learning software: experiences from the
       scikit-learn project", 2013. https://arxiv.org/abs/1309.0238
    """

    def fit(self, X: np.ndarray, y: np.ndarray, *, n_classes: int | None = None) -> ModelAdapter:
        """Train on ``X`` and integer labels ``y`` in ``range(n_classes)``; returns the fitted model."""
        ...

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (N, n_classes), a column for every class even if absent in training."""
        ...

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The most probable class index of each row, shape (N,)."""
        ...

    def features(self, X: np.ndarray) -> LearnedFeatures:
        """What the model learned about each row: a dense N×D array, or sparse CSR for a wide vocabulary."""
        ...


ModelLike: TypeAlias = Union[str, ModelAdapter, ProbabilisticClassifier, "nn.Module"]
"""A model as a user hands it over: a built-in spec name, a poisonlab adapter, a scikit-learn
classifier or pipeline with ``predict_proba`` (fitted or not), or a torch ``nn.Module``. (A
classifier with only ``decision_function`` is read from a saved model file, not taken here.)"""
