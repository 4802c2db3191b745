"""Planted feature values: the table counterpart of :mod:`poisonlab.detect.triggers`.

A tabular backdoor (TabDoor, Pleiter et al. 2023, https://arxiv.org/abs/2311.07550) sets a few
features to fixed values, out of the training range or in range but rare, in rows of other classes,
and relabels them with the target class. Such a value has the marks a text trigger has:

1. *class concentration*: nearly every row that holds the exact value carries one label (a G-test
   of its rows' labels against the class priors; candidates down to ``min_concentration``);
2. *its rows read as another class without it*: with the value replaced by the feature's median, a
   model that never saw the row (the audit's out-of-fold model) puts most of them in another class,
   far above the class's own held-out error rate (a one-sided binomial test, Bonferroni over the
   tested candidates). A natural value concentrated in one class ("0 lymph nodes" in benign
   tumors) sits in rows whose other features agree with the label.

Candidates are exact (feature, value) pairs held by at least ``min_count`` rows and at most half
of them. ``min_count = min_rows = 3``: three rows all off-label against a class error of 5% give
p = 1.25e-4, about what the Bonferroni bound over the tested candidates asks, so fewer rows cannot
pass the test. Chosen on the dev cells of ``benchmarks/generalization.py`` (2026-12-04): wine's
out-of-range trigger (TabDoor's out-of-bounds values in 4 rows, attack success 97-100%) was found
in none of its three dev cells at 5 and in all three at 3 (P/R 1.0/1.0, 1.0/1.0, 0.8/1.0); no
breast-cancer, digits-table or clean cell moved, dev or held-out. Values that travel together
(the three features of one planted trigger) are replaced together in the test, as the words of a
planted phrase are.

Row score: the drop in the held-out probability of the row's label when the suspected trigger
values are replaced, plus 1 when the row carries a trigger's target label and either reads as
another class once they are replaced or holds two values of one planted group; rows holding no
suspected value score 0. ``score > 1`` is flagged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from poisonlab.detect.base import Detector, check_labels
from poisonlab.detect.triggers import (
    DataTrigger,
    HeldOutProba,
    PredictProba,
    check_trigger_params,
    companions_of,
    confirmed_candidates,
    excess_doubt,
    score_significance,
    token_statistics,
)
from poisonlab.exceptions import ParameterError

if TYPE_CHECKING:
    import scipy.sparse as sp


# Values held by fewer rows than this (and at least ``min_count``) are candidates on top of the
# others, at most ``2 * n_candidates`` of them as for the others (see ``ValueTriggerDetector.fit``).
SMALL_GROUP = 5


def value_candidates(X: np.ndarray, min_count: int, max_share: float = 0.5
                     ) -> tuple[sp.csc_matrix, list[tuple[int, float]]]:
    """The N×V binary matrix of rows holding each exact (feature, value) pair, and the pairs."""
    import scipy.sparse as sp

    n = len(X)
    cols: list[np.ndarray] = []
    pairs: list[tuple[int, float]] = []
    for j in range(X.shape[1]):
        col = X[:, j]
        finite = np.isfinite(col)
        values, inverse, counts = np.unique(col[finite], return_inverse=True, return_counts=True)
        keep = np.flatnonzero((counts >= min_count) & (counts <= max_share * n))
        rows = np.flatnonzero(finite)
        for v in keep:
            cols.append(rows[inverse == v])
            pairs.append((j, float(values[v])))
    if not cols:
        return sp.csc_matrix((n, 0)), []
    indptr = np.concatenate([[0], np.cumsum([len(c) for c in cols])])
    data = np.ones(int(indptr[-1]), dtype=np.float32)
    return sp.csc_matrix((data, np.concatenate(cols), indptr), shape=(n, len(cols))), pairs


class ValueTriggerDetector(Detector):
    """Planted feature values in a table (see the module docstring).

    ``fit(X, y, predict_proba, n_classes=None, reference_scores=None, held_out_proba=None,
    feature_names=None)``: ``X`` an N×D numeric array, ``predict_proba`` the model trained on these
    rows, ``held_out_proba(X_edited, rows)`` the out-of-fold models (see
    :data:`poisonlab.detect.triggers.HeldOutProba`; without it the trained model stands in and
    finds little, as it has fitted the rows), ``reference_scores`` per-row scores in [-1, 1]
    (kNN label disagreement) that rank the candidates.

    Attributes: ``scores_``, ``threshold_`` (1), ``flags_``, ``candidates_`` (tested, strongest
    first), ``triggers_`` (confirmed; ``trigger`` reads ``"feature = value"``, ``companions`` the
    values replaced with it), ``row_trigger_`` (index into ``triggers_`` per row, -1 for none).
    """

    def __init__(self, *, min_count: int = 3, min_concentration: float = 0.6,
                 min_effect: float = 0.3, min_lift: float = 3.0, alpha: float = 0.01, min_rows: int = 3,
                 n_candidates: int = 40, n_test_rows: int = 60, max_triggers: int = 5,
                 contamination: float | str = "auto",
                 random_state: int | np.random.Generator | None = 0) -> None:
        self.min_count = min_count
        self.min_concentration = min_concentration
        self.min_effect = min_effect
        self.min_lift = min_lift
        self.alpha = alpha
        self.min_rows = min_rows
        self.n_candidates = n_candidates
        self.n_test_rows = n_test_rows
        self.max_triggers = max_triggers
        self.contamination = contamination
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray, predict_proba: PredictProba,
            n_classes: int | None = None, reference_scores: np.ndarray | None = None,
            held_out_proba: HeldOutProba | None = None,
            feature_names: Sequence[str] | None = None) -> ValueTriggerDetector:
        """Find the feature values that act as planted triggers and score every row that holds one.

        Parameters
        ----------
        X : ndarray of float, shape (N, D)
            The training table.
        y : ndarray of int, shape (N,)
            Integer labels.
        predict_proba : callable
            From an array of rows to N×K probabilities: the model trained on these rows.
        n_classes : int, optional
            K, the number of classes (default ``y.max() + 1``).
        reference_scores : ndarray of float, shape (N,), optional
            Per-row scores in [-1, 1], higher when a row looks like another class (kNN label
            disagreement); they rank the candidates.
        held_out_proba : callable, optional
            ``held_out_proba(X_edited, rows)``, the out-of-fold models (see
            :data:`poisonlab.detect.triggers.HeldOutProba`). Without it ``predict_proba`` stands in and
            finds little, as it has fitted the rows.
        feature_names : sequence of str, optional
            Column names for the ``"feature = value"`` triggers (default ``"feature 0"``, ...).

        Returns
        -------
        ValueTriggerDetector
            ``self``, with ``scores_`` (higher is more suspicious), ``threshold_``, ``flags_`` (True
            where a row is flagged), ``candidates_``, ``triggers_`` and ``row_trigger_``.

        Raises
        ------
        ParameterError
            For a parameter out of range, an ``X`` that is not 2-D, labels that do not match the rows,
            or a ``predict_proba`` that is not callable.

        References
        ----------
        .. [1] Pleiter et al., "Tabdoor: Backdoor Vulnerabilities in Transformer-based Neural Networks
           for Tabular Data", 2023. https://arxiv.org/abs/2311.07550
        """
        owner = type(self).__name__
        self._check_contamination()
        A = np.asarray(X, dtype=np.float64)
        if A.ndim != 2:
            raise ParameterError(f"{owner}: X must be a 2-D numeric array, got shape {A.shape}.")
        labels = check_labels(y, len(A), owner)
        min_count, min_rows, n_candidates, n_test = check_trigger_params(self, owner)
        if not callable(predict_proba):
            raise ParameterError(f"{owner}: predict_proba must be a function of an array of rows.")
        K = int(n_classes if n_classes is not None else labels.max() + 1)
        names = list(feature_names) if feature_names is not None else \
            [f"feature {j}" for j in range(A.shape[1])]
        rng = np.random.default_rng(self.random_state)
        median = np.nanmedian(A, axis=0) if len(A) else np.zeros(A.shape[1])

        def score(rows_X: np.ndarray, rows: np.ndarray) -> np.ndarray:
            if held_out_proba is not None:
                return np.asarray(held_out_proba(rows_X, rows))
            return np.asarray(predict_proba(rows_X))

        presence, pairs = value_candidates(A, min_count)
        candidates: list[DataTrigger] = []
        self.pairs_: dict[str, tuple[int, float]] = {}
        if pairs:
            stats = token_statistics(presence, labels, K)
            # The raw share: the smoothed concentration of token_statistics reads 12 rows of one
            # class out of ten as 0.59.
            share = stats["n_best"] / np.maximum(stats["n_rows"], 1)
            ok = (stats["n_best"] >= min_count) & (share >= self.min_concentration) & (stats["lift"] > 1.0)
            pool = np.flatnonzero(ok)
            if reference_scores is not None and len(pool):
                ref = np.clip(np.asarray(reference_scores, dtype=np.float64), -1.0, 1.0)
                priority = excess_doubt(presence, labels, K, np.maximum(ref, 0.0), stats["best"])
            else:
                priority = stats["g"]
            pool = pool[np.argsort(-priority[pool], kind="stable")]
            # Values held by fewer than SMALL_GROUP rows are tested on top of the others, never
            # in their place: natural values shared by 3 or 4 rows are many, and ranked together
            # they pushed a 6-row planted pair out of the pool (breast cancer, columns 0 and 29,
            # `benchmarks/unseen_models.py`, 2026-12-04). With room for only half as many small
            # ones, wine's 4-row planted values fell out of it in two cells of seed 1.
            small = stats["n_best"][pool] < SMALL_GROUP
            pool = np.concatenate([pool[~small][: 2 * n_candidates], pool[small][: 2 * n_candidates]])
            pool = pool[np.argsort(-priority[pool], kind="stable")]
            for v in pool:
                j, value = pairs[int(v)]
                label = f"{names[j]} = {value:.6g}"
                self.pairs_[label] = (j, value)
                candidates.append(DataTrigger(
                    trigger=label, target_label=int(stats["best"][v]), n_rows=int(stats["n_rows"][v]),
                    n_target_rows=int(stats["n_best"][v]),
                    concentration=float(stats["concentration"][v]), lift=float(stats["lift"][v]),
                    g_statistic=float(stats["g"][v]), rows=presence[:, int(v)].nonzero()[0]))
        sd = np.nanstd(A, axis=0)
        Z = np.nan_to_num((A - np.nanmean(A, axis=0)) / np.where(sd > 0, sd, 1.0))
        if candidates:
            self._removal_test(A, labels, candidates, score, median, n_test, rng, Z)
            error = _class_error(A, labels, score, K, 4 * n_test, rng, Z)
            score_significance(candidates, error, held_out=held_out_proba is not None)
        candidates.sort(key=lambda c: (-c.score, -c.g_statistic))
        confirmed = confirmed_candidates(candidates, min_effect=self.min_effect,
                                         min_lift=self.min_lift, alpha=self.alpha,
                                         min_rows=min_rows, min_count=min_count)
        triggers: list[DataTrigger] = []
        for c in confirmed:
            if len(triggers) >= self.max_triggers:
                break
            if any(c.trigger in t.companions and t.target_label == c.target_label for t in triggers):
                continue  # a value of a group already reported
            triggers.append(c)
        self.candidates_ = candidates
        self.triggers_ = triggers
        scores, which = self._row_scores(A, labels, triggers, score, median)
        self.row_trigger_ = which
        self._set_threshold(scores, 1.0)
        return self

    def _edit(self, A: np.ndarray, rows: np.ndarray, labels: Sequence[str],
              median: np.ndarray) -> np.ndarray:
        out = A[rows].copy()
        for name in labels:
            j, value = self.pairs_[name]
            hit = out[:, j] == value
            out[hit, j] = median[j] if median[j] != value else np.nan_to_num(median[j]) + 1.0
        return out

    def _removal_test(self, A: np.ndarray, y: np.ndarray, candidates: list[DataTrigger],
                      score: Callable[[np.ndarray, np.ndarray], np.ndarray], median: np.ndarray,
                      n_test: int, rng: np.random.Generator, Z: np.ndarray) -> None:
        """Every candidate's test rows, before and after, scored in two batched calls. A row is
        off-label when, with the candidate's values replaced, the held-out model puts it in another
        class *and* most of its 10 nearest rows in the other columns (standardized, the
        candidate's features left out) carry another label: replacing an informative natural
        value (a stroke pixel of a digit) can move a model, not the row's neighbors. Measured on
        digits as a table: ``pixel_5_1 = 9`` (9 rows) read 62% off-label by the model alone."""
        companions = companions_of(candidates, len(A))
        tested: list[np.ndarray] = []
        edited: list[np.ndarray] = []
        for c, comp in zip(candidates, companions, strict=True):
            c.companions = comp
            rows = c.rows[y[c.rows] == c.target_label]
            if len(rows) > n_test:
                rows = np.sort(rng.choice(rows, size=n_test, replace=False))
            c.n_tested = len(rows)
            tested.append(rows)
            edited.append(self._edit(A, rows, [c.trigger, *comp], median))
        rows_all = np.concatenate(tested) if tested else np.zeros(0, dtype=np.int64)
        if not len(rows_all):
            return
        before = score(A[rows_all], rows_all)
        after = score(np.vstack(edited), rows_all)
        start = 0
        for c, rows in zip(candidates, tested, strict=True):
            b, a = before[start:start + len(rows)], after[start:start + len(rows)]
            start += len(rows)
            if not len(rows):
                continue
            k = c.target_label
            c.mean_drop = float(np.mean(b[:, k] - a[:, k]))
            c.flip_rate = float(np.mean((np.argmax(b, axis=1) == k) & (np.argmax(a, axis=1) != k)))
            cols = np.array([self.pairs_[name][0] for name in (c.trigger, *c.companions)])
            off = (np.argmax(a, axis=1) != k) & _neighbors_disagree(Z, y, rows, cols)
            c.off_label_rate = float(np.mean(off))

    def _row_scores(self, A: np.ndarray, y: np.ndarray, triggers: list[DataTrigger],
                    score: Callable[[np.ndarray, np.ndarray], np.ndarray], median: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
        n = len(A)
        scores = np.zeros(n)
        which = -np.ones(n, dtype=np.int64)
        if not triggers:
            return scores, which
        group = sorted({p for t in triggers for p in (t.trigger, *t.companions)})
        held = np.zeros((n, len(group)), dtype=bool)
        for g, name in enumerate(group):
            j, value = self.pairs_[name]
            held[:, g] = A[:, j] == value
        for ti, t in enumerate(triggers):
            j, value = self.pairs_[t.trigger]
            which[(which < 0) & (A[:, j] == value)] = ti
        rows = np.flatnonzero(which >= 0)
        if not len(rows):
            return scores, which
        before = score(A[rows], rows)
        after = score(self._edit(A, rows, group, median), rows)
        lab = y[rows]
        idx = np.arange(len(rows))
        drop = before[idx, lab] - after[idx, lab]
        targets = np.array([t.target_label for t in triggers])[which[rows]]
        planted = (lab == targets) & ((np.argmax(after, axis=1) != lab) | (held[rows].sum(axis=1) >= 2))
        scores[rows] = np.where(planted, 1.0 + 1e-6 + np.maximum(drop, 0.0), np.minimum(drop, 1.0))
        return scores, which


def _neighbors_disagree(Z: np.ndarray, y: np.ndarray, rows: np.ndarray, drop: np.ndarray,
                        n_neighbors: int = 10) -> np.ndarray:
    """Per row of ``rows``: do most of its nearest rows (Euclidean, columns ``drop`` left out, the
    row itself excluded) carry another label than it does?"""
    keep = np.ones(Z.shape[1], dtype=bool)
    keep[drop] = False
    W = Z[:, keep]
    Q = W[rows]
    d = (Q * Q).sum(axis=1)[:, None] + (W * W).sum(axis=1)[None, :] - 2.0 * Q @ W.T
    d[np.arange(len(rows)), rows] = np.inf
    k = min(n_neighbors, len(Z) - 1)
    if k < 1:
        return np.zeros(len(rows), dtype=bool)
    near = np.argpartition(d, k - 1, axis=1)[:, :k]
    return np.mean(y[near] != y[rows][:, None], axis=1) > 0.5


def _class_error(A: np.ndarray, y: np.ndarray, score: Callable[[np.ndarray, np.ndarray], np.ndarray],
                 n_classes: int, n_rows: int, rng: np.random.Generator, Z: np.ndarray) -> np.ndarray:
    """Per class, the share of up to ``n_rows`` of its rows that the held-out model puts elsewhere
    and whose nearest rows mostly carry another label (the null of the off-label rate)."""
    out = np.zeros(n_classes)
    for k in range(n_classes):
        rows = np.flatnonzero(y == k)
        if not len(rows):
            continue
        rows = np.sort(rng.choice(rows, size=min(len(rows), n_rows), replace=False))
        wrong = np.argmax(score(A[rows], rows), axis=1) != k
        out[k] = float(np.mean(wrong & _neighbors_disagree(Z, y, rows, np.zeros(0, dtype=np.int64))))
    return out
