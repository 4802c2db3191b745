"""Attacks take data as it is in a notebook: arrays, a list of strings, pandas, with labels.

On real data (SpamAssassin mail, scikit-learn's digits and breast-cancer table), ``apply(X, y)``
must poison exactly the rows, labels and features that ``apply(dataset)`` poisons on the
equivalent :class:`~poisonlab.data.Dataset`, bit for bit; ``p.y`` comes back in the form the labels
were given; the inputs are not written to; bad input is one :class:`DataError`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_digits

from poisonlab.attacks import (
    Attack,
    BlendBackdoorAttack,
    FeatureBackdoorAttack,
    LabelFlipAttack,
    PatchBackdoorAttack,
    PoisonedDataset,
    TextBackdoorAttack,
)
from poisonlab.data import Dataset, dataset_from_arrays
from poisonlab.exceptions import DataError, ParameterError

DIGIT_NAMES = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])


@pytest.fixture(scope="module")
def mail(spamassassin: Dataset) -> Dataset:
    """600 real emails (ham and spam), every tenth of the corpus."""
    return spamassassin.subset(range(0, len(spamassassin), 10))


@pytest.fixture(scope="module")
def cancer() -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    bunch = load_breast_cancer()
    return bunch.data, bunch.target, bunch.target_names, list(bunch.feature_names)


def assert_same_poison(from_arrays: PoisonedDataset, from_dataset: PoisonedDataset) -> None:
    """The same rows changed, the same way: features bit for bit, labels, mask, trigger."""
    a, b = from_arrays.dataset, from_dataset.dataset
    assert a.X.dtype == b.X.dtype and a.X.shape == b.X.shape
    if a.X.dtype == object:
        assert list(a.X) == list(b.X)
    else:
        assert a.X.tobytes() == b.X.tobytes()
    assert a.classes == b.classes
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(from_arrays.poison_mask, from_dataset.poison_mask)
    np.testing.assert_array_equal(from_arrays.original_y, from_dataset.original_y)
    assert from_arrays.target_label == from_dataset.target_label
    assert from_arrays.record == from_dataset.record
    assert from_arrays.X is a.X
    assert (from_arrays.trigger is None) == (from_dataset.trigger is None)
    if from_arrays.trigger is not None and from_dataset.trigger is not None:
        assert from_arrays.trigger.to_dict() == from_dataset.trigger.to_dict()


# ---------------------------------------------------------------------------------------- text
def test_texts_and_label_names_poison_as_the_dataset_does(mail: Dataset) -> None:
    """The issue's example: a list of emails and a list of 'ham'/'spam'."""
    texts = list(mail.X)
    labels = [mail.classes[k] for k in mail.y]
    texts_before, labels_before = list(texts), list(labels)
    attack = TextBackdoorAttack(trigger="cf", source_label="spam", target_label="ham", n_poison=60,
                                random_state=0)
    p = attack.apply(texts, labels)
    expected = attack.apply(mail)
    assert_same_poison(p, expected)
    assert p.n_poison == 60
    assert texts == texts_before and labels == labels_before
    # Labels come back as names, as given; the Dataset's own apply gives its integer labels.
    assert p.label_form == "names" and expected.label_form == "codes"
    assert p.y.dtype == object and set(p.y) == {"ham", "spam"}
    assert list(p.y) == [mail.classes[k] for k in expected.dataset.y]
    np.testing.assert_array_equal(expected.y, expected.dataset.y)
    poisoned = np.flatnonzero(p.poison_mask)
    assert all(p.X[i].endswith(" cf") and not texts[i].endswith(" cf") for i in poisoned)
    assert set(p.y[poisoned]) == {"ham"} and {labels[i] for i in poisoned} == {"spam"}
    unchanged = np.flatnonzero(~p.poison_mask)
    assert [p.X[i] for i in unchanged] == [texts[i] for i in unchanged]
    assert [p.y[i] for i in unchanged] == [labels[i] for i in unchanged]


def test_a_numpy_array_of_texts_with_integer_labels(mail: Dataset) -> None:
    texts = np.array(list(mail.X))  # a '<U…' array, as np.array makes of strings
    y = mail.y.copy()
    attack = LabelFlipAttack(strategy="targeted", n_poison=25, source_label=1, target_label=0,
                             random_state=3)
    p = attack.apply(texts, y)
    assert_same_poison(p, attack.apply(Dataset(X=mail.X, y=mail.y)))
    assert p.dataset.classes == ("0", "1")
    assert p.y.dtype.kind == "i" and list(p.y) == list(p.dataset.y)
    assert int((p.y != y).sum()) == 25
    np.testing.assert_array_equal(y, mail.y)
    # With classes, integer labels index them, names work for the labels, and y stays integers.
    named = LabelFlipAttack(strategy="targeted", n_poison=25, source_label="spam", target_label="ham",
                            random_state=3)
    q = named.apply(texts, y, classes=mail.classes)
    assert_same_poison(q, named.apply(mail))
    np.testing.assert_array_equal(q.y, p.y)
    # With integer labels the classes are "0", "1": the names "ham"/"spam" are not among them.
    with pytest.raises(ParameterError,
                       match=r"'target_label' parameter of LabelFlipAttack must be one of \['0', '1'\]"):
        LabelFlipAttack(strategy="targeted", n_poison=5, source_label=1, target_label="ham").apply(texts, y)


