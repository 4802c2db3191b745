"""Feature collisions: rows that a network cannot tell apart although their inputs differ.

Feature-collision poisons (Shafahi et al. 2018; :class:`~poisonlab.attacks.FeatureCollisionAttack`)
are made from different base images and all steered onto one point of a feature extractor's
space, the target instance's. Natural rows keep the geometry of their inputs: two images the
network maps close together are, as a rule, close in pixels too. So for each row the score
compares its nearest neighbor of the same class in feature space with that neighbor's distance
in input space, each relative to the class's median nearest-neighbor distance in that space:

    score = (d_input / median d_input) / (d_feature / median d_feature)

A row whose feature-space neighbor is an ordinary distance away in pixels but far closer than
usual in features scores high; an exact copy (close in both) scores low. A lone poison has no
partner to collide with: this detector needs at least two poisons aimed at one target (a label
check on the feature space, such as the kNN-label detector, sees a lone one among the target's
class).

Measured 2026-12-07 (``benchmarks/feature_collision.py``, section 5, the attacker's extractor
being the features the victim trains its last layer on): on clean digits the highest score was
2.09; every poison of 5 or 20 aimed at one target scored 6.5 or more. ``threshold="auto"`` is 4.0,
read off those digits cells. Held out: no clean MNIST-5k row flagged, 497 of 500 of poisonlab's
poisons on MNIST-5k found, and 63 and 77 of 100 of ART's (which collide less tightly) on digits
and MNIST-5k, with no false flag. On the penultimate layer of a CNN trained on the poisoned data
itself (the default audit's model), the collapse is weaker (poisons' median score 3-4, clean rows
up to 2.2-2.9 on digits), which is why the default audit does not run this detector.

References
----------
.. [1] Shafahi et al., "Poison Frogs! Targeted Clean-Label Poisoning Attacks on Neural Networks",
   NeurIPS 2018. https://arxiv.org/abs/1804.00792
.. [2] Peri et al., "Deep k-NN Defense against Clean-label Data Poisoning Attacks", ECCV
   Workshops 2020. https://arxiv.org/abs/1909.13374 (a kNN label vote in the feature space;
   it needs more neighbors than poisons, since poisons aimed at one target neighbor each other)
"""

from __future__ import annotations

import numbers

import numpy as np

from poisonlab.detect.base import Detector, check_features, check_labels
from poisonlab.exceptions import ParameterError

AUTO_THRESHOLD = 4.0


def collision_scores(features: np.ndarray, inputs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each row's collision score (see the module docstring): ``features`` N×F (a network's
    representation), ``inputs`` the rows as the network read them (N×..., flattened here), ``y``
    integer labels. Rows of a class with fewer than 3 rows score 0."""
    from sklearn.neighbors import NearestNeighbors

    owner = "collision_scores"
    F = check_features(features, owner)
    labels = check_labels(y, F.shape[0], owner)
    X = np.asarray(inputs, dtype=np.float64).reshape(len(inputs), -1)
    if len(X) != len(F):
        raise ParameterError(f"{owner}: features have {len(F)} rows but inputs have {len(X)}.")
    if not np.isfinite(X).all():
        raise ParameterError(f"{owner}: inputs hold NaN or infinite values.")
    scores = np.zeros(len(F))
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        if len(rows) < 3:
            continue
        dist, nearest = NearestNeighbors(n_neighbors=2).fit(F[rows]).kneighbors(F[rows])
        other = (nearest[:, 0] == np.arange(len(rows))).astype(int)  # ties can list a copy before self
        pick = np.arange(len(rows))
        d_feature = dist[pick, other]
        d_input = np.linalg.norm(X[rows] - X[rows[nearest[pick, other]]], axis=1)
        scale_f, scale_x = float(np.median(d_feature)), float(np.median(d_input))
        if scale_f <= 0 or scale_x <= 0:  # most rows are copies of another: nothing to compare with
            continue
        scores[rows] = (d_input / scale_x) / np.maximum(d_feature / scale_f, 1e-9)
    return scores


class FeatureCollisionDetector(Detector):
    """Rows whose feature-space neighbor is far closer than their inputs are (feature collision).

    ``fit(features, y, inputs)``: ``features`` from the network the victim trains on (for transfer
    learning, the frozen extractor's output, ``extractor.features(X)``), ``inputs`` the images.
    ``threshold="auto"`` flags scores above 4.0 (module docstring); a float sets the threshold;
    ``contamination`` (a float) flags that share of rows instead.

    Attributes: ``scores_``, ``threshold_``, ``flags_``.
    """

    def __init__(self, *, threshold: float | str = "auto", contamination: float | str = "auto") -> None:
        self.threshold = threshold
        self.contamination = contamination

    def fit(self, features: np.ndarray, y: np.ndarray, inputs: np.ndarray) -> FeatureCollisionDetector:
        """Score every row and flag those above the threshold.

        Parameters
        ----------
        features : ndarray, shape (N, F)
            The network's representation of each row.
        y : ndarray of int, shape (N,)
            Integer labels.
        inputs : ndarray, shape (N, ...)
            The rows themselves (images), compared by Euclidean distance.

        Returns
        -------
        FeatureCollisionDetector
            ``self``, with ``scores_``, ``threshold_`` and ``flags_``.

        Raises
        ------
        ParameterError
            For a bad ``threshold`` or ``contamination``, non-finite values, or lengths that differ.
        """
        self._check_contamination()
        t = self.threshold
        if not (t == "auto" or (isinstance(t, numbers.Real) and not isinstance(t, bool)
                                and np.isfinite(float(t)) and float(t) > 0)):
            raise ParameterError(f"The 'threshold' parameter of {type(self).__name__} must be 'auto' or a "
                                 f"positive float. Got {t!r} instead.")
        scores = collision_scores(features, inputs, y)
        self._set_threshold(scores, AUTO_THRESHOLD if t == "auto" else float(t))
        return self
