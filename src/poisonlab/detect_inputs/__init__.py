"""Checking live inputs for triggers: STRIP for images, the leave-out test for text and tables,
ONION for text.

Every check has one contract (:mod:`poisonlab.detect_inputs.base`):
``StripDetector(...).fit(model.predict_proba, X_clean)`` calibrates a threshold on clean inputs;
``evaluate(X)`` returns :class:`InputVerdicts`: scores (higher = more suspicious), flags (True =
flagged), the model's predictions and the number of perturbations each input needed;
``decision_function`` and ``predict`` return the scores and the flags. ``LeaveOutDetector`` (text
and tabular inputs), ``OnionDetector`` (text, with a ``KneserNeyLM`` fitted on the clean rows)
and ``WindowStripDetector`` (images) have the same contract. The math is in
plain functions (:func:`perturbation_scores`, :func:`leave_out_scores`,
:func:`conformal_threshold`).
"""

from poisonlab.detect_inputs.base import InputDetector, InputVerdicts, conformal_threshold
from poisonlab.detect_inputs.leave_out import LeaveOutDetector, leave_out_scores
from poisonlab.detect_inputs.ngram import KneserNeyLM
from poisonlab.detect_inputs.onion import OnionDetector, onion_suspicion
from poisonlab.detect_inputs.strip import (
    KINDS,
    SUPERIMPOSE_MODES,
    StripDetector,
    StripVerdicts,
    draw_overlays,
    infer_kind,
    perturbation_scores,
)
from poisonlab.detect_inputs.window import WindowStripDetector

__all__ = [
    "KINDS",
    "SUPERIMPOSE_MODES",
    "InputDetector",
    "InputVerdicts",
    "KneserNeyLM",
    "LeaveOutDetector",
    "OnionDetector",
    "StripDetector",
    "StripVerdicts",
    "WindowStripDetector",
    "conformal_threshold",
    "draw_overlays",
    "infer_kind",
    "leave_out_scores",
    "onion_suspicion",
    "perturbation_scores",
]
