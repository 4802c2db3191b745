"""The monitor behind ``poisonlab serve``: predict, check inputs, slide windows, raise alerts.

:class:`Monitor` is fitted once on the clean baseline (the model's predictions on it, the input
check's calibration as ``poisonlab check`` does it, the alarm thresholds of
:func:`~poisonlab.monitor.windows.calibrate_thresholds`); :meth:`Monitor.observe` then takes one
request's inputs and returns predictions, probabilities and verdicts, and whatever the request
completed: window judgements and alerts. Everything it keeps in memory is bounded (the window,
the last ``history`` judgements and alerts); what must last goes to a
:class:`~poisonlab.monitor.store.Recorder`.

An alert is raised when a judged window crosses a threshold that the previous judgement did not
cross (one alert per episode, not one per judgement while the campaign lasts); ``alerts_`` counts
episodes and ``windows_over_`` counts judgements over a threshold.

Beside the windows, one-sided Bernoulli CUSUMs per predicted class (and on the flagged indicator
with an input check) watch every input for small persistent shifts
(:mod:`poisonlab.monitor.cusum`); each crossing is an alert through the same path (statistics
``cusum_class`` or ``cusum_flagged``) and resets that CUSUM; ``cusum_alarms_`` counts them.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from poisonlab.detect_inputs.adapters import predict_proba_function
from poisonlab.detect_inputs.check import trigger_matches
from poisonlab.detect_inputs.strip import infer_kind
from poisonlab.exceptions import DataError, NotFittedError, check_param, is_int
from poisonlab.monitor.cusum import Cusum, CusumThresholds, calibrate_cusum
from poisonlab.monitor.windows import (
    AlarmThresholds,
    Baseline,
    SlidingWindow,
    WindowStatistics,
    baseline_from_probs,
    calibrate_thresholds,
    window_statistics,
)

if TYPE_CHECKING:
    from poisonlab.detect_inputs.base import InputDetector
    from poisonlab.models.protocols import MarginClassifier, ProbabilisticClassifier

INPUT_CHECKS = ("none", "auto", "strip", "leave-out")


def input_hash(x: object) -> str:
    """SHA-256 of an input: a text's UTF-8 bytes, an array's float32 bytes with its shape."""
    if isinstance(x, str):
        data = x.encode("utf-8")
    else:
        a = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
        data = json.dumps(a.shape).encode() + a.tobytes()
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Alert:
    """A window that crossed a threshold: when (``created`` Unix time, ``request_count`` inputs
    seen), which ``statistics`` crossed, a one-line ``message`` and the window's statistics."""

    created: float
    request_count: int
    statistics: list[str]
    message: str
    window: dict[str, object]


@dataclass
class Observation:
    """What one request gave: per input ``predictions`` (class names), ``probabilities``,
    ``scores`` and ``flags`` of the input check (None without one), ``trigger_matches`` (a scan's
    phrases, text); the window judgements and alerts this request completed."""

    predictions: list[str]
    probabilities: list[list[float]]
    scores: list[float] | None
    flags: list[bool]
    trigger_matches: list[bool] | None
    windows: list[dict[str, object]] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)


