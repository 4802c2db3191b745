"""The grid on Dask: a LocalCluster and a real `dask scheduler` with two `dask worker` processes on
loopback, one of them killed mid-run, give the rows of a serial run exactly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from poisonlab.experiments import run_experiment

VOLATILE = ["seconds", "worker", "defense_seconds", "traceback"]

# 12 cells of about half a second each (scikit-learn's MLP on digits): long enough to kill a
# worker while cells are in flight
GRID = {
    "name": "dask",
    "datasets": ["digits"],
    "models": ["mlp"],
    "budgets": [10, 20, 40],
    "seeds": [0, 1, 2, 3],
    "attacks": [{"name": "patch-backdoor", "target_label": "0"}],
}


def stable(frame):  # type: ignore[no-untyped-def]
    return frame.drop(columns=VOLATILE).sort_values("key").reset_index(drop=True)


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    result = run_experiment(GRID, out=tmp_path_factory.mktemp("serial") / "out", workers=0, report=False)
    assert result.n_failed == 0
    return stable(result.frame)


def test_a_local_cluster_gives_the_serial_rows(serial, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = run_experiment(GRID, out=tmp_path / "out", workers=2, report=False)
    assert result.n_computed == 12 and result.n_failed == 0
    assert len(set(result.frame["worker"])) == 2  # both worker processes ran cells
    assert stable(result.frame).equals(serial)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the dask scheduler did not open port {port}")


@pytest.fixture()
def cluster() -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """A `dask scheduler` and two `dask worker` processes (no nanny: killing one kills the worker)."""
    bin_dir = Path(sys.executable).parent
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(subprocess.Popen([str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port",
                                       str(port), "--no-dashboard"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        _wait_for_port(port)
        for i in range(2):
            procs.append(subprocess.Popen([str(bin_dir / "dask"), "worker", address, "--nthreads", "1",
                                           "--no-nanny", "--no-dashboard", "--name", f"w{i}"], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        yield address, procs
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def test_a_killed_worker_costs_only_its_cells_in_flight(serial, cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    address, procs = cluster
    from distributed import Client

    with Client(address, timeout="30s") as client:
        client.wait_for_workers(2, timeout=60)
    victim = procs[1]
    killed: list[int] = []

    def kill_one(step: str, done: int, total: int) -> None:
        if step == "cells" and done == 2 and not killed:
            victim.send_signal(signal.SIGKILL)
            killed.append(done)

    result = run_experiment(GRID, out=tmp_path / "out", scheduler=address, progress=kill_one, report=False)
    assert killed and victim.wait(timeout=10) == -signal.SIGKILL
    assert result.n_computed == 12 and result.n_failed == 0
    assert stable(result.frame).equals(serial)
    # and a rerun against the one worker left recomputes nothing
    again = run_experiment(GRID, out=tmp_path / "out", scheduler=address, report=False)
    assert again.n_computed == 0 and stable(again.frame).equals(serial)
