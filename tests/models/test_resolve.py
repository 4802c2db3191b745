"""resolve_model and the one table of specs; adapters for fitted estimators and torch modules."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC

from poisonlab.data import Dataset
from poisonlab.exceptions import ModelError, NotFittedError, ParameterError
from poisonlab.models import (
    DEFAULT_SPECS,
    SPEC_TABLE,
    ModelAdapter,
    default_spec,
    describe_model,
    is_fitted,
    resolve_model,
    specs_for,
)
from poisonlab.models.sklearn import SklearnModel


def test_one_table_of_defaults() -> None:
    from poisonlab.audit import default_model
    from poisonlab.cli.inputs import KIND_OF_SPEC

    for kind in ("text", "image", "tabular"):
        assert default_model(kind) == default_spec(kind) == DEFAULT_SPECS[kind]
        assert DEFAULT_SPECS[kind] in specs_for(kind)
    assert DEFAULT_SPECS["text"] == "logreg-text"
    assert KIND_OF_SPEC == {name: spec.kinds for name, spec in SPEC_TABLE.items()}
    with pytest.raises(ParameterError, match="Unknown kind of data 'audio'"):
        default_spec("audio")


def test_resolve_specs_estimators_and_errors(small_text: Dataset) -> None:
    assert resolve_model(None, "text").spec == "logreg-text"
    assert resolve_model("nb-text", "text").spec == "nb-text"
    with pytest.raises(ParameterError, match="trains on text data; this data is image"):
        resolve_model("nb-text", "image")
    with pytest.raises(ModelError, match="Unknown model spec 'svm'"):
        resolve_model("svm", "text")
    pipe = make_pipeline(TfidfVectorizer(), LogisticRegression())
    adapter = resolve_model(pipe, "text")
    assert isinstance(adapter, SklearnModel) and adapter.estimator is pipe
    assert isinstance(adapter, ModelAdapter) and not is_fitted(adapter)
    fitted = clone(adapter).fit(small_text.X, small_text.y, n_classes=2)
    assert resolve_model(fitted, "text") is fitted and is_fitted(fitted)
    assert describe_model(pipe) == "Pipeline(TfidfVectorizer, LogisticRegression)"
    with pytest.raises(ModelError, match="has no predict_proba"):
        resolve_model(LinearSVC(), "tabular")
    with pytest.raises(ModelError, match="must be a spec name"):
        resolve_model(42, "tabular")


def test_sklearn_model_predicts_with_a_fitted_estimator() -> None:
    """The defect: SklearnModel(estimator=fitted) raised NotFittedError."""
    X, y = load_breast_cancer(return_X_y=True)
    names = np.array(["benign", "malignant"])[y]
    fitted = make_pipeline(LogisticRegression(max_iter=3000)).fit(X, names)  # string classes_
    model = SklearnModel(estimator=fitted)
    np.testing.assert_array_equal(model.predict_proba(X[:5]), fitted.predict_proba(X[:5]))
    assert model.n_classes_ == 2 and model.class_names_ == ("benign", "malignant")
    np.testing.assert_array_equal(np.array(model.class_names_)[model.predict(X)], fitted.predict(X))
    assert model.estimator_ is fitted  # used as it is, not refitted
    with pytest.raises(NotFittedError):
        SklearnModel(estimator=LogisticRegression()).predict_proba(X)


def test_torch_module_is_trained_as_a_copy_with_the_default_recipe() -> None:
    torch = pytest.importorskip("torch")
    from poisonlab.models.torch import TorchClassifier

    d = load_digits()
    X, y = d.images[:, :, :, None] / 16.0, d.target
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(),
                              torch.nn.Linear(32, 10))
    before = [p.detach().clone() for p in net.parameters()]
    adapter = resolve_model(net, "image", random_state=0)
    assert isinstance(adapter, TorchClassifier) and adapter.max_epochs == 30
    assert describe_model(adapter) == "TorchClassifier(Sequential)"
    a = clone(adapter).fit(X[:1200], y[:1200], n_classes=10)
    b = clone(adapter).fit(X[:1200], y[:1200], n_classes=10)
    assert all(torch.equal(p, q) for p, q in zip(before, net.parameters(), strict=True))
    np.testing.assert_allclose(a.predict_proba(X[1200:]), b.predict_proba(X[1200:]))  # seeded
    accuracy = float(np.mean(a.predict(X[1200:]) == y[1200:]))
    assert accuracy >= 0.85  # measured 2026-12-02: 0.899 (1200 digits, default recipe, seed 0)
    assert a.features(X[:7]).shape == (7, 32)  # the input of the last Linear layer
    # before fit, the module predicts as given (a trained module can be scanned as it is)
    as_given = TorchClassifier(module=a.net_)
    np.testing.assert_allclose(as_given.predict_proba(X[:5]), a.predict_proba(X[:5]), atol=1e-6)
    with pytest.raises(ModelError, match="cannot be saved"):
        a.state()
