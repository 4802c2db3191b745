"""Whom to trust: consensus labels, each annotator's quality and confusion matrix, and a test for
an annotator who flips one class on purpose.

A labeler who sends one class to another on purpose looks, in aggregate, like an honest labeler
with a slightly worse error rate; the confusion matrix gives them away. :func:`labeler_reliability`
takes :class:`~poisonlab.provenance.annotations.Annotations` (several labels per row, or one per row
from a ``labeler`` column) and, optionally, out-of-fold ``pred_probs``, and computes:

- consensus labels side by side: CROWDLAB (:func:`crowdlab`, cleanlab's multi-annotator method,
  which weighs the model against the annotators), Dawid-Skene (:func:`dawid_skene`, an EM over one
  confusion matrix per annotator) and majority vote (:func:`majority_vote`);
- each annotator's confusion matrix against a *leave-one-annotator-out reference*: for row ``i``
  and annotator ``a``, the class that the other annotators' labels (weighed by their Dawid-Skene
  confusion matrices) and the model's ``pred_probs`` make most likely, so that an annotator's own
  labels never vouch for themselves; cells carry Wilson intervals;
- the targeted-flip test (:func:`flip_test`): a cell ``true -> given`` (off the diagonal) is
  called when its rate is significantly above *both* the other annotators' rate in the same cell
  (one-sided Fisher exact test) *and* the annotator's own rate in its other off-diagonal cells
  (the same test), and at least ``min_ratio`` times the larger of the two. The cell's p-value is
  the larger of the two tests' (an intersection-union test), and the p-values of all annotators
  and cells are adjusted together (Holm by default). An honest annotator with uniform noise has
  all its off-diagonal cells at one rate, so it is not called; a flipper's one cell stands out.

The verdict names the cell and the rows that made it: those the annotator labelled ``given``
while the reference says ``true``, the rows to re-review.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from poisonlab.exceptions import DataError, ParameterError, check_param, is_int
from poisonlab.provenance.annotations import MISSING, Annotations
from poisonlab.provenance.stats import CORRECTIONS, adjust_p_values, wilson_interval

PROB_FLOOR = 1e-3
"""The smallest model probability the reference believes (a confident model is sometimes wrong)."""


# ---------------------------------------------------------------------------------- checks
def _check_labels(labels: np.ndarray, n_classes: int, owner: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ParameterError(f"The 'labels' parameter of {owner} must be a 2-D integer array (N×M, -1 for "
                             f"no label). Got dtype {labels.dtype} and shape {labels.shape} instead.")
    check_param("n_classes", owner, is_int(n_classes, 2), "an int >= 2", n_classes)
    if labels.size and (labels.min() < MISSING or labels.max() >= n_classes):
        raise ParameterError(f"The 'labels' parameter of {owner} must hold -1 or class indices in "
                             f"range({n_classes}). Got values from {labels.min()} to {labels.max()} instead.")
    return labels.astype(np.int64)


def _check_probs(pred_probs: np.ndarray | None, n: int, k: int, owner: str) -> np.ndarray | None:
    if pred_probs is None:
        return None
    p = np.asarray(pred_probs, dtype=np.float64)
    if p.shape != (n, k):
        raise ParameterError(f"The 'pred_probs' parameter of {owner} must have shape ({n}, {k}) (rows × "
                             f"classes). Got shape {p.shape} instead.")
    if not np.isfinite(p).all() or p.min() < 0:
        raise ParameterError(f"The 'pred_probs' parameter of {owner} must hold finite probabilities >= 0.")
    sums = p.sum(axis=1, keepdims=True)
    return p / np.where(sums > 0, sums, 1.0)


def _entries(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows, annotators = np.nonzero(labels != MISSING)
    return rows, annotators, labels[rows, annotators]


# ---------------------------------------------------------------------------------- majority vote
def majority_vote(labels: np.ndarray, n_classes: int, pred_probs: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The most common label of each row, and the share of the row's annotators who gave it.

    Ties go to the class ``pred_probs`` ranks higher (when given), then to the lower class index.
    Rows without labels get label -1 and agreement NaN.

    Returns
    -------
    (labels, agreement) : ndarray of int (N), ndarray of float (N)

    References
    ----------
    .. [1] Snow, O'Connor, Jurafsky and Ng, "Cheap and Fast, but is it Good? Evaluating Non-Expert
       Annotations for Natural Language Tasks", EMNLP 2008. https://aclanthology.org/D08-1027
    """
    labels = _check_labels(labels, n_classes, "majority_vote")
    n = len(labels)
    probs = _check_probs(pred_probs, n, n_classes, "majority_vote")
    rows, _, given = _entries(labels)
    counts = np.zeros((n, n_classes))
    np.add.at(counts, (rows, given), 1.0)
    tie_break = (probs if probs is not None else np.zeros((n, n_classes))) * 1e-6
    tie_break = tie_break - 1e-9 * np.arange(n_classes)[None, :]
    vote = np.argmax(counts + tie_break, axis=1)
    total = counts.sum(axis=1)
    agreement = np.full(n, np.nan)
    has = total > 0
    agreement[has] = counts[has, vote[has]] / total[has]
    return np.where(has, vote, MISSING), agreement


