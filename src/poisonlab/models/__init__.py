"""Model adapters, built-in model specs, and safe saving and loading.

Every model poisonlab trains or scans follows one contract, :class:`ModelAdapter`:
``fit(X, y, n_classes=K)``, ``predict_proba(X) -> (N, K)``, ``predict(X)`` and ``features(X)``
(what the model learned: the penultimate activations of a network, the vectorized input of a
scikit-learn pipeline's last step), with ``classes_`` (``0..K-1``) and ``n_classes_`` once fitted.

:func:`resolve_model` turns what a user hands over into such an adapter: a built-in spec name, any
scikit-learn estimator or pipeline (fitted or not), a torch ``nn.Module``, or an adapter already.
:data:`SPEC_TABLE` is the one table of built-in specs, the data each trains on, and the default
per kind of data (:data:`DEFAULT_SPECS`).

Built-in specs: ``nb-text`` (word counts + multinomial naive Bayes), ``logreg-text`` (TF-IDF +
logistic regression), ``embed-text`` and ``embed-mlp-text`` (sentence embeddings,
:mod:`poisonlab.models.embed`, + logistic regression or an MLP), ``logreg`` and ``mlp`` (scaled
features, for tables or flattened images),
``cnn`` and ``torch-mlp`` (PyTorch, images; need the ``torch`` extra).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeGuard

from poisonlab.exceptions import ModelError, ParameterError
from poisonlab.models.fitted import is_fitted, is_torch_module
from poisonlab.models.protocols import (
    Classifier,
    LearnedFeatures,
    MarginClassifier,
    ModelAdapter,
    ModelLike,
    ProbabilisticClassifier,
)

__all__ = [
    "DEFAULT_SPECS",
    "MEMBER_SPECS",
    "SPECS",
    "SPEC_TABLE",
    "Classifier",
    "LearnedFeatures",
    "MarginClassifier",
    "ModelAdapter",
    "ModelLike",
    "ModelSpec",
    "ProbabilisticClassifier",
    "default_spec",
    "describe_model",
    "is_fitted",
    "make_model",
    "resolve_model",
    "specs_for",
]


@dataclass(frozen=True)
class ModelSpec:
    """One row of :data:`SPEC_TABLE`: a built-in model, the data it trains on, its framework.

    References
    ----------
    .. [1] Pedregosa et al., "Scikit-learn: Machine Learning in Python", JMLR 12, 2011.
       https://jmlr.org/papers/v12/pedregosa11a.html
    """

    name: str
    kinds: tuple[str, ...]
    framework: str  # "sklearn" or "torch"
    description: str


SPEC_TABLE: dict[str, ModelSpec] = {s.name: s for s in (
    ModelSpec("nb-text", ("text",), "sklearn", "word counts + multinomial naive Bayes"),
    ModelSpec("logreg-text", ("text",), "sklearn", "TF-IDF + logistic regression (C=10)"),
    ModelSpec("embed-text", ("text",), "sklearn",
              "sentence embeddings (WordLlama, 256-d) + logistic regression; needs the embed extra"),
    ModelSpec("embed-mlp-text", ("text",), "sklearn",
              "sentence embeddings (WordLlama, 256-d) + one hidden layer of 128; needs the embed extra"),
    ModelSpec("logreg", ("tabular", "image"), "sklearn", "standardized features + logistic regression"),
    ModelSpec("mlp", ("tabular", "image"), "sklearn", "standardized features + one hidden layer of 128"),
    ModelSpec("cnn", ("image",), "torch", "two conv layers + a 64-unit layer (PyTorch)"),
    ModelSpec("torch-mlp", ("image",), "torch", "two hidden layers, 128 and 64 (PyTorch)"),
)}
"""Every built-in model spec, in one place."""

DEFAULT_SPECS: dict[str, str] = {"text": "logreg-text", "image": "cnn", "tabular": "logreg"}
"""The model a dataset of each kind gets when the user names none (audit, train, defend).

