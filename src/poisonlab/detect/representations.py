"""Representations: what a model learned about each training row, as one dense row of numbers.

The spectral and clustering detectors look for a direction or cluster that the poisoned rows share
in what the model learned. Which array carries that depends on the model:

* ``"activations"``: penultimate-layer activations of a network (poisonlab's torch models, and the
  last hidden layer of scikit-learn's ``MLPClassifier``);
* ``"contributions"``: for linear models (logistic regression, naive Bayes, any final step with
  ``coef_`` or ``feature_log_prob_``), each input feature times its class weight, ``x_j * w_kj``
  with the weights centered across classes: the terms the model adds up to decide, so a trigger
  feature with an outsized weight stands out even when it is one column among 50,000;
* ``"gradient"``: the gradient of the loss with respect to the last layer's weights,
  ``(p - onehot(y)) ⊗ x`` (BADGE-style gradient embeddings); rows the model fits poorly stand out;
* ``"input"``: the input features the final step sees (vectorized text, scaled columns, pixels):
  what a black-box model leaves us.

Wide or sparse arrays are reduced to ``n_dims`` columns by a seeded truncated SVD.
:func:`default_representation` picks activations for networks, contributions for linear models and
input features otherwise (``benchmarks/audit_vs_art.py --representations`` measures the choice).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import numpy as np
import scipy.sparse as sp

from poisonlab.exceptions import ParameterError

if TYPE_CHECKING:
    from poisonlab.models.protocols import ModelAdapter

REPRESENTATIONS = ("auto", "activations", "contributions", "gradient", "input")


def _final_step(model: Any) -> tuple[Any, Any]:
    """(the fitted scikit-learn final estimator, the fitted pipeline) of a poisonlab model, or Nones."""
    from sklearn.pipeline import Pipeline

    est = getattr(model, "estimator_", None)
    if est is None:
        return None, None
    if isinstance(est, Pipeline):
        return est.steps[-1][1], est
    return est, None


def class_weights(model: object) -> np.ndarray | None:
    """D×K' weights of a linear final step, centered across classes (None if not linear).

    Logistic regression: ``coef_`` (binary: one column); naive Bayes: ``feature_log_prob_`` minus
    its mean over classes (binary: the difference of the two rows, one column).
    """
    final, _ = _final_step(model)
    if final is None:
        return None
    if hasattr(final, "coef_") and np.ndim(final.coef_) == 2:
        W = np.asarray(final.coef_, dtype=np.float64)
        if W.shape[0] > 1:
            W = W - W.mean(axis=0, keepdims=True)
        return W.T
    if hasattr(final, "feature_log_prob_"):
        L = np.asarray(final.feature_log_prob_, dtype=np.float64)
        if L.shape[0] == 2:
            return (L[1] - L[0])[:, None]
        return (L - L.mean(axis=0, keepdims=True)).T
    return None


def default_representation(model: object) -> str:
    """``activations`` for networks, ``contributions`` for linear models, else ``input``."""
    if hasattr(model, "net_"):
        return "activations"
    final, _ = _final_step(model)
    if final is not None and type(final).__name__ == "MLPClassifier":
        return "activations"
    if class_weights(model) is not None:
        return "contributions"
    return "input"


def model_representation(
    model: ModelAdapter,
    X: np.ndarray,
    y: np.ndarray | None = None,
    *,
    kind: str = "auto",
    n_dims: int = 64,
    random_state: int | None = 0,
) -> tuple[np.ndarray, str]:
    """A dense N×d representation of ``X`` under a fitted poisonlab model, and its kind's name.

    ``kind``: one of ``auto``, ``activations``, ``contributions``, ``gradient`` (needs ``y``),
    ``input``. Wider results are reduced to ``n_dims`` columns by a seeded truncated SVD.
    """
    if kind not in REPRESENTATIONS:
        raise ParameterError(
            f"The 'kind' parameter of model_representation must be one of {list(REPRESENTATIONS)}. "
            f"Got {kind!r} instead."
        )
    if kind == "auto":
        kind = default_representation(model)
    if kind == "activations":
        Z = _activations(model, X)
    elif kind == "input":
        Z = _inputs(model, X)
    elif kind == "contributions":
        W = class_weights(model)
        if W is None:
            raise ParameterError(
                "Representation 'contributions' needs a linear final step (coef_ or "
                "feature_log_prob_); use 'input' or 'activations' for this model."
            )
        Z = _contributions(_inputs(model, X), W)
    else:
        if y is None:
            raise ParameterError("Representation 'gradient' needs the labels y.")
        Z = _gradient(_inputs(model, X), np.asarray(model.predict_proba(X)), np.asarray(y))
    return reduce_dims(Z, n_dims, random_state), kind


def _activations(model: Any, X: np.ndarray) -> Any:
    if hasattr(model, "net_"):
        return np.asarray(model.features(X), dtype=np.float64)
    final, _ = _final_step(model)
    if final is not None and type(final).__name__ == "MLPClassifier":
        Z = _inputs(model, X)
        H = Z
        for W, b in zip(final.coefs_[:-1], final.intercepts_[:-1], strict=True):
            H = H @ W + b
            H = np.maximum(H, 0) if final.activation == "relu" else np.tanh(H) \
                if final.activation == "tanh" else H
        return np.asarray(H, dtype=np.float64)
    raise ParameterError(
        "Representation 'activations' needs a network (cnn, torch-mlp, mlp); "
        "use 'contributions' or 'input' for this model."
    )


def _inputs(model: Any, X: np.ndarray) -> Any:
    if hasattr(model, "features") and not hasattr(model, "net_"):
        Z = model.features(X)
    else:
        Z = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    if sp.issparse(Z):
        return sp.csr_matrix(Z, dtype=np.float64)
    return np.asarray(Z, dtype=np.float64)


def _contributions(Z: Any, W: np.ndarray) -> Any:
    blocks = []
    for k in range(W.shape[1]):
        if sp.issparse(Z):
            blocks.append(sp.csr_matrix(Z.multiply(W[:, k][None, :])))
        else:
            blocks.append(Z * W[:, k][None, :])
    if len(blocks) == 1:
        return blocks[0]
    return sp.hstack(blocks, format="csr") if sp.issparse(Z) else np.hstack(blocks)


def _gradient(Z: Any, probs: np.ndarray, y: np.ndarray) -> Any:
    K = probs.shape[1]
    resid = probs.copy()
    resid[np.arange(len(y)), y] -= 1.0
    if K == 2:
        resid = resid[:, 1:]
    blocks = []
    for k in range(resid.shape[1]):
        if sp.issparse(Z):
            blocks.append(sp.csr_matrix(sp.diags(resid[:, k]) @ Z))
        else:
            blocks.append(Z * resid[:, k][:, None])
    if len(blocks) == 1:
        return blocks[0]
    return sp.hstack(blocks, format="csr") if sp.issparse(Z) else np.hstack(blocks)


def pixel_view(X: np.ndarray, *, max_dims: int = 1024, random_state: int | None = 0) -> np.ndarray:
    """Images as one dense row of pixels each, at full resolution up to ``max_dims`` columns.

    The second view of the robust spectral detector on images (:func:`poisonlab.audit.audit`): a
    trigger stamped on the pixels (a patch, ART's pattern, a blended noise image) moves every
    planted row the same way in pixel space, along a direction that clean images barely vary in,
    whether or not the model's penultimate layer keeps it apart. No principal-component reduction
    below ``max_dims``: that is what hides such a direction (a blended noise pattern carries almost
    none of the pixel variance, so the top 64 components of 28 x 28 images drop it). Wider images
    are projected on their top ``max_dims`` principal components (seeded randomized PCA).
    """
    V = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    if V.shape[1] <= max_dims:
        return V
    from sklearn.decomposition import PCA

    return np.asarray(PCA(n_components=min(max_dims, len(V)), svd_solver="randomized",
                          random_state=random_state).fit_transform(V), dtype=np.float64)


def reduce_dims(Z: np.ndarray | sp.spmatrix | sp.sparray, n_dims: int,
                random_state: int | None = 0) -> np.ndarray:
    """Dense ``Z`` if it has at most ``n_dims`` columns, else its seeded truncated-SVD projection."""
    if Z.shape[1] <= n_dims:  # (scipy is untyped: issparse does not narrow, hence the cast)
        return cast("sp.spmatrix", Z).toarray() if sp.issparse(Z) else np.asarray(Z, dtype=np.float64)
    from sklearn.decomposition import TruncatedSVD

    svd = TruncatedSVD(n_components=n_dims, algorithm="randomized", n_iter=4,
                       random_state=random_state)
    return np.asarray(svd.fit_transform(Z), dtype=np.float64)
