"""Neural Cleanse: the statistic by hand, and a clean and a backdoored CNN on digits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from poisonlab.attacks import PatchBackdoorAttack
from poisonlab.data import Dataset
from poisonlab.exceptions import ModelError
from poisonlab.scan.images import NeuralCleanseScanner, mask_anomaly_index


def test_mask_anomaly_index_hand_example() -> None:
    l1 = np.array([4.0, 16.0, 16.0, 32.0, 64.0])
    # log2 sizes 2 4 4 5 6 (natural logs scale both sides alike): median 4, |dev| 2 0 0 1 2,
    # MAD 1 -> the 4-pixel mask sits 2 / 1.4826 below; classes above the median score 0
    expected = np.array([2.0, 0.0, 0.0, 0.0, 0.0]) / 1.4826
    np.testing.assert_allclose(mask_anomaly_index(l1), expected)
    assert math.isinf(mask_anomaly_index(np.array([1.0, 9.0, 9.0, 9.0]))[0])


def test_scanner_needs_a_torch_model(digits: Dataset) -> None:
    pytest.importorskip("torch")
    with pytest.raises(ModelError, match="needs a PyTorch image model"):
        NeuralCleanseScanner().fit(object(), digits.X[:10], digits.y[:10])


@pytest.mark.torch
@pytest.mark.parametrize("backdoored", [False, True])
def test_neural_cleanse_on_digits(digits: Dataset, backdoored: bool) -> None:
    pytest.importorskip("torch")
    from poisonlab.models import make_model

    train, test = digits.split(test_size=0.45, random_state=2)
    X, y = train.X, train.y
    if backdoored:
        attack = PatchBackdoorAttack(location="top-right", target_label=7, poison_rate=0.1,
                                     random_state=2)
        poisoned = attack.apply(train)
        X, y = poisoned.dataset.X, poisoned.dataset.y
    model = make_model("cnn", random_state=2, n_threads=1).fit(X, y, n_classes=10)
    scanner = NeuralCleanseScanner(random_state=0).fit(model, test.X[:500], test.y[:500])
    if backdoored:
        # measured: log anomaly index 6.2 for class 7, mask of 5.4 pixels (others 9.9 and up)
        assert scanner.verdict_ == "backdoor" and scanner.target_label_ == 7
        top = scanner.triggers_[0]
        assert top.target_label == 7 and top.found
        r0, _, _, c1 = top.bounding_box()
        assert r0 <= 3 and c1 >= 5  # the top-right corner: rows 1-3, columns 4-6
    else:
        # measured: largest log anomaly index 1.0
        assert scanner.verdict_ == "clean" and scanner.target_label_ is None
    assert len(scanner.triggers_) == 10
    assert [t.l1 for t in scanner.triggers_] == sorted(t.l1 for t in scanner.triggers_)
