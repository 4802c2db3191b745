"""Checking live inputs for triggers: STRIP for images, the leave-out test for text and tables.

``StripDetector(...).fit(model.predict_proba, X_clean)`` calibrates a threshold on clean inputs;
``evaluate(X)`` returns scores (higher = more suspicious), flags and the number of perturbations
each input needed. ``LeaveOutDetector`` has the same contract for text and tabular inputs. The math
is in plain functions (:func:`perturbation_scores`, :func:`leave_out_scores`,
:func:`conformal_threshold`).
"""

from poisonlab.detect_inputs.leave_out import LeaveOutDetector, leave_out_scores
from poisonlab.detect_inputs.strip import (
    KINDS,
    SUPERIMPOSE_MODES,
    StripDetector,
    StripVerdicts,
    conformal_threshold,
    draw_overlays,
    infer_kind,
    perturbation_scores,
)

__all__ = [
    "KINDS",
    "SUPERIMPOSE_MODES",
    "LeaveOutDetector",
    "StripDetector",
    "StripVerdicts",
    "conformal_threshold",
    "draw_overlays",
    "infer_kind",
    "leave_out_scores",
    "perturbation_scores",
]
