"""``poisonlab serve MODEL --baseline CLEAN``: a monitoring service with drift and trigger alarms."""

from __future__ import annotations

from pathlib import Path

import typer

from poisonlab.cli.app import app
from poisonlab.cli.common import (
    DATA_DIR_OPTION,
    FEATURE_COLS_OPTION,
    LABEL_COL_OPTION,
    SEED_OPTION,
    TEXT_COL_OPTION,
    columns_from,
    console,
    handle_errors,
)
from poisonlab.cli.inputs import TRUST_PICKLE_OPTION, load_saved_model
from poisonlab.exceptions import DataError, ParameterError

DEFAULT_DB = "sqlite:///poisonlab-serve.db"


@app.command(name="serve")
@handle_errors
def serve(
    model: Path = typer.Argument(..., help="A saved model file (.skops, .safetensors, .pt)."),
    baseline: str = typer.Option(..., "--baseline", help="Clean inputs the traffic is compared with."),
    db: str = typer.Option(DEFAULT_DB, "--db", help="SQLAlchemy URL of the database (default: a SQLite file "
                                                   "poisonlab-serve.db here)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (not loopback: --token-file needed)."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    strip: bool = typer.Option(False, "--strip/--no-strip",
                               help="Check every input for a trigger (images: STRIP; text and tables: the "
                                    "leave-out test), calibrated on the baseline as `poisonlab check` does."),
    cusum: bool = typer.Option(False, "--cusum/--no-cusum",
                               help="Also run a CUSUM per predicted class (catches smaller, longer "
                                    "campaigns than the windows); the windows and the CUSUM then "
                                    "share --false-alarm-rate, half each (see docs/serve.md)."),
    scan_file: Path | None = typer.Option(None, "--scan", help="Text: a scan.json; inputs holding one of its "
                                                               "trigger phrases are flagged."),
    token_file: Path | None = typer.Option(None, "--token-file", help="File holding the bearer token clients "
                                                                      "must send."),
    window: int = typer.Option(500, "--window", help="Inputs per sliding window."),
    stride: int | None = typer.Option(None, "--stride", help="Inputs between window judgements "
                                                             "(default: window / 5)."),
    false_alarm_rate: float = typer.Option(1e-5, "--false-alarm-rate",
                                           help="False alarms per clean request the thresholds allow."),
    false_rejection_rate: float = typer.Option(0.01, "--false-rejection-rate",
                                               help="Share of clean inputs the input check may flag."),
    store_inputs: bool = typer.Option(False, "--store-inputs", help="Store flagged inputs themselves, not "
                                                                    "only their hashes."),
    spool: Path | None = typer.Option(None, "--spool", help="Where records wait while the database is away "
                                                            "(default: poisonlab-serve.spool here)."),
    max_body_bytes: int = typer.Option(1_000_000, "--max-body-bytes", help="Largest request body (413 above)."),
    max_batch: int = typer.Option(256, "--max-batch", help="Most inputs per request (413 above)."),
    text_col: str | None = TEXT_COL_OPTION,
    label_col: str | None = LABEL_COL_OPTION,
    feature_cols: str | None = FEATURE_COLS_OPTION,
    data_dir: Path | None = DATA_DIR_OPTION,
    trust_pickle: bool = TRUST_PICKLE_OPTION,
    seed: int = SEED_OPTION,
) -> None:
    """Serve a model's predictions and watch its traffic for a poisoning campaign.

    POST /v1/predict {"inputs": [...]} answers predictions, probabilities and (with --strip or
    --scan) per-input trigger verdicts. Every --stride inputs the last --window are compared with
    the baseline (class shares: chi-square and PSI; max confidence: PSI; flagged inputs), against
    thresholds calibrated on the baseline for --false-alarm-rate false alarms per clean request.
    GET /v1/alerts, /v1/windows, /health, /metrics (Prometheus) and / (a dashboard). Requests,
    windows, alerts and flagged inputs go to --db; SIGTERM flushes them.
    """
    from poisonlab.detect_inputs.check import load_inputs
    from poisonlab.monitor.app import create_app, needs_token
    from poisonlab.monitor.service import Monitor
    from poisonlab.monitor.store import Recorder, Store, safe_url

    if not 0 < port < 65536:
        raise ParameterError(f"--port must be in [1, 65535]; got {port}.")
    if max_body_bytes < 1024 or max_batch < 1:
        raise ParameterError(f"--max-body-bytes must be >= 1024 and --max-batch >= 1; got {max_body_bytes} "
                             f"and {max_batch}.")
    if not 0 < false_rejection_rate < 1:
        raise ParameterError(f"--false-rejection-rate must be in (0, 1); got {false_rejection_rate}.")
    token = _read_token(token_file) if token_file is not None else None
    if token is None and needs_token(host):
        raise ParameterError(f"--host {host} is not a loopback address: give --token-file, so that only "
                             f"clients with the token are served.")
    from poisonlab.cli.check import scan_triggers

    triggers = scan_triggers(scan_file) if scan_file is not None else None
    saved = load_saved_model(model, trust_pickle)
    clean = load_inputs(baseline, columns_from(text_col, label_col, feature_cols), data_dir=data_dir)
    console.print(f"calibrating on {len(clean.X)} baseline inputs ...", highlight=False, markup=False)
    monitor = Monitor(window=window, stride=stride, false_alarm_rate=false_alarm_rate,
                      input_check="auto" if strip else "none", false_rejection_rate=false_rejection_rate,
                      triggers=triggers, cusum=cusum, random_state=seed)
    monitor.fit(saved.model, clean.X, classes=tuple(saved.classes) or None)
    store = Store(db, spool=spool or Path("poisonlab-serve.spool"))
    recorder = Recorder(store)
    service = create_app(monitor, recorder=recorder, token=token, max_body_bytes=max_body_bytes,
                         max_batch=max_batch, store_inputs=store_inputs)
    t = monitor.thresholds_
    console.print(f"serving {model.name} on http://{host}:{port} (db {safe_url(db)}); alarms: chi-square > "
                  f"{t.class_chi2:.2f}, confidence PSI > {t.confidence_psi:.4f}, flagged > {t.n_flagged} of "
                  f"{t.window}", highlight=False, markup=False)
    import uvicorn

    try:
        uvicorn.run(service, host=host, port=port, log_level="warning", access_log=False)
    finally:
        recorder.close()
        store.dispose()


def _read_token(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"--token-file {path}: cannot read it ({exc}).") from None
    if len(token) < 16 or any(c.isspace() for c in token):
        raise ParameterError(f"--token-file {path} must hold one token of at least 16 characters, without spaces.")
    return token


