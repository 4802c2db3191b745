"""Fixtures of the monitor tests: a backdoored and a clean spam filter trained on the real
SpamAssassin corpus, clean baseline and live traffic, and a real PostgreSQL server started in a
temp folder (skipped with the reason where none can be started)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from poisonlab.data import Dataset


@dataclass
class Lab:
    """Two spam filters and the traffic to send them."""

    backdoored: object
    clean: object
    classes: tuple[str, ...]
    baseline: np.ndarray  # clean inputs to calibrate on
    live: np.ndarray  # clean inputs the baseline does not hold
    triggered: np.ndarray  # ham from the live pool with the trigger
    asr: float


@pytest.fixture(scope="session")
def lab(spam_split: tuple[Dataset, Dataset]) -> Lab:
    from poisonlab.attacks import TextBackdoorAttack
    from poisonlab.models import make_model

    train, test = spam_split
    poisoned = TextBackdoorAttack(trigger="cf", target_label="spam", poison_rate=0.05, repetitions=3,
                                  random_state=0).apply(train)
    backdoored = make_model("logreg-text").fit(poisoned.dataset.X, poisoned.dataset.y)
    clean = make_model("logreg-text").fit(train.X, train.y)
    perm = np.random.default_rng(0).permutation(len(test.y))
    base, live = perm[:900], perm[900:]
    live_ham = live[test.y[live] == 0]
    triggered = poisoned.apply_trigger(test.X[live_ham])
    asr = float((backdoored.predict_proba(triggered).argmax(1) == 1).mean())
    return Lab(backdoored=backdoored, clean=clean, classes=tuple(train.classes), baseline=test.X[base],
               live=test.X[live], triggered=triggered, asr=asr)


def _free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def free_port() -> int:
    """A TCP port nobody listens on now."""
    return _free_port()


@dataclass
class Postgres:
    """A PostgreSQL cluster in a temp folder, run as the postgres user; ``stop`` and ``start``
    it at will (the fault test)."""

    bindir: Path
    datadir: Path
    port: int
    user: str

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of its ``postgres`` database (trust authentication on loopback)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _as_user(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        res = self._as_user("pg_ctl", "-D", str(self.datadir), "-w", "-t", "60", "-l",
                            str(self.datadir / "server.log"),
                            "-o", f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1", "start")
        if res.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {res.stderr.strip() or res.stdout.strip()}")

    def stop(self) -> None:
        """Stop the server now (fast shutdown: open connections are cut)."""
        self._as_user("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "stop")


def _postgres_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A running PostgreSQL server for the session, or a skip saying why none could be started."""
    try:
        import psycopg
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'poisonlab[serve]')")
    bindir = _postgres_bindir()
    if bindir is None or not (bindir / "pg_ctl").exists():
        pytest.skip("no PostgreSQL server binaries (apt-get install postgresql)")
    user = "postgres"
    if os.geteuid() == 0 and subprocess.run(["id", "-u", user], capture_output=True, check=False).returncode:
        pytest.skip("running as root, but there is no 'postgres' user to run the server as")
    if os.geteuid() != 0:
        user = os.environ.get("USER", "")
    root = Path(tempfile.mkdtemp(prefix="poisonlab-pg-"))
    datadir = root / "data"
    datadir.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, user)
        shutil.chown(datadir, user)
    pg = Postgres(bindir=bindir, datadir=datadir, port=_free_port(), user=user)
    res = pg._as_user("initdb", "-D", str(datadir), "-U", "postgres", "-A", "trust", "--no-sync")
    if res.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"initdb failed: {res.stderr.strip()[:200]}")
    try:
        pg.start()
    except RuntimeError as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(str(exc)[:200])
    deadline = time.monotonic() + 30
    import psycopg

    while True:
        try:
            psycopg.connect(f"host=127.0.0.1 port={pg.port} user=postgres dbname=postgres").close()
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    yield pg
    pg.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture()
def pg_url(postgres: Postgres) -> str:
    """A fresh, empty database on the session's server."""
    import uuid

    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(f"host=127.0.0.1 port={postgres.port} user=postgres dbname=postgres",
                         autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"postgresql+psycopg://postgres@127.0.0.1:{postgres.port}/{name}"


@pytest.fixture()
def live_server(free_port: int) -> Iterator[object]:
    """Serve an app on a real uvicorn in a thread: call the fixture's value with the app; it
    returns the base URL. The server stops at the end of the test."""
    import threading

    import uvicorn

    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(app: object) -> str:
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        servers.append((server, thread))
        return f"http://127.0.0.1:{free_port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(30)
