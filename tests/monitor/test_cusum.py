"""The sequential change detector: a hand-worked CUSUM and its reset, a calibrated threshold that
gives the stated false-alarm rate on simulated clean streams, a 5% campaign of triggered emails
found within a measured bound where the windows miss it, and CUSUM alerts through the same path
as the windows' (the store, /v1/alerts, /metrics, the dashboard)."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from poisonlab.exceptions import ParameterError
from poisonlab.monitor.app import create_app
from poisonlab.monitor.cusum import Cusum, CusumThresholds, calibrate_cusum
from poisonlab.monitor.service import Monitor
from poisonlab.monitor.store import Recorder, Store
from poisonlab.monitor.windows import baseline_from_probs


def _digits_baseline():
    X, y = load_digits(return_X_y=True)
    idx = np.random.default_rng(0).permutation(len(y))
    model = LogisticRegression(max_iter=2000).fit(X[idx[:700]], y[idx[:700]])
    return baseline_from_probs(model.predict_proba(X[idx[700:1300]]), tuple(str(k) for k in range(10)))


def _thresholds(h: float, *, burn_in: int = 0, min_shift: float = 0.1) -> CusumThresholds:
    return CusumThresholds(min_shift=min_shift, flag_ratio=2.0, burn_in=burn_in, class_h=h, flagged_h=None,
                           false_alarm_rate=1e-5, horizon=1000, n_streams=100, tail_shapes={}, n_check=0,
                           measured_alarms=0, measured_request_rate=0.0)


def test_hand_worked_cusum_and_its_reset() -> None:
    P = np.array([[0.9, 0.1]] * 4 + [[0.1, 0.9]] * 4)  # baseline: 4 of each class
    baseline = baseline_from_probs(P, ("a", "b"), n_bins=2)
    c = Cusum(baseline, _thresholds(0.45, burn_in=1))
    assert c.add(1, False) == [] and c.S.tolist() == [0.0, 0.0]  # the burn-in only learns
    # input 2: reference for "b" = (5 + 1) / (9 + 2) = 6/11, p1 = 6/11 + 0.1
    p0 = 6 / 11
    assert c.add(1, False) == []
    assert c.S[1] == pytest.approx(math.log((p0 + 0.1) / p0))
    assert c.S[0] == 0.0  # "a" not predicted: its statistic falls and stays at 0
    s2 = c.S[1]
    q0 = 7 / 12  # input 3: counts b = 6 of 10
    assert c.add(1, False) == []
    s3 = s2 + math.log((q0 + 0.1) / q0)
    assert c.S[1] == pytest.approx(s3)
    r0 = 8 / 13  # input 4 crosses 0.45 and is reset (0.477; input 3 left 0.326)
    (crossed,) = c.add(1, False)
    assert crossed[0] == "cusum_class" and crossed[1] == 1
    assert crossed[2] == pytest.approx(s3 + math.log((r0 + 0.1) / r0)) and crossed[2] > 0.45
    assert crossed[4] == pytest.approx(r0)
    assert c.S[1] == 0.0  # reset after the alarm: the next one needs fresh evidence
    assert c.add(1, False) == [] and 0 < c.S[1] < 0.45
    # a miss takes log((1 - p1) / (1 - p0)) < 0
    before = c.S[1]
    c.add(0, False)
    assert c.S[1] < before


def test_the_stated_rate_holds_on_simulated_clean_streams() -> None:
    baseline = _digits_baseline()
    rate = 2e-4
    t = calibrate_cusum(baseline, false_alarm_rate=rate, burn_in=300, horizon=4000, n_streams=600, n_check=600,
                        random_state=3, check_flags=False)
    # measured 2026-12-04 (seed 3): 409 alarms in 600 x 3,700 simulated requests = 1.84e-4
    assert t.measured_request_rate == pytest.approx(rate, rel=0.25)
    # and independently, through the Cusum the service runs: 40 streams of 4,000 clean inputs, each
    # from a world the baseline is a sample of (the chart's baseline and the traffic's shares two
    # bootstrap copies, as the calibration assumes)
    rng = np.random.default_rng(11)
    n = int(baseline.class_counts.sum())
    alarms = 0
    for _ in range(40):
        chart = dataclasses.replace(baseline, class_counts=rng.multinomial(n, baseline.class_shares))
        traffic = rng.multinomial(n, baseline.class_shares) / n
        c = Cusum(chart, t)
        for k in rng.choice(10, size=4000, p=traffic):
            alarms += len(c.add(int(k), False))
    expected = rate * 40 * 3700  # 29.6
    # measured 2026-12-04: 24 alarms; a Poisson count of mean 29.6 is within +-60% with p > 0.99
    assert 0.4 * expected <= alarms <= 1.6 * expected


def test_calibration_parameters_are_checked() -> None:
    baseline = _digits_baseline()
    with pytest.raises(ParameterError, match="'min_shift' parameter"):
        calibrate_cusum(baseline, min_shift=0.7)
    with pytest.raises(ParameterError, match="'horizon' parameter"):
        calibrate_cusum(baseline, burn_in=1000, horizon=500)


@pytest.fixture(scope="module")
def spam_monitor(lab) -> Monitor:
    return Monitor(cusum=True).fit(lab.backdoored, lab.baseline, classes=lab.classes)


def _stream(lab, monitor: Monitor, rate: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` inputs' probabilities: clean emails from the live pool, and with probability ``rate``
    a triggered email the backdoor sends to spam (an injected shift of ``rate`` inputs to spam)."""
    P_live = monitor.predict_proba_(lab.live)
    P_trig = monitor.predict_proba_(lab.triggered)
    P_trig = P_trig[P_trig.argmax(1) == lab.classes.index("spam")]
    rng = np.random.default_rng(seed)
    trig = rng.random(n) < rate
    P = np.where(trig[:, None], P_trig[rng.integers(0, len(P_trig), n)], P_live[rng.integers(0, len(P_live), n)])
    return P, np.zeros(n, dtype=bool)


