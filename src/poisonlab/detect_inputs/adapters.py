"""Turn a model into the ``predict_proba`` function STRIP calls many times on small batches.

For scikit-learn models this is the model's own ``predict_proba``. For poisonlab's PyTorch models
(anything with a fitted ``net_``) it is a frozen TorchScript trace of the network run in batches
of 256 under ``torch.inference_mode``: measured on the MNIST CNN with one thread, 48 µs per image
against 230 µs for ``TorchClassifier.predict_proba`` (batches of 1024 in eager mode), with
probabilities equal to within 2e-5. Tracing falls back to the eager network if it fails.

A scikit-learn model with a ``decision_function`` but no ``predict_proba`` (``LinearSVC``,
``RidgeClassifier``, ``SGDClassifier`` with the hinge loss) gets the logistic sigmoid of its
decision values (two classes) or their softmax (more): a monotone map of the model's own margins,
not calibrated probabilities. The detectors only rank inputs by it against clean inputs scored the
same way, so the false-rejection rate they promise still holds; the probabilities themselves mean
nothing outside that ranking.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np

from poisonlab.exceptions import ParameterError
from poisonlab.models.sklearn import margin_probabilities as margin_probabilities  # re-exported

if TYPE_CHECKING:
    from torch import nn

    from poisonlab.models.protocols import MarginClassifier, ProbabilisticClassifier

FORWARD_BATCH = 256


class _FittedNetwork(Protocol):
    """poisonlab's fitted PyTorch model (``TorchClassifier``): its network and class count."""

    net_: nn.Module
    n_classes_: int


def _sklearn_function(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    inner = getattr(model, "estimator_", None)  # poisonlab's SklearnModel wraps a fitted estimator
    estimator = inner if inner is not None else model
    if hasattr(estimator, "predict_proba"):
        return model.predict_proba
    if not hasattr(estimator, "decision_function"):
        raise ParameterError(
            f"{type(estimator).__name__} has neither predict_proba nor decision_function; checking "
            f"inputs needs one of them."
        )
    if inner is None:
        return lambda X: margin_probabilities(model.decision_function(X))
    from poisonlab.models.sklearn import as_matrix

    seen = np.asarray(inner.classes_, dtype=np.int64)
    n_classes = int(getattr(model, "n_classes_", len(seen)))

    def predict_proba(X: np.ndarray) -> np.ndarray:
        proba = margin_probabilities(inner.decision_function(as_matrix(X)))
        if len(seen) == n_classes:
            return proba
        full = np.zeros((len(proba), n_classes))
        full[:, seen] = proba
        return full

    return predict_proba


def predict_proba_function(model: ProbabilisticClassifier | MarginClassifier, *,
                           batch_size: int = FORWARD_BATCH) -> Callable[[np.ndarray], np.ndarray]:
    """A function mapping inputs to an (N, K) array of class probabilities, as fast as we can."""
    net = getattr(model, "net_", None)
    if net is None:
        return _sklearn_function(model)
    import torch

    network = cast("_FittedNetwork", model)
    net.eval()
    device = next(net.parameters()).device
    compiled: dict[tuple[int, ...], Any] = {}

    def forward_for(x: Any) -> Any:
        key = tuple(x.shape[1:])
        if key not in compiled:
            try:
                with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    traced = torch.jit.trace(net, x[:2].clone(), check_trace=False)  # type: ignore[no-untyped-call]
                    compiled[key] = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
            except Exception:  # an architecture the tracer cannot follow: run it eagerly
                compiled[key] = net
        return compiled[key]

    def predict_proba(X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim == 3:
            X = X[..., None]
        if len(X) == 0:
            return np.zeros((0, int(network.n_classes_)))
        x = torch.from_numpy(np.ascontiguousarray(X.transpose(0, 3, 1, 2))).to(device)
        f = forward_for(x)
        out = []
        with torch.inference_mode():
            for start in range(0, len(x), batch_size):
                out.append(torch.softmax(f(x[start:start + batch_size]), dim=1).cpu().numpy())
        return np.concatenate(out).astype(np.float64)

    return predict_proba
