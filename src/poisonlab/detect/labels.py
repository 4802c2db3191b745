"""Label issues: confident learning on out-of-fold probabilities, and kNN label consistency.

Confident learning (Northcutt, Jiang, Chuang 2021) is cleanlab's: ``find_label_issues`` estimates how
many labels are wrong from the confident joint of given and predicted labels and flags that many;
the score is one minus cleanlab's label quality score. The probabilities must be out-of-sample
(cross-validated): a model scores its own training rows too confidently, poisoned rows included.

kNN label consistency: a row whose nearest neighbors (in input space or in what the model learned)
mostly carry another label is likely mislabeled, or, for a backdoor, carries content of another
class under the target label. Score: the neighbor share of the most common other label minus the
share of the row's own label, in [-1, 1]; above 0 a kNN vote would relabel the row.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import scipy.sparse as sp

from poisonlab.detect.base import (
    Detector,
    check_features,
    check_labels,
    check_positive_int,
    check_pred_probs,
)
from poisonlab.exceptions import ParameterError

QUALITY_METHODS = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")


# ---------------------------------------------------------------------------------- cleanlab
def label_issue_scores(pred_probs: np.ndarray, y: np.ndarray, *,
                       method: str = "self_confidence") -> np.ndarray:
    """One minus cleanlab's label quality score (higher = more likely mislabeled).

    ``method="self_confidence"``: ``1 - pred_probs[i, y_i]``.
    """
    owner = "label_issue_scores"
    labels = check_labels(y, len(np.asarray(pred_probs)), owner, name="pred_probs")
    probs = check_pred_probs(pred_probs, labels, owner)
    if method not in QUALITY_METHODS:
        raise ParameterError(
            f"The 'method' parameter of {owner} must be one of {list(QUALITY_METHODS)}. "
            f"Got {method!r} instead."
        )
    from cleanlab.rank import get_label_quality_scores

    return 1.0 - np.asarray(get_label_quality_scores(labels, probs, method=method), dtype=float)


def confident_learning_flags(pred_probs: np.ndarray, y: np.ndarray, *,
                             filter_by: str = "prune_by_noise_rate") -> np.ndarray:
    """cleanlab's ``find_label_issues`` mask (True = label issue)."""
    from cleanlab.filter import find_label_issues

    labels = np.asarray(y)
    probs = np.asarray(pred_probs, dtype=float)
    K = probs.shape[1]
    present = np.unique(labels)
    if len(present) < 2:
        return np.zeros(len(labels), dtype=bool)
    if len(present) < K:  # cleanlab wants every column to be a label that occurs
        lookup = -np.ones(K, dtype=np.int64)
        lookup[present] = np.arange(len(present))
        sub = probs[:, present]
        sub = sub / np.maximum(sub.sum(axis=1, keepdims=True), 1e-12)
        return np.asarray(find_label_issues(lookup[labels], sub, filter_by=filter_by, n_jobs=1), dtype=bool)
    # n_jobs=1: cleanlab's process pool (its default) gives the same mask, but cannot start inside a
    # daemonic process (a Dask worker) and costs more than it saves on audits of this size.
    return np.asarray(find_label_issues(labels, probs, filter_by=filter_by, n_jobs=1), dtype=bool)


