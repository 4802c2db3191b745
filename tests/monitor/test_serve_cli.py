"""``poisonlab serve`` as a user runs it: a real uvicorn process on a free port, requests over
HTTP with a token, SIGTERM, and every request in the SQLite file afterwards; and the one-line
errors for what it refuses."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from poisonlab.models.io import save_model
from poisonlab.monitor.store import Store

runner = CliRunner()
TOKEN = "tok-" + "9f3a61c0b2d84e7a"


def _files(lab, tmp_path: Path) -> tuple[Path, Path]:
    model = save_model(lab.backdoored, tmp_path / "filter", classes=lab.classes, spec="logreg-text")
    baseline = tmp_path / "baseline.csv"
    with baseline.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text"])
        writer.writerows([[str(t)] for t in lab.baseline])
    return model, baseline


@pytest.mark.slow
def test_serve_answers_and_sigterm_flushes_to_the_db(lab, tmp_path: Path, free_port: int) -> None:
    model, baseline = _files(lab, tmp_path)
    (tmp_path / "token").write_text(TOKEN + "\n")
    port = free_port
    db = tmp_path / "serve.db"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "poisonlab", "serve", str(model), "--baseline", str(baseline), "--db",
         f"sqlite:///{db}", "--port", str(port), "--token-file", str(tmp_path / "token"), "--spool",
         str(tmp_path / "spool"), "--window", "100"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the service did not start"
            time.sleep(0.3)
        assert httpx.post(f"{base}/v1/predict", json={"inputs": ["hi"]}).status_code == 401
        sent = 0
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            for i in range(40):
                texts = [str(t) for t in lab.live[i * 10:(i + 1) * 10]]
                r = client.post("/v1/predict", json={"inputs": texts})
                assert r.status_code == 200, r.text
                sent += 1
            assert client.get("/v1/windows").json()["windows"]  # window 100, stride 20: judged
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode in (0, 143), err
    assert TOKEN not in out + err  # nothing secret reaches the logs
    store = Store(f"sqlite:///{db}", spool=tmp_path / "spool")
    counts = store.counts()
    assert counts["request"] == sent
    assert counts["window"] == (400 - 100) // 20 + 1
    store.dispose()


@pytest.mark.parametrize(("extra", "code", "message"), [
    (["--host", "0.0.0.0"], 2, "--token-file"),
    (["--port", "0"], 2, "--port must be"),
    (["--window", "5"], 2, "--window must be an int >= 20"),
    (["--false-alarm-rate", "0.5"], 2, "--false-alarm-rate must be"),
    (["--db", "nosuchdb://u:hunter2@h/d"], 1, "not a database URL"),
])
def test_serve_refuses_bad_options_in_one_line(lab, tmp_path: Path, extra: list[str], code: int,
                                               message: str) -> None:
    from poisonlab.cli import app

    model, baseline = _files(lab, tmp_path)
    result = runner.invoke(app, ["serve", str(model), "--baseline", str(baseline), "--spool",
                                 str(tmp_path / "spool"), "--db", f"sqlite:///{tmp_path / 'x.db'}", *extra])
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output
    assert "hunter2" not in result.output
    assert len(result.output.strip().splitlines()[-1]) > 10


def test_serve_refuses_a_pickle_and_a_short_token(lab, tmp_path: Path) -> None:
    from poisonlab.cli import app

    model, baseline = _files(lab, tmp_path)
    evil = tmp_path / "model.pkl"
    evil.write_bytes(b"\x80\x04K\x01.")
    result = runner.invoke(app, ["serve", str(evil), "--baseline", str(baseline)])
    assert result.exit_code == 1 and "--trust-pickle" in result.output
    (tmp_path / "token").write_text("short")
    result = runner.invoke(app, ["serve", str(model), "--baseline", str(baseline), "--token-file",
                                 str(tmp_path / "token")])
    assert result.exit_code == 2 and "at least 16 characters" in result.output
