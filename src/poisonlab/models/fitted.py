"""Whether a model can predict now: one test for adapters, scikit-learn estimators and torch modules."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn
    from typing_extensions import TypeIs  # typing.TypeIs from Python 3.13


def is_fitted(model: object) -> bool:
    """Whether ``model`` (an adapter, a scikit-learn estimator or a torch module) can predict now.

    A torch ``nn.Module`` counts as fitted: there is no telling trained weights from fresh ones.

    References
    ----------
    .. [1] scikit-learn, ``sklearn.utils.validation.check_is_fitted``.
       https://scikit-learn.org/stable/modules/generated/sklearn.utils.validation.check_is_fitted.html
    """
    if is_torch_module(model):
        return True
    if hasattr(model, "net_") or hasattr(model, "estimator_") or hasattr(model, "members_"):
        return True
    if type(model).__name__ == "SklearnModel":  # by name: poisonlab.models.sklearn imports this module
        inner = getattr(model, "estimator", None)
        return inner is not None and is_fitted(inner)
    if type(model).__name__ == "TorchClassifier":
        return getattr(model, "module", None) is not None
    from sklearn.exceptions import NotFittedError as SklearnNotFitted
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(model)
    except (SklearnNotFitted, TypeError):
        return False
    return True


def is_torch_module(model: object) -> TypeIs[nn.Module]:
    """Whether ``model`` is a torch ``nn.Module`` (False without importing torch when it is not loaded)."""
    import sys

    torch = sys.modules.get("torch")  # a module object implies torch was imported already
    return torch is not None and isinstance(model, torch.nn.Module)
