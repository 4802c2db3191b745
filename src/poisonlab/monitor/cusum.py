"""A sequential change detector on the stream of predictions: one-sided Bernoulli CUSUMs per
predicted class (and on the flagged-input indicator when an input check runs), with a threshold
calibrated on the baseline to a stated false-alarm rate per request.

Why beside the windows. A window of 500 judged at one false alarm per 100,000 requests needs a
class share to move by more than chance does in 500 inputs; a campaign of 2-5% triggered traffic
moves it by one to four points and is mostly missed. A CUSUM accumulates the evidence input by
input (Page 1954), so a small persistent shift is found after enough inputs instead of never.

The statistic. For class ``k`` and input ``t`` with indicator ``x = [predicted class == k]``,

    S_t = max(0, S_{t-1} + x log(p1 / p0) + (1 - x) log((1 - p1) / (1 - p0))),
    p0 = the reference share of class k,  p1 = p0 + min_shift (default 0.02),

the log-likelihood-ratio CUSUM of a Bernoulli share (Reynolds & Stoumbos 1999), tuned for a rise
of ``min_shift``: 0.02 is what a campaign of 2% of the traffic does with a trigger that always
works (chosen so before any measurement, not tuned on the benchmark); an alarm when
``S_t > h``, after which that class's ``S`` is reset to 0. With an input check the flagged
indicator gets the same statistic with ``p1 = flag_ratio * p0`` (a multiplicative shift: clean
flag rates are small).

The reference is learned from the stream (a self-starting chart, Hawkins 1987). A baseline of a
few hundred rows estimates a share with an error of ``sqrt(p (1 - p) / n)``: 1.6 points for a
share of 0.3 and 900 rows, as large as the shifts the CUSUM is for. Against the baseline's share
alone, a clean stream that differs from the baseline by that error drifts up on one class (the
statistic's drift is positive once a share is about ``min_shift / 2`` above the reference) and
alarms again and again (in ``benchmarks/serve_load.py`` the live pool's predicted ham share is 2.5
points above the baseline's). So ``p0`` is the Beta posterior mean of the share given the baseline
rows and every input the stream has shown so far, ``(c_base + c_stream + 1) / (n_base + t + 2)``;
the CUSUM accumulates only after ``burn_in`` inputs. The reference keeps learning during a
campaign, so one that lasts is absorbed into it slowly (its share of all inputs seen): the usual
price of a self-starting chart. The windows, which compare with the baseline itself, watch the
first ``burn_in`` inputs and a campaign running from the first request.

How a per-request false-alarm rate becomes ``h`` (:func:`calibrate_cusum`):

1. ``n_streams`` clean streams of ``horizon`` inputs are simulated. Each stream's baseline is a
   bootstrap copy of the baseline's class counts (the chart as deployed in that world), and its
   traffic is drawn from the shares of a second bootstrap copy: the same two sampling errors as
   the window thresholds allow (:func:`poisonlab.monitor.windows._null_draws`). Flags are drawn
   likewise from the clean flag rate's posterior.
2. The run length of a CUSUM with a large average run length is close to geometric, so a rate of
   ``r`` alarms per request gives a probability ``1 - exp(-r (horizon - burn_in))`` that a stream
   alarms within the horizon. ``h`` is the quantile of the streams' maximum statistic (over the
   classes, after the burn-in) at that probability (a generalized Pareto tail, as the windows
   use, when the probability is too small to read off the streams).
3. The rate is then measured, not assumed: ``n_check`` fresh streams run with ``h`` and resets,
   and the alarms per request are reported (``measured_request_rate``).
   ``benchmarks/serve_load.py`` streams 100,000 clean requests the baseline never saw.

References
----------
Page, E. S. "Continuous inspection schemes", Biometrika, 1954. https://doi.org/10.1093/biomet/41.1-2.100

Reynolds, M. R. and Stoumbos, Z. G. "A CUSUM chart for monitoring a proportion when inspecting
continuously", Journal of Quality Technology, 1999. https://doi.org/10.1080/00224065.1999.11979900

Hawkins, D. M. "Self-starting CUSUM charts for location and scale", The Statistician 36, 1987.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from poisonlab.exceptions import check_param, is_int
from poisonlab.monitor.windows import Baseline, tail_threshold

P_FLOOR = 1e-6  # shares are kept in [P_FLOOR, 1 - P_FLOOR] in the log-likelihood ratio


def _increments(x: np.ndarray, p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
    """The Bernoulli log-likelihood ratio of ``p1`` against ``p0`` for indicators ``x``."""
    p0 = np.clip(p0, P_FLOOR, 1 - P_FLOOR)
    p1 = np.clip(p1, P_FLOOR, 1 - P_FLOOR)
    out: np.ndarray = np.where(x, np.log(p1 / p0), np.log((1 - p1) / (1 - p0)))
    return out


@dataclass(frozen=True)
class CusumThresholds:
    """The CUSUM's design and calibration: ``min_shift`` (the class share rise it is tuned for),
    ``flag_ratio`` (the flag-rate multiple), ``burn_in``, the thresholds ``class_h`` and
    ``flagged_h`` (None without an input check), the per-request ``false_alarm_rate`` asked for
    (split equally over the class and flagged statistics when both run), the simulation's
    ``horizon`` and ``n_streams``, the fitted tail shapes, and the ``measured_request_rate`` of
    ``n_check`` fresh clean streams run with the thresholds (``measured_alarms`` alarms)."""

    min_shift: float
    flag_ratio: float
    burn_in: int
    class_h: float
    flagged_h: float | None
    false_alarm_rate: float
    horizon: int
    n_streams: int
    tail_shapes: dict[str, float]
    n_check: int
    measured_alarms: int
    measured_request_rate: float

    def as_dict(self) -> dict[str, object]:
        """The design and calibration as plain JSON values."""
        return asdict(self)


def _simulate(prior_counts: np.ndarray, traffic: np.ndarray, prior_flag: np.ndarray | None,
              flag_rates: np.ndarray | None, *, min_shift: float, flag_ratio: float, burn_in: int,
              horizon: int, rng: np.random.Generator, h: tuple[float, float | None] | None = None,
              block: int = 500) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Run ``len(traffic)`` clean streams of ``horizon`` inputs through the CUSUM.

    ``prior_counts`` (M x K): each stream's baseline class counts; ``traffic`` (M x K): the shares
    its inputs are drawn from; ``prior_flag`` (M x 2: flagged, rows) and ``flag_rates`` (M) the
    same for flags, or None. Without ``h``: returns each stream's maximum class statistic and
    maximum flagged statistic after the burn-in (no resets). With ``h``: runs with resets and
    returns the class and flagged alarm counts in the last two places."""
    M, K = traffic.shape
    cum = np.cumsum(traffic, axis=1)
    cum[:, -1] = 1.0
    counts = prior_counts.astype(np.float64).copy()
    n = counts.sum(axis=1, keepdims=True)
    S = np.zeros((M, K))
    max_c = np.zeros(M)
    flags_on = prior_flag is not None and flag_rates is not None
    if flags_on:
        assert prior_flag is not None and flag_rates is not None
        f_count = prior_flag[:, 0].astype(np.float64).copy()
        f_n = prior_flag[:, 1].astype(np.float64).copy()
    S_f = np.zeros(M)
    max_f = np.zeros(M)
    alarms_c = alarms_f = 0
    eye = np.eye(K, dtype=bool)
    for start in range(0, horizon, block):
        size = min(block, horizon - start)
        u = rng.random((size, M))
        uf = rng.random((size, M)) if flags_on else None
        for i in range(size):
            t = start + i
            k = (u[i][:, None] > cum).sum(axis=1)
            x = eye[k]
            p0 = (counts + 1) / (n + 2)
            if t >= burn_in:
                S = np.maximum(S + _increments(x, p0, p0 + min_shift), 0.0)
                if h is None:
                    np.maximum(max_c, S.max(axis=1), out=max_c)
                else:
                    over = S > h[0]
                    alarms_c += int(over.sum())
                    S[over] = 0.0
            counts += x
            n += 1
            if flags_on:
                assert uf is not None and flag_rates is not None
                fx = uf[i] < flag_rates
                q0 = (f_count + 1) / (f_n + 2)
                if t >= burn_in:
                    S_f = np.maximum(S_f + _increments(fx, q0, q0 * flag_ratio), 0.0)
                    if h is None:
                        np.maximum(max_f, S_f, out=max_f)
                    elif h[1] is not None:
                        over_f = S_f > h[1]
                        alarms_f += int(over_f.sum())
                        S_f[over_f] = 0.0
                f_count += fx
                f_n += 1
    return max_c, max_f, alarms_c, alarms_f


