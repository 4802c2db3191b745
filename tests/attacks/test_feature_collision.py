"""FeatureCollisionAttack (Poison Frogs): contract, the collision itself, bounds, errors, its
success under transfer learning on digits, and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from poisonlab.attacks import FeatureCollisionAttack
from poisonlab.attacks.feature_collision import collide_features
from poisonlab.cli import app
from poisonlab.data import Dataset, save_dataset
from poisonlab.exceptions import ParameterError

pytest.importorskip("torch")

runner = CliRunner()


@pytest.fixture(scope="module")
def split(digits: Dataset) -> tuple[Dataset, Dataset, Dataset]:
    """Digits 70/30 (seed 0): the first 600 training rows train the attacker's extractor, the
    rest are the victim's data."""
    train, test = digits.split(test_size=0.3, random_state=0)
    return train.subset(np.arange(600)), train.subset(np.arange(600, len(train))), test


@pytest.fixture(scope="module")
def extractor(split: tuple[Dataset, Dataset, Dataset]):  # type: ignore[no-untyped-def]
    from poisonlab.models import make_model

    attacker, _, _ = split
    return make_model("cnn", random_state=0, device="cpu").fit(attacker.X, attacker.y, n_classes=10)


def _base(test: Dataset, i: int) -> int:
    return int((test.y[i] + 1) % 10)


def test_contract_labels_untouched_only_base_rows_changed(split, extractor) -> None:  # type: ignore[no-untyped-def]
    _, victim, test = split
    X_before, y_before = victim.X.copy(), victim.y.copy()
    attack = FeatureCollisionAttack(target_instance=test.X[0], target_label=_base(test, 0), n_poison=6,
                                    extractor=extractor, max_iter=50, random_state=0)
    out = attack.apply(victim)
    assert np.array_equal(victim.X, X_before) and np.array_equal(victim.y, y_before)
    assert np.array_equal(out.dataset.y, victim.y) and np.array_equal(out.original_y, victim.y)
    assert out.n_poison == 6 and np.all(victim.y[out.poison_mask] == _base(test, 0))
    assert np.array_equal(np.any(out.X != victim.X, axis=(1, 2, 3)), out.poison_mask)
    assert out.X.dtype == victim.X.dtype and out.X.min() >= 0 and out.X.max() <= 1
    assert out.trigger is None and out.target_label == _base(test, 0)
    again = FeatureCollisionAttack(**attack.get_params(deep=False)).apply(victim)
    assert np.array_equal(again.X, out.X) and np.array_equal(again.poison_mask, out.poison_mask)
    with pytest.raises(ParameterError, match="is not fitted"):
        clone(attack).apply(victim)  # clone refits nothing: its copy of the extractor is unfitted
    instance = out.record["params"]["target_instance"]
    assert instance["shape"] == [8, 8, 1] and len(instance["sha256"]) == 64
    json.dumps(out.to_record())  # the record is JSON, not an array's repr


def test_poisons_collide_with_the_target_in_feature_space(split, extractor) -> None:  # type: ignore[no-untyped-def]
    # Measured 2026-12-07 (three targets, 10 bases each): poisons end at 1.4-2.0% of the target's
    # feature norm from it, where their bases start at 45-91%.
    _, victim, test = split
    for i in range(3):
        bases = victim.X[victim.y == _base(test, i)][:10]
        poisons, dist = collide_features(bases, test.X[i], extractor)
        f_t = extractor.features(test.X[i:i + 1])
        start = np.linalg.norm(extractor.features(bases) - f_t, axis=1) / np.linalg.norm(f_t)
        assert dist.max() < 0.05 and start.min() > 0.3
        np.testing.assert_allclose(
            dist, np.linalg.norm(extractor.features(poisons) - f_t, axis=1) / np.linalg.norm(f_t), atol=1e-4)


def test_epsilon_bounds_each_poison_and_watermark_blends_the_anchor(split, extractor) -> None:  # type: ignore[no-untyped-def]
    _, victim, test = split
    bases = victim.X[victim.y == _base(test, 0)][:4]
    bounded, _ = collide_features(bases, test.X[0], extractor, epsilon=0.1, max_iter=30)
    assert np.abs(bounded - bases).max() <= 0.1 + 1e-6
    # A pixel term this heavy keeps each poison on its anchor: the base blended 30% with the target.
    anchored, _ = collide_features(bases, test.X[0], extractor, beta0=1e12, watermark=0.3, max_iter=5)
    np.testing.assert_allclose(anchored, 0.7 * bases + 0.3 * test.X[0][None], atol=1e-4)


