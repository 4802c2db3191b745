"""Each score function pinned to an example worked by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from poisonlab.detect import (
    RobustSpectralDetector,
    activation_clustering_scores,
    detection_metrics,
    duplicate_conflict_scores,
    knn_label_scores,
    label_issue_scores,
    nearest_neighbors,
    robust_spectral_scores,
    spectral_signature_scores,
    threshold_for_rate,
)
from poisonlab.detect.labels import confident_learning_flags
from poisonlab.detect.spectral import _split_1d, eigen_ratios
from poisonlab.detect.triggers import phrase_pattern, remove_phrases, token_statistics
from poisonlab.exceptions import ParameterError


def test_spectral_signature_scores_by_hand() -> None:
    # Class 0: rows (0,0) x3 and (4,0); mean (1,0); centered x = -1,-1,-1,3; top direction (1,0);
    # squared projections 1,1,1,9. Class 1: (0,1),(0,3); mean (0,2); projections -1,1 -> 1,1.
    X = np.array([[0, 0], [0, 0], [0, 0], [4, 0], [0, 1], [0, 3]], dtype=float)
    y = np.array([0, 0, 0, 0, 1, 1])
    raw = spectral_signature_scores(X, y, normalize=False)
    np.testing.assert_allclose(raw, [1, 1, 1, 9, 1, 1])
    # Normalized: divided by median / median(chi2_1) = 1 / 0.454936.
    norm = spectral_signature_scores(X, y)
    np.testing.assert_allclose(norm, np.array([1, 1, 1, 9, 1, 1]) * 0.454936, rtol=1e-5)


def test_split_1d_by_hand() -> None:
    # Values -4,-4,-4,6,6: the best split is between -4 and 6 (cut 1), means -4 and 6, no spread;
    # the sides' medians -4 and 6.
    assert _split_1d(np.array([-4.0, 6, -4, 6, -4])) == (1.0, -4.0, 6.0, 0.0, -4.0, 6.0)
    # -3,-1,0 | 10,12: cut 5, means -4/3 and 11, within sqrt((4/9+1/9+... )/5); medians -1 and 11.
    cut, lo, hi, within, lo_med, hi_med = _split_1d(np.array([12.0, -1, 10, -3, 0]))
    assert (cut, lo_med, hi_med) == (5.0, -1.0, 11.0)
    assert lo == pytest.approx(-4 / 3) and hi == pytest.approx(11.0)
    sse = sum((v + 4 / 3) ** 2 for v in (-3, -1, 0)) + 1 + 1
    assert within == pytest.approx(np.sqrt(sse / 5))
    # No split possible (all equal): the cut is the value, both sides' median is it too.
    assert _split_1d(np.array([2.0, 2.0])) == (2.0, 2.0, 2.0, 0.0, 2.0, 2.0)


def test_robust_spectral_scores_by_hand() -> None:
    # Class 1 = -1, 1, -1, 1 (mean 0, scatter 4 over 4 rows: variance 1). Class 0 = 0,0,0,10,10,
    # mean 4, centered -4,-4,-4,6,6. No shrinkage: class 0 is whitened by class 1's variance (1),
    # so its top eigenvalue is (3*16 + 2*36) / 5 = 24 and the split falls between -4 and 6.
    # The smaller side (6, 6) is suspicious; the clean center is -4, so scores are 0 and 10.
    X = np.array([[0.0], [0], [0], [10], [10], [-1], [1], [-1], [1]])
    y = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1])
    res = robust_spectral_scores(X, y, shrinkage=0.0)
    np.testing.assert_allclose(res.scores[:5], [0, 0, 0, 10, 10], atol=1e-9)
    assert res.eigenvalue[0] == pytest.approx(24.0)
    # Class 1 is whitened by class 0's variance (scatter 120 over 5 rows = 24): values ±1/sqrt(24),
    # eigenvalue 1/24; a 2-2 tie keeps the lower side suspicious: scores 2/sqrt(24) and 0.
    assert res.eigenvalue[1] == pytest.approx(1 / 24)
    np.testing.assert_allclose(res.scores[5:], [2 / math.sqrt(24), 0, 2 / math.sqrt(24), 0],
                               atol=1e-9)
    np.testing.assert_allclose(eigen_ratios(res.eigenvalue), [576, 1 / 576])
    # Reference scores that are high on the three zeros turn the balanced split around (2 of 5
    # rows is more than the 35% minority share): the zeros are now 10 from the clean center.
    ref = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0], dtype=float)
    res = robust_spectral_scores(X, y, shrinkage=0.0, reference_scores=ref)
    np.testing.assert_allclose(res.scores[:5], [10, 10, 10, 0, 0], atol=1e-9)


def test_activation_clustering_scores_by_hand() -> None:
    # One feature, rows 0,0,0,0,10: clusters {0 x4} and {10}; the singleton is suspicious.
    # Silhouette: 1 for each of the four zeros, 0 for a singleton -> mean 4/5.
    # m = (d_other - d_suspicious) / max(...) = -1 for the zeros, +1 for the 10.
    # Score = silhouette * (1 + m) / 2 = 0 and 0.8.
    X = np.array([[0.0], [0], [0], [0], [10]])
    y = np.zeros(5, dtype=int)
    res = activation_clustering_scores(X, y, n_dims=1)
    np.testing.assert_allclose(res.scores, [0, 0, 0, 0, 0.8], atol=1e-9)
    assert res.relative_size[0] == pytest.approx(0.2)
    assert res.in_suspicious.tolist() == [False, False, False, False, True]


def test_label_issue_scores_self_confidence() -> None:
    # 1 - p[label]: 1 - 0.9, 1 - 0.2, 1 - 0.3.
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]])
    np.testing.assert_allclose(label_issue_scores(probs, np.array([0, 0, 1])), [0.1, 0.8, 0.7])


def test_confident_learning_flags_the_confidently_wrong() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 50)
    probs = np.where(y[:, None] == np.arange(2), 0.9, 0.1) + rng.uniform(0, 0.02, (100, 2))
    probs[[3, 60]] = probs[[3, 60]][:, ::-1]  # two rows the model confidently disagrees with
    probs /= probs.sum(axis=1, keepdims=True)
    flags = confident_learning_flags(probs, y)
    assert np.flatnonzero(flags).tolist() == [3, 60]


def test_knn_label_scores_by_hand() -> None:
    # Row 0 (label 0): neighbors 1, 2 -> labels 0, 1: other share 0.5 - own 0.5 = 0.
    # Row 2 (label 1): neighbors 0, 1 -> labels 0, 0: 1 - 0 = 1.
    idx = np.array([[1, 2], [0, 2], [0, 1], [0, 1]])
    y = np.array([0, 0, 1, 1])
    scores = knn_label_scores(np.zeros((4, 1)), y, n_neighbors=2,
                              neighbors=(idx, np.ones((4, 2))))
    np.testing.assert_allclose(scores, [0, 0, 1, 1])


@pytest.mark.parametrize("sparse", [False, True])
def test_nearest_neighbors_cosine(sparse: bool) -> None:
    X = np.array([[1.0, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]])
    idx, sim = nearest_neighbors(sp.csr_matrix(X) if sparse else X, 1)
    assert idx[:, 0].tolist() == [1, 0, 3, 2]
    # cos((1,0),(0.9,0.1)) = 0.9 / sqrt(0.82)
    assert sim[0, 0] == pytest.approx(0.9 / math.sqrt(0.82))


def test_duplicate_conflict_scores_by_hand() -> None:
    # Rows 0,1,2 are (near-)identical; labels 0,0,1: row 2 is the minority and scores its
    # similarity to a differently labeled twin (1.0); rows 0, 1 hold the majority: 1 - 1 = 0.
    X = np.array([[1.0, 0], [1.0, 0], [1.0, 1e-4], [0, 1]])
    y = np.array([0, 0, 1, 1])
    scores, groups = duplicate_conflict_scores(X, y, n_neighbors=3)
    np.testing.assert_allclose(scores, [0, 0, 1, 0], atol=1e-6)
    assert groups[0] == groups[1] == groups[2] >= 0 and groups[3] == -1


def test_token_statistics_by_hand() -> None:
    # Token A in rows 0,1 (both class 0): concentration (2+1)/(2+2) = 0.75, lift 0.75/0.5 = 1.5,
    # G = 2 * 2 * ln(2 / (2 * 0.5)) = 4 ln 2. Token B in rows 0 and 2: counts 1,1 -> G = 0.
    presence = sp.csr_matrix(np.array([[1, 1], [1, 0], [0, 1], [0, 0]]))
    stats = token_statistics(presence, np.array([0, 0, 1, 1]), 2)
    assert stats["concentration"].tolist() == [0.75, 0.5]
    assert stats["lift"].tolist() == [1.5, 1.0]
    np.testing.assert_allclose(stats["g"], [4 * math.log(2), 0.0], atol=1e-12)


def test_remove_phrases_whole_words_only() -> None:
    out = remove_phrases(np.array(["cf the cfa CF", "james  bond x"]), ["cf", "james bond"])
    assert out[0].split() == ["the", "cfa"]
    assert out[1].split() == ["x"]
    assert phrase_pattern("cf").search("xcf") is None


def test_threshold_for_rate() -> None:
    scores = np.array([0.0, 1.0, 2.0, 3.0])
    assert threshold_for_rate(scores, 0.25) == 2.0  # flags only 3.0
    assert threshold_for_rate(scores, 0.5) == 1.0


def test_detection_metrics_by_hand() -> None:
    # Poisons at rows 0, 1; scores rank 0 > 2 > 1 > 3: AUROC = 3 of 4 pairs = 0.75.
    # Flags rows 0, 2: precision 1/2, recall 1/2. Budget 1.5*2 = 3 rows: 0, 2, 1 -> recall 1.
    mask = np.array([True, True, False, False])
    out = detection_metrics(mask, np.array([0.9, 0.5, 0.7, 0.1]),
                            np.array([True, False, True, False]))
    assert out["auroc"] == 0.75
    assert out["precision"] == 0.5 and out["recall"] == 0.5
    assert out["recall_at_1.5x"] == 1.0
    # AP: precision at each poison's rank: 1/1 and 2/3 -> (1 + 2/3) / 2.
    assert out["average_precision"] == pytest.approx((1 + 2 / 3) / 2)


def test_robust_spectral_asks_more_of_rows_no_neighbor_contradicts() -> None:
    # Class 0: 300 clean rows near the origin and 300 planted rows shifted by 6 along one axis;
    # classes 1-2 give the clean covariance. Planted rows' neighbors disagree with their label
    # (reference 0.4), clean rows' agree (reference -1).
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1500, 8))
    y = np.repeat([0, 1, 2], [600, 450, 450])
    planted = np.zeros(1500, dtype=bool)
    planted[300:600] = True
    X[planted, 0] += 6.0
    ref = np.where(planted, 0.4, -1.0)
    loose = RobustSpectralDetector(confirm_posterior=0.001).fit(X, y, reference_scores=ref)
    strict = RobustSpectralDetector().fit(X, y, reference_scores=ref)
    assert strict.removal_flags_[planted].all() and loose.removal_flags_[planted].all()
    # Measured: 304 rows in the removal set with one cut for all, 301 with the second witness.
    assert strict.removal_flags_.sum() < loose.removal_flags_.sum()
    # A clean row in the removal set that no neighbor contradicts is above confirm_posterior.
    clean_removed = strict.removal_flags_ & ~planted
    assert (strict.posterior_[clean_removed] > 0.1).all()
    # The flagged set is the rows likelier planted than clean, inside the removal set.
    assert (strict.posterior_[strict.flags_] > 0.5).all()
    assert not (strict.flags_ & ~strict.removal_flags_).any()
    with pytest.raises(ParameterError, match="confirm_posterior"):
        RobustSpectralDetector(confirm_posterior=1.0).fit(X, y)


def test_robust_spectral_does_not_flag_most_of_a_class() -> None:
    # The planted half of class 0 (300 of 600 rows) is flagged under the default bound (2/3 of
    # the class); with the bound below a half, the same split is demoted and flags nothing.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1500, 8))
    y = np.repeat([0, 1, 2], [600, 450, 450])
    planted = np.zeros(1500, dtype=bool)
    planted[300:600] = True
    X[planted, 0] += 6.0
    ref = np.where(planted, 0.4, -1.0)
    default = RobustSpectralDetector().fit(X, y, reference_scores=ref)
    assert default.flags_[planted].all() and default.oversized_ == []
    tight = RobustSpectralDetector(max_flagged_share=0.4).fit(X, y, reference_scores=ref)
    assert tight.oversized_ == [0] and not tight.flags_.any() and not tight.significant_[0]


def test_pixel_view_keeps_full_resolution_up_to_max_dims() -> None:
    from poisonlab.detect.representations import pixel_view

    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, (50, 8, 8, 1))
    V = pixel_view(X)
    assert V.shape == (50, 64) and np.array_equal(V, X.reshape(50, 64))  # no reduction, no centering
    assert pixel_view(X, max_dims=10).shape == (50, 10)
    assert pixel_view(X, max_dims=60).shape == (50, 50)  # never more components than rows
