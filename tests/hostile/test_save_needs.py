"""Torch without safetensors: the missing package is reported before training, not after it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from poisonlab.data import Dataset
from poisonlab.exceptions import MissingExtraError
from poisonlab.models.io import check_can_save, save_model


@pytest.fixture()
def no_safetensors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import safetensors`` fail as it does where the package is not installed."""
    for name in [m for m in sys.modules if m == "safetensors" or m.startswith("safetensors.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "safetensors", None)


@pytest.mark.torch
def test_check_can_save_names_safetensors_for_a_torch_spec(no_safetensors: None) -> None:
    pytest.importorskip("torch")
    for spec in ("cnn", "torch-mlp", "weights.safetensors"):
        with pytest.raises(MissingExtraError, match=r"'safetensors' package: pip install 'poisonlab\[torch\]'"):
            check_can_save(spec)
    check_can_save("nb-text")  # scikit-learn models are saved with skops
    check_can_save(None)


@pytest.mark.torch
def test_save_model_fails_before_writing_anything(no_safetensors: None, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from poisonlab.models.torch import TorchClassifier, build_network

    model = TorchClassifier(arch="mlp")
    model.net_ = build_network("mlp", (1, 4, 4), 2)
    model.input_shape_, model.n_classes_ = (1, 4, 4), 2
    with pytest.raises(MissingExtraError):
        save_model(model, tmp_path / "out" / "model", classes=("a", "b"), spec="torch-mlp")
    assert not (tmp_path / "out").exists()


@pytest.mark.torch
@pytest.mark.parametrize("method", ["sanitize", "partition", "dp"])
def test_defend_with_a_torch_model_stops_before_training(method: str, no_safetensors: None, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    from poisonlab.defend import DefendRequest, method_function
    from poisonlab.models.torch import TorchClassifier

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("trained before checking that the result can be saved")

    monkeypatch.setattr(TorchClassifier, "fit", no_training)
    rng = np.random.default_rng(0)
    images = Dataset(X=rng.random((40, 8, 8, 1)), y=np.arange(40) % 2, classes=("a", "b"), name="images")
    request = DefendRequest(dataset=images, out=tmp_path / "out", model="cnn")
    with pytest.raises(MissingExtraError, match="safetensors"):
        method_function(method)(request)
