"""CleanLabelBackdoorAttack: contract, bounds, hand-worked PGD, errors, and its success on digits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from typer.testing import CliRunner

from poisonlab.attacks import CleanLabelBackdoorAttack, PatchBackdoorAttack, PatchTrigger
from poisonlab.attacks.clean_label import pgd_away_from_label, stamp_patch
from poisonlab.cli import app
from poisonlab.data import Dataset
from poisonlab.exceptions import DataError, ParameterError

runner = CliRunner()


def test_contract_labels_untouched_perturbation_bounded(digits: Dataset) -> None:
    X_before, y_before = digits.X.copy(), digits.y.copy()
    attack = CleanLabelBackdoorAttack(target_label="3", n_poison=40, epsilon=0.1, random_state=0)
    out = attack.apply(digits)
    assert np.array_equal(digits.X, X_before) and np.array_equal(digits.y, y_before)
    assert np.array_equal(out.dataset.y, digits.y) and np.array_equal(out.original_y, digits.y)
    assert out.n_poison == 40 and np.all(digits.y[out.poison_mask] == digits.label_index("3"))
    changed = np.any(out.X != digits.X, axis=(1, 2, 3))
    assert np.array_equal(changed, out.poison_mask)
    assert out.X.dtype == digits.X.dtype and out.X.min() >= 0 and out.X.max() <= 1
    # Outside the patch no pixel moves by more than epsilon; the patch itself is the pattern.
    outside = np.ones(digits.X.shape[1:3], dtype=bool)
    outside[4:7, 4:7] = False  # the 3x3 bottom-right patch with a 1-pixel margin in 8x8 images
    delta = np.abs(out.X - digits.X)[out.poison_mask][:, outside]
    assert delta.max() <= 0.1 + 1e-6 and delta.max() > 0.05
    patched = PatchTrigger().apply(digits.X[out.poison_mask])
    assert np.array_equal(out.X[out.poison_mask][:, 4:7, 4:7], patched[:, 4:7, 4:7])
    again = clone(attack).apply(digits)
    assert np.array_equal(again.X, out.X) and np.array_equal(again.poison_mask, out.poison_mask)
    assert out.record["attack"] == "CleanLabelBackdoorAttack" and out.record["params"]["epsilon"] == 0.1
    assert isinstance(out.trigger, PatchTrigger)


def test_pgd_by_hand_on_a_linear_model() -> None:
    # Two classes on two pixels: class 1 scores x0, class 0 scores x1. A row of class 1 at
    # (0.5, 0.5) climbs its own loss by lowering x0 and raising x1, one step of 0.1 each, capped
    # at epsilon = 0.15 from the start.
    W, b = np.array([[0.0, 1.0], [1.0, 0.0]]), np.zeros(2)
    X = np.array([[0.5, 0.5]], dtype=np.float32)
    one = pgd_away_from_label(X, np.array([1]), W, b, epsilon=0.15, steps=1, step_size=0.1)
    np.testing.assert_allclose(one, [[0.4, 0.6]], atol=1e-6)
    two = pgd_away_from_label(X, np.array([1]), W, b, epsilon=0.15, steps=2, step_size=0.1)
    np.testing.assert_allclose(two, [[0.35, 0.65]], atol=1e-6)
    edge = pgd_away_from_label(np.array([[0.05, 0.98]], dtype=np.float32), np.array([1]), W, b,
                               epsilon=0.15, steps=3, step_size=0.1)
    np.testing.assert_allclose(edge, [[0.0, 1.0]], atol=1e-6)  # clipped to [0, 1]


def test_reduced_amplitude_patch(digits: Dataset) -> None:
    X = digits.X[:5]
    trigger = PatchTrigger()
    assert np.array_equal(stamp_patch(X, trigger, 1.0), trigger.apply(X))
    faint = stamp_patch(X, trigger, 0.25)
    white = trigger.patch(1)[..., 0] == 1
    region = X[:, 4:7, 4:7, 0]
    np.testing.assert_allclose(faint[:, 4:7, 4:7, 0][:, white], np.minimum(region[:, white] + 0.25, 1))
    np.testing.assert_allclose(faint[:, 4:7, 4:7, 0][:, ~white], np.maximum(region[:, ~white] - 0.25, 0))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"epsilon": -0.1}, "'epsilon' parameter of CleanLabelBackdoorAttack must be a float in [0, 1]"),
        ({"epsilon": 1.5}, "'epsilon' parameter"),
        ({"epsilon": float("nan")}, "'epsilon' parameter"),
        ({"amplitude": 0.0}, "'amplitude' parameter of CleanLabelBackdoorAttack must be a float in (0, 1]"),
        ({"steps": 0}, "'steps' parameter of CleanLabelBackdoorAttack must be an int >= 1"),
        ({"step_size": 0.0}, "'step_size' parameter"),
        ({"n_poison": 500}, "target class '0' only, which holds 178 rows; asked for 500"),
        ({"n_poison": None, "poison_rate": 0.2}, "holds 178 rows; asked for 359"),
        ({"target_label": "x"}, "'target_label' parameter"),
        ({"size": 9}, "does not fit in 8×8 images"),
        ({"surrogate": "svm"}, "'surrogate' parameter of CleanLabelBackdoorAttack must be one of"),
    ],
)
def test_each_bad_value_has_its_error(digits: Dataset, params: dict, message: str) -> None:  # type: ignore[type-arg]
    kwargs = {"target_label": "0", "n_poison": 10, "random_state": 0, **params}
    with pytest.raises(ParameterError) as info:
        CleanLabelBackdoorAttack(**kwargs).apply(digits)
    assert message in str(info.value)


def test_not_images_and_one_class(small_text: Dataset, digits: Dataset) -> None:
    with pytest.raises(ParameterError, match="attacks image data"):
        CleanLabelBackdoorAttack(target_label="ham", n_poison=1).apply(small_text)
    only = digits.subset(np.flatnonzero(digits.y == 0))
    with pytest.raises(DataError, match="needs other classes"):
        CleanLabelBackdoorAttack(target_label="0", n_poison=5).apply(only)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--epsilon", "1.5"], 2, "--epsilon must be a float in [0, 1]"),
        (["--steps", "0"], 2, "--steps must be an int >= 1"),
        (["--n-poison", "500"], 2, "holds 178 rows; asked for 500. Ask for --n-poison <= 178"),
        (["--clean-label"], 2, "--clean-label does not apply"),
        (["--source", "1"], 2, "--source does not apply"),
    ],
)
def test_cli_errors(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    result = runner.invoke(app, ["attack", "digits", "--attack", "clean-label-backdoor", "--target", "0",
                                 *args, "--out", str(tmp_path / "o")])
    assert result.exit_code == code, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_cli_on_text_points_to_clean_label(tmp_path: Path, spamassassin: Dataset) -> None:
    from poisonlab.data import save_dataset

    rows = np.sort(np.random.default_rng(0).choice(len(spamassassin), 200, replace=False))
    path = save_dataset(spamassassin.subset(rows), tmp_path / "mail.csv")
    result = runner.invoke(app, ["attack", str(path), "--attack", "clean-label-backdoor",
                                 "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "use a backdoor with --clean-label" in result.stderr


def test_cli_writes_poisoned_data_and_record(tmp_path: Path) -> None:
    result = runner.invoke(app, ["attack", "digits", "--attack", "clean-label-backdoor", "--target", "0",
                                 "--n-poison", "30", "--epsilon", "0.2", "--amplitude", "0.5",
                                 "--out", str(tmp_path / "o"), "--json"])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["attack"] == "CleanLabelBackdoorAttack" and summary["n_poison"] == 30
    assert summary["params"]["epsilon"] == 0.2 and summary["params"]["amplitude"] == 0.5
    record = json.loads((tmp_path / "o" / "poison.json").read_text())
    assert set(record["original_labels"]) == {"0"} and record["trigger"]["kind"] == "patch"


@pytest.mark.torch
def test_cnn_surrogate_keeps_the_contract(digits: Dataset) -> None:
    pytest.importorskip("torch")
    out = CleanLabelBackdoorAttack(target_label="5", n_poison=20, epsilon=0.2, steps=5, surrogate="cnn",
                                   random_state=0).apply(digits)
    assert np.array_equal(out.dataset.y, digits.y) and out.n_poison == 20
    outside = np.ones(digits.X.shape[1:3], dtype=bool)
    outside[4:7, 4:7] = False
    delta = np.abs(out.X - digits.X)[out.poison_mask][:, outside]
    assert 0.1 < delta.max() <= 0.2 + 1e-6
    assert not np.any(out.X[~out.poison_mask] != digits.X[~out.poison_mask])
    again = CleanLabelBackdoorAttack(target_label="5", n_poison=20, epsilon=0.2, steps=5,
                                     surrogate="cnn", random_state=0).apply(digits)
    assert np.array_equal(again.X, out.X)


@pytest.mark.torch
def test_beats_the_naive_clean_label_patch_on_digits_cnn(digits: Dataset) -> None:
    pytest.importorskip("torch")
    from poisonlab.models import make_model

    train, test = digits.split(test_size=0.3, random_state=0)
    keep = test.y != 0

    def run(attack: object) -> tuple[float, float]:
        poisoned = attack.apply(train)  # type: ignore[attr-defined]
        model = make_model("cnn", random_state=1).fit(poisoned.X, poisoned.dataset.y, n_classes=10)
        asr = float(np.mean(model.predict(poisoned.apply_trigger(test.X[keep])) == 0))
        return asr, float(np.mean(model.predict(test.X) == test.y))

    pgd_asr, pgd_acc = run(CleanLabelBackdoorAttack(target_label=0, n_poison=100, epsilon=0.3,
                                                    random_state=0))
    naive_asr, _ = run(PatchBackdoorAttack(target_label=0, n_poison=100, relabel=False, random_state=0))
    # Measured 2026-12-03 (100 of the 124 training zeros, CNN seed 1): success 0.628 with PGD at
    # epsilon 0.3, 0.027 for the naive clean-label patch; clean accuracy 0.963.
    assert pgd_asr >= 0.45
    assert pgd_asr >= naive_asr + 0.3
    assert pgd_acc >= 0.93
