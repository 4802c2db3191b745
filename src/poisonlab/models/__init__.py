"""Model adapters, built-in model specs, and safe saving and loading.

Every model poisonlab trains or scans follows one contract: ``fit(X, y, n_classes=K)``,
``predict_proba(X) -> (N, K)``, ``predict(X)`` and ``features(X)`` (what the model learned: the
penultimate activations of a network, the vectorized input of a scikit-learn pipeline's last step).

Built-in specs: ``nb-text`` (word counts + multinomial naive Bayes), ``logreg-text`` (TF-IDF +
logistic regression), ``logreg`` and ``mlp`` (scaled features, for tables or flattened images),
``cnn`` and ``torch-mlp`` (PyTorch, images; need the ``torch`` extra).
"""

from __future__ import annotations

from typing import Any

from poisonlab.exceptions import ModelError

TEXT_SPECS = ("nb-text", "logreg-text")
TABULAR_SPECS = ("logreg", "mlp")
TORCH_SPECS = ("cnn", "torch-mlp")
SPECS = TEXT_SPECS + TABULAR_SPECS + TORCH_SPECS

__all__ = ["SPECS", "default_spec", "make_model"]


def make_model(spec: str, *, random_state: int | None = 0, **params: Any) -> Any:
    """A fresh, unfitted model for a built-in spec name.

    ``params`` go to the torch classifier (``max_epochs``, ``device``, ...); scikit-learn specs
    take none, so that an unknown option is an error rather than silently ignored.
    """
    if spec in TORCH_SPECS:
        from poisonlab.models.torch import TorchClassifier

        arch = "cnn" if spec == "cnn" else "mlp"
        try:
            return TorchClassifier(arch=arch, random_state=random_state, **params)
        except TypeError as exc:
            raise ModelError(f"Model spec {spec!r}: {exc}.") from None
    if spec in TEXT_SPECS + TABULAR_SPECS:
        if params:
            raise ModelError(f"Model spec {spec!r} takes no options; got {sorted(params)}.")
        from poisonlab.models.sklearn import SklearnModel, builtin_estimator

        return SklearnModel(estimator=builtin_estimator(spec, random_state), spec=spec)
    raise ModelError(f"Unknown model spec {spec!r}; choose one of {list(SPECS)} or a saved model file.")


def default_spec(kind: str) -> str:
    """The model a dataset of this kind gets when the user names none."""
    return {"text": "nb-text", "image": "cnn", "tabular": "logreg"}[kind]