# ---------------------------------------------------------------------------------- Dawid-Skene
@dataclass
class DawidSkeneResult:
    """What :func:`dawid_skene` estimated.

    Attributes
    ----------
    posterior : ndarray, N×K
        Each row's probability of each true class (the class prior for rows without labels).
    labels : ndarray of int, N
        The most likely true class of each row (-1 for rows without labels).
    confusion : ndarray, M×K×K
        ``confusion[m, k, l]``: the probability that annotator ``m`` says ``l`` when the truth is ``k``.
    class_prior : ndarray, K
        The estimated share of each true class.
    n_iter : int
        EM iterations run.
    log_likelihood : float
        The marginal log-likelihood of the labels at the end.
    converged : bool
        Whether the log-likelihood stopped changing (by less than ``tol`` per label) before ``max_iter``.
    """

    posterior: np.ndarray
    labels: np.ndarray
    confusion: np.ndarray
    class_prior: np.ndarray
    n_iter: int
    log_likelihood: float
    converged: bool


def dawid_skene(labels: np.ndarray, n_classes: int, *, max_iter: int = 100, tol: float = 1e-7,
                smoothing: float = 0.01, init: np.ndarray | None = None) -> DawidSkeneResult:
    """Dawid and Skene's EM: true classes and one confusion matrix per annotator, from labels alone.

    The model: row ``i`` has a true class ``k`` drawn from ``class_prior``; annotator ``m`` labels it
    ``l`` with probability ``confusion[m, k, l]``, independently of the other annotators. EM
    alternates the posterior of each row's class (E) with the prior and confusion matrices that
    maximize the expected log-likelihood (M), starting from the soft majority vote. ``smoothing``
    is a pseudo-count added to every confusion cell and class (keeps logarithms finite; MAP
    under a flat Dirichlet prior).

    Parameters
    ----------
    labels : ndarray of int, N×M
        ``labels[i, m]`` in ``range(n_classes)``, or -1 where annotator ``m`` did not label row ``i``.
    n_classes : int
        K.
    max_iter, tol : int, float
        Stop after ``max_iter`` iterations, or when the log-likelihood per label changes by less than ``tol``.
    smoothing : float
        Pseudo-count per confusion cell and per class (>= 0).
    init : ndarray, N×K, optional
        Starting posteriors (default: the share of each row's labels in each class).

    Returns
    -------
    DawidSkeneResult

    References
    ----------
    .. [1] Dawid and Skene, "Maximum Likelihood Estimation of Observer Error-Rates Using the EM
       Algorithm", Journal of the Royal Statistical Society, Series C (Applied Statistics) 28(1),
       20-28, 1979. https://doi.org/10.2307/2346806
    """
    labels = _check_labels(labels, n_classes, "dawid_skene")
    check_param("max_iter", "dawid_skene", is_int(max_iter, 1), "an int >= 1", max_iter)
    check_param("smoothing", "dawid_skene", isinstance(smoothing, (int, float)) and smoothing >= 0,
                "a number >= 0", smoothing)
    n, m = labels.shape
    K = int(n_classes)
    rows, who, given = _entries(labels)
    if rows.size == 0:
        raise DataError("dawid_skene: no labels at all.")
    has = np.zeros(n, dtype=bool)
    has[rows] = True
    if init is None:
        T = np.zeros((n, K))
        np.add.at(T, (rows, given), 1.0)
        T[~has] = 1.0
    else:
        T = np.asarray(init, dtype=np.float64).copy()
        if T.shape != (n, K):
            raise ParameterError(f"The 'init' parameter of dawid_skene must have shape ({n}, {K}). "
                                 f"Got {T.shape} instead.")
    T /= T.sum(axis=1, keepdims=True)
    previous = -np.inf
    converged = False
    log_lik = -np.inf
    it = 0
    for step in range(1, max_iter + 1):
        it = step
        prior, confusion = _m_step(T, has, rows, who, given, m, K, smoothing)
        log_post = _log_joint(prior, confusion, rows, who, given, n)
        peak = log_post.max(axis=1, keepdims=True)
        joint = np.exp(log_post - peak)
        norm = joint.sum(axis=1, keepdims=True)
        T = joint / norm
        log_lik = float((np.log(norm[has, 0]) + peak[has, 0]).sum())
        if abs(log_lik - previous) < tol * rows.size:
            converged = True
            break
        previous = log_lik
    prior, confusion = _m_step(T, has, rows, who, given, m, K, smoothing)
    T[~has] = prior
    return DawidSkeneResult(posterior=T, labels=np.where(has, np.argmax(T, axis=1), MISSING),
                            confusion=confusion, class_prior=prior, n_iter=it,
                            log_likelihood=log_lik, converged=converged)


