"""Activation clustering (Chen et al. 2018).

Within each class, reduce the representations to a few dimensions and split them into two clusters
with k-means. A backdoor makes the poisoned rows of the target class a cluster of their own (they
activate the network for a different reason than the clean rows of that class): the cluster that is
small (the paper's relative-size analysis, at most 35% of the class) or well separated (a high
silhouette score) is suspicious.

Row score: for a row of class ``k``, ``q_k * (1 + m_i) / 2`` where ``q_k`` is the class's
silhouette score (clipped at 0; how real the two-cluster split is) and ``m_i`` in [-1, 1] is how much
closer the row lies to the suspicious cluster's center than to the other's:
``m_i = (d_other - d_suspicious) / max(d_other, d_suspicious)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import FastICA

from poisonlab.detect.base import Detector, check_features, check_labels, check_positive_int
from poisonlab.detect.spectral import one_blas_thread, top_eigenpairs
from poisonlab.exceptions import ParameterError

REDUCTIONS = ("pca", "ica")


@dataclass(frozen=True)
class ClusteringResult:
    """Per row: ``scores``, ``in_suspicious`` (the row sits in its class's suspicious cluster).
    Per class (indexed by label): ``relative_size`` of the suspicious cluster, ``silhouette`` of the
    two-cluster split (NaN where a class has too few rows)."""

    scores: np.ndarray
    in_suspicious: np.ndarray
    relative_size: np.ndarray
    silhouette: np.ndarray


def activation_clustering_scores(
    features: np.ndarray,
    y: np.ndarray,
    *,
    n_dims: int = 10,
    reduce: str = "pca",
    reference_scores: np.ndarray | None = None,
    random_state: int | np.random.Generator | None = 0,
) -> ClusteringResult:
    """Per-class 2-means on reduced representations; see the module docstring for the score.

    The suspicious cluster of a class is the smaller one; when both hold more than 35% of the class
    and ``reference_scores`` are given (higher when a row looks like another class), it is the one
    whose rows have the higher mean reference score, a cheap stand-in for the paper's exclusionary
    reclassification.
    """
    owner = "activation_clustering_scores"
    X = check_features(features, owner)
    labels = check_labels(y, len(X), owner)
    d = check_positive_int(n_dims, "n_dims", owner)
    if reduce not in REDUCTIONS:
        raise ParameterError(
            f"The 'reduce' parameter of {owner} must be one of {list(REDUCTIONS)}. "
            f"Got {reduce!r} instead."
        )
    ref = None if reference_scores is None else np.asarray(reference_scores, dtype=np.float64)
    if ref is not None and ref.shape != (len(X),):
        raise ParameterError(
            f"{owner}: features has {len(X)} rows but reference_scores has shape {ref.shape}."
        )
    rng = np.random.default_rng(random_state)
    with one_blas_thread():
        return _activation_clustering_scores(X, labels, d, reduce, ref, rng)


def _activation_clustering_scores(X: np.ndarray, y: np.ndarray, n_dims: int, reduce: str,
                                  ref: np.ndarray | None, rng: np.random.Generator,
                                  minority_share: float = 0.35) -> ClusteringResult:
    n = len(X)
    K = int(y.max()) + 1 if n else 0
    scores = np.zeros(n)
    inside = np.zeros(n, dtype=bool)
    rel = np.full(K, np.nan)
    sil = np.full(K, np.nan)
    for k in range(K):
        rows = np.flatnonzero(y == k)
        if len(rows) < 4:
            continue
        Z = X[rows]
        Z = Z - Z.mean(axis=0)
        dims = min(n_dims, Z.shape[1], len(rows) - 1)
        seed = int(rng.integers(2**31 - 1))
        if reduce == "ica":
            Zr = FastICA(n_components=dims, random_state=seed, max_iter=500,
                         whiten="unit-variance", tol=1e-3).fit_transform(Z)
            Zr = Zr - Zr.mean(axis=0)
            axis = top_eigenpairs(Zr.T @ Zr, 1)[1][:, 0]
        else:
            _, vecs = top_eigenpairs(Z.T @ Z, dims)
            Zr = Z @ vecs[:, ::-1]
            axis = np.eye(dims)[0]
        centers, assign = _two_means(Zr, axis)
        sizes = np.bincount(assign, minlength=2)
        if sizes.min() == 0:
            continue
        sus = int(np.argmin(sizes))
        if ref is not None and sizes.min() > minority_share * len(rows):
            means = [float(ref[rows][assign == c].mean()) for c in (0, 1)]
            if abs(means[0] - means[1]) > 1e-12:
                sus = int(np.argmax(means))
        d_sus = np.linalg.norm(Zr - centers[sus], axis=1)
        d_oth = np.linalg.norm(Zr - centers[1 - sus], axis=1)
        m = (d_oth - d_sus) / np.maximum(np.maximum(d_oth, d_sus), 1e-12)
        sample = min(len(rows), 1000)
        q = _silhouette(Zr, assign, sample if sample < len(rows) else None, seed)
        scores[rows] = max(q, 0.0) * (1 + m) / 2
        inside[rows] = assign == sus
        rel[k] = sizes[sus] / len(rows)
        sil[k] = q
    return ClusteringResult(scores, inside, rel, sil)


def _two_means(Z: np.ndarray, axis: np.ndarray, max_iter: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """k-means with k=2 (Lloyd iterations) started from the split of centered ``Z`` along ``axis``.

    With ``axis`` the top principal direction, the start is the continuous solution of 2-means
    (Ding and He 2004): one run replaces the best of several random starts and converges in a few
    iterations. With two centers the nearer one is a half-space test, so each iteration is one
    matrix-vector product: row ``z`` goes to center 1 when
    ``z . (c1 - c0) > (|c1|^2 - |c0|^2) / 2``.
    """
    n = len(Z)
    total = Z.sum(axis=0)
    p = Z @ axis
    assign = p > 0
    if not assign.any() or assign.all():  # a degenerate direction: split at the median
        assign = p > np.median(p)
    c0 = c1 = total / max(n, 1)
    for _ in range(max_iter):
        n1 = int(np.count_nonzero(assign))
        s1 = assign.astype(np.float64) @ Z
        if n1:
            c1 = s1 / n1
        if n1 < n:
            c0 = (total - s1) / (n - n1)
        new = Z @ (c1 - c0) > (c1 @ c1 - c0 @ c0) / 2
        if np.array_equal(new, assign):
            break
        assign = new
    return np.stack([c0, c1]), assign.astype(np.int64)


def _silhouette(Z: np.ndarray, assign: np.ndarray, sample_size: int | None, seed: int) -> float:
    """Mean silhouette of a two-cluster split (scikit-learn's ``silhouette_score``, same sample).

    With ``sample_size``, the same rows as scikit-learn's
    (``RandomState(seed).permutation(n)[:sample_size]``) are scored. Distances are computed in
    single precision (the pass over the n x n matrix is the cost; the mean moves by about 1e-8).
    """
    if sample_size is not None:
        idx = np.random.RandomState(seed).permutation(len(Z))[:sample_size]
        Z, assign = Z[idx], assign[idx]
    Z = Z.astype(np.float32)
    sq = np.einsum("ij,ij->i", Z, Z)
    D = Z @ Z.T                          # squared distances, in place: |a|^2 + |b|^2 - 2 a.b
    D *= -2.0
    D += sq[:, None]
    D += sq[None, :]
    np.maximum(D, 0.0, out=D)
    np.sqrt(D, out=D)
    np.fill_diagonal(D, 0.0)
    ones = assign.astype(np.float32)
    both = (D @ np.stack([ones, 1.0 - ones], axis=1)).astype(np.float64)
    to1, to0 = both[:, 0], both[:, 1]    # summed distance to cluster-1 and cluster-0 rows
    n1 = float(assign.sum())
    n0 = len(Z) - n1
    own_sum = np.where(assign == 1, to1, to0)
    own_n = np.where(assign == 1, n1, n0) - 1
    other = np.where(assign == 1, to0 / max(n0, 1), to1 / max(n1, 1))
    a = np.where(own_n > 0, own_sum / np.maximum(own_n, 1), 0.0)
    s = np.where(own_n > 0, (other - a) / np.maximum(np.maximum(a, other), 1e-300), 0.0)
    return float(s.mean())


class ActivationClusteringDetector(Detector):
    """Activation clustering (Chen et al. 2018) with the detector contract.

    ``fit(features, y, reference_scores=None)``. ``contamination="auto"`` flags the suspicious
    cluster of each class whose split is real: silhouette at least ``min_silhouette`` and at least
    ``min_silhouette_ratio`` times the median silhouette of the other classes (natural sub-styles
    give every class some silhouette; a planted cluster stands out), and, without reference scores,
    relative size at most ``max_size`` (the paper's 35%). ``threshold_`` is then the lowest score
    among those rows (minus a hair).

    Attributes: ``scores_``, ``threshold_``, ``flags_``, ``result_`` (a :class:`ClusteringResult`),
    ``significant_`` (per class).
    """

    def __init__(self, *, n_dims: int = 10, reduce: str = "pca", max_size: float = 0.35,
                 min_silhouette: float = 0.15, min_silhouette_ratio: float = 1.5,
                 contamination: float | str = "auto",
                 random_state: int | np.random.Generator | None = 0) -> None:
        self.n_dims = n_dims
        self.reduce = reduce
        self.max_size = max_size
        self.min_silhouette = min_silhouette
        self.min_silhouette_ratio = min_silhouette_ratio
        self.contamination = contamination
        self.random_state = random_state

    def fit(self, features: np.ndarray, y: np.ndarray,
            reference_scores: np.ndarray | None = None) -> ActivationClusteringDetector:
        """Cluster each class's representations in two and score every row.

        Parameters
        ----------
        features : ndarray, shape (N, D)
            What the model learned about each training row (penultimate activations of a network,
            per-feature contributions of a linear model).
        y : ndarray of int, shape (N,)
            Integer labels.
        reference_scores : ndarray of float, shape (N,), optional
            Per-row scores, higher when a row looks like another class (kNN label disagreement); they
            pick the suspicious cluster of a class split into two large halves, and the relative-size
            rule is then not applied.

        Returns
        -------
        ActivationClusteringDetector
            ``self``, with ``scores_`` (higher is more suspicious), ``threshold_``, ``flags_`` (True
            where a row is flagged), ``result_`` and ``significant_``.

        Raises
        ------
        ParameterError
            For ``contamination``, ``max_size``, ``n_dims`` or ``reduce`` out of range, non-finite
            features, or ``features`` and ``y`` of different lengths.

        References
        ----------
        .. [1] Chen et al., "Detecting Backdoor Attacks on Deep Neural Networks by Activation
           Clustering", 2018. https://arxiv.org/abs/1811.03728
        """
        owner = type(self).__name__
        self._check_contamination()
        if not isinstance(self.max_size, (int, float)) or not 0 < self.max_size <= 0.5:
            raise ParameterError(
                f"The 'max_size' parameter of {owner} must be a float in (0, 0.5]. "
                f"Got {self.max_size!r} instead."
            )
        result = activation_clustering_scores(
            features, y, n_dims=self.n_dims, reduce=self.reduce,
            reference_scores=reference_scores, random_state=self.random_state,
        )
        self.result_ = result
        labels = np.asarray(y)
        sil = result.silhouette
        ok = np.nan_to_num(sil, nan=-1.0) >= self.min_silhouette
        for k in range(len(sil)):
            others = np.delete(sil, k)
            others = others[~np.isnan(others)]
            if len(others) and ok[k]:
                ok[k] = sil[k] >= self.min_silhouette_ratio * max(float(np.median(others)), 1e-9)
        if reference_scores is None:
            ok &= np.nan_to_num(result.relative_size, nan=1.0) <= self.max_size
        self.significant_ = ok
        candidate = result.in_suspicious & ok[labels]
        auto = float(result.scores[candidate].min()) - 1e-9 if candidate.any() else \
            float(result.scores.max(initial=0.0)) + 1.0
        self._set_threshold(result.scores, auto)
        return self