def test_a_five_percent_shift_is_alarmed_within_a_bound(lab, spam_monitor: Monitor) -> None:
    # 5% of the traffic sent to spam by the trigger: the spam share rises by 3.5 points (5% of the
    # 70.6% that was not spam), after 5,000 clean requests
    t = spam_monitor.cusum_thresholds_
    assert t is not None and t.flagged_h is None  # no input check: class CUSUMs only
    # the windows and the CUSUM share the rate asked, half each
    assert t.false_alarm_rate == spam_monitor.thresholds_.false_alarm_rate == 0.5e-5
    # measured 2026-12-08: 5.1e-6 per request on 1,000 simulated clean streams, 5e-6 asked
    assert t.measured_request_rate <= 1.3 * t.false_alarm_rate
    found = []
    for seed in range(5):
        m = spam_monitor.reset()
        P, f = _stream(lab, m, 0.0, 5000, seed=100 + seed)
        m.record(P, f)  # the service has run 5,000 clean requests
        clean_alarms = m.cusum_alarms_
        P, f = _stream(lab, m, 0.05, 20000, seed=200 + seed)
        at = None
        for start in range(0, len(P), 50):
            _, alerts = m.record(P[start:start + 50], f[start:start + 50])
            cusum = [a for a in alerts if a.statistics == ["cusum_class"]]
            if cusum:
                at = start + 50
                assert "'spam'" in cusum[0].message  # the attacker's class rose
                break
        found.append((clean_alarms, at))
    # measured 2026-12-08 (seeds 200-204, half the rate asked): alarms 2,000, 2,900, 4,200 and
    # 2,300 inputs into the campaign, none within 20,000 for seed 203; median 2,900 (with the
    # whole rate, 2026-12-04: 1,950, 2,800, 3,200, 1,700, none)
    delays = sorted(a for _, a in found if a is not None)
    assert all(c == 0 for c, _ in found)  # no CUSUM alarm in the 5,000 clean requests before
    assert len(delays) >= 4 and delays[len(delays) // 2] <= 5000, found


def test_a_cusum_alert_is_stored_and_served(lab, tmp_path: Path) -> None:
    monitor = Monitor(cusum=True, cusum_burn_in=200).fit(lab.backdoored, lab.baseline, classes=lab.classes)
    store = Store(f"sqlite:///{tmp_path / 'serve.db'}", spool=tmp_path / "spool")
    rng = np.random.default_rng(5)
    with TestClient(create_app(monitor, recorder=Recorder(store))) as client:
        for _ in range(8):  # 400 clean emails, then 60% triggered until the CUSUM rings
            batch = [str(x) for x in lab.live[rng.integers(0, len(lab.live), 50)]]
            assert client.post("/v1/predict", json={"inputs": batch}).status_code == 200
        for _ in range(20):
            batch = [str(x) for x in lab.live[rng.integers(0, len(lab.live), 50)]]
            batch[:30] = [str(x) for x in lab.triggered[rng.integers(0, len(lab.triggered), 30)]]
            assert client.post("/v1/predict", json={"inputs": batch}).status_code == 200
            if monitor.cusum_alarms_:
                break
        alerts = client.get("/v1/alerts").json()
        windows = client.get("/v1/windows").json()
        metrics = client.get("/metrics").text
        page = client.get("/").text
    assert monitor.cusum_alarms_ >= 1
    cusum = [a for a in alerts["alerts"] if a["statistics"] == ["cusum_class"]]
    assert cusum and "CUSUM of class 'spam'" in cusum[-1]["message"]
    assert cusum[-1]["window"]["class_name"] == "spam" and cusum[-1]["request_count"] > 400
    assert windows["cusum"]["class_h"] == pytest.approx(monitor.cusum_thresholds_.class_h)
    assert re.search(r'^poisonlab_cusum_class_statistic\{class_name="spam"\} \S+$', metrics, re.M)
    assert 'id="cusum"' in page and "CUSUM alarms" in page
    stored = store.recent("alert", limit=100)  # the TestClient's exit flushed the recorder
    assert len(stored) == alerts["n_alerts"]
    assert any(r["statistics"] == '["cusum_class"]' and r["message"].startswith("CUSUM") for r in stored)


def test_the_cusum_can_be_turned_off(lab) -> None:
    monitor = Monitor(cusum=False).fit(lab.backdoored, lab.baseline[:300], classes=lab.classes)
    assert monitor.cusum_ is None and monitor.cusum_thresholds_ is None and monitor.cusum_statistics() == {}
    page = TestClient(create_app(monitor)).get("/").text
    assert 'id="cusum"' not in page