def test_pandas_text_series_with_a_label_series() -> None:
    pd = pytest.importorskip("pandas")
    texts = pd.Series(["win a free cruise now", "minutes of tuesday's meeting attached",
                       "cheap meds, no prescription", "are we still on for lunch?",
                       "you have been selected for a cash prize", "draft of the q3 report",
                       "click here to claim your reward", "can you review my pull request",
                       "lowest mortgage rates guaranteed", "flight itinerary for next week"],
                      index=[f"m{i}" for i in range(10)])
    labels = pd.Series(["spam", "ham"] * 5, index=texts.index)
    texts_before, labels_before = texts.copy(), labels.copy()
    attack = TextBackdoorAttack(trigger="cf", target_label="ham", n_poison=3, random_state=1)
    p = attack.apply(texts, labels)
    expected = attack.apply(Dataset(X=list(texts), y=list(labels)))
    assert_same_poison(p, expected)
    assert list(p.dataset.ids) == list(texts.index)  # the Series index becomes the row ids
    assert isinstance(p.y, np.ndarray) and list(p.y[p.poison_mask]) == ["ham"] * 3
    pd.testing.assert_series_equal(texts, texts_before)
    pd.testing.assert_series_equal(labels, labels_before)


# ---------------------------------------------------------------------------------------- images
@pytest.mark.parametrize("attack", [
    PatchBackdoorAttack(size=2, n_poison=40, target_label=7, random_state=0),
    BlendBackdoorAttack(alpha=0.3, n_poison=40, source_label=1, target_label=7, random_state=0),
    LabelFlipAttack(poison_rate=0.05, random_state=0),
], ids=["patch", "blend", "flip"])
def test_digit_images_poison_as_the_corpus_does(attack: Attack, digits: Dataset) -> None:
    """load_digits' raw N×8×8 pixels (0..16) against poisonlab's digits corpus (pixels / 16)."""
    bunch = load_digits()
    images, target = bunch.images, bunch.target
    images_before, target_before = images.copy(), target.copy()
    p = attack.apply(images, target)
    expected = attack.apply(digits)
    assert_same_poison(p, expected)
    assert p.X.shape == (1797, 8, 8, 1) and p.X.dtype == np.float32
    assert p.y.dtype.kind == "i" and list(p.y) == list(expected.dataset.y)
    np.testing.assert_array_equal(p.y[~p.poison_mask], target[~p.poison_mask])
    assert images.tobytes() == images_before.tobytes() and np.array_equal(target, target_before)
    # An N×H×W×C array reads the same as N×H×W.
    assert_same_poison(attack.apply(images[..., None], target), expected)


def test_digit_images_with_class_names(digits: Dataset) -> None:
    bunch = load_digits()
    names = DIGIT_NAMES[bunch.target]
    attack = PatchBackdoorAttack(size=3, n_poison=30, source_label="one", target_label="seven",
                                 random_state=4)
    p = attack.apply(bunch.images, names)
    expected = attack.apply(Dataset(X=digits.X, y=names))
    assert_same_poison(p, expected)
    assert p.dataset.classes == tuple(sorted(DIGIT_NAMES))  # names sort alphabetically
    assert p.y.dtype == object and set(p.y[p.poison_mask]) == {"seven"}
    assert set(names[p.poison_mask]) == {"one"}
    np.testing.assert_array_equal(p.y[~p.poison_mask], names[~p.poison_mask])
    assert list(names) == list(DIGIT_NAMES[bunch.target])
    # A class given by its index (in the sorted names) is the same class.
    by_index = PatchBackdoorAttack(size=3, n_poison=30, source_label=p.dataset.classes.index("one"),
                                   target_label=p.dataset.classes.index("seven"), random_state=4)
    np.testing.assert_array_equal(by_index.apply(bunch.images, names).poison_mask, p.poison_mask)
    # Classes given in digit order: the names index them, and still come back as names.
    ordered = attack.apply(bunch.images, names, classes=list(DIGIT_NAMES))
    assert ordered.dataset.classes == tuple(DIGIT_NAMES)
    np.testing.assert_array_equal(ordered.y, p.y)
    np.testing.assert_array_equal(ordered.dataset.y, np.where(p.poison_mask, 7, bunch.target))


