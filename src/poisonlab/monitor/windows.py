"""Count-based sliding windows of predictions against a clean baseline, and alarm thresholds
calibrated on that baseline to a stated false-alarm rate.

A window holds the last ``window`` inputs the service saw: the predicted class, the top class
probability (``confidence``) and whether an input check flagged it. Every ``stride`` inputs the
window is compared with the baseline on three statistics (:func:`window_statistics`):

- the predicted-class counts against the baseline's class shares: Pearson's chi-square and PSI
  (:func:`poisonlab.measure.shift.class_share_test`); the alarm is on the chi-square;
- the max-confidence distribution binned on the baseline's deciles: PSI
  (:func:`poisonlab.measure.shift.psi`), with the KS statistic reported beside it;
- the number of flagged inputs in the window.

How a per-request false-alarm rate becomes thresholds (:func:`calibrate_thresholds`). A window is
judged every ``stride`` requests, so ``rate`` false alarms per request allow at most
``rate * stride`` per judgement (a union bound: consecutive windows overlap, so the realised rate is
lower), split equally over the three statistics (Bonferroni). At the default (one per 100,000
requests, stride 100) that is a tail probability of 3.3e-4 per statistic and judgement: too far
out to read off a few thousand resampled windows, so the tail is fitted:

1. the baseline's own sampling error is part of the null: each resampled window is compared with
   the shares of an independent bootstrap copy of the baseline (a baseline of n rows estimates its
   shares with an error of order ``1/sqrt(n)``, which a window of 500 sees), and is drawn from the
   shares of a second bootstrap copy: clean traffic may differ from the baseline's population by
   one more such error (mild drift over time; and what a finite pool of clean rows replayed as
   traffic adds in ``benchmarks/serve_load.py``, where without this margin 3 alerts came in
   20,000 clean requests against the 0.2 asked for). All draws are multinomial;
2. ``n_resamples`` such windows give the statistic's null distribution; a generalized Pareto
   distribution is fitted to the exceedances over its 90% quantile (the peaks-over-threshold
   method, Pickands 1975; Davison & Smith 1990), and the threshold is its quantile at the
   per-judgement probability;
3. the flagged count is binomial given the clean flag rate, which the baseline estimates from
   ``k`` of ``n`` rows: the threshold is the smallest count whose predictive tail (the binomial
   averaged over the rate's Beta(k + 1, n - k + 1) posterior, with the same second sampling error
   as in 1) is at most the probability;
4. the rate is then measured, not assumed: ``n_check`` fresh resampled windows are judged against
   the thresholds and the share over any threshold is reported (``measured_window_rate``), and
   ``benchmarks/serve_load.py`` streams clean requests that the baseline never saw through the
   service and counts alerts.

References
----------
Pickands, J. "Statistical inference using extreme order statistics", Annals of Statistics, 1975.
https://doi.org/10.1214/aos/1176343003

Davison, A. C. and Smith, R. L. "Models for exceedances over high thresholds", Journal of the Royal
Statistical Society B, 1990. https://doi.org/10.1111/j.2517-6161.1990.tb01796.x
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass

import numpy as np

from poisonlab.exceptions import DataError, check_param, is_int
from poisonlab.measure.shift import bin_counts, class_share_test, confidence_bins, ks_two_sample, psi

STATISTICS = ("class_chi2", "confidence_psi", "n_flagged")
TAIL_QUANTILE = 0.9  # exceedances over this quantile of the resampled statistic are fitted


@dataclass(frozen=True)
class Baseline:
    """What the clean baseline says traffic looks like: ``class_shares`` (K), the baseline's
    ``confidences`` and the inner ``confidence_edges`` of their bins (deciles), the count of
    baseline rows in each bin, and the input check's clean flag rate as ``n_flagged`` of
    ``n_rows`` (0 of n when no check runs)."""

    classes: tuple[str, ...]
    class_counts: np.ndarray
    confidences: np.ndarray
    confidence_edges: np.ndarray
    confidence_counts: np.ndarray
    n_flagged: int
    n_rows: int

    @property
    def class_shares(self) -> np.ndarray:
        """The share of baseline rows predicted as each class."""
        return self.class_counts / self.class_counts.sum()


def baseline_from_probs(pred_probs: np.ndarray, classes: tuple[str, ...], *, n_flagged: int = 0,
                        n_bins: int = 10) -> Baseline:
    """A :class:`Baseline` from the model's probabilities on clean rows (N x K) and how many of
    them the input check flags."""
    P = np.asarray(pred_probs, dtype=np.float64)
    if P.ndim != 2 or P.shape[1] < 2 or len(P) < n_bins:
        raise DataError(f"A baseline needs an N x K array of probabilities with K >= 2 and N >= {n_bins}; "
                        f"got shape {P.shape}.")
    if len(classes) != P.shape[1]:
        raise DataError(f"The model gives {P.shape[1]} probabilities per input but names {len(classes)} classes.")
    conf = P.max(axis=1)
    edges = confidence_bins(conf, n_bins)
    return Baseline(classes=tuple(classes), class_counts=np.bincount(P.argmax(axis=1), minlength=P.shape[1]),
                    confidences=conf, confidence_edges=edges, confidence_counts=bin_counts(edges, conf),
                    n_flagged=int(n_flagged), n_rows=len(P))


@dataclass(frozen=True)
class WindowStatistics:
    """One window against the baseline: ``n`` inputs, the predicted-class ``class_counts``,
    ``class_chi2`` / ``class_psi`` / ``class_p_value`` and the class whose share rose most
    (``rising``, ``rising_share`` against ``rising_expected``), ``confidence_psi`` and the KS
    statistic ``confidence_ks``, and ``n_flagged`` inputs flagged."""

    n: int
    class_counts: list[int]
    class_chi2: float
    class_psi: float
    class_p_value: float
    rising: int
    rising_share: float
    rising_expected: float
    confidence_psi: float
    confidence_ks: float
    n_flagged: int

    @property
    def flagged_rate(self) -> float:
        """The share of the window's inputs that were flagged."""
        return self.n_flagged / self.n if self.n else 0.0

    def as_dict(self) -> dict[str, object]:
        """The statistics as plain JSON values (with ``flagged_rate``)."""
        return {**asdict(self), "flagged_rate": self.flagged_rate}


