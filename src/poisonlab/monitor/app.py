"""The HTTP service of ``poisonlab serve``: a FastAPI app around a fitted :class:`Monitor`.

Routes: ``POST /v1/predict`` ``{"inputs": [...]}``; ``GET /v1/alerts``, ``GET /v1/windows``;
``GET /health``; ``GET /metrics`` (Prometheus text format); ``GET /`` the dashboard (server-rendered
with Jinja2, autoescaped, no script or stylesheet from elsewhere).

Security: with a ``token`` every route but ``/health`` needs ``Authorization: Bearer <token>``
(compared with :func:`hmac.compare_digest`); :func:`needs_token` says when the command line must
demand one (any bind address that is not loopback). Bodies over ``max_body_bytes`` and batches
over ``max_batch`` inputs get 413; a body that is not JSON, or not ``{"inputs": [...]}`` of the
model's kind and shape, gets 422 with ``{"error": "..."}``. Nothing from a request body or the
token is logged.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np

from poisonlab.exceptions import DataError, MissingExtraError
from poisonlab.monitor.service import Monitor, Observation, input_hash
from poisonlab.monitor.store import Recorder, new_uid

try:
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response
except ImportError:  # pragma: no cover - the serve extra is missing
    FastAPI = None  # type: ignore[assignment,misc]

TEMPLATES = Path(__file__).parent / "templates"
MAX_BODY_BYTES = 1_000_000
MAX_BATCH = 256
Scope = MutableMapping[str, Any]  # Any: ASGI scopes and messages are untyped dicts
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def needs_token(host: str) -> bool:
    """True unless ``host`` is a loopback address (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


class Guard:
    """ASGI middleware in front of every route: 401 without the bearer ``token`` (when one is
    set; ``/health`` excepted), compared in constant time; 413 for a body over ``limit`` bytes,
    whether declared in Content-Length or streamed. ``refused(status)`` is told of each refusal.
    (A plain ASGI class, not Starlette's ``BaseHTTPMiddleware``, which costs a task group per
    request.)"""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], *, limit: int,
                 token: str | None, refused: Callable[[int], None]) -> None:
        self.app = app
        self.limit = limit
        self.expected = f"Bearer {token}".encode() if token is not None else None
        self.refused = refused

    async def _refuse(self, send: Send, status: int, message: str) -> None:
        self.refused(status)
        await _send_json(send, status, {"error": message})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, or refuse it (wrong token, body over the limit)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        if self.expected is not None and scope.get("path") != "/health":
            given = headers.get(b"authorization", b"")
            scheme, _, value = given.partition(b" ")
            if not hmac.compare_digest(b"Bearer " + value if scheme.lower() == b"bearer" else b"", self.expected):
                await self._refuse(send, 401, "missing or wrong token (send Authorization: Bearer <token>)")
                return
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            await self._refuse(send, 413, f"request body over {self.limit} bytes")
            return
        if scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        seen = 0
        while True:  # read the body first (at most ``limit`` bytes), then hand it on
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body = message.get("body", b"")
            seen += len(body)
            if seen > self.limit:
                await self._refuse(send, 413, f"request body over {self.limit} bytes")
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


class Metrics:
    """The service's Prometheus metrics on their own registry (so that two apps in one process
    do not collide)."""

    def __init__(self, classes: tuple[str, ...]) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("poisonlab_requests", "Prediction requests served.", registry=r)
        self.inputs = Counter("poisonlab_inputs", "Inputs predicted.", registry=r)
        self.flagged = Counter("poisonlab_inputs_flagged", "Inputs the input check or a scan's trigger flagged.",
                               registry=r)
        self.errors = Counter("poisonlab_request_errors", "Requests refused, by status code.", ["code"], registry=r)
        self.alerts = Counter("poisonlab_alerts", "Alerts raised (one per episode).", registry=r)
        self.duration = Histogram("poisonlab_request_duration_seconds", "Time to answer a prediction request.",
                                  buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10),
                                  registry=r)
        self.share = Gauge("poisonlab_window_class_share", "Share of the current window predicted as each class.",
                           ["class_name"], registry=r)
        self.baseline_share = Gauge("poisonlab_baseline_class_share", "Share of the baseline predicted as each class.",
                                    ["class_name"], registry=r)
        self.chi2 = Gauge("poisonlab_window_class_chi2", "Chi-square of the last judged window's class counts.",
                          registry=r)
        self.class_psi = Gauge("poisonlab_window_class_psi", "PSI of the last judged window's class shares.",
                               registry=r)
        self.conf_psi = Gauge("poisonlab_window_confidence_psi", "PSI of the last judged window's max confidence.",
                              registry=r)
        self.flag_rate = Gauge("poisonlab_window_flagged_ratio", "Share of the last judged window's inputs flagged.",
                               registry=r)
        self.cusum = Gauge("poisonlab_cusum_class_statistic",
                           "CUSUM statistic of each class's predicted share (alarm above the threshold).",
                           ["class_name"], registry=r)
        self.cusum_flagged = Gauge("poisonlab_cusum_flagged_statistic", "CUSUM statistic of the flagged-input rate.",
                                   registry=r)
        self.spooled = Gauge("poisonlab_store_spooled_records", "Records waiting in the spool for the database.",
                             registry=r)
        self.classes = classes

    def render(self) -> bytes:
        """The metrics in the Prometheus text format."""
        from prometheus_client import generate_latest

        out: bytes = generate_latest(self.registry)
        return out


