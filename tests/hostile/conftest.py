"""Fixtures for the hostile corpus: a real saved model to corrupt, a file to protect, data to evaluate on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hostile_files import TARGET_BYTES, fitted_text_pipeline

from poisonlab.models.io import save_model
from poisonlab.models.sklearn import SklearnModel


@pytest.fixture()
def target(tmp_path: Path) -> Path:
    """A file the user owns, which no model file may change."""
    path = tmp_path / "victim" / "precious.txt"
    path.parent.mkdir()
    path.write_bytes(TARGET_BYTES)
    return path


@pytest.fixture()
def marker(tmp_path: Path) -> Path:
    """A path that must still not exist after loading (a hostile file tries to create it)."""
    return tmp_path / "victim" / "pwned"


@pytest.fixture()
def saved_skops(tmp_path: Path) -> Path:
    """A model saved by poisonlab: a fitted word-count + naive Bayes pipeline."""
    model = SklearnModel(estimator=fitted_text_pipeline())
    model.estimator_ = model.estimator
    model.n_classes_ = 2
    model.classes_ = np.arange(2)
    return save_model(model, tmp_path / "base" / "model", classes=("ham", "spam"), spec="nb-text")


@pytest.fixture()
def text_csv(tmp_path: Path) -> Path:
    path = tmp_path / "data.csv"
    path.write_text("text,label\nwin money now,spam\nmeeting at noon,ham\nfree prize,spam\nnotes,ham\n")
    return path
