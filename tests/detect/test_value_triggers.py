"""Planted feature values in real tables: the audit's value-trigger detector.

Floors are measured values minus a margin; the measurement is beside each floor.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from poisonlab.attacks import FeatureBackdoorAttack, LabelFlipAttack
from poisonlab.audit import audit, evaluate_audit
from poisonlab.data import Dataset
from poisonlab.detect.value_triggers import ValueTriggerDetector, value_candidates
from poisonlab.exceptions import ParameterError


@pytest.fixture(scope="module")
def cancer() -> Dataset:
    from sklearn.datasets import load_breast_cancer

    b = load_breast_cancer()
    return Dataset(X=np.asarray(b.data, dtype=np.float64), y=np.asarray(b.target),
                   classes=tuple(str(c) for c in b.target_names),
                   feature_names=tuple(str(f) for f in b.feature_names), name="breast_cancer")


def _planted(dataset, n_poison: int, seed: int = 0):
    X = np.asarray(dataset.X, dtype=np.float64)
    # Three columns set to their maximum plus one standard deviation (out of range), as TabDoor's
    # out-of-bounds trigger does, in malignant rows relabeled benign.
    cols = {3: float(X[:, 3].max() + X[:, 3].std()), 11: float(X[:, 11].max() + X[:, 11].std()),
            25: float(X[:, 25].max() + X[:, 25].std())}
    return FeatureBackdoorAttack(features=cols, target_label=1, n_poison=n_poison,
                                 random_state=seed).apply(dataset)


@pytest.mark.parametrize("model", ["logreg", RandomForestClassifier(n_estimators=100, random_state=0)])
def test_out_of_range_trigger_found_under_linear_and_tree_models(cancer, model) -> None:
    # 20 malignant rows (of 212) with three out-of-range values, relabeled benign. Measured
    # (seed 0): the detector names one of the three columns with the other two replaced with it,
    # and flags exactly the 20 planted rows under both models (the audit: 21 rows, all 20 planted
    # among them); without it a random forest's audit flagged 1 row and none of the 20 (the robust
    # spectral split of the benign class, 20 rows on its far side, has eigenvalue ratio 0.89).
    p = _planted(cancer, 20)
    result = audit(p.dataset, model=model)
    vt = result.detectors["value_triggers"]
    assert vt.flags[p.poison_mask].all()
    assert p.poison_mask[vt.flags].mean() >= 0.95
    found = result.suspected_triggers[0]
    assert found["target_label"] == cancer.classes[1]
    named = {found["trigger"].split(" = ")[0], *(c.split(" = ")[0] for c in found["removed_with"])}
    assert named == {cancer.feature_names[j] for j in (3, 11, 25)}
    ev = evaluate_audit(result, p.poison_mask)["combined"]
    assert ev["recall"] == 1.0 and ev["precision"] >= 0.9


def test_no_value_trigger_on_clean_or_flipped_data(cancer) -> None:
    # Measured: no suspected value on the clean set or with 10% random flips (the natural values
    # held by five or more rows, such as 'mean concavity = 0', read as their class when replaced).
    for ds in (cancer, LabelFlipAttack(poison_rate=0.1, random_state=0).apply(cancer).dataset):
        result = audit(ds, model="logreg")
        assert not result.detectors["value_triggers"].flags.any()
        assert result.suspected_triggers == []


def test_trigger_in_four_rows_of_a_small_table_is_found() -> None:
    # Wine (178 rows): three out-of-range values in 4 rows of other classes, relabeled class 0.
    # Measured 2026-12-04, seeds 0-5, logistic regression and a random forest: the 4 planted rows
    # and nothing else flagged in all 12 audits, 'malic_acid' named; with 3 rows, 10 of 12; with
    # the minimum of 5 rows used before, none. The clean table: nothing flagged under either model.
    from sklearn.datasets import load_wine

    w = load_wine()
    wine = Dataset(X=np.asarray(w.data, dtype=np.float64), y=np.asarray(w.target),
                   classes=tuple(str(c) for c in w.target_names),
                   feature_names=tuple(str(f) for f in w.feature_names), name="wine")
    X = wine.X
    cols = {j: float(X[:, j].max() + X[:, j].std()) for j in (1, 6, 9)}
    for seed in (0, 3):
        p = FeatureBackdoorAttack(features=cols, target_label=0, n_poison=4,
                                  random_state=seed).apply(wine)
        result = audit(p.dataset, model="logreg")
        assert np.array_equal(result.detectors["value_triggers"].flags, p.poison_mask)
        assert result.suspected_triggers[0]["trigger"].startswith("malic_acid = ")
    clean = audit(wine, model="logreg")
    assert clean.suspected_triggers == [] and not clean.flags.any()


def test_small_natural_values_do_not_crowd_out_a_planted_one(cancer) -> None:
    # Two out-of-range values (columns 0 and 29) in 6 benign rows relabeled malignant, under
    # StandardScaler + SVC (a model outside the benchmark matrix). Measured 2026-12-04: once
    # values held by 3 rows were admitted, the natural 3- and 4-row values filled the candidate
    # pool and the planted pair was never tested (0 of 6 found, by any detector, under four
    # models); tested on top of the others, its 6 rows and nothing else are flagged.
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    X = np.asarray(cancer.X)
    cols = {j: float(X[:, j].max() + X[:, j].std()) for j in (0, 29)}
    p = FeatureBackdoorAttack(features=cols, target_label=0, n_poison=6, random_state=5).apply(cancer)
    result = audit(p.dataset, model=make_pipeline(StandardScaler(), SVC(probability=True, random_state=0)),
                   random_state=0)
    assert np.array_equal(result.detectors["value_triggers"].flags, p.poison_mask)


def test_value_candidates_and_bad_input() -> None:
    X = np.array([[0.0, 1.0], [0.0, 2.0], [0.0, 2.0], [1.0, 2.0], [np.nan, 3.0]])
    presence, pairs = value_candidates(X, min_count=2, max_share=0.8)
    assert pairs == [(0, 0.0), (1, 2.0)]
    assert presence[:, 0].nonzero()[0].tolist() == [0, 1, 2]
    with pytest.raises(ParameterError, match="2-D"):
        ValueTriggerDetector().fit(np.zeros(5), np.zeros(5, dtype=int), lambda Z: Z)
    with pytest.raises(ParameterError, match="min_effect"):
        ValueTriggerDetector(min_effect=2.0).fit(X, np.array([0, 1, 0, 1, 0]), lambda Z: Z)
