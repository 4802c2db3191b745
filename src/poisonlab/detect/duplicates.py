"""Near-duplicate rows with conflicting labels.

Two rows whose features are nearly the same (cosine similarity at least ``min_similarity``) but
whose labels differ cannot both be right. Rows are grouped by near-duplicate links (connected
components); within a group, the rows whose label is not the group's most common label are the
suspects. On a tie, with ``label_probs`` (each row's out-of-fold probability of its own label),
the suspects are the rows of the tied label that a model that never saw them believes least (a
planted copy of a spam email relabeled ham, beside the original); without it, every row of the
group is. Measured on SpamAssassin with OpenBackdoor's rare words in 5% of ham (dev cell
``spam/ob-badnets/0.05/tfidf-lr/s0`` of ``benchmarks/generalization.py``): 16 rows flagged, 9
planted, before the tie-break.

Features too coarse to tell a copy from a neighbor: when the median row's nearest neighbor that
is not a copy of it is itself at ``min_similarity`` or closer, only exact duplicates (similarity
1) link rows. Measured 2026-12-04 on the standardized columns the audit compares: iris (4
columns) has its median nearest neighbor at cosine 0.994 and 87% of its rows within 0.98 of
another, so 31 rows had a "near-duplicate" of another species and the audit flagged 11 clean rows
as duplicates; wine, breast cancer and digits have their median nearest neighbor at 0.875-0.90,
SpamAssassin's TF-IDF at 0.58 (its mailing-list copies are the 10.6% above 0.98), so nothing
changes there.

Score: the highest similarity to a near-duplicate that carries another label; rows that hold their
group's majority label get 1 subtracted, so that ``score > min_similarity`` flags exactly the
minority side of conflicting groups.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from poisonlab.detect.base import Detector, check_features, check_labels, check_positive_int
from poisonlab.detect.labels import neighbor_search
from poisonlab.exceptions import ParameterError


def duplicate_conflict_scores(
    features: np.ndarray | sp.spmatrix | sp.sparray,
    y: np.ndarray,
    *,
    min_similarity: float = 0.98,
    n_neighbors: int = 5,
    neighbors: tuple[np.ndarray, np.ndarray] | None = None,
    label_probs: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Scores (see the module docstring) and the near-duplicate group of each row (-1: none)."""
    scores, groups, _ = _conflicts(features, y, min_similarity, n_neighbors, neighbors, label_probs)
    return scores, groups


def _conflicts(features: np.ndarray | sp.spmatrix | sp.sparray, y: np.ndarray, min_similarity: float,
               n_neighbors: int, neighbors: tuple[np.ndarray, np.ndarray] | None,
               label_probs: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, float]:
    """Scores, groups and the similarity that linked rows."""
    owner = "duplicate_conflict_scores"
    X = check_features(features, owner, allow_sparse=True)
    labels = check_labels(y, X.shape[0], owner)
    if not isinstance(min_similarity, (int, float)) or not 0 < min_similarity <= 1:
        raise ParameterError(
            f"The 'min_similarity' parameter of {owner} must be a float in (0, 1]. "
            f"Got {min_similarity!r} instead."
        )
    k = check_positive_int(n_neighbors, "n_neighbors", owner)
    if neighbors is None:
        neighbors = neighbor_search(X, k, None, np.random.default_rng(0))
    probs = None if label_probs is None else np.asarray(label_probs, dtype=np.float64)
    if probs is not None and probs.shape != (len(labels),):
        raise ParameterError(f"{owner}: label_probs must hold one probability per row; got shape "
                             f"{probs.shape} for {len(labels)} rows.")
    sim = neighbors[1][:, :k]
    linked_at = effective_similarity(sim, float(min_similarity))
    scores, groups = _duplicate_conflict_scores(neighbors[0][:, :k], sim, labels, linked_at, probs)
    return scores, groups, linked_at


def effective_similarity(sim: np.ndarray, min_similarity: float) -> float:
    """``min_similarity``, or 1 (exact duplicates only) when the median row's nearest neighbor that
    is not a copy of it (similarity under 1 - 1e-6) is at least that similar (see the module
    docstring). ``sim``: each row's neighbors' similarities, nearest first.

    >>> effective_similarity(np.array([[0.99, 0.9], [0.995, 0.9], [0.5, 0.4]]), 0.98)
    1.0
    >>> effective_similarity(np.array([[1.0, 0.5], [1.0, 0.5], [1.0, 0.4]]), 0.98)
    0.98
    """
    if sim.size == 0:
        return min_similarity
    distinct = np.where(sim < 1.0 - 1e-6, sim, -np.inf).max(axis=1)
    if float(np.median(np.maximum(distinct, 0.0))) < min_similarity:
        return min_similarity
    return 1.0