def _worlds(baseline: Baseline, size: int, rng: np.random.Generator, flags: bool
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Per simulated stream: the deployed chart's baseline counts (a bootstrap copy), the
    traffic's shares (a second copy), and the same for the flag rate (or None)."""
    n = int(baseline.class_counts.sum())
    shares = baseline.class_counts / n
    prior = rng.multinomial(n, shares, size=size)
    traffic = rng.multinomial(n, shares, size=size) / n
    if not flags or baseline.n_rows == 0:
        return prior, traffic, None, None
    from poisonlab.monitor.windows import traffic_rates

    rate = rng.beta(baseline.n_flagged + 1, baseline.n_rows - baseline.n_flagged + 1, size=size)
    prior_flag = np.stack([rng.binomial(baseline.n_rows, rate), np.full(size, baseline.n_rows)], axis=1)
    return prior, traffic, prior_flag, traffic_rates(baseline.n_flagged, baseline.n_rows, size, rng)


def calibrate_cusum(baseline: Baseline, *, false_alarm_rate: float = 1e-5, min_shift: float = 0.02,
                    flag_ratio: float = 2.0, burn_in: int = 1000, horizon: int = 20000,
                    n_streams: int = 1000, n_check: int = 1000,
                    random_state: int | np.random.Generator | None = 0,
                    check_flags: bool = True) -> CusumThresholds:
    """Thresholds of the class and flagged CUSUMs for ``false_alarm_rate`` false alarms per clean
    request (see the module's docstring for how); ``check_flags=False`` when no input check runs."""
    owner = "calibrate_cusum"
    check_param("false_alarm_rate", owner, isinstance(false_alarm_rate, float) and 0 < false_alarm_rate < 0.1,
                "a float in (0, 0.1)", false_alarm_rate)
    check_param("min_shift", owner, isinstance(min_shift, float) and 0 < min_shift < 0.5,
                "a float in (0, 0.5)", min_shift)
    check_param("flag_ratio", owner, isinstance(flag_ratio, float) and flag_ratio > 1, "a float > 1", flag_ratio)
    check_param("burn_in", owner, is_int(burn_in, 0), "an int >= 0", burn_in)
    check_param("horizon", owner, is_int(horizon, burn_in + 100), "an int >= burn_in + 100", horizon)
    check_param("n_streams", owner, is_int(n_streams, 100), "an int >= 100", n_streams)
    check_param("n_check", owner, is_int(n_check, 0), "an int >= 0", n_check)
    rng = np.random.default_rng(random_state)
    flags = check_flags and baseline.n_rows > 0
    rate = false_alarm_rate / (2 if flags else 1)
    span = horizon - burn_in
    probability = float(-np.expm1(-rate * span))  # P(a stream alarms within the horizon)

    def run(size: int, h: tuple[float, float | None] | None) -> tuple[np.ndarray, np.ndarray, int, int]:
        prior, traffic, prior_flag, flag_rates = _worlds(baseline, size, rng, flags)
        return _simulate(prior, traffic, prior_flag, flag_rates, min_shift=min_shift, flag_ratio=flag_ratio,
                         burn_in=burn_in, horizon=horizon, rng=rng, h=h)

    max_c, max_f, _, _ = run(n_streams, None)
    class_h, class_shape = tail_threshold(max_c, probability)
    flagged_h, flag_shape = tail_threshold(max_f, probability) if flags else (None, 0.0)
    alarms = 0
    if n_check:
        _, _, a_c, a_f = run(n_check, (class_h, flagged_h))
        alarms = a_c + a_f
    return CusumThresholds(
        min_shift=min_shift, flag_ratio=flag_ratio, burn_in=burn_in, class_h=float(class_h),
        flagged_h=None if flagged_h is None else float(flagged_h), false_alarm_rate=false_alarm_rate,
        horizon=horizon, n_streams=n_streams, tail_shapes={"class": class_shape, "flagged": flag_shape},
        n_check=n_check, measured_alarms=alarms,
        measured_request_rate=alarms / (n_check * span) if n_check else 0.0)


class Cusum:
    """The running CUSUMs of one stream: the statistic per class (``S``) and of the flagged
    indicator (``S_flagged``), the reference counts (baseline plus stream), and ``seen`` inputs.
    :meth:`add` takes one input (plain Python floats: a few microseconds per input for a handful
    of classes) and returns what crossed."""

    def __init__(self, baseline: Baseline, thresholds: CusumThresholds) -> None:
        self.t = thresholds
        self.counts = [float(c) for c in baseline.class_counts]
        self.n = float(sum(self.counts))
        self.f_count, self.f_n = float(baseline.n_flagged), float(baseline.n_rows)
        self._S = [0.0] * len(self.counts)
        self.S_flagged = 0.0
        self.seen = 0

    @property
    def S(self) -> np.ndarray:
        """The statistic of each class now."""
        return np.asarray(self._S)

    def reference(self) -> np.ndarray:
        """The reference share of each class now (baseline and stream so far)."""
        out: np.ndarray = (np.asarray(self.counts) + 1) / (self.n + 2)
        return out

    def flag_reference(self) -> float:
        """The reference flag rate now."""
        return (self.f_count + 1) / (self.f_n + 2)

    @staticmethod
    def _llr(hit: bool, p0: float, p1: float) -> float:
        p0 = min(max(p0, P_FLOOR), 1 - P_FLOOR)
        p1 = min(max(p1, P_FLOOR), 1 - P_FLOOR)
        return math.log(p1 / p0) if hit else math.log((1 - p1) / (1 - p0))

    def add(self, prediction: int, flagged: bool) -> list[tuple[str, int, float, float, float]]:
        """One input; returns ``(statistic, class index or -1, value, threshold, reference)`` for
        each CUSUM that crossed its threshold (and was reset): ``"cusum_class"`` with the class
        index, ``"cusum_flagged"`` with -1."""
        t = self.t
        out: list[tuple[str, int, float, float, float]] = []
        if self.seen >= t.burn_in:
            denom = self.n + 2
            S = self._S
            for k, c in enumerate(self.counts):
                p0 = (c + 1) / denom
                value = S[k] + self._llr(k == prediction, p0, p0 + t.min_shift)
                if value > t.class_h:
                    out.append(("cusum_class", k, value, t.class_h, p0))
                    value = 0.0
                S[k] = value if value > 0.0 else 0.0
            if t.flagged_h is not None:
                q0 = self.flag_reference()
                value = self.S_flagged + self._llr(bool(flagged), q0, q0 * t.flag_ratio)
                if value > t.flagged_h:
                    out.append(("cusum_flagged", -1, value, t.flagged_h, q0))
                    value = 0.0
                self.S_flagged = value if value > 0.0 else 0.0
        self.counts[prediction] += 1
        self.n += 1
        self.f_count += bool(flagged)
        self.f_n += 1
        self.seen += 1
        return out