def window_statistics(baseline: Baseline, predictions: np.ndarray, confidences: np.ndarray,
                      flags: np.ndarray) -> WindowStatistics:
    """Compare one window of predictions (class indices), max-confidences and flags with the baseline."""
    pred = np.asarray(predictions, dtype=np.int64)
    conf = np.asarray(confidences, dtype=np.float64)
    if len(pred) == 0 or len(pred) != len(conf) or len(pred) != len(flags):
        raise DataError("A window needs as many predictions, confidences and flags, at least one.")
    counts = np.bincount(pred, minlength=len(baseline.classes))
    share = class_share_test(baseline.class_shares, counts)
    ks, _ = ks_two_sample(baseline.confidences, conf)
    return WindowStatistics(
        n=len(pred), class_counts=[int(c) for c in counts], class_chi2=share.chi2, class_psi=share.psi,
        class_p_value=share.p_value, rising=share.rising, rising_share=share.observed_share,
        rising_expected=share.expected_share,
        confidence_psi=psi(baseline.confidence_counts, bin_counts(baseline.confidence_edges, conf)),
        confidence_ks=ks, n_flagged=int(np.count_nonzero(flags)))


@dataclass(frozen=True)
class AlarmThresholds:
    """Thresholds on :data:`STATISTICS` (an alarm when a window's statistic is above one), and how
    they were reached: the per-request ``false_alarm_rate`` asked for, the ``window`` and ``stride``,
    the per-statistic, per-judgement ``tail_probability``, the fitted tails' shape parameters, and
    the ``measured_window_rate``: the share of ``n_check`` fresh resampled clean windows over any
    threshold, with ``measured_request_rate`` = that divided by ``stride`` (the union bound the
    thresholds were set under)."""

    class_chi2: float
    confidence_psi: float
    n_flagged: int
    false_alarm_rate: float
    window: int
    stride: int
    tail_probability: float
    tail_shapes: dict[str, float]
    n_resamples: int
    n_check: int
    measured_window_rate: float
    measured_request_rate: float

    def exceeded(self, stats: WindowStatistics) -> list[str]:
        """The statistics of ``stats`` that are above their threshold."""
        out = []
        if stats.class_chi2 > self.class_chi2:
            out.append("class_chi2")
        if stats.confidence_psi > self.confidence_psi:
            out.append("confidence_psi")
        if stats.n_flagged > self.n_flagged:
            out.append("n_flagged")
        return out

    def as_dict(self) -> dict[str, object]:
        """The thresholds and their calibration as plain JSON values."""
        return asdict(self)


