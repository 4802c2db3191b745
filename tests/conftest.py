"""Shared fixtures: real corpora that work offline (digits, MNIST sample) or are cached (SpamAssassin)."""

from __future__ import annotations

import numpy as np
import pytest

from poisonlab.data import Dataset, load_dataset


@pytest.fixture(scope="session")
def spamassassin() -> Dataset:
    """The real SpamAssassin corpus (downloaded once and cached by poisonlab)."""
    return load_dataset("spamassassin")


@pytest.fixture(scope="session")
def spam_split(spamassassin: Dataset) -> tuple[Dataset, Dataset]:
    return spamassassin.split(test_size=0.3, random_state=0)


@pytest.fixture(scope="session")
def digits() -> Dataset:
    return load_dataset("digits")


@pytest.fixture()
def small_text() -> Dataset:
    X = np.empty(6, dtype=object)
    X[:] = ["win money now", "meeting at noon", "cheap pills", "lunch tomorrow?", "free prize", "notes attached"]
    return Dataset(X=X, y=np.array([1, 0, 1, 0, 1, 0]), classes=("ham", "spam"), name="small")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``gpu`` are skipped where torch sees no CUDA device."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