class Monitor:
    """Watch a model's traffic against a clean baseline.

    Parameters
    ----------
    window : int, default 500
        Inputs per sliding window.
    stride : int or None, default None
        Inputs between window judgements (None: ``window // 5``).
    false_alarm_rate : float, default 1e-5
        False alarms per clean request the thresholds allow (one per 100,000).
    input_check : {"none", "auto", "strip", "leave-out"}, default "none"
        The per-input trigger check, as ``poisonlab check --method``: ``auto`` is STRIP for
        images and the leave-out test for text and tables.
    false_rejection_rate : float, default 0.01
        Share of clean inputs the input check may flag.
    n_perturbations : int, default 64
        STRIP's most mixes per input.
    triggers : sequence of str or None
        Text: trigger phrases from a ``scan.json``; an input containing one is flagged.
    history : int, default 500
        Judgements and alerts kept in memory for the dashboard (all go to the store).
    cusum : bool, default False
        Run the sequential change detector (:mod:`poisonlab.monitor.cusum`) beside the windows
        (``serve --cusum``). The windows and the CUSUM then each get half of
        ``false_alarm_rate``, so the two together stay within it (the union bound). Off by
        default: its calibration adds 10-20 s to ``fit``.
    cusum_shift : float, default 0.02
        The rise of a class share the CUSUM is tuned for.
    cusum_burn_in : int, default 1000
        Inputs the CUSUM only learns its reference from before it may alarm.
    random_state : int, Generator or None, default 0

    Attributes
    ----------
    kind_, classes_, baseline_ (:class:`~poisonlab.monitor.windows.Baseline`), thresholds_
    (:class:`~poisonlab.monitor.windows.AlarmThresholds`), cusum_thresholds_
    (:class:`~poisonlab.monitor.cusum.CusumThresholds` or None), detector_ (the fitted input check
    or None), n_requests_, n_inputs_, n_flagged_, alerts_ (episodes and CUSUM alarms),
    windows_over_, cusum_alarms_, history_ and recent_alerts_ (bounded deques), last_window_,
    cusum_ (the running :class:`~poisonlab.monitor.cusum.Cusum` or None).
    """

    def __init__(self, *, window: int = 500, stride: int | None = None, false_alarm_rate: float = 1e-5,
                 input_check: str = "none", false_rejection_rate: float = 0.01, n_perturbations: int = 64,
                 triggers: Sequence[str] | None = None, history: int = 500, cusum: bool = False,
                 cusum_shift: float = 0.02, cusum_burn_in: int = 1000,
                 random_state: int | np.random.Generator | None = 0) -> None:
        self.window = window
        self.stride = stride
        self.false_alarm_rate = false_alarm_rate
        self.input_check = input_check
        self.false_rejection_rate = false_rejection_rate
        self.n_perturbations = n_perturbations
        self.triggers = triggers
        self.history = history
        self.cusum = cusum
        self.cusum_shift = cusum_shift
        self.cusum_burn_in = cusum_burn_in
        self.random_state = random_state

    def fit(self, model: ProbabilisticClassifier | MarginClassifier, X_baseline: np.ndarray, *,
            classes: Sequence[str] | None = None,
            progress: Callable[[str], None] | None = None) -> Monitor:
        """Calibrate on clean baseline inputs: the model's prediction shares and confidences, the
        input check's threshold, and the alarm thresholds."""
        owner = type(self).__name__
        check_param("window", owner, is_int(self.window, 20), "an int >= 20", self.window)
        stride = self.window // 5 if self.stride is None else self.stride
        check_param("stride", owner, is_int(stride, 1) and stride <= self.window, "an int in [1, window]",
                    self.stride)
        check_param("input_check", owner, self.input_check in INPUT_CHECKS, f"one of {list(INPUT_CHECKS)}",
                    self.input_check)
        check_param("history", owner, is_int(self.history, 1), "an int >= 1", self.history)
        say = progress or (lambda _msg: None)
        X = np.asarray(X_baseline)
        if len(X) < 20:
            raise DataError(f"The baseline needs at least 20 clean inputs; got {len(X)}.")
        self.kind_ = infer_kind(X)
        self.input_shape_ = tuple(X.shape[1:])
        self.predict_proba_ = predict_proba_function(model)
        say(f"predicting {len(X)} baseline inputs")
        P = np.asarray(self.predict_proba_(X), dtype=np.float64)
        names = tuple(str(c) for c in classes) if classes else tuple(str(k) for k in range(P.shape[1]))
        phrases = list(self.triggers or [])
        if phrases and self.kind_ != "text":
            raise DataError("Trigger phrases from a scan apply to text inputs only.")
        self.detector_ = self._fit_detector(X, say)
        n_flagged = 0
        if self.detector_ is not None:
            n_flagged = max(int(self.detector_.flags_.sum()),
                            round(self.detector_.expected_false_rejection_rate_ * len(X)))
        matched = trigger_matches(X, phrases) if phrases else np.zeros(len(X), dtype=bool)
        if self.detector_ is not None:
            matched = matched | self.detector_.flags_
        n_flagged = max(n_flagged, int(matched.sum()))
        self.baseline_: Baseline = baseline_from_probs(P, names, n_flagged=n_flagged)
        self.classes_ = names
        say("calibrating the alarm thresholds")
        # with the CUSUM on, the windows and the CUSUM each take half of the rate asked: an alarm
        # of either is an alarm, so by the union bound the two together stay within it
        share = self.false_alarm_rate / (2 if self.cusum else 1)
        self.thresholds_: AlarmThresholds = calibrate_thresholds(
            self.baseline_, window=self.window, stride=stride, false_alarm_rate=share,
            random_state=self.random_state,
            check_flags=self.detector_ is not None or bool(phrases))
        self.cusum_thresholds_: CusumThresholds | None = None
        if self.cusum:
            say("calibrating the CUSUM")
            self.cusum_thresholds_ = calibrate_cusum(
                self.baseline_, false_alarm_rate=share, min_shift=self.cusum_shift,
                burn_in=self.cusum_burn_in, random_state=self.random_state,
                check_flags=self.detector_ is not None or bool(phrases))
        self.triggers_ = phrases
        return self.reset()

    def reset(self) -> Monitor:
        """Empty the window and the counters, keeping the calibration (a fresh stream)."""
        self._check_fitted()
        self._window = SlidingWindow(self.window, self.thresholds_.stride)
        self._lock = threading.Lock()
        self.n_requests_ = self.n_inputs_ = self.n_flagged_ = self.alerts_ = self.windows_over_ = 0
        self.cusum_alarms_ = 0
        self.cusum_: Cusum | None = (Cusum(self.baseline_, self.cusum_thresholds_)
                                     if self.cusum_thresholds_ is not None else None)
        self.history_: deque[dict[str, object]] = deque(maxlen=self.history)
        self.recent_alerts_: deque[Alert] = deque(maxlen=self.history)
        self.last_window_: dict[str, object] | None = None
        self._alarming = False
        return self

    def _fit_detector(self, X: np.ndarray, say: Callable[[str], None]) -> InputDetector | None:
        if self.input_check == "none":
            return None
        from poisonlab.detect_inputs.leave_out import LeaveOutDetector
        from poisonlab.detect_inputs.strip import StripDetector

        method = self.input_check
        if method == "auto":
            method = "strip" if self.kind_ == "image" else "leave-out"
        say(f"calibrating the input check ({method}) on {len(X)} clean inputs")
        detector: InputDetector
        if method == "leave-out":
            detector = LeaveOutDetector(false_rejection_rate=self.false_rejection_rate,
                                        random_state=self.random_state)
        else:
            detector = StripDetector(false_rejection_rate=self.false_rejection_rate,
                                     n_perturbations=self.n_perturbations, random_state=self.random_state)
        return detector.fit(self.predict_proba_, X)

    # ------------------------------------------------------------------ serving
    def _check_fitted(self) -> None:
        if not hasattr(self, "thresholds_"):
            raise NotFittedError("This Monitor is not fitted yet: call fit first.")

    def as_inputs(self, raw: Sequence[Any]) -> np.ndarray:  # Any: JSON values from a request body
        """Turn a request's JSON ``inputs`` into the array the model takes, or raise
        :class:`~poisonlab.exceptions.DataError` naming what is wrong."""
        self._check_fitted()
        if self.kind_ == "text":
            bad = next((i for i, x in enumerate(raw) if not isinstance(x, str)), None)
            if bad is not None:
                raise DataError(f"inputs[{bad}] must be a string: this model reads text.")
            out = np.empty(len(raw), dtype=object)
            out[:] = list(raw)
            return out
        try:
            X = np.asarray(raw, dtype=np.float32)
        except (TypeError, ValueError):
            raise DataError(f"inputs must be numeric arrays of shape {list(self.input_shape_)}.") from None
        if self.kind_ == "image" and self.input_shape_[-1] == 1 and tuple(X.shape[1:]) == self.input_shape_[:-1]:
            X = X[..., None]  # H x W images for a one-channel model
        if tuple(X.shape[1:]) != self.input_shape_:
            raise DataError(f"inputs must each have shape {list(self.input_shape_)}; got "
                            f"{list(X.shape[1:])}.")
        if not np.isfinite(X).all():
            raise DataError("inputs must hold finite numbers.")
        return X

    def observe(self, X: np.ndarray, *, now: float | None = None) -> Observation:
        """Predict ``X`` (from :meth:`as_inputs`), check it, and add it to the window."""
        self._check_fitted()
        P = np.asarray(self.predict_proba_(X), dtype=np.float64)
        pred = P.argmax(axis=1)
        scores = None
        flags = np.zeros(len(X), dtype=bool)
        if self.detector_ is not None:
            verdicts = self.detector_.evaluate(X)
            scores, flags = verdicts.scores, verdicts.flags.copy()
        matched = trigger_matches(X, self.triggers_) if self.triggers_ else None
        if matched is not None:
            flags |= matched
        obs = Observation(predictions=[self.classes_[k] for k in pred], probabilities=P.round(6).tolist(),
                          scores=None if scores is None else [float(s) for s in scores],
                          flags=[bool(f) for f in flags],
                          trigger_matches=None if matched is None else [bool(m) for m in matched])
        windows, alerts = self.record(P, flags, now=now)
        obs.windows, obs.alerts = windows, alerts
        return obs

    def record(self, pred_probs: np.ndarray, flags: np.ndarray, *, now: float | None = None
               ) -> tuple[list[dict[str, object]], list[Alert]]:
        """Add predictions made elsewhere (N x K probabilities and the input check's flags) to the
        window, as :meth:`observe` does after predicting; returns the window judgements and
        alerts they completed. For replaying logged traffic through the same alarms."""
        self._check_fitted()
        P = np.asarray(pred_probs, dtype=np.float64)
        flags = np.asarray(flags, dtype=bool)
        if P.ndim != 2 or P.shape[1] != len(self.classes_) or len(flags) != len(P):
            raise DataError(f"record takes N x {len(self.classes_)} probabilities and N flags; got "
                            f"{P.shape} and {flags.shape}.")
        pred, conf = P.argmax(axis=1), P.max(axis=1)
        stamp = time.time() if now is None else now
        windows: list[dict[str, object]] = []
        alerts: list[Alert] = []
        with self._lock:
            self.n_requests_ += 1
            self.n_inputs_ += len(P)
            self.n_flagged_ += int(flags.sum())
            for k, c, f in zip(pred, conf, flags, strict=True):
                if self._window.add(int(k), float(c), bool(f)):
                    self._judge(stamp, windows, alerts)
                if self.cusum_ is not None:
                    for crossed in self.cusum_.add(int(k), bool(f)):
                        self._cusum_alert(stamp, crossed, alerts)
        return windows, alerts

    def _judge(self, stamp: float, windows: list[dict[str, object]], alerts: list[Alert]) -> None:
        stats = window_statistics(self.baseline_, *self._window.arrays())
        over = self.thresholds_.exceeded(stats)
        record = {"created": stamp, "request_count": self._window.seen, **stats.as_dict(),
                  "over": over, "alarm": bool(over)}
        self.history_.append(record)
        self.last_window_ = record
        windows.append(record)
        if over:
            self.windows_over_ += 1
        if over and not self._alarming:
            alert = Alert(created=stamp, request_count=self._window.seen, statistics=over,
                          message=self.describe(stats, over), window=record)
            self.alerts_ += 1
            self.recent_alerts_.append(alert)
            alerts.append(alert)
        self._alarming = bool(over)

    def _cusum_alert(self, stamp: float, crossed: tuple[str, int, float, float, float],
                     alerts: list[Alert]) -> None:
        statistic, k, value, h, reference = crossed
        if statistic == "cusum_class":
            what = (f"CUSUM of class {self.classes_[k]!r} at input {self._window.seen}: {value:.2f} > {h:.2f} "
                    f"(a persistent rise of its share over the reference {reference:.1%}; reset)")
        else:
            what = (f"CUSUM of flagged inputs at input {self._window.seen}: {value:.2f} > {h:.2f} "
                    f"(a persistent rise of the flag rate over the reference {reference:.2%}; reset)")
        record: dict[str, object] = {"created": stamp, "request_count": self._window.seen, "statistic": statistic,
                                     "class_name": self.classes_[k] if k >= 0 else None, "value": value,
                                     "threshold": h, "reference": reference}
        alert = Alert(created=stamp, request_count=self._window.seen, statistics=[statistic], message=what,
                      window=record)
        self.alerts_ += 1
        self.cusum_alarms_ += 1
        self.recent_alerts_.append(alert)
        alerts.append(alert)

    def cusum_statistics(self) -> dict[str, float]:
        """The CUSUM statistic of each class now (empty without the CUSUM)."""
        if self.cusum_ is None:
            return {}
        return {name: float(v) for name, v in zip(self.classes_, self.cusum_.S, strict=True)}

    def describe(self, stats: WindowStatistics, over: list[str]) -> str:
        """One line saying which statistics crossed their thresholds and by how much."""
        t = self.thresholds_
        parts = []
        if "class_chi2" in over:
            parts.append(f"class {self.classes_[stats.rising]!r} at {stats.rising_share:.1%} of the window "
                         f"against {stats.rising_expected:.1%} in the baseline (chi-square "
                         f"{stats.class_chi2:.1f} > {t.class_chi2:.1f})")
        if "confidence_psi" in over:
            parts.append(f"confidence PSI {stats.confidence_psi:.3f} > {t.confidence_psi:.3f}")
        if "n_flagged" in over:
            parts.append(f"{stats.n_flagged} of {stats.n} inputs flagged (> {t.n_flagged})")
        return f"window ending at input {self._window.seen}: " + "; ".join(parts)

    def class_shares(self) -> list[float]:
        """The predicted-class shares of the current window (the baseline's while it is empty)."""
        pred, _, _ = self._window.arrays()
        if len(pred) == 0:
            return [float(s) for s in self.baseline_.class_shares]
        return [float(s) for s in np.bincount(pred, minlength=len(self.classes_)) / len(pred)]
