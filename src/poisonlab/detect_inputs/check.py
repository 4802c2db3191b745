"""``check_inputs``: calibrate a test on clean data and give every live input a verdict.

Which test runs (``method="auto"``): images get STRIP and windowed STRIP; text and tabular inputs
get the leave-out test (:mod:`poisonlab.detect_inputs.leave_out`), because STRIP's mixing keeps a
text's or a row's own evidence beside the trigger and its entropy score is blind on two classes
(9.4% of triggered emails and 0% of triggered table rows detected at 1% and 5% false rejection in
``benchmarks/strip_vs_art.py``; the leave-out test 84.9% and 71.0% on the same inputs).
``method="strip"`` runs STRIP on any kind; ``method="onion"`` runs ONION on text
(:mod:`poisonlab.detect_inputs.onion`).

Images get a second test beside STRIP, windowed STRIP (:mod:`poisonlab.detect_inputs.window`),
which keeps a trigger intact where STRIP's mixing overwrites it; each test gets half the
false-rejection rate asked for, and an input flagged by either is flagged.

Live inputs usually come without labels, so :func:`load_inputs` reads them with or without a
label column.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from poisonlab.data import Columns, Dataset, load_dataset
from poisonlab.data.readers import UNLABELLED as UNLABELLED  # the placeholder class of unlabelled inputs
from poisonlab.detect_inputs.adapters import predict_proba_function
from poisonlab.detect_inputs.leave_out import LeaveOutDetector
from poisonlab.detect_inputs.onion import OnionDetector
from poisonlab.detect_inputs.strip import StripDetector, infer_kind
from poisonlab.detect_inputs.window import WindowStripDetector
from poisonlab.exceptions import DataError, ParameterError, check_param

if TYPE_CHECKING:
    from poisonlab.models.protocols import MarginClassifier, ProbabilisticClassifier

CHECK_METHODS = ("auto", "strip", "leave-out", "onion")


@dataclass
class CheckReport:
    """Per-input verdicts and the calibration behind them.

    ``flags`` is ``strip_flags | window_flags | matched``: STRIP's verdict, windowed STRIP's
    (images), or (text, when trigger phrases from a scan were given) the input contains one of
    them. ``expected_false_rejection_rate`` bounds the share of clean inputs flagged by any test.
    """

    scores: np.ndarray
    flags: np.ndarray
    strip_flags: np.ndarray
    matched: np.ndarray
    triggers: list[str]
    calibration_match_rate: float
    predictions: np.ndarray
    n_perturbations: np.ndarray
    ids: np.ndarray
    threshold: float
    false_rejection_rate: float
    expected_false_rejection_rate: float
    calibration_flag_rate: float
    n_calibration: int
    kind: str
    saturated: bool
    seconds: float
    detector_params: dict[str, object]
    window_scores: np.ndarray | None = None
    window_flags: np.ndarray | None = None
    window: dict[str, object] | None = None
    method: str = "strip"

    def summary(self, classes: tuple[str, ...] | None = None) -> dict[str, object]:
        """The verdict counts and the calibration as the ``summary.json`` document: inputs flagged (in all,
        by STRIP, by window, by trigger match, and per predicted class when ``classes`` names them), the
        threshold, the false rejection rates, the method and its parameters.
        """
        counts = np.bincount(self.predictions[self.flags], minlength=len(classes or ())) \
            if len(self.predictions) else np.zeros(0, dtype=int)
        by_class = ({c: int(n) for c, n in zip(classes, counts, strict=False) if n}
                    if classes else {})
        return {
            "n_inputs": len(self.scores),
            "n_flagged": int(self.flags.sum()),
            "n_flagged_by_strip": int(self.strip_flags.sum()),
            "n_trigger_matches": int(self.matched.sum()),
            "triggers_matched": self.triggers,
            "calibration_trigger_match_rate": self.calibration_match_rate,
            "flagged_rate": float(self.flags.mean()) if len(self.flags) else 0.0,
            "flagged_by_predicted_class": by_class,
            "threshold": self.threshold,
            "false_rejection_rate": self.false_rejection_rate,
            "expected_false_rejection_rate": self.expected_false_rejection_rate,
            "calibration_rows": self.n_calibration,
            "calibration_rows_flagged_rate": self.calibration_flag_rate,
            "kind": self.kind,
            "saturated": self.saturated,
            "mean_perturbations": float(self.n_perturbations.mean()) if len(self.scores) else 0.0,
            "seconds": round(self.seconds, 2),
            "method": "STRIP and windowed STRIP" if self.window else
            {"leave-out": "leave-out", "onion": "ONION"}.get(self.method, "STRIP"),
            "parameters": self.detector_params,
            "n_flagged_by_window": int(self.window_flags.sum())
            if self.window_flags is not None else 0,
            "window": self.window,
        }


def trigger_matches(texts: np.ndarray, phrases: list[str]) -> np.ndarray:
    """True where a text contains one of ``phrases`` as consecutive lower-cased words."""
    from poisonlab.scan.text import TOKEN_PATTERN

    wanted = [tuple(TOKEN_PATTERN.findall(p.lower())) for p in phrases]
    wanted = [w for w in wanted if w]
    out = np.zeros(len(texts), dtype=bool)
    if not wanted:
        return out
    for i, text in enumerate(texts):
        tokens = TOKEN_PATTERN.findall(str(text).lower())
        present = set(tokens)
        for w in wanted:
            if w[0] not in present:
                continue
            n = len(w)
            if any(tuple(tokens[j:j + n]) == w for j in range(len(tokens) - n + 1)):
                out[i] = True
                break
    return out


def check_inputs(model: ProbabilisticClassifier | MarginClassifier, X: np.ndarray, X_clean: np.ndarray, *,
                 ids: np.ndarray | None = None, false_rejection_rate: float = 0.01,
                 n_perturbations: int = 128, random_state: int | None = 0,
                 triggers: list[str] | None = None, window: bool = True,
                 method: str = "auto",
                 progress: Callable[[str], None] | None = None) -> CheckReport:
    """Calibrate a test on ``X_clean`` and score ``X`` (higher score = more suspicious).

    ``method``: ``"auto"`` (STRIP for images, the leave-out test for text and tables),
    ``"strip"``, ``"leave-out"`` (text and tables only) or ``"onion"`` (text only: ONION with a
    Kneser-Ney trigram model fitted on ``X_clean``, :mod:`poisonlab.detect_inputs.onion`).
    ``n_perturbations`` is STRIP's budget; the leave-out test always makes 16 perturbed copies
    per input, ONION one.

    ``triggers`` (text only): phrases a scan reported; an input containing one is flagged too,
    and the share of clean calibration rows that contain one is reported. ``window`` (images):
    also run windowed STRIP, each test at half ``false_rejection_rate``.
    """
    started = time.perf_counter()
    say = progress or (lambda _msg: None)
    check_param("method", "check_inputs", method in CHECK_METHODS, f"one of {list(CHECK_METHODS)}",
                method)
    predict = predict_proba_function(model)
    kind = infer_kind(np.asarray(X_clean))
    if method == "auto":
        method = "strip" if kind == "image" else "leave-out"
    use_window = window and kind == "image"
    rate = false_rejection_rate / 2 if use_window else false_rejection_rate
    detector: StripDetector | LeaveOutDetector | OnionDetector
    if method == "onion":
        if kind != "text":
            raise ParameterError(f"--method onion checks text inputs; these are {kind} data.")
        detector = OnionDetector(false_rejection_rate=rate)
    elif method == "leave-out":
        detector = LeaveOutDetector(false_rejection_rate=rate, random_state=random_state)
    else:
        detector = StripDetector(false_rejection_rate=rate,
                                 n_perturbations=n_perturbations, random_state=random_state)
    say(f"calibrating on {len(X_clean)} clean inputs")
    detector.fit(predict, X_clean)
    say(f"checking {len(X)} inputs")
    verdicts = detector.evaluate(X)
    expected = detector.expected_false_rejection_rate_
    cal_flags = detector.flags_
    window_scores = window_flags = None
    window_info: dict[str, Any] | None = None
    if use_window:
        windowed = WindowStripDetector(false_rejection_rate=rate, random_state=random_state)
        say(f"windowed STRIP: calibrating on {len(X_clean)} clean inputs")
        windowed.fit(predict, X_clean)
        say(f"windowed STRIP: checking {len(X)} inputs")
        window_verdicts = windowed.evaluate(X)
        window_scores, window_flags = window_verdicts.scores, window_verdicts.flags
        expected += windowed.expected_false_rejection_rate_
        cal_flags = cal_flags | windowed.flags_
        window_info = {"threshold": windowed.threshold_, "window": windowed.window_,
                       "stride": windowed.stride_, "n_windows": windowed.n_windows_,
                       "n_overlays": windowed.n_overlays,
                       "expected_false_rejection_rate": windowed.expected_false_rejection_rate_}
    phrases = list(triggers or [])
    if phrases and detector.kind_ != "text":
        raise DataError("Trigger phrases from a scan apply to text inputs only.")
    matched = trigger_matches(X, phrases) if phrases else np.zeros(len(X), dtype=bool)
    cal_rate = float(trigger_matches(X_clean, phrases).mean()) if phrases else 0.0
    flags = verdicts.flags | matched
    if window_flags is not None:
        flags = flags | window_flags
    return CheckReport(
        scores=verdicts.scores, flags=flags, strip_flags=verdicts.flags,
        matched=matched, triggers=phrases, calibration_match_rate=cal_rate,
        predictions=verdicts.predictions,
        n_perturbations=verdicts.n_perturbations,
        ids=np.asarray(ids if ids is not None else np.arange(len(X)).astype(str), dtype=object),
        threshold=detector.threshold_, false_rejection_rate=false_rejection_rate,
        expected_false_rejection_rate=expected,
        calibration_flag_rate=float(cal_flags.mean()), n_calibration=len(X_clean),
        kind=detector.kind_, saturated=bool(getattr(detector, "saturated_", False)),
        seconds=time.perf_counter() - started,
        detector_params={k: v for k, v in detector.get_params().items() if k != "random_state"},
        window_scores=window_scores, window_flags=window_flags, window=window_info,
        method=method,
    )


def load_inputs(spec: str | Path, columns: Columns | None = None, *,
                data_dir: str | Path | None = None) -> Dataset:
    """Load inputs that may have no label column (then every row gets one placeholder class).

    :func:`poisonlab.data.load_dataset` with ``require_labels=False``: anything it reads works,
    and a table file without a label column or an NPZ without ``y`` works too.
    """
    return load_dataset(spec, columns or Columns(), data_dir=data_dir, require_labels=False)