def create_app(monitor: Monitor, *, recorder: Recorder | None = None, token: str | None = None,
               max_body_bytes: int = MAX_BODY_BYTES, max_batch: int = MAX_BATCH,
               store_inputs: bool = False, title: str = "poisonlab serve") -> FastAPI:
    """The FastAPI app serving ``monitor`` (fitted), writing to ``recorder`` when given."""
    if FastAPI is None:
        raise MissingExtraError("poisonlab serve needs FastAPI: pip install 'poisonlab[serve]'.") from None
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    metrics = Metrics(monitor.classes_)
    for name, share in zip(monitor.classes_, monitor.baseline_.class_shares, strict=True):
        metrics.baseline_share.labels(class_name=name).set(float(share))
        metrics.share.labels(class_name=name).set(float(share))
        if monitor.cusum_ is not None:
            metrics.cusum.labels(class_name=name).set(0.0)
    recent_flagged: list[dict[str, Any]] = []

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> Any:  # Any: FastAPI's lifespan protocol
        yield
        if recorder is not None:
            recorder.close()

    app = FastAPI(title=title, lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.monitor = monitor
    app.state.metrics = metrics

    def error(status: int, message: str) -> JSONResponse:
        metrics.errors.labels(code=str(status)).inc()
        return JSONResponse({"error": message}, status_code=status)

    @app.post("/v1/predict")
    async def predict(request: Request) -> Response:
        started = time.perf_counter()
        body = await request.body()
        try:
            doc = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return error(422, "the body is not JSON")
        if not isinstance(doc, dict) or set(doc) != {"inputs"} or not isinstance(doc["inputs"], list):
            return error(422, 'the body must be {"inputs": [...]}')
        raw = doc["inputs"]
        if not raw:
            return error(422, "inputs must hold at least one input")
        if len(raw) > max_batch:
            return error(413, f"at most {max_batch} inputs per request; got {len(raw)}")
        try:
            X = monitor.as_inputs(raw)
        except DataError as exc:
            return error(422, str(exc))
        from starlette.concurrency import run_in_threadpool

        obs = await run_in_threadpool(monitor.observe, X)
        seconds = time.perf_counter() - started
        _account(obs, X, raw, seconds)
        return JSONResponse(_answer(obs))

    def _account(obs: Observation, X: np.ndarray, raw: list[Any], seconds: float) -> None:
        metrics.requests.inc()
        metrics.inputs.inc(len(obs.predictions))
        n_flagged = sum(obs.flags)
        metrics.flagged.inc(n_flagged)
        metrics.duration.observe(seconds)
        metrics.alerts.inc(len(obs.alerts))
        for name, share in zip(monitor.classes_, monitor.class_shares(), strict=True):
            metrics.share.labels(class_name=name).set(share)
        for name, value in monitor.cusum_statistics().items():
            metrics.cusum.labels(class_name=name).set(value)
        if monitor.cusum_ is not None:
            metrics.cusum_flagged.set(monitor.cusum_.S_flagged)
        if obs.windows:
            w = obs.windows[-1]
            metrics.chi2.set(float(w["class_chi2"]))  # type: ignore[arg-type]
            metrics.class_psi.set(float(w["class_psi"]))  # type: ignore[arg-type]
            metrics.conf_psi.set(float(w["confidence_psi"]))  # type: ignore[arg-type]
            metrics.flag_rate.set(float(w["flagged_rate"]))  # type: ignore[arg-type]
        now = time.time()
        uid = new_uid()
        counts = {c: obs.predictions.count(c) for c in set(obs.predictions)}
        records: list[dict[str, Any]] = [{"kind": "request", "uid": uid, "created": now, "n_inputs": len(X),
                                          "n_flagged": n_flagged, "seconds": seconds,
                                          "predicted": json.dumps(counts, sort_keys=True)}]
        for i, f in enumerate(obs.flags):
            if not f:
                continue
            item = {"kind": "flagged", "uid": new_uid(), "created": now, "request_uid": uid,
                    "input_hash": input_hash(raw[i]), "score": obs.scores[i] if obs.scores else None,
                    "predicted": obs.predictions[i],
                    "input": json.dumps(raw[i]) if store_inputs else None}
            records.append(item)
            recent_flagged.append({k: item[k] for k in ("created", "input_hash", "score", "predicted")}
                                  | {"input": raw[i] if store_inputs and isinstance(raw[i], str) else None})
        del recent_flagged[:-50]
        for w in obs.windows:
            records.append({"kind": "window", "uid": new_uid(), "created": w["created"],
                            "request_count": w["request_count"], "n": w["n"],
                            "class_counts": json.dumps(w["class_counts"]), "class_chi2": w["class_chi2"],
                            "class_psi": w["class_psi"], "class_p_value": w["class_p_value"],
                            "confidence_psi": w["confidence_psi"], "confidence_ks": w["confidence_ks"],
                            "n_flagged": w["n_flagged"], "alarm": w["alarm"]})
        for a in obs.alerts:
            records.append({"kind": "alert", "uid": new_uid(), "created": a.created,
                            "request_count": a.request_count, "statistics": json.dumps(a.statistics),
                            "message": a.message})
        if recorder is not None:
            recorder.put(records)
            metrics.spooled.set(recorder.store.n_spooled)

    @app.get("/v1/alerts")
    async def alerts() -> Response:
        return JSONResponse({"alerts": [_alert_dict(a) for a in reversed(monitor.recent_alerts_)],
                             "n_alerts": monitor.alerts_})

    @app.get("/v1/windows")
    async def windows() -> Response:
        cusum = monitor.cusum_thresholds_
        return JSONResponse({"windows": list(reversed(monitor.history_)), "thresholds": monitor.thresholds_.as_dict(),
                             "cusum": None if cusum is None else cusum.as_dict() | {
                                 "statistics": monitor.cusum_statistics(),
                                 "flagged_statistic": monitor.cusum_.S_flagged if monitor.cusum_ else None},
                             "baseline_class_shares": dict(zip(monitor.classes_,
                                                               monitor.baseline_.class_shares.tolist(), strict=True))})

    @app.get("/health")
    async def health() -> Response:
        spooled = recorder.store.n_spooled if recorder is not None else 0
        return JSONResponse({"status": "ok", "n_requests": monitor.n_requests_, "n_inputs": monitor.n_inputs_,
                             "store": "spooling" if spooled else "ok", "spooled_records": spooled})

    @app.get("/metrics")
    async def prometheus() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        if recorder is not None:
            metrics.spooled.set(recorder.store.n_spooled)
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse)
    async def dashboard() -> Response:
        html = env.get_template("dashboard.html").render(**dashboard_context(monitor, recent_flagged, title))
        return HTMLResponse(html, headers={"Content-Security-Policy":
                                           "default-src 'none'; style-src 'unsafe-inline'; img-src data:"})

    @app.exception_handler(json.JSONDecodeError)
    async def bad_json(_request: Request, _exc: Exception) -> Response:
        return error(422, "the body is not JSON")

    app.add_middleware(Guard, limit=max_body_bytes, token=token,
                       refused=lambda status: metrics.errors.labels(code=str(status)).inc())
    return app


