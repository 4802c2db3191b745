"""Training-set detectors: find the rows that look planted or mislabeled.

Every detector follows one contract (see :mod:`poisonlab.detect.base`): ``fit`` on arrays, then
``scores_`` (higher = more suspicious), ``threshold_`` (from ``contamination``, a float or
``"auto"``) and ``flags_``. The math is also available as plain functions on arrays.
"""

from poisonlab.detect.base import Detector, TriggerCandidate, threshold_for_rate
from poisonlab.detect.clustering import ActivationClusteringDetector, activation_clustering_scores
from poisonlab.detect.collisions import FeatureCollisionDetector, collision_scores
from poisonlab.detect.duplicates import DuplicateConflictDetector, duplicate_conflict_scores
from poisonlab.detect.labels import (
    ConfidentLearningDetector,
    KnnLabelDetector,
    knn_label_scores,
    label_issue_scores,
    nearest_neighbors,
)
from poisonlab.detect.metrics import detection_metrics
from poisonlab.detect.representations import default_representation, model_representation
from poisonlab.detect.spectral import (
    RobustSpectralDetector,
    SpectralSignatureDetector,
    robust_spectral_scores,
    spectral_signature_scores,
)
from poisonlab.detect.triggers import DataTrigger, TriggerKeywordDetector, find_trigger_candidates
from poisonlab.detect.value_triggers import ValueTriggerDetector, value_candidates

__all__ = [
    "ActivationClusteringDetector",
    "ConfidentLearningDetector",
    "DataTrigger",
    "Detector",
    "DuplicateConflictDetector",
    "FeatureCollisionDetector",
    "KnnLabelDetector",
    "RobustSpectralDetector",
    "SpectralSignatureDetector",
    "TriggerCandidate",
    "TriggerKeywordDetector",
    "ValueTriggerDetector",
    "activation_clustering_scores",
    "collision_scores",
    "default_representation",
    "detection_metrics",
    "duplicate_conflict_scores",
    "find_trigger_candidates",
    "knn_label_scores",
    "label_issue_scores",
    "model_representation",
    "nearest_neighbors",
    "robust_spectral_scores",
    "spectral_signature_scores",
    "threshold_for_rate",
    "value_candidates",
]
