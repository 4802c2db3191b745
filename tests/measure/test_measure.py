from __future__ import annotations

import numpy as np
import pytest

from poisonlab.attacks import TextBackdoorAttack, TextTrigger
from poisonlab.data import Dataset
from poisonlab.exceptions import ParameterError
from poisonlab.measure import bootstrap_rate, minimum_budget, per_class_recall, target_rate
from poisonlab.measure.textlab import TextLab
from poisonlab.models import make_model


def test_target_rate_and_recall_by_hand() -> None:
    y = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 0, 1, 0, 2])
    # Rows not in class 0: indices 2..5; predicted 0 at 2 and 4 -> 2/4.
    assert target_rate(y, pred, 0) == 0.5
    np.testing.assert_allclose(per_class_recall(y, pred, 4), [0.5, 0.5, 0.5, np.nan])


def test_bootstrap_interval_contains_the_rate() -> None:
    est = bootstrap_rate(np.array([1] * 90 + [0] * 10), random_state=0)
    assert est.value == 0.9 and est.low < 0.9 < est.high and est.high - est.low < 0.15
    with pytest.raises(ParameterError, match="'confidence'"):
        bootstrap_rate(np.ones(3), confidence=1.5)


def test_minimum_budget_finds_the_exact_threshold_of_a_monotone_curve() -> None:
    calls: list[int] = []

    def evaluate(n: int, seed: int) -> float:
        calls.append(n)
        return 1.0 if n >= 37 else n / 100

    result = minimum_budget(evaluate, max_poison=500, target_asr=0.9, seeds=(0,), start=5)
    assert result.n_poison == 37
    assert len(set(calls)) <= 10  # 5, 10, 20, 40, then bisection between 20 and 40


def test_minimum_budget_says_not_reached() -> None:
    result = minimum_budget(lambda n, s: 0.1, max_poison=100, seeds=(0, 1))
    assert result.n_poison is None and not result.reached
    assert result.describe() == "not reached up to 100"
    assert max(result.points) == 100


@pytest.mark.parametrize("model", ["nb-text", "logreg-text"])
def test_text_lab_matches_refitting_the_pipeline(spam_split: tuple[Dataset, Dataset], model: str) -> None:
    train, test = spam_split
    lab = TextLab(train, test, model=model, triggers=["zqxj"])
    for n, reps in [(0, 1), (30, 3)]:
        fast = lab.run(TextTrigger("zqxj", "random", reps), n, 0, seed=4)
        poisoned = TextBackdoorAttack(trigger="zqxj", position="random", repetitions=reps,
                                      n_poison=n, target_label="ham", random_state=4).apply(train)
        fitted = make_model(model).fit(poisoned.dataset.X, poisoned.dataset.y, n_classes=2)
        keep = test.y != 0
        assert fast.accuracy == np.mean(fitted.predict(test.X) == test.y)
        assert fast.asr == np.mean(fitted.predict(poisoned.apply_trigger(test.X[keep])) == 0)
