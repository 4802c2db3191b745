"""Windowed STRIP: window positions by hand, its errors, and a digits backdoor STRIP misses."""

from __future__ import annotations

import numpy as np
import pytest

from poisonlab.attacks import PatchBackdoorAttack
from poisonlab.data import Dataset
from poisonlab.detect_inputs.strip import StripDetector
from poisonlab.detect_inputs.window import WindowStripDetector, _default_stride, window_starts
from poisonlab.exceptions import DataError, NotFittedError, ParameterError


def test_window_positions() -> None:
    assert window_starts(8, 4, 1) == [0, 1, 2, 3, 4]
    assert window_starts(8, 4, 3) == [0, 3, 4]  # the last window flush with the edge
    assert window_starts(28, 7, 3) == [0, 3, 6, 9, 12, 15, 18, 21]
    assert _default_stride(8, 8, 4) == 1 and _default_stride(28, 28, 7) == 3


def _uniform(X: np.ndarray) -> np.ndarray:
    return np.full((len(X), 3), 1 / 3)


def test_errors() -> None:
    images = np.zeros((50, 8, 8), dtype=np.float32)
    with pytest.raises(DataError, match="takes images"):
        WindowStripDetector().fit(_uniform, np.array(["a text", "another"], dtype=object))
    with pytest.raises(ParameterError, match="smaller than the images"):
        WindowStripDetector(window=8).fit(_uniform, images)
    with pytest.raises(ParameterError, match="n_overlays"):
        WindowStripDetector(n_overlays=0).fit(_uniform, images)
    with pytest.raises(NotFittedError):
        WindowStripDetector().predict(images)
    fitted = WindowStripDetector(false_rejection_rate=0.05).fit(_uniform, images)
    with pytest.raises(DataError, match="clean ones were"):
        fitted.predict(np.zeros((3, 6, 6, 1), dtype=np.float32))


@pytest.mark.torch
def test_finds_a_digits_backdoor_that_strip_misses(digits: Dataset) -> None:
    pytest.importorskip("torch")
    from poisonlab.models import make_model

    train, test = digits.split(test_size=0.45, random_state=0)
    poisoned = PatchBackdoorAttack(target_label=7, poison_rate=0.1, random_state=0).apply(train)
    model = make_model("cnn", random_state=0, n_threads=1).fit(
        poisoned.dataset.X, poisoned.dataset.y, n_classes=10)
    cal, fresh = test.X[:400], test.X[400:]
    triggered = poisoned.apply_trigger(fresh[test.y[400:] != 7])
    windowed = WindowStripDetector(random_state=0).fit(model.predict_proba, cal)
    strip = StripDetector(random_state=0).fit(model.predict_proba, cal)
    # measured: STRIP 6.8% of triggered inputs, windowed STRIP 98.9%, 0.5% of fresh clean ones
    # (the checkerboard's dark squares fill with other digits' ink under STRIP's mixing)
    assert strip.predict(triggered).mean() < 0.3
    assert windowed.predict(triggered).mean() >= 0.9
    assert windowed.predict(fresh).mean() <= 0.03
    assert windowed.n_windows_ == 25 and windowed.window_ == 4
    assert windowed.expected_false_rejection_rate_ <= 0.01