class ConfidentLearningDetector(Detector):
    """Label issues by confident learning (cleanlab) on out-of-fold ``pred_probs``.

    ``fit(pred_probs, y)``. ``contamination="auto"`` flags as many rows as cleanlab's
    ``find_label_issues`` (``filter_by``) finds, the number of issues estimated from the confident
    joint, taking the highest scores (``threshold_`` sits just below the last of them).

    Attributes: ``scores_``, ``threshold_``, ``flags_``, ``predicted_``
    (``argmax(pred_probs)``: the label the model would give each row).
    """

    def __init__(self, *, method: str = "self_confidence",
                 filter_by: str = "prune_by_noise_rate",
                 contamination: float | str = "auto") -> None:
        self.method = method
        self.filter_by = filter_by
        self.contamination = contamination

    def fit(self, pred_probs: np.ndarray, y: np.ndarray) -> ConfidentLearningDetector:
        """Score every row's label against out-of-fold probabilities and flag the label issues.

        Parameters
        ----------
        pred_probs : ndarray of float, shape (N, K)
            Out-of-sample (cross-validated) class probabilities of each row; rows sum to 1.
        y : ndarray of int, shape (N,)
            The given integer labels.

        Returns
        -------
        ConfidentLearningDetector
            ``self``, with ``scores_`` (one minus cleanlab's label quality: higher is more suspicious),
            ``threshold_``, ``flags_`` (True where a label looks wrong), ``predicted_`` and, with
            ``contamination="auto"``, ``n_issues_`` (how many issues cleanlab estimates).

        Raises
        ------
        ParameterError
            For ``contamination``, ``method`` or ``filter_by`` out of range, or ``pred_probs`` that are
            not N×K probabilities matching ``y``.

        References
        ----------
        .. [1] Northcutt, Jiang and Chuang, "Confident Learning: Estimating Uncertainty in Dataset
           Labels", JAIR 70, 2021. https://arxiv.org/abs/1911.00068
        """
        self._check_contamination()
        filters = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning",
                   "predicted_neq_given")
        if self.filter_by not in filters:
            raise ParameterError(
                f"The 'filter_by' parameter of {type(self).__name__} must be one of "
                f"{list(filters)}. Got {self.filter_by!r} instead."
            )
        scores = label_issue_scores(pred_probs, y, method=self.method)
        auto = float("inf")
        if isinstance(self.contamination, str):
            issues = confident_learning_flags(pred_probs, y, filter_by=self.filter_by)
            n_issues = int(issues.sum())
            if n_issues:
                auto = float(np.sort(scores)[::-1][n_issues - 1]) - 1e-12
            else:
                auto = float(scores.max(initial=0.0)) + 1.0
            self.n_issues_ = n_issues
        self._set_threshold(scores, auto)
        self.predicted_ = np.argmax(np.asarray(pred_probs), axis=1)
        return self