def _m_step(T: np.ndarray, has: np.ndarray, rows: np.ndarray, who: np.ndarray, given: np.ndarray,
            m: int, K: int, smoothing: float) -> tuple[np.ndarray, np.ndarray]:
    prior = T[has].sum(axis=0) + smoothing
    prior /= prior.sum()
    counts = np.full((m, K, K), float(smoothing))
    for g in range(K):
        sel = given == g
        np.add.at(counts[:, :, g], who[sel], T[rows[sel]])
    sums = counts.sum(axis=2, keepdims=True)
    confusion = np.where(sums > 0, counts / np.where(sums > 0, sums, 1.0), 1.0 / K)
    return prior, confusion


def _log_joint(prior: np.ndarray, confusion: np.ndarray, rows: np.ndarray, who: np.ndarray,
               given: np.ndarray, n: int, row_prior: np.ndarray | None = None) -> np.ndarray:
    with np.errstate(divide="ignore"):
        log_conf = np.log(confusion)
        out = np.log(row_prior) if row_prior is not None else np.tile(np.log(prior), (n, 1))
    np.add.at(out, rows, log_conf[who, :, given])
    return out


# ---------------------------------------------------------------------------------- CROWDLAB
@dataclass
class CrowdlabResult:
    """What :func:`crowdlab` found (cleanlab's multi-annotator CROWDLAB).

    Attributes
    ----------
    labels : ndarray of int, N
        Consensus label of each row (-1 for rows without labels).
    quality : ndarray of float, N
        Consensus quality in [0, 1] (higher: more likely right; NaN for rows without labels).
    agreement : ndarray of float, N
        Share of the row's annotators who gave the consensus label.
    annotator_quality : ndarray of float, M
        Each annotator's quality in [0, 1] (NaN for an annotator without labels).
    method : str
        ``crowdlab``, or ``label_quality`` where every row has one label (CROWDLAB needs some rows with
        two; cleanlab's single-label quality score of each given label is used instead, and an
        annotator's quality is the mean score of its labels).
    """

    labels: np.ndarray
    quality: np.ndarray
    agreement: np.ndarray
    annotator_quality: np.ndarray
    method: str = "crowdlab"


def crowdlab(labels: np.ndarray, pred_probs: np.ndarray) -> CrowdlabResult:
    """CROWDLAB consensus labels, consensus quality and annotator quality.

    Runs :func:`cleanlab.multiannotator.get_label_quality_multiannotator` with
    ``consensus_method="best_quality"`` on the rows that have labels and the annotators who gave
    any; ``pred_probs`` should be out-of-fold probabilities of a model trained on consensus (e.g.
    majority-vote) labels. Where no row has two labels, falls back to
    :func:`cleanlab.rank.get_label_quality_scores` (see :class:`CrowdlabResult`).

    References
    ----------
    .. [1] Goh, Tkachenko and Mueller, "CROWDLAB: Supervised learning to infer consensus labels and
       quality scores for data with multiple annotators", NeurIPS 2022 Human in the Loop Learning
       Workshop. https://arxiv.org/abs/2210.06812
    """
    pred_probs = np.asarray(pred_probs, dtype=np.float64)
    if pred_probs.ndim != 2:
        raise ParameterError(f"The 'pred_probs' parameter of crowdlab must be an N×K array. Got shape "
                             f"{pred_probs.shape} instead.")
    K = pred_probs.shape[1]
    labels = _check_labels(labels, K, "crowdlab")
    n, m = labels.shape
    probs = _check_probs(pred_probs, n, K, "crowdlab")
    if probs is None:  # pragma: no cover - not None for an array
        raise ParameterError("crowdlab needs pred_probs.")
    counts = labels != MISSING
    has = counts.any(axis=1)
    used = counts.any(axis=0)
    if not has.any():
        raise DataError("crowdlab: no labels at all.")
    out_labels = np.full(n, MISSING)
    quality = np.full(n, np.nan)
    agreement = np.full(n, np.nan)
    annotator_quality = np.full(m, np.nan)
    sub = labels[np.ix_(has, used)].astype(np.float64)
    sub[sub == MISSING] = np.nan
    p = np.clip(probs[has], 1e-12, None)
    p /= p.sum(axis=1, keepdims=True)
    if counts[has].sum(axis=1).max() < 2:
        from cleanlab.rank import get_label_quality_scores

        given = np.nanmax(sub, axis=1).astype(np.int64)
        scores = get_label_quality_scores(given, p)
        out_labels[has], quality[has], agreement[has] = given, scores, 1.0
        cols = np.flatnonzero(used)
        for j, col in enumerate(cols):
            annotator_quality[col] = float(np.mean(scores[~np.isnan(sub[:, j])]))
        return CrowdlabResult(out_labels, quality, agreement, annotator_quality, method="label_quality")
    from cleanlab.multiannotator import get_label_quality_multiannotator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = get_label_quality_multiannotator(sub, p, consensus_method="best_quality", verbose=False,
                                               return_detailed_quality=False)
    lq = res["label_quality"]
    out_labels[has] = lq["consensus_label"].to_numpy().astype(np.int64)
    quality[has] = lq["consensus_quality_score"].to_numpy(dtype=np.float64)
    agreement[has] = lq["annotator_agreement"].to_numpy(dtype=np.float64)
    stats = res["annotator_stats"]
    cols = np.flatnonzero(used)
    for j, col in enumerate(cols):
        annotator_quality[col] = float(stats.loc[j, "annotator_quality"])
    return CrowdlabResult(out_labels, quality, agreement, annotator_quality)


