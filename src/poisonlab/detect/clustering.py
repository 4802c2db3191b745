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
from sklearn.metrics import silhouette_score

from poisonlab.detect.base import Detector, check_features, check_labels, check_positive_int
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
    from poisonlab.detect.spectral import one_blas_thread

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
        Z = X[rows] - X[rows].mean(axis=0)
        dims = min(n_dims, Z.shape[1], len(rows) - 1)
        seed = int(rng.integers(2**31 - 1))
        if reduce == "ica":
            Zr = FastICA(n_components=dims, random_state=seed, max_iter=500,
                         whiten="unit-variance", tol=1e-3).fit_transform(Z)
        else:
            _, vecs = np.linalg.eigh(Z.T @ Z)
            Zr = Z @ vecs[:, ::-1][:, :dims]
        centers, assign = _two_means(Zr, np.random.default_rng(seed))
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
        q = float(silhouette_score(Zr, assign, sample_size=sample if sample < len(rows) else None,
                                   random_state=seed))
        scores[rows] = max(q, 0.0) * (1 + m) / 2
        inside[rows] = assign == sus
        rel[k] = sizes[sus] / len(rows)
        sil[k] = q
    return ClusteringResult(scores, inside, rel, sil)


def _two_means(Z: np.ndarray, rng: np.random.Generator, n_init: int = 3,
               max_iter: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Seeded k-means with k=2 (k-means++ starts, Lloyd iterations); the best of ``n_init``."""
    n = len(Z)
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for _ in range(n_init):
        first = Z[int(rng.integers(n))]
        d = np.sum((Z - first) ** 2, axis=1)
        second = Z[int(rng.choice(n, p=d / d.sum()))] if d.sum() > 0 else Z[int(rng.integers(n))]
        centers = np.stack([first, second])
        assign = np.zeros(n, dtype=np.int64)
        for it in range(max_iter):
            dist = ((Z[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
            new = np.argmin(dist, axis=1)
            if it and np.array_equal(new, assign):
                break
            assign = new
            for c in (0, 1):
                if np.any(assign == c):
                    centers[c] = Z[assign == c].mean(axis=0)
        inertia = float(dist[np.arange(n), assign].sum())
        if best is None or inertia < best[0]:
            best = (inertia, centers.copy(), assign.copy())
    assert best is not None
    return best[1], best[2]


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