# ---------------------------------------------------------------------------------- kNN
def nearest_neighbors(features: np.ndarray | sp.spmatrix | sp.sparray, n_neighbors: int, *,
                      max_reference: int | None = 20000,
                      random_state: int | np.random.Generator | None = 0,
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Indices and cosine similarities of each row's ``n_neighbors`` nearest other rows.

    Rows are L2-normalized and compared by dot product (dense or sparse). With more rows than
    ``max_reference``, neighbors are searched among a random ``max_reference`` of them (a row is
    never its own neighbor), which keeps the cost linear in N.
    """
    X = check_features(features, "nearest_neighbors", allow_sparse=True)
    k = check_positive_int(n_neighbors, "n_neighbors", "nearest_neighbors")
    return neighbor_search(X, k, max_reference, np.random.default_rng(random_state))


def neighbor_search(X: np.ndarray | sp.csr_matrix, k: int, max_reference: int | None,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """:func:`nearest_neighbors` on features already checked (no validation, no copy)."""
    n = X.shape[0]
    if sp.issparse(X):
        norms = np.sqrt(np.asarray(cast("sp.csr_matrix", X).multiply(X).sum(axis=1)).ravel())  # scipy untyped
        Xn = sp.diags(1.0 / np.maximum(norms, 1e-12)) @ X
    else:
        norms = np.linalg.norm(X, axis=1)
        Xn = X / np.maximum(norms, 1e-12)[:, None]
    ref = np.arange(n)
    if max_reference is not None and n > max_reference:
        ref = np.sort(rng.choice(n, size=max_reference, replace=False))
    R = Xn[ref]
    k = min(k, len(ref) - 1)
    if k <= 0:
        return np.zeros((n, 0), dtype=np.int64), np.zeros((n, 0))
    idx = np.zeros((n, k), dtype=np.int64)
    sim = np.zeros((n, k))
    is_ref = np.full(n, -1, dtype=np.int64)
    is_ref[ref] = np.arange(len(ref))
    step = max(1, int(2e7 // max(len(ref), 1)))
    for start in range(0, n, step):
        block = Xn[start:start + step]
        S = block @ R.T
        S = S.toarray() if sp.issparse(S) else np.asarray(S)
        own = is_ref[start:start + step]
        has = own >= 0
        S[np.flatnonzero(has), own[has]] = -np.inf  # never your own neighbor
        part = np.argpartition(-S, k, axis=1)[:, :k] if S.shape[1] > k else \
            np.tile(np.arange(S.shape[1]), (len(S), 1))
        vals = np.take_along_axis(S, part, axis=1)
        order = np.argsort(-vals, axis=1, kind="stable")
        idx[start:start + step] = ref[np.take_along_axis(part, order, axis=1)]
        sim[start:start + step] = np.take_along_axis(vals, order, axis=1)
    return idx, sim


def knn_label_scores(features: np.ndarray | sp.spmatrix | sp.sparray, y: np.ndarray, *, n_neighbors: int = 10,
                     neighbors: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Share of the most common other label among a row's neighbors minus its own label's share.

    ``neighbors``: precomputed ``(indices, similarities)`` from :func:`nearest_neighbors`.
    """
    owner = "knn_label_scores"
    n_rows = features.shape[0] if hasattr(features, "shape") else len(features)
    labels = check_labels(y, n_rows, owner)
    if neighbors is None:
        neighbors = nearest_neighbors(features, n_neighbors)
    idx = neighbors[0][:, :n_neighbors]
    return _knn_label_scores(idx, labels)


def neighbor_majority(idx: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Per row, the most common label among its neighbors ``idx`` (N x k row indices; ties go to
    the lower label, and a row with no neighbors gets label 0)."""
    counts = np.zeros((len(y), n_classes))
    if idx.shape[1]:
        np.add.at(counts, (np.repeat(np.arange(len(y)), idx.shape[1]), y[idx].ravel()), 1.0)
    return np.argmax(counts, axis=1)


def _knn_label_scores(idx: np.ndarray, y: np.ndarray) -> np.ndarray:
    n, k = idx.shape
    if k == 0:
        return np.zeros(n)
    K = int(y.max()) + 1
    neighbor_labels = y[idx]
    counts = np.zeros((n, K))
    np.add.at(counts, (np.repeat(np.arange(n), k), neighbor_labels.ravel()), 1.0)
    own = counts[np.arange(n), y]
    counts[np.arange(n), y] = -1.0
    return (counts.max(axis=1) - own) / k


class KnnLabelDetector(Detector):
    """kNN label consistency with the detector contract.

    ``fit(features, y)``: cosine neighbors in ``features`` (dense or sparse).
    ``contamination="auto"`` flags rows whose neighbors vote for another label by a margin of more
    than ``min_margin`` (0: a plain kNN vote would relabel the row).

    Attributes: ``scores_``, ``threshold_``, ``flags_``, ``neighbor_label_``
    (the most common label among each row's neighbors).
    """

    def __init__(self, *, n_neighbors: int = 10, min_margin: float = 0.0,
                 max_reference: int | None = 20000, contamination: float | str = "auto",
                 random_state: int | np.random.Generator | None = 0) -> None:
        self.n_neighbors = n_neighbors
        self.min_margin = min_margin
        self.max_reference = max_reference
        self.contamination = contamination
        self.random_state = random_state

    def fit(self, features: np.ndarray | sp.spmatrix | sp.sparray, y: np.ndarray,
            neighbors: tuple[np.ndarray, np.ndarray] | None = None) -> KnnLabelDetector:
        """Score every row by how strongly its nearest neighbors vote for another label.

        Parameters
        ----------
        features : ndarray or sparse matrix, shape (N, D)
            The rows as vectors compared by cosine similarity (inputs, or what the model learned).
        y : ndarray of int, shape (N,)
            Integer labels.
        neighbors : (ndarray, ndarray), optional
            Precomputed ``(indices, similarities)`` from :func:`nearest_neighbors`, at least
            ``n_neighbors`` per row.

        Returns
        -------
        KnnLabelDetector
            ``self``, with ``scores_`` (in [-1, 1], higher is more suspicious), ``threshold_``,
            ``flags_`` (True where a row is flagged) and ``neighbor_label_``.

        Raises
        ------
        ParameterError
            For ``contamination`` or ``n_neighbors`` out of range, non-finite features, or
            ``features`` and ``y`` of different lengths.

        References
        ----------
        .. [1] Peri et al., "Deep k-NN Defense against Clean-label Data Poisoning Attacks", ECCV
           Workshops 2020. https://arxiv.org/abs/1909.13374
        """
        owner = type(self).__name__
        self._check_contamination()
        k = check_positive_int(self.n_neighbors, "n_neighbors", owner)
        X = check_features(features, owner, allow_sparse=True)
        labels = check_labels(y, X.shape[0], owner)
        if neighbors is None:
            neighbors = neighbor_search(X, k, self.max_reference,
                                           np.random.default_rng(self.random_state))
        idx = neighbors[0][:, :k]
        scores = _knn_label_scores(idx, labels)
        K = int(labels.max()) + 1 if len(labels) else 1
        self.neighbor_label_ = neighbor_majority(idx, labels, K)
        self._set_threshold(scores, float(self.min_margin))
        return self