def test_twenty_poisons_turn_a_transfer_learned_head(split, extractor) -> None:  # type: ignore[no-untyped-def]
    # Measured 2026-12-07 (benchmarks/feature_collision.py --quick, the same split): 20 poisons
    # turned 9 of 10 targets; a clean head kept every one of them.
    _, victim, test = split
    features = extractor.features
    clean = LogisticRegression(max_iter=2000).fit(features(victim.X), victim.y)
    targets = [i for i in range(len(test)) if clean.predict(features(test.X[i:i + 1]))[0] == test.y[i]][:5]
    turned = 0
    for i in targets:
        out = FeatureCollisionAttack(target_instance=test.X[i], target_label=_base(test, i), n_poison=20,
                                     extractor=extractor, random_state=i).apply(victim)
        head = LogisticRegression(max_iter=2000).fit(features(out.X), out.dataset.y)
        turned += int(head.predict(features(test.X[i:i + 1]))[0] == _base(test, i))
    assert turned >= 4


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"target_instance": None}, "needs 'target_instance'"),
        ({"target_instance": np.zeros((4, 4))},
         "'target_instance' has shape (4, 4, 1), but the images have shape (8, 8, 1)"),
        ({"target_instance": np.full((8, 8), 2.0)}, "must hold values in [0, 1]"),
        ({"watermark": 1.0}, "'watermark' parameter of FeatureCollisionAttack must be a float in [0, 1)"),
        ({"epsilon": 0.0}, "'epsilon' parameter of FeatureCollisionAttack must be a float in (0, 1]"),
        ({"beta0": -1.0}, "'beta0' parameter"),
        ({"max_iter": 0}, "'max_iter' parameter of FeatureCollisionAttack must be an int >= 1"),
        ({"n_poison": 500}, "which holds 72 rows; asked for 500"),
        ({"extractor": LogisticRegression()}, "must be a fitted poisonlab TorchClassifier"),
    ],
)
def test_each_bad_value_has_its_error(digits: Dataset, params: dict, message: str) -> None:  # type: ignore[type-arg]
    base = {"target_instance": digits.X[1], "target_label": "0", "n_poison": 3}
    with pytest.raises(ParameterError) as info:
        FeatureCollisionAttack(**{**base, **params}).apply(digits.subset(np.arange(700)))
    assert message in str(info.value)


def test_an_extractor_for_other_images_is_refused(extractor) -> None:  # type: ignore[no-untyped-def]
    from poisonlab.data import dataset_from_arrays

    larger = dataset_from_arrays(np.random.default_rng(0).random((20, 12, 12)), np.arange(20) % 2)
    with pytest.raises(ParameterError, match=r"the extractor reads images of \(1, 8, 8\)"):
        FeatureCollisionAttack(target_instance=larger.X[0], target_label=1, n_poison=1,
                               extractor=extractor).apply(larger)


def test_not_images(small_text: Dataset) -> None:
    with pytest.raises(ParameterError, match="attacks image data"):
        FeatureCollisionAttack(target_instance=np.zeros((8, 8)), target_label=0, n_poison=1).apply(small_text)


def test_cli_writes_the_poisons_and_the_target_instance(tmp_path: Path, split) -> None:  # type: ignore[no-untyped-def]
    _, victim, test = split
    train_path = save_dataset(victim, tmp_path / "train.npz")
    test_path = save_dataset(test, tmp_path / "test.npz")
    instance = 3
    base = test.classes[_base(test, instance)]
    result = runner.invoke(app, ["attack", str(train_path), "--attack", "feature-collision", "--target", base,
                                 "--test", str(test_path), "--instance", str(instance), "--n-poison", "5",
                                 "--steps", "40", "--out", str(tmp_path / "atk"), "--json"])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["n_poison"] == 5 and summary["triggered_test"] == {"file": "triggered_test.npz", "n_rows": 1}
    record = json.loads((tmp_path / "atk" / "poison.json").read_text())
    assert record["attack"] == "FeatureCollisionAttack" and record["target_label"] == base
    with np.load(tmp_path / "atk" / "triggered_test.npz", allow_pickle=False) as f:
        assert np.allclose(f["X"].reshape(test.X[instance].shape), test.X[instance])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "needs --test TEST and --instance K"),
        (["--instance", "9999"], "--instance must be a row of"),
        (["--instance", "WHERE_BASE"], "is already of the target class"),
        (["--instance", "OTHER", "--alpha", "0.2"], "--alpha does not apply to --attack feature-collision"),
        (["--instance", "OTHER", "--watermark", "1.5"], "--watermark must be a float in [0, 1)"),
    ],
)
def test_cli_errors(tmp_path: Path, split, extra: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    _, victim, test = split
    train_path = save_dataset(victim, tmp_path / "train.npz")
    test_path = save_dataset(test, tmp_path / "test.npz")
    rows = {"WHERE_BASE": str(int(np.flatnonzero(test.y == 0)[0])),
            "OTHER": str(int(np.flatnonzero(test.y != 0)[0]))}
    args = [rows.get(a, a) for a in extra]
    result = runner.invoke(app, ["attack", str(train_path), "--attack", "feature-collision", "--target", "0",
                                 "--test", str(test_path), *args, "--out", str(tmp_path / "atk")])
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "atk").exists()


def test_cli_takes_the_victims_extractor_from_a_model_file(tmp_path: Path, split, extractor) -> None:  # type: ignore[no-untyped-def]
    from poisonlab.models import make_model
    from poisonlab.models.io import save_model

    _, victim, test = split
    train_path = save_dataset(victim, tmp_path / "train.npz")
    test_path = save_dataset(test, tmp_path / "test.npz")
    net_file = save_model(extractor, tmp_path / "extractor.safetensors", classes=victim.classes, spec="cnn")
    instance = int(np.flatnonzero(test.y != 0)[0])
    args = ["attack", str(train_path), "--attack", "feature-collision", "--target", "0", "--test", str(test_path),
            "--instance", str(instance), "--n-poison", "3", "--steps", "10"]
    result = runner.invoke(app, [*args, "--extractor", str(net_file), "--out", str(tmp_path / "atk"), "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads((tmp_path / "atk" / "poison.json").read_text())["params"]["extractor"] == "TorchClassifier"
    linear = make_model("logreg").fit(victim.X.reshape(len(victim), -1), victim.y)
    skops_file = save_model(linear, tmp_path / "linear.skops", classes=victim.classes, spec="logreg")
    result = runner.invoke(app, [*args, "--extractor", str(skops_file), "--out", str(tmp_path / "atk2")])
    assert result.exit_code == 2 and "feature collision needs a torch model" in result.stderr
    assert not (tmp_path / "atk2").exists()