def _alert_dict(a: Any) -> dict[str, Any]:  # Any: an Alert
    return {"created": a.created, "request_count": a.request_count, "statistics": a.statistics,
            "message": a.message, "window": a.window}


def _answer(obs: Observation) -> dict[str, Any]:
    out: dict[str, Any] = {"predictions": obs.predictions, "probabilities": obs.probabilities,
                           "flagged": obs.flags}
    if obs.scores is not None:
        out["scores"] = obs.scores
    if obs.trigger_matches is not None:
        out["trigger_matches"] = obs.trigger_matches
    if obs.alerts:
        out["alerts"] = [a.message for a in obs.alerts]
    return out


def _polyline(values: list[float], width: int, height: int, top: float) -> str:
    if not values:
        return ""
    n = max(len(values) - 1, 1)
    return " ".join(f"{width * i / n:.1f},{height - height * min(v, top) / top:.1f}" for i, v in enumerate(values))


def dashboard_context(monitor: Monitor, flagged: list[dict[str, Any]], title: str) -> dict[str, Any]:
    """What the dashboard template shows: class shares and flagged rate over the judged windows
    (as SVG polylines), the thresholds, recent alerts and flagged inputs."""
    history = list(monitor.history_)
    palette = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf")
    series = []
    for k, name in enumerate(monitor.classes_):
        shares = [w["class_counts"][k] / w["n"] for w in history]  # type: ignore[index]
        series.append({"name": name, "color": palette[k % len(palette)],
                       "points": _polyline(shares, 600, 160, 1.0),
                       "baseline": float(monitor.baseline_.class_shares[k]),
                       "now": monitor.class_shares()[k]})
    rates = [float(w["flagged_rate"]) for w in history]  # type: ignore[arg-type]
    top = max([*rates, 0.05])
    return {"title": title, "series": series, "flag_points": _polyline(rates, 600, 100, top), "flag_top": top,
            "n_requests": monitor.n_requests_, "n_inputs": monitor.n_inputs_, "n_flagged": monitor.n_flagged_,
            "n_alerts": monitor.alerts_, "n_windows": len(history), "thresholds": monitor.thresholds_,
            "cusum": monitor.cusum_thresholds_, "cusum_now": monitor.cusum_statistics(),
            "n_cusum_alarms": monitor.cusum_alarms_,
            "alerts": [_alert_dict(a) for a in reversed(monitor.recent_alerts_)][:20],
            "flagged": list(reversed(flagged))[:20],
            "time": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
            "fmt_time": lambda t: time.strftime("%H:%M:%S", time.gmtime(t))}