# ---------------------------------------------------------------------------------- reference
def leave_one_out_reference(labels: np.ndarray, confusion: np.ndarray, class_prior: np.ndarray,
                            pred_probs: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For each label, the class the *other* evidence on its row makes most likely.

    For the label of annotator ``a`` on row ``i``: ``argmax_k  log q_i(k) + sum over the other
    annotators b of row i of log confusion[b, k, label_ib]``, where ``q_i`` is ``pred_probs[i]``
    (floored at :data:`PROB_FLOOR`) or, without it, ``class_prior``.

    Returns
    -------
    (reference, informed) : ndarray of int N×M, ndarray of bool N×M
        ``reference[i, a]`` the class (-1 where ``a`` did not label ``i``); ``informed[i, a]`` False
        where nothing but the class prior speaks for the row (no model, no other annotator), so the
        reference says nothing about the label.
    """
    labels = _check_labels(labels, confusion.shape[-1], "leave_one_out_reference")
    n, _ = labels.shape
    rows, who, given = _entries(labels)
    row_prior = None
    if pred_probs is not None:
        row_prior = np.clip(pred_probs, PROB_FLOOR, None)
        row_prior = row_prior / row_prior.sum(axis=1, keepdims=True)
    full = _log_joint(class_prior, confusion, rows, who, given, n, row_prior)
    with np.errstate(divide="ignore"):
        own = np.log(confusion)[who, :, given]
    loo = full[rows] - own
    reference = np.full(labels.shape, MISSING)
    reference[rows, who] = np.argmax(loo, axis=1)
    per_row = (labels != MISSING).sum(axis=1)
    informed = np.zeros(labels.shape, dtype=bool)
    informed[rows, who] = (per_row[rows] > 1) | (pred_probs is not None)
    return reference, informed


def confusion_counts(labels: np.ndarray, reference: np.ndarray, informed: np.ndarray,
                     n_classes: int) -> np.ndarray:
    """``counts[m, k, l]``: labels ``l`` annotator ``m`` gave to rows whose reference class is ``k``
    (informed labels only)."""
    labels = _check_labels(labels, n_classes, "confusion_counts")
    m = labels.shape[1]
    rows, who, given = _entries(labels)
    keep = informed[rows, who]
    counts = np.zeros((m, n_classes, n_classes), dtype=np.int64)
    np.add.at(counts, (who[keep], reference[rows[keep], who[keep]], given[keep]), 1)
    return counts


# ---------------------------------------------------------------------------------- flip test
@dataclass
class FlipTest:
    """The targeted-flip test of every off-diagonal confusion cell of every annotator.

    Arrays are M×K×K; diagonal cells hold NaN (p-values: 1).

    Attributes
    ----------
    rate : ndarray
        ``counts[m, k, l] / counts[m, k, :].sum()``.
    others_rate : ndarray
        The same cell's rate over the other annotators' labels.
    own_rate : ndarray
        The annotator's rate per off-diagonal cell outside this cell.
    p_others, p_own : ndarray
        One-sided Fisher exact p-values of the cell's rate against ``others_rate`` and ``own_rate``.
    p_value : ndarray
        ``max(p_others, p_own)`` (an intersection-union test: small only when both are).
    p_adjusted : ndarray
        ``p_value`` adjusted over all annotators and cells by ``correction``.
    called : ndarray of bool
        ``p_adjusted < alpha`` and ``rate >= min_ratio * max(others_rate, own_rate)``.
    """

    rate: np.ndarray
    others_rate: np.ndarray
    own_rate: np.ndarray
    p_others: np.ndarray
    p_own: np.ndarray
    p_value: np.ndarray
    p_adjusted: np.ndarray
    called: np.ndarray
    alpha: float
    correction: str
    min_ratio: float


def _fisher_greater(x: np.ndarray, n: np.ndarray, x2: np.ndarray, n2: np.ndarray) -> np.ndarray:
    """One-sided Fisher exact p-value that x/n exceeds x2/n2 (vectorized hypergeometric tail)."""
    from scipy.stats import hypergeom

    total = n + n2
    successes = x + x2
    with np.errstate(invalid="ignore"):
        p = hypergeom.sf(x - 1, total, successes, n)
    return np.where((n > 0) & (n2 > 0), np.clip(np.nan_to_num(p, nan=1.0), 0.0, 1.0), 1.0)


def flip_test(counts: np.ndarray, *, alpha: float = 0.01, correction: str = "holm",
              min_ratio: float = 2.0) -> FlipTest:
    """Test every off-diagonal cell of every annotator's confusion counts for a targeted flip.

    Parameters
    ----------
    counts : ndarray of int, M×K×K
        ``counts[m, k, l]``: labels ``l`` that annotator ``m`` gave to rows of reference class ``k``
        (see :func:`confusion_counts`).
    alpha : float
        Level the adjusted p-value is compared with.
    correction : {"holm", "bh"}
        Multiple-testing correction over annotators × cells (see :func:`~poisonlab.provenance.stats.adjust_p_values`).
    min_ratio : float
        How many times above the larger comparison rate a called cell must be (an effect size on
        top of significance; >= 1).

    Returns
    -------
    FlipTest

    References
    ----------
    .. [1] Fisher, "On the Interpretation of chi-square from Contingency Tables, and the Calculation
       of P", JRSS 85(1), 1922. https://doi.org/10.2307/2340521
    .. [2] Berger, "Multiparameter Hypothesis Testing and Acceptance Sampling", Technometrics 24(4),
       1982 (the intersection-union test). https://doi.org/10.2307/1267679
    """
    counts = np.asarray(counts)
    if counts.ndim != 3 or counts.shape[1] != counts.shape[2] or counts.shape[1] < 2:
        raise ParameterError(f"The 'counts' parameter of flip_test must be an M×K×K array with K >= 2. "
                             f"Got shape {counts.shape} instead.")
    check_param("alpha", "flip_test", isinstance(alpha, (int, float)) and 0 < alpha < 1,
                "a float in (0, 1)", alpha)
    check_param("correction", "flip_test", correction in CORRECTIONS, f"one of {list(CORRECTIONS)}", correction)
    check_param("min_ratio", "flip_test", isinstance(min_ratio, (int, float)) and min_ratio >= 1,
                "a number >= 1", min_ratio)
    c = counts.astype(np.float64)
    m, K, _ = c.shape
    off = ~np.eye(K, dtype=bool)
    row_n = c.sum(axis=2, keepdims=True)                      # M×K×1 labels per reference class
    n = np.broadcast_to(row_n, c.shape)
    x = c
    # the other annotators, same cell
    x_o = c.sum(axis=0, keepdims=True) - c
    n_o = n.sum(axis=0, keepdims=True) - n
    # the annotator's own other off-diagonal cells, per cell
    off_x = (c * off).sum(axis=(1, 2), keepdims=True)
    off_n = (row_n[:, :, 0] * (K - 1)).sum(axis=1)[:, None, None]
    x_b = off_x - c
    n_b = off_n - n
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(n > 0, x / np.where(n > 0, n, 1), np.nan)
        others_rate = np.where(n_o > 0, x_o / np.where(n_o > 0, n_o, 1), np.nan)
        own_rate = np.where(n_b > 0, x_b / np.where(n_b > 0, n_b, 1), np.nan)
    p_others = _fisher_greater(x, n, x_o, n_o)
    p_own = _fisher_greater(x, n, x_b, n_b)
    if m == 1:  # no other annotator to compare with: the own test alone
        p_others = p_own.copy()
    p_value = np.maximum(p_others, p_own)
    p_value[:, ~off] = 1.0
    p_adjusted = np.ones_like(p_value)
    p_adjusted[:, off] = adjust_p_values(p_value[:, off], correction).reshape(m, -1)
    base = np.fmax(np.nan_to_num(others_rate, nan=0.0) if m > 1 else 0.0, np.nan_to_num(own_rate, nan=0.0))
    called = (p_adjusted < alpha) & (np.nan_to_num(rate, nan=0.0) >= min_ratio * base) & off[None] & (x > 0)
    for arr in (rate, others_rate, own_rate):
        arr[:, ~off] = np.nan
    return FlipTest(rate=rate, others_rate=others_rate, own_rate=own_rate, p_others=p_others, p_own=p_own,
                    p_value=p_value, p_adjusted=p_adjusted, called=called, alpha=float(alpha),
                    correction=correction, min_ratio=float(min_ratio))


# ---------------------------------------------------------------------------------- the report
@dataclass
class ReliabilityReport:
    """What :func:`labeler_reliability` found.

    Attributes
    ----------
    annotations : Annotations
        The labels analysed.
    majority : ndarray of int, N
        Majority-vote consensus (-1 for rows without labels).
    majority_agreement : ndarray of float, N
        Share of the row's annotators who gave the majority label.
    dawid_skene : DawidSkeneResult or None
        None where no row has two labels (Dawid-Skene cannot tell an annotator's errors from the truth).
    crowdlab : CrowdlabResult or None
        None without ``pred_probs``.
    reference : ndarray of int, N×M
        The leave-one-annotator-out reference class of each label (-1 where none).
    informed : ndarray of bool, N×M
        Where the reference rests on more than the class prior.
    counts : ndarray of int, M×K×K
        Confusion counts against the reference.
    interval : ndarray of float, M×K×K×2
        Wilson interval of each cell's rate ``counts[m, k, l] / counts[m, k].sum()``.
    flips : FlipTest
        The targeted-flip test.
    """

    annotations: Annotations
    majority: np.ndarray
    majority_agreement: np.ndarray
    dawid_skene: DawidSkeneResult | None
    crowdlab: CrowdlabResult | None
    reference: np.ndarray
    informed: np.ndarray
    counts: np.ndarray
    interval: np.ndarray
    flips: FlipTest
    confidence: float = 0.95
    notes: list[str] = field(default_factory=list)

    @property
    def consensus(self) -> np.ndarray:
        """The consensus label of each row: CROWDLAB's when computed, else Dawid-Skene's, else the
        majority vote (-1 for rows without labels)."""
        if self.crowdlab is not None:
            return self.crowdlab.labels
        if self.dawid_skene is not None:
            return self.dawid_skene.labels
        return self.majority

    @property
    def consensus_method(self) -> str:
        """Which method :attr:`consensus` comes from: ``crowdlab``, ``dawid_skene`` or ``majority_vote``."""
        if self.crowdlab is not None:
            return "crowdlab" if self.crowdlab.method == "crowdlab" else "label_quality"
        return "dawid_skene" if self.dawid_skene is not None else "majority_vote"

    @property
    def consensus_quality(self) -> np.ndarray:
        """Per-row quality of :attr:`consensus` in [0, 1]: CROWDLAB's score, else the Dawid-Skene
        posterior of the chosen class, else the majority's agreement (NaN for rows without labels)."""
        if self.crowdlab is not None:
            return self.crowdlab.quality
        if self.dawid_skene is not None:
            has = self.annotations.labels_per_row > 0
            return np.where(has, self.dawid_skene.posterior.max(axis=1), np.nan)
        return self.majority_agreement

    def annotator_quality(self) -> np.ndarray:
        """Each annotator's quality in [0, 1]: CROWDLAB's when computed, else the share of its
        labels that agree with the leave-one-out reference."""
        if self.crowdlab is not None:
            return self.crowdlab.annotator_quality
        agree = np.trace(self.counts, axis1=1, axis2=2)
        total = self.counts.sum(axis=(1, 2))
        return np.where(total > 0, agree / np.where(total > 0, total, 1), np.nan)

    def suspect_cell(self, m: int) -> tuple[int, int] | None:
        """The called cell ``(true, given)`` of annotator ``m`` with the smallest adjusted p-value, or None."""
        called = self.flips.called[m]
        if not called.any():
            return None
        p = np.where(called, self.flips.p_adjusted[m], np.inf)
        k, g = np.unravel_index(int(np.argmin(p)), p.shape)
        return int(k), int(g)

    def best_cell(self, m: int) -> tuple[int, int]:
        """Annotator ``m``'s off-diagonal cell with the smallest adjusted p-value (called or not)."""
        p = self.flips.p_adjusted[m].copy()
        np.fill_diagonal(p, np.inf)
        k, g = np.unravel_index(int(np.argmin(p)), p.shape)
        return int(k), int(g)

    def suspect_rows(self, m: int, cell: tuple[int, int] | None = None) -> np.ndarray:
        """Row positions where annotator ``m`` gave ``cell[1]`` while the reference says ``cell[0]``
        (default: the suspect cell; empty when there is none)."""
        cell = cell if cell is not None else self.suspect_cell(m)
        if cell is None:
            return np.zeros(0, dtype=np.int64)
        labels = self.annotations.labels[:, m]
        return np.flatnonzero((labels == cell[1]) & (self.reference[:, m] == cell[0]) & self.informed[:, m])

    def annotator_table(self) -> list[dict[str, Any]]:
        """One dict per annotator, most suspicious first: ``annotator``, ``n_labels``, ``quality``,
        ``verdict`` (``ok`` | ``suspect``), ``suspect_cell`` (``true->given`` or ""), ``p_value`` (the
        adjusted p-value of the annotator's most significant off-diagonal cell), ``cell_rate``,
        ``others_rate``, ``own_rate`` (of that cell), ``agreement`` (share of its labels equal to the
        reference), ``n_suspect_rows``."""
        ann = self.annotations
        quality = self.annotator_quality()
        n_labels = ann.labels_per_annotator
        rows: list[dict[str, Any]] = []
        for m, name in enumerate(ann.annotators):
            cell = self.suspect_cell(m)
            k, g = cell if cell is not None else self.best_cell(m)
            total = int(self.counts[m].sum())
            agree = int(np.trace(self.counts[m]))
            rows.append({
                "annotator": name,
                "n_labels": int(n_labels[m]),
                "quality": _round(quality[m]),
                "verdict": "suspect" if cell is not None else "ok",
                "suspect_cell": f"{ann.classes[k]}->{ann.classes[g]}" if cell is not None else "",
                "p_value": float(self.flips.p_adjusted[m, k, g]),
                "tested_cell": f"{ann.classes[k]}->{ann.classes[g]}",
                "cell_rate": _round(self.flips.rate[m, k, g]),
                "others_rate": _round(self.flips.others_rate[m, k, g]),
                "own_rate": _round(self.flips.own_rate[m, k, g]),
                "agreement": _round(agree / total) if total else None,
                "n_suspect_rows": len(self.suspect_rows(m)) if cell is not None else 0,
            })
        rows.sort(key=lambda r: (r["verdict"] != "suspect", r["p_value"], r["annotator"]))
        return rows

    def confusion_document(self, m: int) -> dict[str, Any]:
        """Annotator ``m``'s confusion matrix as JSON: ``counts``, ``rates`` and Wilson ``low``/``high``,
        each K×K with rows the reference class and columns the given class."""
        c = self.counts[m]
        n = c.sum(axis=1, keepdims=True)
        rates = np.where(n > 0, c / np.where(n > 0, n, 1), np.nan)
        return {"classes": list(self.annotations.classes), "counts": c.tolist(),
                "rates": [[_round(v) for v in r] for r in rates],
                "low": [[_round(v) for v in r] for r in self.interval[m, :, :, 0]],
                "high": [[_round(v) for v in r] for r in self.interval[m, :, :, 1]]}

    def summary(self) -> dict[str, Any]:
        """The JSON summary: counts, consensus methods side by side, and per-annotator results."""
        ann = self.annotations
        per_row = ann.labels_per_row
        has = per_row > 0
        methods: dict[str, Any] = {}
        maj = self.majority
        if self.crowdlab is not None:
            methods["crowdlab"] = {"method": self.crowdlab.method,
                                   "agrees_with_majority": _round(np.mean(self.crowdlab.labels[has] == maj[has]))}
        if self.dawid_skene is not None:
            ds = self.dawid_skene
            methods["dawid_skene"] = {"n_iter": ds.n_iter, "converged": ds.converged,
                                      "log_likelihood": round(ds.log_likelihood, 3),
                                      "class_prior": [_round(v) for v in ds.class_prior],
                                      "agrees_with_majority": _round(np.mean(ds.labels[has] == maj[has]))}
        methods["majority_vote"] = {"mean_agreement": _round(np.nanmean(self.majority_agreement[has]))}
        table = self.annotator_table()
        index = {name: m for m, name in enumerate(ann.annotators)}
        annotators = []
        for row in table:
            m = index[row["annotator"]]
            doc = dict(row)
            doc["confusion"] = self.confusion_document(m)
            doc["suspect_rows"] = [str(ann.ids[i]) for i in self.suspect_rows(m)]
            annotators.append(doc)
        suspects = [r for r in table if r["verdict"] == "suspect"]
        return {
            "layout": ann.layout,
            "n_rows": ann.n_rows,
            "n_rows_labelled": int(has.sum()),
            "n_rows_unlabelled": int((~has).sum()),
            "n_annotators": ann.n_annotators,
            "n_labels": int(per_row.sum()),
            "labels_per_row": {"mean": _round(per_row[has].mean()) if has.any() else None,
                               "max": int(per_row.max()) if len(per_row) else 0},
            "classes": list(ann.classes),
            "consensus_method": self.consensus_method,
            "consensus": methods,
            "test": {"alpha": self.flips.alpha, "correction": self.flips.correction,
                     "min_ratio": self.flips.min_ratio, "confidence": self.confidence,
                     "n_tests": int(ann.n_annotators * ann.n_classes * (ann.n_classes - 1)),
                     "reference": "leave-one-annotator-out: Dawid-Skene confusion matrices of the other "
                                  "annotators" + (" and the model's out-of-fold probabilities"
                                                  if self.crowdlab is not None else "")},
            "n_suspect": len(suspects),
            "suspects": [self.verdict_line(r) for r in suspects],
            "annotators": annotators,
            "notes": list(self.notes),
        }

    def verdict_line(self, row: dict[str, Any]) -> str:
        """One sentence for a suspect annotator's row of :meth:`annotator_table`."""
        true, given = row["suspect_cell"].split("->", 1)
        who = "labeler" if self.annotations.layout == "labeler" else "annotator"
        return (f"{who} {row['annotator']}: labels {true} as {given} on {_pct(row['cell_rate'])} of "
                f"{true} rows (others {_pct(row['others_rate'])}, own other errors {_pct(row['own_rate'])}), "
                f"adjusted p = {row['p_value']:.2g}; {row['n_suspect_rows']} rows to re-review")


def _round(v: Any, digits: int = 4) -> float | None:
    v = float(v)
    return None if not np.isfinite(v) else round(v, digits)


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def labeler_reliability(annotations: Annotations, pred_probs: np.ndarray | None = None, *,
                        alpha: float = 0.01, correction: str = "holm", min_ratio: float = 2.0,
                        confidence: float = 0.95) -> ReliabilityReport:
    """Consensus labels by three methods, each annotator's confusion matrix, and the flip test.

    Parameters
    ----------
    annotations : Annotations
        Several labels per row (:func:`~poisonlab.provenance.annotations.read_annotations`) or one per
        row from a labeler column (:func:`~poisonlab.provenance.annotations.annotations_from_labelers`).
    pred_probs : ndarray, N×K, optional
        Out-of-fold probabilities of a model trained on consensus labels. Needed for CROWDLAB, and
        the only reference there is where rows have one label each.
    alpha, correction, min_ratio
        As for :func:`flip_test`.
    confidence : float
        Level of the Wilson intervals on the confusion cells.

    Returns
    -------
    ReliabilityReport

    References
    ----------
    .. [1] Dawid and Skene, "Maximum Likelihood Estimation of Observer Error-Rates Using the EM
       Algorithm", Applied Statistics 28(1), 1979. https://doi.org/10.2307/2346806
    .. [2] Goh, Tkachenko and Mueller, "CROWDLAB: Supervised learning to infer consensus labels and
       quality scores for data with multiple annotators", NeurIPS 2022 Human in the Loop Learning
       Workshop. https://arxiv.org/abs/2210.06812
    """
    if not isinstance(annotations, Annotations):
        raise ParameterError("The 'annotations' parameter of labeler_reliability must be an Annotations "
                             f"(see read_annotations). Got {type(annotations).__name__} instead.")
    check_param("confidence", "labeler_reliability", isinstance(confidence, float) and 0 < confidence < 1,
                "a float in (0, 1)", confidence)
    labels, K = annotations.labels, annotations.n_classes
    if K < 2:
        raise DataError(f"{annotations.where}: every label is {annotations.classes[0]!r}; judging annotators "
                        "needs at least two classes.")
    per_row = annotations.labels_per_row
    if not (per_row > 0).any():
        raise DataError(f"{annotations.where}: no row has a label.")
    probs = _check_probs(pred_probs, annotations.n_rows, K, "labeler_reliability")
    notes: list[str] = []
    if (per_row == 0).any():
        notes.append(f"{int((per_row == 0).sum())} rows have no label; they are left out of the consensus "
                     "and of every annotator's counts.")
    few = [a for a, n in zip(annotations.annotators, annotations.labels_per_annotator, strict=True) if n < 10]
    if few:
        notes.append(f"{len(few)} annotators gave fewer than 10 labels ({', '.join(few[:5])}); the flip test "
                     "cannot call an annotator on so few labels, so their verdict is ok by default.")
    majority, agreement = majority_vote(labels, K, probs)
    multi = bool((per_row >= 2).any())
    ds = dawid_skene(labels, K) if multi else None
    if ds is None:
        notes.append("No row has two labels: Dawid-Skene is skipped, and the reference for each label is the "
                     "model's out-of-fold prediction alone.")
        confusion = np.tile(np.eye(K)[None] * 0.9 + 0.1 / K, (annotations.n_annotators, 1, 1))
        prior = np.bincount(labels[labels != MISSING], minlength=K) + 1.0
        prior = prior / prior.sum()
    else:
        confusion, prior = ds.confusion, ds.class_prior
    cl = crowdlab(labels, probs) if probs is not None else None
    reference, informed = leave_one_out_reference(labels, confusion, prior, probs)
    if not informed.any():
        notes.append("Every label is the only evidence on its row and no model probabilities were given: "
                     "no confusion matrix can be estimated.")
    counts = confusion_counts(labels, reference, informed, K)
    n = np.broadcast_to(counts.sum(axis=2, keepdims=True), counts.shape)
    low, high = wilson_interval(counts, n, confidence)
    flips = flip_test(counts, alpha=alpha, correction=correction, min_ratio=min_ratio)
    return ReliabilityReport(annotations=annotations, majority=majority, majority_agreement=agreement,
                             dawid_skene=ds, crowdlab=cl, reference=reference, informed=informed,
                             counts=counts, interval=np.stack([low, high], axis=-1), flips=flips,
                             confidence=confidence, notes=notes)


def group_findings(groups: dict[str, Any] | None, *, alpha: float = 0.01,
                   names: Sequence[str] = ("by_source", "by_labeler")) -> list[str]:
    """One line per source or labeler whose share of flagged rows stands out, from the output of
    :func:`~poisonlab.provenance.contributions_by_group` ("source B: 4% of rows, 71% of flagged rows,
    adjusted p = 3e-12"), most significant first; groups with ``p_adjusted < alpha`` only."""
    if not groups:
        return []
    total = groups.get("n_rows") or 0
    flagged = groups.get("n_flagged") or 0
    lines: list[tuple[float, str]] = []
    for key in names:
        table = groups.get(key)
        if not table:
            continue
        what = key.removeprefix("by_")
        for name, g in table.items():
            p = g.get("p_adjusted", g.get("p_value", 1.0))
            if p < alpha and total and flagged:
                lines.append((p, f"{what} {name}: {100 * g['n_rows'] / total:.0f}% of rows, "
                                 f"{100 * g['n_flagged'] / flagged:.0f}% of flagged rows "
                                 f"({g['n_flagged']} of its {g['n_rows']} rows flagged), adjusted p = {p:.2g}"))
    return [line for _, line in sorted(lines, key=lambda t: t[0])]
