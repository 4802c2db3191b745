"""The shift statistics gate and serve share, checked against hand-worked values and scipy."""

from __future__ import annotations

import numpy as np
import pytest

from poisonlab.exceptions import DataError
from poisonlab.measure.shift import (
    bin_counts,
    class_share_test,
    confidence_bins,
    ks_two_sample,
    mcnemar_exact,
    paired_accuracy_difference,
    psi,
)


def test_psi_by_hand() -> None:
    # (0.6 - 0.5) ln(0.6 / 0.5) + (0.4 - 0.5) ln(0.4 / 0.5) = 0.040546
    assert psi([50, 50], [60, 40]) == pytest.approx(0.1 * np.log(1.2) - 0.1 * np.log(0.8))
    assert psi([1, 2, 3], [2, 4, 6]) == pytest.approx(0.0, abs=1e-12)
    assert np.isfinite(psi([10, 0], [5, 5]))  # an empty bin gets the floor
    with pytest.raises(DataError, match="same >= 2 bins"):
        psi([1, 2], [1, 2, 3])
    with pytest.raises(DataError, match="at least one count"):
        psi([0, 0], [1, 1])


def test_class_share_test_matches_scipy() -> None:
    from scipy.stats import chisquare

    counts = np.array([30, 50, 20])
    t = class_share_test(np.array([0.5, 0.3, 0.2]), counts)
    ref = chisquare(counts, f_exp=np.array([0.5, 0.3, 0.2]) * 100)
    assert t.chi2 == pytest.approx(ref.statistic) and t.p_value == pytest.approx(ref.pvalue)
    assert t.rising == 1 and t.observed_share == 0.5 and t.dof == 2


def test_confidence_bins_split_the_baseline_evenly() -> None:
    base = np.random.default_rng(0).uniform(size=10_000)
    edges = confidence_bins(base, 10)
    assert len(edges) == 9
    assert (np.abs(bin_counts(edges, base) - 1000) <= 1).all()


def test_ks_and_mcnemar_by_hand() -> None:
    stat, p = ks_two_sample([0.1, 0.2, 0.3], [0.7, 0.8, 0.9])
    assert stat == 1.0 and p == pytest.approx(0.1)
    # b = 5 rows only the reference gets right, c = 1: two-sided binomial p = 2 * P(X >= 5 | 6, 1/2) = 14/64
    ref = np.array([1] * 5 + [0] + [1] * 10, dtype=bool)
    cand = np.array([0] * 5 + [1] + [1] * 10, dtype=bool)
    assert mcnemar_exact(ref, cand) == (5, 1, pytest.approx(14 / 64))
    assert mcnemar_exact(ref, ref)[2] == 1.0


def test_paired_difference_interval_covers_the_truth() -> None:
    rng = np.random.default_rng(1)
    ref = rng.uniform(size=2000) < 0.9
    cand = ref & (rng.uniform(size=2000) > 0.05)   # the candidate loses about 4.5 points
    d, lo, hi = paired_accuracy_difference(ref, cand)
    assert lo < d < hi < 0 and d == pytest.approx(cand.mean() - ref.mean())
    assert hi - lo < 0.03