def _duplicate_conflict_scores(idx: np.ndarray, sim: np.ndarray, y: np.ndarray,
                               min_similarity: float, label_probs: np.ndarray | None = None
                               ) -> tuple[np.ndarray, np.ndarray]:
    n = len(y)
    scores = np.zeros(n)
    group = -np.ones(n, dtype=np.int64)
    if idx.size == 0:
        return scores, group
    # Allow for floating-point rounding of identical rows (similarity 0.9999999).
    close = sim >= min_similarity - 1e-9
    rows = np.repeat(np.arange(n), idx.shape[1])[close.ravel()]
    cols = idx.ravel()[close.ravel()]
    if len(rows) == 0:
        return scores, group
    graph = sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n)).tocsr()
    _, comp = connected_components(graph, directed=False)
    sizes = np.bincount(comp)
    linked = sizes[comp] > 1
    conflict_sim = np.where(close & (y[idx] != y[:, None]), sim, 0.0)
    best = conflict_sim.max(axis=1)
    # Symmetrize: a row is in conflict if any close neighbor (either direction) differs.
    for r, c, s in zip(rows, cols, sim.ravel()[close.ravel()], strict=True):
        if y[r] != y[c] and s > best[c]:
            best[c] = s
    K = int(y.max()) + 1
    for g in np.unique(comp[linked]):
        members = np.flatnonzero(comp == g)
        counts = np.bincount(y[members], minlength=K)
        if np.count_nonzero(counts) < 2:
            continue
        top = counts.max()
        majority = np.flatnonzero(counts == top)
        if len(majority) > 1 and label_probs is not None:
            # A tie: the tied label whose rows the held-out model believes most is kept.
            belief = [float(np.mean(label_probs[members[y[members] == k]])) for k in majority]
            majority = majority[[int(np.argmax(belief))]]
        for m in members:
            group[m] = g
            is_majority = len(majority) == 1 and y[m] == majority[0]
            scores[m] = best[m] - (1.0 if is_majority else 0.0)
    return scores, group


class DuplicateConflictDetector(Detector):
    """Near-duplicate rows with conflicting labels, with the detector contract.

    ``fit(features, y)`` (for text, pass TF-IDF vectors; for images, pixels).
    ``contamination="auto"`` flags rows in a conflicting near-duplicate group whose label is not
    the group's majority (on a tie broken by ``label_probs`` when given) (``threshold_ = min_similarity`` minus a hair).

    Attributes: ``scores_``, ``threshold_``, ``flags_``, ``groups_`` (-1 outside any conflict),
    ``min_similarity_`` (the similarity that linked rows: ``min_similarity``, or 1 where the
    features are too coarse, see the module docstring).
    """

    def __init__(self, *, min_similarity: float = 0.98, n_neighbors: int = 5,
                 contamination: float | str = "auto") -> None:
        self.min_similarity = min_similarity
        self.n_neighbors = n_neighbors
        self.contamination = contamination

    def fit(self, features: np.ndarray | sp.spmatrix | sp.sparray, y: np.ndarray,
            neighbors: tuple[np.ndarray, np.ndarray] | None = None,
            label_probs: np.ndarray | None = None) -> DuplicateConflictDetector:
        """Link near-duplicate rows and score the rows that disagree with their group's label.

        Parameters
        ----------
        features : ndarray or sparse matrix, shape (N, D)
            The rows as vectors compared by cosine similarity (TF-IDF for text, pixels for images).
        y : ndarray of int, shape (N,)
            Integer labels.
        neighbors : (ndarray, ndarray), optional
            Precomputed ``(indices, similarities)`` of each row's nearest rows, as
            :func:`~poisonlab.detect.labels.nearest_neighbors` returns them.
        label_probs : ndarray of float, shape (N,), optional
            Each row's out-of-fold probability of its own label; breaks ties between labels of a group.

        Returns
        -------
        DuplicateConflictDetector
            ``self``, with ``scores_`` (higher is more suspicious), ``threshold_``, ``flags_`` (True
            where a row is flagged) and ``groups_`` (-1 outside any conflict).

        Raises
        ------
        ParameterError
            For ``contamination``, ``min_similarity`` or ``n_neighbors`` out of range, non-finite
            features, or ``features`` and ``y`` of different lengths.
        """
        self._check_contamination()
        scores, groups, self.min_similarity_ = _conflicts(
            features, y, self.min_similarity, self.n_neighbors, neighbors, label_probs)
        self.groups_ = groups
        self._set_threshold(scores, float(self.min_similarity) - 1e-6)
        return self
