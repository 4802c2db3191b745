"""Neural Cleanse: the statistic by hand, and a clean and a backdoored CNN on digits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from poisonlab.attacks import PatchBackdoorAttack
from poisonlab.data import Dataset
from poisonlab.exceptions import ModelError, ParameterError
from poisonlab.scan.images import NeuralCleanseScanner, mask_anomaly_index


def test_mask_anomaly_index_hand_example() -> None:
    l1 = np.array([4.0, 16.0, 16.0, 32.0, 64.0])
    # log2 sizes 2 4 4 5 6 (natural logs scale both sides alike): median 4, |dev| 2 0 0 1 2,
    # MAD 1 -> the 4-pixel mask sits 2 / 1.4826 below; classes above the median score 0
    expected = np.array([2.0, 0.0, 0.0, 0.0, 0.0]) / 1.4826
    np.testing.assert_allclose(mask_anomaly_index(l1), expected)
    assert math.isinf(mask_anomaly_index(np.array([1.0, 9.0, 9.0, 9.0]))[0])


def test_mask_anomaly_index_floor_on_its_unit() -> None:
    # log sizes 2.0 2.45 2.5 2.5 2.55: median 2.5, MAD 0.05, so the unit is 1.4826 × 0.05 = 0.074
    # and the smallest class stands 0.5 / 0.074 = 6.7 out; with the floor 0.12 it stands 4.2 out
    l1 = np.exp(np.array([2.0, 2.45, 2.5, 2.5, 2.55]))
    assert mask_anomaly_index(l1)[0] == pytest.approx(0.5 / (1.4826 * 0.05))
    assert mask_anomaly_index(l1, 0.12)[0] == pytest.approx(0.5 / 0.12)
    # a spread wider than the floor is left alone
    wide = np.array([4.0, 16.0, 16.0, 32.0, 64.0])
    np.testing.assert_allclose(mask_anomaly_index(wide, 0.12), mask_anomaly_index(wide))
    # with a floor, most masks the same size no longer make the smaller one infinitely odd
    assert mask_anomaly_index(np.array([8.0, 10.0, 10.0, 10.0]), 0.12)[0] == \
        pytest.approx(np.log(10 / 8) / 0.12)


def test_scanner_refuses_a_negative_floor(digits: Dataset) -> None:
    with pytest.raises(ParameterError, match="min_scale"):
        NeuralCleanseScanner(min_scale=-0.1).fit(object(), digits.X[:10], digits.y[:10])


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
        # measured: largest log anomaly index 1.07 (unit floored at 0.12)
        assert scanner.verdict_ == "clean" and scanner.target_label_ is None
    assert len(scanner.triggers_) == 10
    assert [t.l1 for t in scanner.triggers_] == sorted(t.l1 for t in scanner.triggers_)
