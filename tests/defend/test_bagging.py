"""Bagging with disagreement flags: the two scores, a quality floor on planted label flips, files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from poisonlab.attacks import LabelFlipAttack
from poisonlab.data import Dataset
from poisonlab.defend import DefendRequest
from poisonlab.defend.bagging import (
    BaggingEnsemble,
    defend_bagging,
    out_of_bag_disagreement,
    run,
    vote_disagreement,
)
from poisonlab.defend.partition import load_ensemble
from poisonlab.exceptions import ParameterError


@pytest.fixture(scope="module")
def digit_split(digits: Dataset) -> tuple[Dataset, Dataset]:
    return digits.split(test_size=0.3, random_state=0)


def test_vote_disagreement_hand_worked() -> None:
    P = np.array([[0, 1, 2, -1], [0, 1, 1, -1], [0, 2, 1, -1], [0, 2, 1, 3]])
    # Row 0 unanimous; row 1 two against two (plurality 1 of 4 members: 1 - 2/4); row 2 one of
    # four against (1 - 3/4); row 3 only one member voted.
    np.testing.assert_allclose(vote_disagreement(P, 4), [0.0, 0.5, 0.25, 0.0])


def test_out_of_bag_disagreement_hand_worked() -> None:
    P = np.array([[0, 1, 1], [1, 1, 0], [1, 0, 0]])
    in_bag = np.array([[True, False, True], [False, False, True], [False, True, True]])
    y = np.array([0, 1, 1])
    # Row 0: out-of-bag members 1 and 2 both say 1 against label 0 -> 1.0. Row 1: members 0 and 1
    # say 1 -> 0.0. Row 2: every member trained on it, so all three vote: 1, 0, 0 against 1 -> 2/3.
    np.testing.assert_allclose(out_of_bag_disagreement(P, in_bag, y), [1.0, 0.0, 2 / 3])


def test_flags_planted_label_flips_on_digits(digit_split: tuple[Dataset, Dataset]) -> None:
    train, test = digit_split
    truth = LabelFlipAttack(poison_rate=0.1, random_state=0).apply(train)
    result = defend_bagging(truth.dataset, test=test, ground_truth=truth, random_state=0)
    flags = result.summary["training_flags"]
    # Measured 2026-11-22 (digits 70/30, 10% random flips, 10 logreg members on half the rows,
    # threshold 0.5): recall 0.984, precision 0.556, clean accuracy 0.935, 2.0% of clean inputs
    # flagged.
    assert flags["recall"] >= 0.95 and flags["precision"] >= 0.5
    assert result.summary["clean_accuracy"] >= 0.92
    assert result.summary["flagged_clean_inputs"] <= 0.05
    assert result.flags is not None and result.flags.sum() == flags["n_flagged"]


def test_same_seed_same_ensemble(digit_split: tuple[Dataset, Dataset]) -> None:
    train, test = digit_split
    a = BaggingEnsemble(n_estimators=4, random_state=5).fit(train.X, train.y, n_classes=10)
    b = BaggingEnsemble(n_estimators=4, random_state=5).fit(train.X, train.y, n_classes=10)
    np.testing.assert_array_equal(a.in_bag_, b.in_bag_)
    np.testing.assert_array_equal(a.member_predictions(test.X), b.member_predictions(test.X))
    assert a.in_bag_.sum(axis=1).tolist() == [round(0.5 * len(train))] * 4


def test_cli_run_writes_model_flags_and_summary(tmp_path: Path, digit_split: tuple[Dataset, Dataset]) -> None:
    train, test = digit_split
    truth = LabelFlipAttack(poison_rate=0.05, random_state=0).apply(train)
    summary = run(DefendRequest(dataset=truth.dataset, out=tmp_path, ground_truth=truth,
                                options={"html": True, "n_estimators": 4}))
    assert summary["method"] == "bagging" and "held out" in summary["measured_on"]
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["n_estimators"] == 4 and on_disk["model_path"] == str(tmp_path / "model")
    rows = list(csv.DictReader((tmp_path / "flags.csv").open()))
    assert sum(r["flagged"] == "true" for r in rows) == summary["n_flagged_rows"]
    saved = load_ensemble(tmp_path / "model")
    assert saved.spec == "bagging:logreg" and saved.classes == train.classes
    assert isinstance(saved.model, BaggingEnsemble)
    assert saved.model.predict(test.X[:100]).shape == (100,)
    assert saved.model.flag_inputs(test.X[:100]).dtype == bool


def test_round_trip_predicts_the_same(tmp_path: Path, digit_split: tuple[Dataset, Dataset]) -> None:
    train, test = digit_split
    ens = BaggingEnsemble(n_estimators=3, input_threshold=0.2, random_state=0).fit(
        train.X, train.y, n_classes=10)
    saved = load_ensemble(ens.save(tmp_path / "m", classes=train.classes)).model
    np.testing.assert_allclose(saved.predict_proba(test.X), ens.predict_proba(test.X))
    np.testing.assert_array_equal(saved.flag_inputs(test.X), ens.flag_inputs(test.X))


def test_parameter_errors(digit_split: tuple[Dataset, Dataset]) -> None:
    train, _ = digit_split
    with pytest.raises(ParameterError, match="n_estimators"):
        BaggingEnsemble(n_estimators=1).fit(train.X, train.y)
    with pytest.raises(ParameterError, match="'threshold'"):
        BaggingEnsemble(threshold=1.5).fit(train.X, train.y)
    with pytest.raises(ParameterError, match="does not take"):
        defend_bagging(train, n_members=3)
