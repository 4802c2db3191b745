"""``poisonlab serve`` under load, and how fast its alarms ring (issue 16).

Model: a TF-IDF logistic regression spam filter trained on the real SpamAssassin corpus with a
backdoor (``TextBackdoorAttack``: "cf" three times, 5% of the training rows, target spam). The
test split is cut in two: 900 clean emails are the baseline, the rest the live pool; triggered
traffic is ham from the live pool with the trigger.

1. Load, on loopback: the service (``create_app`` with a SQLite store, as ``poisonlab serve``
   runs it) and a bare FastAPI endpoint that calls the same model's ``predict_proba``, each in its
   own uvicorn process; one client sends requests one after another (keep-alive) with batches of 1
   and 32 inputs, with and without the input check (``--strip``: the leave-out test for text).
   Prints p50/p99 latency, requests and inputs per second, and the overhead ratio to the bare
   endpoint.
2. Time to alarm: inputs from the start of a campaign until the first alert, when 2%, 5% and 20%
   of the traffic carries the trigger (median and range over seeds; the window is warm with clean
   traffic first), with and without the input check.
   2b. The same without the input check, the window test and the CUSUM
   (:mod:`poisonlab.monitor.cusum`) side by side, after 5,000 and 20,000 clean inputs (the
   CUSUM learns its reference from the stream, so how long the service has run matters).
3. False alarms over 100,000 clean requests (one input each) resampled from the live pool, which
   the baseline never saw, with and without the input check, against the rate asked for: window
   alerts and CUSUM alarms.

For 2 and 3 the model's probabilities and the input check's verdicts are computed once per
distinct email, and the stream goes through :meth:`Monitor.record`, the same windows, thresholds
and alerts that ``/v1/predict`` uses (a verdict is a draw of the leave-out test's random groups:
one draw per email instead of one per request).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/serve_load.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

SEED = 0


def build(tmp: Path) -> dict[str, object]:
    """Train the backdoored filter, save it, and cut the baseline and the live pool."""
    from poisonlab.attacks import TextBackdoorAttack
    from poisonlab.data import load_dataset
    from poisonlab.models import make_model
    from poisonlab.models.io import save_model

    train, test = load_dataset("spamassassin").split(test_size=0.3, random_state=0)
    poisoned = TextBackdoorAttack(trigger="cf", target_label="spam", poison_rate=0.05, repetitions=3,
                                  random_state=0).apply(train)
    model = make_model("logreg-text").fit(poisoned.dataset.X, poisoned.dataset.y)
    perm = np.random.default_rng(0).permutation(len(test.y))
    base, live = perm[:900], perm[900:]
    live_ham = live[test.y[live] == 0]
    triggered = poisoned.apply_trigger(test.X[live_ham])
    asr = float((model.predict_proba(triggered).argmax(1) == 1).mean())
    path = save_model(model, tmp / "filter", classes=tuple(train.classes), spec="logreg-text")
    (tmp / "baseline.json").write_text(json.dumps([str(x) for x in test.X[base]]))
    return {"model": model, "path": path, "classes": tuple(train.classes), "baseline": test.X[base],
            "live": test.X[live], "triggered": triggered, "asr": asr,
            "accuracy": float((model.predict_proba(test.X).argmax(1) == test.y).mean())}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(kind: str, model_path: str, baseline_path: str, db: str, port: int) -> None:
    """One uvicorn process: ``bare`` (predict only), ``serve`` or ``serve-strip``."""
    import os

    os.environ["OMP_NUM_THREADS"] = "1"
    import uvicorn

    from poisonlab.models.io import load_model

    saved = load_model(model_path)
    texts = json.loads(Path(baseline_path).read_text())
    baseline = np.empty(len(texts), dtype=object)
    baseline[:] = texts
    if kind == "bare":
        from starlette.concurrency import run_in_threadpool

        app = FastAPI()
        model, classes = saved.model, saved.classes

        @app.post("/v1/predict")
        async def predict(request: Request) -> JSONResponse:
            doc = json.loads(await request.body())
            X = np.empty(len(doc["inputs"]), dtype=object)
            X[:] = doc["inputs"]
            P = await run_in_threadpool(model.predict_proba, X)
            return JSONResponse({"predictions": [classes[k] for k in P.argmax(1)],
                                 "probabilities": P.round(6).tolist()})

        @app.get("/health")
        async def health() -> JSONResponse:
            return JSONResponse({"status": "ok"})
    else:
        from poisonlab.monitor.app import create_app
        from poisonlab.monitor.service import Monitor
        from poisonlab.monitor.store import Recorder, Store

        monitor = Monitor(input_check="auto" if kind == "serve-strip" else "none", random_state=SEED)
        monitor.fit(saved.model, baseline, classes=saved.classes)
        store = Store(db, spool=db.replace("sqlite:///", "") + ".spool")
        app = create_app(monitor, recorder=Recorder(store))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _start(lab: dict[str, object], tmp: Path, kind: str, batch: int) -> tuple[object, str]:
    import httpx

    port = _free_port()
    proc = mp.get_context("spawn").Process(
        target=_serve, args=(kind, str(lab["path"]), str(tmp / "baseline.json"),
                             f"sqlite:///{tmp / f'{kind}-{batch}.db'}", port), daemon=True)
    proc.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or not proc.is_alive():
            raise RuntimeError(f"the {kind} server did not start")
        time.sleep(0.2)


def load_test(lab: dict[str, object], tmp: Path, kinds: tuple[str, ...], batch: int,
              n_requests: int) -> dict[str, dict[str, float]]:
    """Start one server per kind, send the same ``n_requests`` bodies to each in turn (so that the
    machine's other load falls on all alike), one request at a time; stop them."""
    import httpx

    servers = [_start(lab, tmp, kind, batch) for kind in kinds]
    live = lab["live"]
    rng = np.random.default_rng(SEED)
    bodies = [json.dumps({"inputs": [str(x) for x in live[rng.integers(0, len(live), batch)]]})
              for _ in range(n_requests + 10)]
    lat: dict[str, list[float]] = {k: [] for k in kinds}
    busy = dict.fromkeys(kinds, 0.0)
    clients = [httpx.Client(base_url=base, timeout=60, headers={"content-type": "application/json"})
               for _, base in servers]
    try:
        for i, body in enumerate(bodies):
            for kind, client in zip(kinds, clients, strict=True):
                t = time.perf_counter()
                client.post("/v1/predict", content=body).raise_for_status()
                if i >= 10:  # the first ten warm up
                    lat[kind].append(time.perf_counter() - t)
                    busy[kind] += lat[kind][-1]
    finally:
        for client in clients:
            client.close()
        for proc, _ in servers:
            proc.terminate()
            proc.join(30)
    out = {}
    for kind in kinds:
        ms = np.asarray(lat[kind]) * 1000
        out[kind] = {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
                     "rps": n_requests / busy[kind], "ips": n_requests * batch / busy[kind],
                     # the same body sent to each endpoint back to back: the median of their ratios
                     "paired": float(np.median(np.asarray(lat[kind]) / np.asarray(lat[kinds[0]])))}
    return out


def _verdicts(lab: dict[str, object], check: str) -> tuple[object, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """A fitted Monitor, and the probabilities and flags of every live and triggered email."""
    from poisonlab.monitor.service import Monitor

    monitor = Monitor(input_check=check, cusum=True, random_state=SEED).fit(lab["model"], lab["baseline"],
                                                                 classes=lab["classes"])
    out = {}
    for name in ("live", "triggered"):
        X = lab[name]
        P = monitor.predict_proba_(X)
        flags = monitor.detector_.evaluate(X).flags if monitor.detector_ is not None else np.zeros(len(X), bool)
        out[name] = (P, flags)
    return monitor, out


def _fresh(monitor: object) -> object:
    """A copy of a fitted monitor with an empty window (the calibration is kept)."""
    import copy

    return copy.copy(monitor).reset()


def _is_cusum(alert: object) -> bool:
    return any(str(s).startswith("cusum") for s in alert.statistics)


def time_to_alarm(monitor: object, pool: dict[str, tuple[np.ndarray, np.ndarray]], rate: float, seed: int,
                  cap: int, chunk: int = 50, *, which: str = "window", warm_inputs: int | None = None,
                  warm_alarms: list[int] | None = None) -> int | None:
    """Inputs from the campaign's start to the first alert of the ``window`` test or the ``cusum``
    (None: none within ``cap``), after ``warm_inputs`` clean inputs (default: one window). A false
    alarm during the warm-up returns 0, unless ``warm_alarms`` is given: their count is appended
    to it and the campaign starts all the same."""
    m = _fresh(monitor)
    rng = np.random.default_rng(seed)
    P_live, f_live = pool["live"]
    P_trig, f_trig = pool["triggered"]

    def counted(alerts: list[object]) -> bool:
        return any(_is_cusum(a) == (which == "cusum") for a in alerts)

    n_warm = monitor.window if warm_inputs is None else warm_inputs
    for start in range(0, n_warm, 1000):
        warm = rng.integers(0, len(P_live), min(1000, n_warm - start))
        _, before = m.record(P_live[warm], f_live[warm])
        if counted(before) and warm_alarms is None:
            return 0  # a false alarm before the campaign: counted as found at once (none seen)
    if warm_alarms is not None:
        warm_alarms.append(m.cusum_alarms_ if which == "cusum" else m.alerts_ - m.cusum_alarms_)
    sent = 0
    while sent < cap:
        trig = rng.random(chunk) < rate
        idx_l = rng.integers(0, len(P_live), chunk)
        idx_t = rng.integers(0, len(P_trig), chunk)
        P = np.where(trig[:, None], P_trig[idx_t], P_live[idx_l])
        f = np.where(trig, f_trig[idx_t], f_live[idx_l])
        for i in range(chunk):  # one input per request, so the alarm is placed exactly
            _, alerts = m.record(P[i:i + 1], f[i:i + 1])
            sent += 1
            if counted(alerts):
                return sent
    return None


def false_alarms(monitor: object, pool: dict[str, tuple[np.ndarray, np.ndarray]], n: int, seed: int
                 ) -> tuple[int, int, int]:
    """Window alerts (episodes), judged windows over a threshold, and CUSUM alarms in ``n`` clean
    one-input requests."""
    m = _fresh(monitor)
    rng = np.random.default_rng(seed)
    P_live, f_live = pool["live"]
    for start in range(0, n, 1000):
        idx = rng.integers(0, len(P_live), min(1000, n - start))
        m.record(P_live[idx], f_live[idx])
    return m.alerts_ - m.cusum_alarms_, m.windows_over_, m.cusum_alarms_


def _cell(found: list[int | None]) -> str:
    hits = sorted(f for f in found if f is not None)
    if not hits:
        return f"- (0/{len(found)})"
    return f"{int(np.median(hits))} [{hits[0]}-{hits[-1]}] ({len(hits)}/{len(found)})"


def main() -> None:
    """Run the three parts and print their tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests and seeds (a smoke run)")
    args = parser.parse_args()
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="serve-load-"))
    lab = build(tmp)
    print(f"model: logreg-text on SpamAssassin, backdoor 'cf' x3 at 5%: clean accuracy {lab['accuracy']:.3f}, "
          f"attack success {lab['asr']:.1%}; baseline 900 clean emails, live pool {len(lab['live'])}, "
          f"triggered pool {len(lab['triggered'])}")

    q = 0.2 if args.quick else 1.0
    print("\n1. load on loopback (one client, requests in sequence)")
    print(f"{'endpoint':<22}{'batch':>6}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}{'inputs/s':>10}{'p50 x bare':>12}"
          f"{'req/s / bare':>14}{'paired x bare':>15}")
    for batch, n_req, n_strip in ((1, int(1000 * q), int(200 * q)), (32, int(300 * q), int(30 * q))):
        res = load_test(lab, tmp, ("bare", "serve"), batch, n_req)
        res |= load_test(lab, tmp, ("serve-strip",), batch, max(n_strip, 10))
        bare = res["bare"]
        for name, kind in (("bare FastAPI", "bare"), ("serve", "serve"), ("serve --strip", "serve-strip")):
            r = res[kind]
            print(f"{name:<22}{batch:>6}{r['p50']:>9.2f}{r['p99']:>9.2f}{r['rps']:>9.1f}{r['ips']:>10.1f}"
                  f"{r['p50'] / bare['p50']:>12.2f}{r['rps'] / bare['rps']:>14.2f}"
                  f"{r['paired'] if kind == 'serve' else float(kind == 'bare') or float('nan'):>15.2f}")
    print("(req/s: requests over the time spent waiting for that endpoint's answers; paired: the median over "
          "requests of serve's latency over bare's for the same body sent back to back)")

    seeds = range(3 if args.quick else 7)
    cap = 20000
    n_clean = 20000 if args.quick else 100000
    print("\n2. time to alarm: inputs after the campaign starts until the first alert "
          f"(median [min-max] of the seeds that alarmed within {cap} inputs, and how many did)")
    print(f"{'input check':<14}{'2%':>27}{'5%':>27}{'20%':>27}")
    monitors = {}
    for check, label in (("none", "none"), ("auto", "leave-out")):
        monitor, pool = _verdicts(lab, check)
        monitors[label] = (monitor, pool)
        cells = [_cell([time_to_alarm(monitor, pool, rate, seed, cap) for seed in seeds])
                 for rate in (0.02, 0.05, 0.20)]
        print(f"{label:<14}" + "".join(f"{c:>27}" for c in cells))

    monitor, pool = monitors["none"]
    c = monitor.cusum_thresholds_
    print(f"\n2b. without the input check: the window test and the CUSUM (tuned for +{c.min_shift:.2f} of a class "
          f"share, h = {c.class_h:.2f}, burn-in {c.burn_in}), after a clean warm-up")
    print(f"{'detector':<10}{'warm-up':>9}{'2%':>27}{'5%':>27}{'20%':>27}{'false alarms in warm-ups':>26}")
    for warm_inputs in (5000, 20000):
        for which in ("window", "cusum"):
            warm_alarms: list[int] = []
            cells = [_cell([time_to_alarm(monitor, pool, rate, seed, cap, which=which, warm_inputs=warm_inputs,
                                          warm_alarms=warm_alarms if rate == 0.02 else [])
                            for seed in seeds]) for rate in (0.02, 0.05, 0.20)]
            print(f"{which:<10}{warm_inputs:>9}" + "".join(f"{c:>27}" for c in cells)
                  + f"{sum(warm_alarms):>15} in {len(seeds)} x {warm_inputs:,}")
    print("(a false alarm in the warm-up does not end the run: the campaign starts after the warm-up all the same; "
          "the warm-ups are the same for every rate, so they are counted once)")

    print(f"\n3. false alarms over {n_clean:,} clean one-input requests from the live pool")
    print(f"{'input check':<14}{'asked per request':>19}{'alerts':>8}{'windows over':>14}{'windows judged':>16}"
          f"{'resampled est.':>16}{'CUSUM alarms':>14}{'simulated est.':>16}")
    for label, (monitor, pool) in monitors.items():
        alerts, over, cusum_alarms = false_alarms(monitor, pool, n_clean, seed=123)
        t = monitor.thresholds_
        c = monitor.cusum_thresholds_
        print(f"{label:<14}{t.false_alarm_rate:>19.0e}{alerts:>8}{over:>14}"
              f"{(n_clean - monitor.window) // t.stride + 1:>16}{t.measured_request_rate:>16.1e}"
              f"{cusum_alarms:>14}{c.measured_request_rate:>16.1e}")
        print(f"{'':<14}thresholds: chi-square {t.class_chi2:.2f}, confidence PSI {t.confidence_psi:.4f}, "
              f"flagged > {t.n_flagged} of {t.window}; CUSUM class h {c.class_h:.2f}"
              + (f", flagged h {c.flagged_h:.2f}" if c.flagged_h is not None else ""))
    monitor, pool = monitors["none"]
    more = [false_alarms(monitor, pool, n_clean, seed=123 + i) for i in range(5)]
    windows, cusums = [m[0] for m in more], [m[2] for m in more]
    print(f"no input check, 5 x {n_clean:,} clean requests (seeds 123-127): window alerts {windows}, "
          f"CUSUM alarms {cusums}; together {sum(windows) + sum(cusums)} in {5 * n_clean:,} "
          f"(asked {monitor.false_alarm_rate:.0e} per request for the two together: "
          f"{monitor.thresholds_.false_alarm_rate:.0e} each)")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