def _chi2_rows(expected: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Pearson's chi-square of each row of ``counts`` against the matching row of ``expected``
    shares, with the PSI floor of :func:`class_share_test` (vectorised for resampling)."""
    from poisonlab.measure.shift import PSI_FLOOR

    exp = np.maximum(expected, PSI_FLOOR)
    exp = exp / exp.sum(axis=1, keepdims=True)
    n = counts.sum(axis=1, keepdims=True)
    out: np.ndarray = np.sum((counts - n * exp) ** 2 / (n * exp), axis=1)
    return out


def _psi_rows(expected: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """:func:`poisonlab.measure.shift.psi` of each row pair (vectorised for resampling)."""
    from poisonlab.measure.shift import PSI_FLOOR

    e = np.maximum(expected / expected.sum(axis=1, keepdims=True), PSI_FLOOR)
    o = np.maximum(observed / observed.sum(axis=1, keepdims=True), PSI_FLOOR)
    e, o = e / e.sum(axis=1, keepdims=True), o / o.sum(axis=1, keepdims=True)
    out: np.ndarray = np.sum((o - e) * np.log(o / e), axis=1)
    return out


def _null_draws(counts: np.ndarray, window: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``size`` clean windows, each paired with the shares of an independent bootstrap copy of
    the baseline; each window is drawn from the shares of another bootstrap copy (the traffic's
    own population, allowed to differ from the baseline's by one baseline-sized sampling error)."""
    n = int(counts.sum())
    shares = counts / n
    boot = rng.multinomial(n, shares, size=size).astype(np.float64)
    population = rng.multinomial(n, shares, size=size) / n
    win = rng.multinomial(window, population).astype(np.float64)
    return boot, win


def traffic_rates(n_flagged: int, n_rows: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Clean flag rates of the traffic: the rate's Beta(k + 1, n - k + 1) posterior given ``k`` of
    ``n`` baseline rows flagged, then one baseline-sized sampling error (as :func:`_null_draws`)."""
    rates = rng.beta(n_flagged + 1, n_rows - n_flagged + 1, size=size)
    out: np.ndarray = rng.binomial(n_rows, rates) / n_rows
    return out


def tail_threshold(values: np.ndarray, probability: float) -> tuple[float, float]:
    """The value exceeded with ``probability`` by the distribution ``values`` samples: the empirical
    quantile where enough values lie beyond it, else a generalized Pareto fit to the exceedances
    over the :data:`TAIL_QUANTILE` quantile. Returns the threshold and the fitted shape (0 when
    read off the sample)."""
    from scipy.stats import genpareto

    values = np.sort(np.asarray(values, dtype=np.float64))
    if probability * len(values) >= 50:
        return float(np.quantile(values, 1 - probability)), 0.0
    u = float(np.quantile(values, TAIL_QUANTILE))
    exc = values[values > u] - u
    if len(exc) < 20 or np.ptp(exc) <= 0:
        return float(values[-1]), 0.0
    shape, _, scale = genpareto.fit(exc, floc=0.0)
    tail = 1 - TAIL_QUANTILE
    return float(u + genpareto.ppf(1 - probability / tail, shape, loc=0.0, scale=scale)), float(shape)


def _flag_threshold(n_flagged: int, n_rows: int, window: int, probability: float,
                    rng: np.random.Generator, n_draws: int = 4000) -> int:
    """The smallest count ``c`` with P(window count > c) <= ``probability``, the count binomial
    given a clean flag rate drawn as :func:`traffic_rates` does."""
    from scipy.stats import binom

    if n_rows == 0:
        return window
    rates = traffic_rates(n_flagged, n_rows, n_draws, rng)
    for c in range(window + 1):
        if float(binom.sf(c, window, rates).mean()) <= probability:
            return c
    return window


def calibrate_thresholds(baseline: Baseline, *, window: int = 500, stride: int = 100,
                         false_alarm_rate: float = 1e-5, n_resamples: int = 20000,
                         n_check: int = 20000, random_state: int | np.random.Generator | None = 0,
                         check_flags: bool = True) -> AlarmThresholds:
    """Thresholds on the three window statistics for ``false_alarm_rate`` false alarms per clean
    request (see the module's docstring for how); ``check_flags=False`` when no input check runs
    (the flagged count then never alarms)."""
    owner = "calibrate_thresholds"
    check_param("window", owner, is_int(window, 20), "an int >= 20", window)
    check_param("stride", owner, is_int(stride, 1) and stride <= window, "an int in [1, window]", stride)
    check_param("false_alarm_rate", owner,
                isinstance(false_alarm_rate, float) and 0 < false_alarm_rate * stride * len(STATISTICS) < 1,
                "a float in (0, 1 / (3 * stride))", false_alarm_rate)
    check_param("n_resamples", owner, is_int(n_resamples, 1000), "an int >= 1000", n_resamples)
    check_param("n_check", owner, is_int(n_check, 0), "an int >= 0", n_check)
    rng = np.random.default_rng(random_state)
    probability = false_alarm_rate * stride / len(STATISTICS)

    boot_c, win_c = _null_draws(baseline.class_counts, window, n_resamples, rng)
    chi2_t, chi2_shape = tail_threshold(_chi2_rows(boot_c, win_c), probability)
    boot_b, win_b = _null_draws(baseline.confidence_counts, window, n_resamples, rng)
    psi_t, psi_shape = tail_threshold(_psi_rows(boot_b, win_b), probability)
    flag_t = (_flag_threshold(baseline.n_flagged, baseline.n_rows, window, probability, rng)
              if check_flags else window)

    measured = 0.0
    if n_check:
        bc, wc = _null_draws(baseline.class_counts, window, n_check, rng)
        bb, wb = _null_draws(baseline.confidence_counts, window, n_check, rng)
        over = (_chi2_rows(bc, wc) > chi2_t) | (_psi_rows(bb, wb) > psi_t)
        if check_flags and baseline.n_rows:
            rates = traffic_rates(baseline.n_flagged, baseline.n_rows, n_check, rng)
            over |= rng.binomial(window, rates) > flag_t
        measured = float(over.mean())
    return AlarmThresholds(
        class_chi2=chi2_t, confidence_psi=psi_t, n_flagged=int(flag_t), false_alarm_rate=false_alarm_rate,
        window=window, stride=stride, tail_probability=probability,
        tail_shapes={"class_chi2": chi2_shape, "confidence_psi": psi_shape}, n_resamples=n_resamples,
        n_check=n_check, measured_window_rate=measured, measured_request_rate=measured / stride)


class SlidingWindow:
    """The last ``size`` inputs' predicted class, confidence and flag, in bounded memory; ``due``
    after every ``stride``-th input once full."""

    def __init__(self, size: int, stride: int) -> None:
        if size < 1 or not 1 <= stride <= size:
            raise DataError(f"A window needs size >= 1 and stride in [1, size]; got {size} and {stride}.")
        self.size = size
        self.stride = stride
        self.seen = 0
        self._items: deque[tuple[int, float, bool]] = deque(maxlen=size)

    def add(self, prediction: int, confidence: float, flagged: bool) -> bool:
        """Append one input; True when the window is full and a judgement is due."""
        self._items.append((int(prediction), float(confidence), bool(flagged)))
        self.seen += 1
        return len(self._items) == self.size and (self.seen - self.size) % self.stride == 0

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predictions, confidences and flags of the inputs now in the window."""
        if not self._items:
            return np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0, dtype=bool)
        pred, conf, flag = zip(*self._items, strict=True)
        return np.asarray(pred, dtype=np.int64), np.asarray(conf), np.asarray(flag, dtype=bool)

    def __len__(self) -> int:
        return len(self._items)

