"""The service through FastAPI's TestClient: predictions, an alert after an injected campaign of
triggered emails against a backdoored spam filter (and none from a clean one on clean traffic),
the 413, 422 and 401 paths, the Prometheus text and the dashboard's escaping."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from poisonlab.monitor.app import create_app, needs_token
from poisonlab.monitor.service import Monitor
from poisonlab.monitor.store import Recorder, Store

BATCH = 50


def _traffic(lab, n_batches: int, triggered_rate: float, seed: int) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(n_batches):
        batch = list(lab.live[rng.integers(0, len(lab.live), BATCH)])
        n_trig = int(rng.binomial(BATCH, triggered_rate))
        batch[:n_trig] = list(lab.triggered[rng.integers(0, len(lab.triggered), n_trig)])
        batches.append([str(x) for x in batch])
    return batches


@pytest.fixture(scope="module")
def backdoored_monitor(lab) -> Monitor:
    return Monitor(input_check="auto").fit(lab.backdoored, lab.baseline, classes=lab.classes)


def test_predictions_and_verdicts(lab, backdoored_monitor: Monitor) -> None:
    client = TestClient(create_app(backdoored_monitor))
    texts = [str(lab.live[0]), str(lab.triggered[0])]
    r = client.post("/v1/predict", json={"inputs": texts})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["predictions"]) == 2 and set(body["predictions"]) <= set(lab.classes)
    assert np.allclose(np.sum(body["probabilities"], axis=1), 1.0, atol=1e-4)
    expected = lab.backdoored.predict_proba(np.array(texts, dtype=object)).argmax(1)
    assert body["predictions"] == [lab.classes[k] for k in expected]
    assert len(body["scores"]) == 2 and len(body["flagged"]) == 2
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["n_inputs"] >= 2


@pytest.mark.slow
def test_a_campaign_raises_an_alert_and_clean_traffic_none(lab, tmp_path: Path) -> None:
    # measured 2026-12-03: the backdoor sends 74.3% of triggered ham to spam
    assert lab.asr >= 0.6
    monitor = Monitor(input_check="auto").fit(lab.backdoored, lab.baseline, classes=lab.classes)
    store = Store(f"sqlite:///{tmp_path / 'serve.db'}", spool=tmp_path / "spool")
    recorder = Recorder(store)
    with TestClient(create_app(monitor, recorder=recorder)) as client:
        clean = _traffic(lab, 40, 0.0, seed=1)  # 2,000 clean emails
        for batch in clean:
            assert client.post("/v1/predict", json={"inputs": batch}).status_code == 200
        assert client.get("/v1/alerts").json()["n_alerts"] == 0
        for batch in _traffic(lab, 30, 0.2, seed=2):  # 1,500 emails, a fifth of them triggered
            assert client.post("/v1/predict", json={"inputs": batch}).status_code == 200
        alerts = client.get("/v1/alerts").json()
        windows = client.get("/v1/windows").json()
    assert alerts["n_alerts"] >= 1
    first = alerts["alerts"][-1]
    assert first["request_count"] > 2000  # raised by the campaign, not before it
    assert "class_chi2" in first["statistics"] or "n_flagged" in first["statistics"]
    assert windows["windows"][0]["alarm"] is True
    # the db holds every request, window and alert (the TestClient's exit ran the shutdown flush)
    counts = store.counts()
    assert counts["request"] == 70 and counts["alert"] == alerts["n_alerts"]
    assert counts["window"] == len(monitor.history_) and counts["flagged"] == monitor.n_flagged_
    (row,) = store.recent("flagged", limit=1)
    assert row["input"] is None and len(row["input_hash"]) == 64  # no --store-inputs: the hash only


@pytest.mark.slow
def test_a_clean_model_raises_no_alert_over_clean_traffic(lab) -> None:
    monitor = Monitor(input_check="auto").fit(lab.clean, lab.baseline, classes=lab.classes)
    client = TestClient(create_app(monitor))
    for batch in _traffic(lab, 60, 0.0, seed=3):  # 3,000 clean emails, 26 windows judged
        assert client.post("/v1/predict", json={"inputs": batch}).status_code == 200
    assert client.get("/v1/alerts").json() == {"alerts": [], "n_alerts": 0}
    assert len(client.get("/v1/windows").json()["windows"]) == 26


def test_size_limits_are_413(backdoored_monitor: Monitor) -> None:
    client = TestClient(create_app(backdoored_monitor, max_body_bytes=2000, max_batch=4))
    r = client.post("/v1/predict", json={"inputs": ["x" * 3000]})
    assert r.status_code == 413 and "2000 bytes" in r.json()["error"]
    r = client.post("/v1/predict", json={"inputs": ["hello"] * 5})
    assert r.status_code == 413 and "at most 4" in r.json()["error"]

    def chunks():  # a streamed body without Content-Length
        for _ in range(10):
            yield b" " * 500

    r = client.post("/v1/predict", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


@pytest.mark.parametrize(("body", "message"), [
    (b"{not json", "not JSON"),
    (b'["a"]', '{"inputs": [...]}'),
    (b'{"inputs": "a"}', '{"inputs": [...]}'),
    (b'{"inputs": ["a"], "extra": 1}', '{"inputs": [...]}'),
    (b'{"inputs": []}', "at least one"),
    (b'{"inputs": ["a", 3]}', "inputs[1] must be a string"),
    (b"\xff\xfe", "not JSON"),
])
def test_malformed_bodies_are_422(backdoored_monitor: Monitor, body: bytes, message: str) -> None:
    client = TestClient(create_app(backdoored_monitor))
    r = client.post("/v1/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert message in r.json()["error"]


def test_wrong_shapes_are_422_for_an_image_model() -> None:
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    from poisonlab.models.sklearn import SklearnModel

    X, y = load_digits(return_X_y=True)
    images = (X / 16).reshape(-1, 8, 8, 1).astype(np.float32)
    model = SklearnModel(estimator=LogisticRegression(max_iter=1000)).fit(images[:800], y[:800], n_classes=10)
    monitor = Monitor().fit(model, images[800:1300])
    client = TestClient(create_app(monitor))
    ok = client.post("/v1/predict", json={"inputs": images[1300:1302, :, :, 0].tolist()})  # H x W works
    assert ok.status_code == 200 and len(ok.json()["predictions"]) == 2
    r = client.post("/v1/predict", json={"inputs": [[[0.1] * 7] * 8]})
    assert r.status_code == 422 and "shape [8, 8, 1]" in r.json()["error"]
    r = client.post("/v1/predict", json={"inputs": [[["a"] * 8] * 8]})
    assert r.status_code == 422


def test_a_token_is_required_and_compared(backdoored_monitor: Monitor) -> None:
    token = "s3cret-token-0123456789"
    client = TestClient(create_app(backdoored_monitor, token=token))
    assert client.post("/v1/predict", json={"inputs": ["hi"]}).status_code == 401
    bad = {"Authorization": "Bearer s3cret-token-0123456780"}
    assert client.post("/v1/predict", json={"inputs": ["hi"]}, headers=bad).status_code == 401
    assert client.get("/metrics", headers={"Authorization": token}).status_code == 401  # no scheme
    good = {"Authorization": f"Bearer {token}"}
    assert client.post("/v1/predict", json={"inputs": ["hi"]}, headers=good).status_code == 200
    assert client.get("/", headers=good).status_code == 200
    assert client.get("/health").status_code == 200  # liveness probes need no token
    assert needs_token("0.0.0.0") and needs_token("10.1.2.3") and needs_token("example.org")
    assert not needs_token("127.0.0.1") and not needs_token("::1") and not needs_token("localhost")


def test_metrics_text(lab, backdoored_monitor: Monitor) -> None:
    client = TestClient(create_app(backdoored_monitor))
    client.post("/v1/predict", json={"inputs": [str(t) for t in lab.triggered[:20]]})
    client.post("/v1/predict", content=b"{", headers={"content-type": "application/json"})
    text = client.get("/metrics").text
    assert re.search(r"^poisonlab_requests_total 1\.0$", text, re.M)
    assert re.search(r"^poisonlab_inputs_total 20\.0$", text, re.M)
    flagged = float(re.search(r"^poisonlab_inputs_flagged_total (\S+)$", text, re.M)[1])
    assert 0 < flagged <= 20
    assert re.search(r'^poisonlab_request_errors_total\{code="422"\} 1\.0$', text, re.M)
    assert "poisonlab_request_duration_seconds_bucket" in text
    assert re.search(r'^poisonlab_baseline_class_share\{class_name="spam"\} 0\.\d+$', text, re.M)
    assert "# TYPE poisonlab_window_class_chi2 gauge" in text


def test_the_dashboard_escapes_inputs(lab, tmp_path: Path) -> None:
    monitor = Monitor(input_check="auto").fit(lab.backdoored, lab.baseline, classes=lab.classes)
    client = TestClient(create_app(monitor, store_inputs=True))
    hostile = "<script>alert(1)</script> " + str(lab.triggered[0])
    client.post("/v1/predict", json={"inputs": [hostile] * 3})
    page = client.get("/")
    assert page.status_code == 200
    assert "<script>alert(1)" not in page.text and "&lt;script&gt;alert(1)" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "http://" not in page.text and "https://" not in page.text  # nothing fetched from elsewhere
