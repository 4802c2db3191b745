"""FeatureCollisionDetector: the score by hand, clean digits, poisons of FeatureCollisionAttack."""

from __future__ import annotations

import numpy as np
import pytest

from poisonlab.attacks import FeatureCollisionAttack
from poisonlab.data import Dataset
from poisonlab.detect import FeatureCollisionDetector, collision_scores
from poisonlab.exceptions import ParameterError


def test_score_by_hand() -> None:
    # One class of five rows on a line, features equal to inputs, except rows 3 and 4: their inputs
    # are 3 apart but their features coincide (a collision). Row 0 and 1 are exact copies.
    inputs = np.array([[0.0], [0.0], [1.0], [5.0], [8.0]])
    features = np.array([[0.0], [0.0], [1.0], [6.5], [6.5]])
    scores = collision_scores(features, inputs, np.zeros(5, dtype=int))
    # Nearest feature neighbors: 0<->1 (feature 0, input 0), 2->0 (1, 1), 3<->4 (0, 3).
    # Medians: feature distance 0, so nothing to compare with: all zero.
    assert np.all(scores == 0)
    features[1] = 0.5  # no longer a copy in features: medians 0.5 (feature) and 1 (input)
    inputs[1] = 0.5
    scores = collision_scores(features, inputs, np.zeros(5, dtype=int))
    # d_feature: 0.5, 0.5, 0.5, 0, 0; d_input: 0.5, 0.5, 0.5, 3, 3; medians 0.5 and 0.5.
    np.testing.assert_allclose(scores[:3], 1.0)
    assert scores[3] == scores[4] and scores[3] > 1e8
    det = FeatureCollisionDetector().fit(features, np.zeros(5, dtype=int), inputs)
    assert det.flags_.tolist() == [False, False, False, True, True] and det.threshold_ == 4.0


def test_classes_are_scored_apart_and_small_classes_score_zero() -> None:
    inputs = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]])
    scores = collision_scores(inputs, inputs, np.array([0, 0, 0, 1, 1]))
    np.testing.assert_allclose(scores, [1.0, 1.0, 1.0, 0.0, 0.0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"threshold": 0}, "'threshold' parameter of FeatureCollisionDetector must be 'auto' or a positive float"),
     ({"threshold": "high"}, "'threshold' parameter"),
     ({"contamination": 0.9}, "'contamination' parameter")],
)
def test_bad_parameters(kwargs: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ParameterError) as info:
        FeatureCollisionDetector(**kwargs).fit(np.zeros((4, 2)), np.zeros(4, dtype=int), np.zeros((4, 2)))
    assert message in str(info.value)


def test_lengths_must_match() -> None:
    with pytest.raises(ParameterError, match="features have 4 rows but inputs have 3"):
        collision_scores(np.zeros((4, 2)), np.zeros((3, 2)), np.zeros(4, dtype=int))


@pytest.fixture(scope="module")
def frozen(digits: Dataset):  # type: ignore[no-untyped-def]
    """Digits 70/30 (seed 0): the victim's data (training rows 600 on), its test rows, and the
    attacker's CNN, trained on the first 600 training rows."""
    pytest.importorskip("torch")
    from poisonlab.models import make_model

    train, test = digits.split(test_size=0.3, random_state=0)
    attacker, victim = train.subset(np.arange(600)), train.subset(np.arange(600, len(train)))
    extractor = make_model("cnn", random_state=0, device="cpu").fit(attacker.X, attacker.y, n_classes=10)
    return victim, test, extractor


@pytest.mark.torch
def test_finds_the_poisons_on_the_frozen_extractor_and_nothing_on_clean_digits(frozen) -> None:  # type: ignore[no-untyped-def]
    victim, test, extractor = frozen
    clean = FeatureCollisionDetector().fit(extractor.features(victim.X), victim.y, victim.X)
    found = []
    for i in range(4):
        out = FeatureCollisionAttack(target_instance=test.X[i], target_label=int((test.y[i] + 1) % 10), n_poison=5,
                                     extractor=extractor, random_state=i).apply(victim)
        det = FeatureCollisionDetector().fit(extractor.features(out.X), out.dataset.y, out.X)
        found.append((int(np.sum(det.flags_ & out.poison_mask)), int(np.sum(det.flags_ & ~out.poison_mask))))
    # Measured 2026-12-07: the highest clean score 2.30 (threshold 4.0); 5 of 5 poisons flagged
    # for each of the 4 targets, no clean row.
    assert clean.flags_.sum() == 0
    assert all(hit == 5 and false == 0 for hit, false in found)


@pytest.mark.torch
def test_the_audit_runs_it_when_asked_on_the_victims_frozen_extractor(frozen) -> None:  # type: ignore[no-untyped-def]
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    from poisonlab.audit import DETECTORS, OPT_IN, audit

    victim, test, extractor = frozen
    out = FeatureCollisionAttack(target_instance=test.X[0], target_label=int((test.y[0] + 1) % 10), n_poison=8,
                                 extractor=extractor, random_state=0).apply(victim)
    head = make_pipeline(FunctionTransformer(lambda Z: extractor.features(Z.reshape(-1, 8, 8, 1))),
                         LogisticRegression(max_iter=2000))
    default = audit(out.dataset, model=head, random_state=0)
    assert "feature_collisions" not in default.detectors
    names = tuple(d for d in DETECTORS if d not in ("trigger_keywords", "value_triggers")) + OPT_IN
    asked = audit(out.dataset, model=head, detectors=names, random_state=0)
    fc = asked.detectors["feature_collisions"]
    assert fc.votes and np.array_equal(fc.flags, out.poison_mask)
    assert np.all(asked.flags[out.poison_mask])
    assert "feature collision" in fc.reason(int(np.flatnonzero(out.poison_mask)[0]))
