"""Loading a model you did not train: refusals before anything runs, one clear line each."""

from __future__ import annotations

import builtins
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from poisonlab.exceptions import ModelError, UntrustedModelError
from poisonlab.models.io import load_model, refusal_reason


def _fitted() -> LogisticRegression:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    return LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))


def test_pickle_is_refused_without_the_flag(tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(_fitted()))
    with pytest.raises(UntrustedModelError, match=r"run code when loaded.*--trust-pickle"):
        load_model(path)
    with pytest.warns(UserWarning, match="runs whatever code the file contains"):
        saved = load_model(path, trust_pickle=True)
    assert saved.model.predict_proba(np.zeros((2, 3))).shape == (2, 2)


def test_skops_with_a_function_inside_is_refused_and_the_allow_list_shown(tmp_path: Path) -> None:
    # a pipeline that would call eval() on every input it is given
    evil = make_pipeline(FunctionTransformer(func=builtins.eval), LogisticRegression())
    path = tmp_path / "evil.skops"
    sio.dump(evil, path)
    with pytest.raises(UntrustedModelError) as info:
        load_model(path)
    message = str(info.value)
    assert "builtins.eval (a builtin outside the safe list)" in message
    assert "Allowed: the classes of fitted scikit-learn models" in message
    assert "\n" not in message


def test_skops_with_a_type_outside_the_allow_list_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "system.skops"
    sio.dump(make_pipeline(FunctionTransformer(func=os.system), LogisticRegression()), path)
    with pytest.raises(UntrustedModelError, match=r"posix.system \(outside the allow-list\)"
                       if os.name == "posix" else r"\(outside the allow-list\)"):
        load_model(path)


def test_refusal_reasons() -> None:
    assert refusal_reason("sklearn.linear_model._logistic.LogisticRegression") is None
    assert refusal_reason("builtins.dict") is None
    assert refusal_reason("numpy.load") == "reads or writes files"
    assert refusal_reason("numpy.memmap") == "reads or writes files"
    assert refusal_reason("numpy.concatenate") == "a function, not a class"
    assert refusal_reason("numpy.log1p", loader="FunctionNode") is None
    assert refusal_reason("numpy.random.mtrand.RandomState", loader="ConstructorFromReduceNode") is not None
    assert refusal_reason("builtins.exec") == "a builtin outside the safe list"
    assert refusal_reason("subprocess.Popen") == "outside the allow-list"
    assert refusal_reason("sklearn.no_such_module.Thing") == "not found in the installed packages"


def test_a_file_that_is_not_what_it_claims_gets_one_line(tmp_path: Path) -> None:
    fake = tmp_path / "model.skops"
    fake.write_bytes(pickle.dumps(_fitted()))
    with pytest.raises(ModelError, match=r"not a skops file \(it looks like a pickle"):
        load_model(fake)
    fake_st = tmp_path / "model.safetensors"
    fake_st.write_text('{"weights": [1, 2, 3]}')
    pytest.importorskip("torch")
    with pytest.raises(ModelError) as info:
        load_model(fake_st)
    assert "not a readable safetensors file" in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.torch
def test_a_whole_pickled_torch_module_is_refused_as_weights(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    path = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(3, 2), path)  # a pickled module, not a state dict
    with pytest.raises(UntrustedModelError, match="not a weights-only torch file"):
        load_model(path)
