"""How far one sample of predictions has moved from another, and whether one model is worse than
another on the same rows: the statistics that ``gate`` (a candidate model against a reference) and
``serve`` (live traffic against a clean baseline) share.

- :func:`psi`: the population stability index between two distributions over the same bins;
- :func:`class_share_test`: observed class counts against expected shares (PSI and Pearson's
  chi-square test);
- :func:`confidence_bins` and :func:`ks_two_sample`: the max-confidence distribution binned on a
  baseline's quantiles, and the two-sample Kolmogorov-Smirnov test;
- :func:`mcnemar_exact`: the exact (binomial) McNemar test on paired right/wrong outcomes, and
  :func:`paired_accuracy_difference`: the difference of two models' accuracies on the same rows with
  a paired bootstrap interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from poisonlab.exceptions import DataError, ParameterError

PSI_FLOOR = 1e-4  # share given to an empty bin, so that PSI stays finite


def psi(expected: np.ndarray, observed: np.ndarray, *, floor: float = PSI_FLOOR) -> float:
    """Population stability index ``sum((o - e) * ln(o / e))`` between two distributions over
    the same bins, given as counts or shares (each is normalised to sum to 1; an empty bin gets
    ``floor`` before normalising). 0 means the same distribution; the usual reading is < 0.1 no
    shift, 0.1-0.25 a moderate one, > 0.25 a large one (Yurdakul, "Statistical Properties of
    Population Stability Index", 2018, who also shows the index's sampling spread depends on the
    sample sizes: thresholds are better calibrated on the baseline, as ``serve`` does)."""
    e = np.asarray(expected, dtype=np.float64).ravel()
    o = np.asarray(observed, dtype=np.float64).ravel()
    if e.shape != o.shape or e.size < 2:
        raise DataError(f"psi needs two distributions over the same >= 2 bins; got {e.size} and {o.size}.")
    if (e < 0).any() or (o < 0).any() or not np.isfinite(e).all() or not np.isfinite(o).all():
        raise DataError("psi takes finite counts or shares >= 0.")
    if e.sum() <= 0 or o.sum() <= 0:
        raise DataError("psi needs at least one count in each distribution.")
    if not 0 < floor < 1:
        raise ParameterError(f"floor must be a float in (0, 1). Got {floor!r} instead.")
    e = np.maximum(e / e.sum(), floor)
    o = np.maximum(o / o.sum(), floor)
    e, o = e / e.sum(), o / o.sum()
    return float(np.sum((o - e) * np.log(o / e)))


@dataclass(frozen=True)
class ShareTest:
    """Observed class counts against expected shares: ``psi``, Pearson's ``chi2`` statistic with
    ``dof`` degrees of freedom and its ``p_value``, and the class whose share grew most
    (``rising``, with its ``observed_share`` and ``expected_share``)."""

    psi: float
    chi2: float
    dof: int
    p_value: float
    rising: int
    observed_share: float
    expected_share: float


def class_share_test(expected_shares: np.ndarray, observed_counts: np.ndarray) -> ShareTest:
    """Test observed class counts against expected shares (a baseline's). Classes the baseline
    never predicts get the PSI floor as their expected share, so a class appearing from nowhere
    is a large chi-square, not a division by zero."""
    from scipy.stats import chi2 as chi2_dist

    shares = np.asarray(expected_shares, dtype=np.float64).ravel()
    counts = np.asarray(observed_counts, dtype=np.float64).ravel()
    if shares.shape != counts.shape or shares.size < 2:
        raise DataError("class_share_test needs expected shares and observed counts for the same >= 2 classes.")
    n = counts.sum()
    if n <= 0:
        raise DataError("class_share_test needs at least one observed count.")
    exp = np.maximum(shares / shares.sum(), PSI_FLOOR)
    exp = exp / exp.sum()
    stat = float(np.sum((counts - n * exp) ** 2 / (n * exp)))
    dof = shares.size - 1
    gain = counts / n - exp
    k = int(np.argmax(gain))
    return ShareTest(psi=psi(exp, counts), chi2=stat, dof=dof, p_value=float(chi2_dist.sf(stat, dof)),
                     rising=k, observed_share=float(counts[k] / n), expected_share=float(exp[k]))


def confidence_bins(baseline: np.ndarray, n_bins: int = 10) -> np.ndarray:
    """Inner bin edges at the baseline's quantiles (``n_bins - 1`` of them, duplicates removed),
    for :func:`psi` of a max-confidence distribution: use ``np.bincount(np.searchsorted(edges, x,
    side="right"), minlength=len(edges) + 1)`` to count a sample."""
    b = np.asarray(baseline, dtype=np.float64).ravel()
    if b.size < n_bins or n_bins < 2:
        raise DataError(f"confidence_bins needs n_bins >= 2 and at least n_bins baseline values; got "
                        f"{b.size} values for {n_bins} bins.")
    return np.unique(np.quantile(b, np.arange(1, n_bins) / n_bins))


def bin_counts(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """How many ``values`` fall in each bin that ``edges`` (from :func:`confidence_bins`) make."""
    return np.bincount(np.searchsorted(edges, np.asarray(values, dtype=np.float64).ravel(), side="right"),
                       minlength=len(edges) + 1)


def ks_two_sample(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """The two-sample Kolmogorov-Smirnov statistic and its p-value (scipy's exact or asymptotic)."""
    from scipy.stats import ks_2samp

    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.size == 0 or b.size == 0:
        raise DataError("ks_two_sample needs two non-empty samples.")
    res = ks_2samp(a, b)
    return float(res.statistic), float(res.pvalue)


def mcnemar_exact(reference_right: np.ndarray, candidate_right: np.ndarray) -> tuple[int, int, float]:
    """The exact McNemar test on paired outcomes: ``b`` rows only the reference gets right, ``c``
    rows only the candidate gets right, and the two-sided binomial p-value of ``b`` among ``b + c``
    at 1/2 (1.0 when the two never disagree)."""
    from scipy.stats import binomtest

    r = np.asarray(reference_right, dtype=bool).ravel()
    c = np.asarray(candidate_right, dtype=bool).ravel()
    if r.shape != c.shape:
        raise DataError(f"mcnemar_exact needs paired outcomes; got {r.size} and {c.size} rows.")
    only_ref, only_cand = int((r & ~c).sum()), int((~r & c).sum())
    if only_ref + only_cand == 0:
        return only_ref, only_cand, 1.0
    return only_ref, only_cand, float(binomtest(only_ref, only_ref + only_cand, 0.5).pvalue)


def paired_accuracy_difference(reference_right: np.ndarray, candidate_right: np.ndarray, *,
                               n_boot: int = 2000, level: float = 0.95,
                               random_state: int = 0) -> tuple[float, float, float]:
    """Candidate accuracy minus reference accuracy on the same rows, with a paired bootstrap
    interval at ``level`` (rows resampled together, percentile method)."""
    r = np.asarray(reference_right, dtype=np.float64).ravel()
    c = np.asarray(candidate_right, dtype=np.float64).ravel()
    if r.shape != c.shape or r.size == 0:
        raise DataError(f"paired_accuracy_difference needs paired outcomes; got {r.size} and {c.size} rows.")
    if not 0 < level < 1:
        raise ParameterError(f"level must be a float in (0, 1). Got {level!r} instead.")
    d = c - r
    rng = np.random.default_rng(random_state)
    boot = np.empty(n_boot)
    for start in range(0, n_boot, 256):
        idx = rng.integers(0, d.size, size=(min(256, n_boot - start), d.size))
        boot[start:start + len(idx)] = d[idx].mean(axis=1)
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return float(d.mean()), float(lo), float(hi)