# ---------------------------------------------------------------------------------------- tables
def test_breast_cancer_table_with_integer_and_named_labels(cancer: Any) -> None:
    X, y, target_names, _ = cancer
    X_before, y_before = X.copy(), y.copy()
    feature = FeatureBackdoorAttack(n_poison=20, target_label=1, random_state=0)
    p = feature.apply(X, y)
    assert_same_poison(p, feature.apply(Dataset(X=X, y=y)))
    assert p.X.dtype == np.float64 and p.y.dtype.kind == "i"
    assert set(p.y[p.poison_mask]) == {1} and set(y[p.poison_mask]) == {0}
    np.testing.assert_array_equal(p.X[~p.poison_mask], X[~p.poison_mask])

    names = target_names[y]  # 'malignant' (0) and 'benign' (1)
    flip = LabelFlipAttack(strategy="targeted", n_poison=30, source_label="malignant",
                           target_label="benign", random_state=2)
    q = flip.apply(X, names)
    assert_same_poison(q, flip.apply(Dataset(X=X, y=names)))
    assert q.dataset.classes == ("benign", "malignant")
    assert set(q.y[q.poison_mask]) == {"benign"} and set(names[q.poison_mask]) == {"malignant"}
    np.testing.assert_array_equal(q.y[~q.poison_mask], names[~q.poison_mask])
    assert X.tobytes() == X_before.tobytes() and np.array_equal(y, y_before)
    assert list(names) == list(target_names[y_before])


def test_breast_cancer_as_pandas_and_sparse(cancer: Any) -> None:
    pd = pytest.importorskip("pandas")
    sp = pytest.importorskip("scipy.sparse")
    X, y, target_names, feature_names = cancer
    expected_attack = FeatureBackdoorAttack(features={"worst area": 5000.0}, n_poison=15,
                                            target_label="benign", random_state=5)
    frame = pd.DataFrame(X, columns=feature_names)
    labels = pd.Series(target_names[y])
    p = expected_attack.apply(frame, labels)
    expected = expected_attack.apply(Dataset(X=X, y=target_names[y], feature_names=tuple(feature_names)))
    assert_same_poison(p, expected)
    column = feature_names.index("worst area")
    assert set(p.X[p.poison_mask, column]) == {5000.0} and set(p.y[p.poison_mask]) == {"benign"}
    assert frame.to_numpy().tobytes() == X.tobytes()

    # A DataFrame holding its label column: integer labels come back as those integers.
    with_labels = frame.assign(label=y)
    flip = LabelFlipAttack(poison_rate=0.1, random_state=0)
    r = flip.apply(with_labels)
    assert r.label_form == "numbers" and r.y.dtype.kind == "i"
    assert_same_poison(r, flip.apply(Dataset(X=X, y=y, feature_names=tuple(feature_names))))
    assert "label" in with_labels.columns and list(with_labels["label"]) == list(y)

    # A sparse matrix is densified, and poisons as the dense array does.
    s = flip.apply(sp.csr_matrix(X), y)
    assert_same_poison(s, flip.apply(X, y))


# ---------------------------------------------------------------------------------------- errors
def test_bad_input_is_one_clear_data_error(cancer: Any, mail: Dataset) -> None:
    X, y, _, _ = cancer
    attack = LabelFlipAttack(poison_rate=0.1, random_state=0)
    with pytest.raises(DataError, match=r"^LabelFlipAttack\.apply: X has 569 rows but y has 10\.$"):
        attack.apply(X, y[:10])
    with pytest.raises(DataError, match=r"X is a Dataset, which carries its labels and classes"):
        attack.apply(mail, mail.y)
    with pytest.raises(DataError, match=r"X is a Dataset, which carries its labels and classes"):
        attack.apply(mail, classes=("ham", "spam"))
    with pytest.raises(DataError, match=r"X has shape \(569,\): pass rows \(N×D\)"):
        attack.apply(X[:, 0], y)
    with pytest.raises(DataError, match="Labels are needed: pass y"):
        attack.apply(X)
    with pytest.raises(DataError, match=r"read the file first with poisonlab\.load_dataset"):
        attack.apply("train.csv", y)
    with pytest.raises(DataError, match=r"labels \['other'\] are not among the classes"):
        attack.apply(list(mail.X), ["ham"] * (len(mail) - 1) + ["other"], classes=("ham", "spam"))
    # The modality check still names the attack and the data's kind.
    with pytest.raises(ParameterError, match="TextBackdoorAttack attacks text data; array is tabular"):
        TextBackdoorAttack(target_label=1, n_poison=3).apply(X, y)


def test_dataset_from_arrays_is_what_apply_reads(cancer: Any) -> None:
    """The data layer's reader returns a Dataset as it is and builds one from arrays."""
    X, y, target_names, _ = cancer
    ds = dataset_from_arrays(X, target_names[y])
    assert ds.kind == "tabular" and ds.classes == ("benign", "malignant") and ds.name == "array"
    assert dataset_from_arrays(ds) is ds