Text gets logistic regression rather than naive Bayes because its per-feature contributions carry
what it learned (a trigger's weight), which the audit's spectral detectors read."""

MEMBER_SPECS: dict[str, str] = {"text": "nb-text", "image": "logreg", "tabular": "logreg"}
"""The base model of an ensemble defense (partition, bagging) when none is named.

Members train on small shares of the rows: a CNN on ~50 rows reached 52% against 58% for logistic
regression (mnist, 80 partitions; measured), at 4x the time, so images get logreg; text gets naive
Bayes, which needs no iterations to fit on a few rows."""

TEXT_SPECS = tuple(n for n, s in SPEC_TABLE.items() if s.kinds == ("text",))
TORCH_SPECS = tuple(n for n, s in SPEC_TABLE.items() if s.framework == "torch")
TABULAR_SPECS = tuple(n for n, s in SPEC_TABLE.items() if "tabular" in s.kinds)
SPECS = tuple(SPEC_TABLE)


def specs_for(kind: str) -> tuple[str, ...]:
    """The built-in specs that train on data of ``kind`` (``text``, ``image`` or ``tabular``).

    References
    ----------
    .. [1] Pedregosa et al., "Scikit-learn: Machine Learning in Python", JMLR 12, 2011.
       https://jmlr.org/papers/v12/pedregosa11a.html
    """
    return tuple(n for n, s in SPEC_TABLE.items() if kind in s.kinds)


def default_spec(kind: str) -> str:
    """The model a dataset of this kind gets when the user names none (:data:`DEFAULT_SPECS`).

    References
    ----------
    .. [1] Tran, Li and Madry, "Spectral Signatures in Backdoor Attacks", NeurIPS 2018 (why a
       model whose learned features can be read is the default). https://arxiv.org/abs/1811.00636
    """
    try:
        return DEFAULT_SPECS[kind]
    except KeyError:
        raise ParameterError(f"Unknown kind of data {kind!r}; expected one of {list(DEFAULT_SPECS)}.") from None


# ``params`` stay Any: they are TorchClassifier's keyword options, each of its own type, checked there.
def make_model(spec: str, *, random_state: int | None = 0, **params: Any) -> ModelAdapter:
    """A fresh, unfitted model for a built-in spec name.

    ``params`` go to the torch classifier (``max_epochs``, ``device``, ...); scikit-learn specs
    take none, so that an unknown option is an error rather than silently ignored.

    References
    ----------
    .. [1] Pedregosa et al., "Scikit-learn: Machine Learning in Python", JMLR 12, 2011.
       https://jmlr.org/papers/v12/pedregosa11a.html
    """
    entry = SPEC_TABLE.get(spec) if isinstance(spec, str) else None
    if entry is None:
        raise ModelError(f"Unknown model spec {spec!r}; choose one of {list(SPECS)} or a saved model file.")
    if entry.framework == "torch":
        from poisonlab.models.torch import TorchClassifier

        arch = "cnn" if spec == "cnn" else "mlp"
        try:
            return TorchClassifier(arch=arch, random_state=random_state, **params)
        except TypeError as exc:
            raise ModelError(f"Model spec {spec!r}: {exc}.") from None
    if params:
        raise ModelError(f"Model spec {spec!r} takes no options; got {sorted(params)}.")
    from poisonlab.models.sklearn import SklearnModel, builtin_estimator

    return SklearnModel(estimator=builtin_estimator(spec, random_state), spec=spec)


# ``params`` stay Any: they are TorchClassifier's keyword options, each of its own type, checked there.
def resolve_model(model: ModelLike | None, kind: str, *, random_state: int | None = 0,
                  **params: Any) -> ModelAdapter:
    """The :class:`ModelAdapter` for whatever a user passed as ``model``.

    Parameters
    ----------
    model : None, str, scikit-learn estimator, torch.nn.Module or ModelAdapter
        ``None``: the default of ``kind`` (:data:`DEFAULT_SPECS`). A spec name from
        :data:`SPEC_TABLE`, checked against ``kind``. A scikit-learn classifier or
        :class:`~sklearn.pipeline.Pipeline`: wrapped in
        :class:`~poisonlab.models.sklearn.SklearnModel`; a fitted one stays usable for predictions
        as it is, and ``sklearn.base.clone`` of the adapter gives an unfitted copy to train. A
        torch ``nn.Module``: wrapped in :class:`~poisonlab.models.torch.TorchClassifier`, which
        trains a copy with its default recipe (Adam, learning rate 1e-3, batches of 64, until
        the epoch's loss falls below 0.01 or 30 epochs) and predicts with the module as given
        before that. An object that already follows the contract is returned unchanged.
    kind : {"text", "image", "tabular"}
        The kind of data the model will see.
    random_state : int or None
        Seed of a built-in spec or of the torch training.
    **params
        Options of the torch classifier (``max_epochs``, ``device``, ``n_threads``, ...).

    Returns
    -------
    ModelAdapter

    References
    ----------
    .. [1] Buitinck et al., "API design for machine learning software: experiences from the
       scikit-learn project", 2013. https://arxiv.org/abs/1309.0238
    .. [2] Paszke et al., "PyTorch: An Imperative Style, High-Performance Deep Learning Library",
       NeurIPS 2019. https://arxiv.org/abs/1912.01703
    """
    if model is None:
        model = default_spec(kind)
    if isinstance(model, str):
        entry = SPEC_TABLE.get(model)
        if entry is None:
            raise ModelError(f"Unknown model spec {model!r}; choose one of {list(SPECS)}.")
        if kind not in entry.kinds:
            raise ParameterError(
                f"Model spec {model!r} trains on {' or '.join(entry.kinds)} data; this data is {kind}. "
                f"Choose one of {', '.join(specs_for(kind))}.")
        return make_model(model, random_state=random_state,
                          **(params if entry.framework == "torch" else {}))
    if is_torch_module(model):
        from poisonlab.models.torch import TorchClassifier

        return TorchClassifier(module=model, random_state=random_state, **params)
    if _follows_contract(model):
        return model
    if hasattr(model, "fit") and hasattr(model, "predict_proba"):
        from poisonlab.models.sklearn import SklearnModel

        return SklearnModel(estimator=model)
    if hasattr(model, "fit") and hasattr(model, "predict"):
        raise ModelError(f"The model, a {type(model).__name__}, has no predict_proba: poisonlab's "
                         "detectors read class probabilities (use a classifier, or "
                         "CalibratedClassifierCV around this one).")
    raise ModelError(f"The 'model' parameter must be a spec name ({', '.join(SPECS)}), a scikit-learn "
                     f"classifier or pipeline, or a torch nn.Module. Got a {type(model).__name__}.")


def describe_model(model: object) -> str:
    """The name reports give ``model``: a spec name, ``Pipeline(TfidfVectorizer, LogisticRegression)``,
    a class name, or ``TorchClassifier(MyNet)`` for a wrapped module.

    References
    ----------
    .. [1] Mitchell et al., "Model Cards for Model Reporting", FAT* 2019.
       https://arxiv.org/abs/1810.03993
    """
    if isinstance(model, str):
        return model
    spec = getattr(model, "spec", None)
    if isinstance(spec, str) and spec:
        return spec
    inner = getattr(model, "estimator", None)
    if inner is not None and type(model).__name__ == "SklearnModel":
        return describe_model(inner)
    module = getattr(model, "module", None)
    if module is not None and type(model).__name__ == "TorchClassifier":
        return f"TorchClassifier({type(module).__name__})"
    steps = getattr(model, "steps", None)
    if isinstance(steps, list) and steps:
        return f"{type(model).__name__}({', '.join(type(s).__name__ for _, s in steps)})"
    return type(model).__name__


def _follows_contract(model: object) -> TypeGuard[ModelAdapter]:
    from poisonlab.models.sklearn import SklearnModel

    if isinstance(model, SklearnModel) or type(model).__name__ == "TorchClassifier":
        return True
    return all(callable(getattr(model, m, None)) for m in ("fit", "predict_proba", "features"))
