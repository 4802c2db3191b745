"""The store: a round trip on SQLite and on a real PostgreSQL server, the schema migration from
version 1, and no record lost while the database is away (spool and replay)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from poisonlab.exceptions import DataError
from poisonlab.monitor.store import SCHEMA_VERSION, Recorder, Store, new_uid, schema_version


def _request(n: int = 1) -> dict[str, object]:
    return {"kind": "request", "uid": new_uid(), "created": time.time(), "n_inputs": n, "n_flagged": 0,
            "seconds": 0.01, "predicted": json.dumps({"ham": n})}


def _records() -> list[dict[str, object]]:
    req = _request(3)
    return [req,
            {"kind": "flagged", "uid": new_uid(), "created": 1.0, "request_uid": req["uid"], "input_hash": "ab" * 32,
             "score": 2.5, "predicted": "spam", "input": None},
            {"kind": "window", "uid": new_uid(), "created": 2.0, "request_count": 500, "n": 500,
             "class_counts": "[400, 100]", "class_chi2": 30.0, "class_psi": 0.2, "class_p_value": 1e-7,
             "confidence_psi": 0.01, "confidence_ks": 0.05, "n_flagged": 3, "alarm": True},
            {"kind": "alert", "uid": new_uid(), "created": 2.0, "request_count": 500,
             "statistics": '["class_chi2"]', "message": "class 'spam' at 20.0%"}]


def _round_trip(url: str, tmp_path: Path) -> dict[str, int]:
    store = Store(url, spool=tmp_path / "spool")
    records = _records()
    assert store.write(records)
    assert store.write(records)  # the same uids again: stored once
    assert store.counts() == {"request": 1, "window": 1, "alert": 1, "flagged": 1}
    (alert,) = store.recent("alert")
    assert alert["message"] == "class 'spam' at 20.0%"
    (window,) = store.recent("window")
    assert window["alarm"] is True and window["class_chi2"] == 30.0
    (req,) = store.recent("request")
    assert req["n_inputs"] == 3 and json.loads(req["predicted"]) == {"ham": 3}
    store.dispose()
    again = Store(url, spool=tmp_path / "spool")  # reopening an up-to-date database changes nothing
    assert again.found_version == SCHEMA_VERSION and again.counts()["request"] == 1
    counts = again.counts()
    again.dispose()
    return counts


ONE_OF_EACH = {"request": 1, "window": 1, "alert": 1, "flagged": 1}


def test_sqlite_round_trip(tmp_path: Path) -> None:
    assert _round_trip(f"sqlite:///{tmp_path / 'serve.db'}", tmp_path) == ONE_OF_EACH


def test_postgres_round_trip(pg_url: str, tmp_path: Path) -> None:
    assert _round_trip(pg_url, tmp_path) == ONE_OF_EACH


def _v1_database(path: Path) -> None:
    """A database as poisonlab's schema version 1 wrote it: no requests.n_flagged."""
    from poisonlab.monitor.store import MIGRATIONS

    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        MIGRATIONS[1](sa, conn)
        conn.execute(sa.text("INSERT INTO schema_version (version, applied) VALUES (1, 0)"))
        conn.execute(sa.text("INSERT INTO requests (uid, created, n_inputs, seconds, predicted) "
                             "VALUES ('old', 0, 7, 0.1, '{}')"))
    engine.dispose()


def test_an_older_database_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _v1_database(path)
    store = Store(f"sqlite:///{path}", spool=tmp_path / "spool")
    assert store.found_version == 1
    with store.engine.connect() as conn:
        assert schema_version(conn) == SCHEMA_VERSION
    assert store.write([_request(2)])
    rows = store.recent("request")
    assert [(r["uid"], r["n_inputs"], r["n_flagged"]) for r in rows][-1] == ("old", 7, 0)
    assert len(rows) == 2
    store.dispose()


def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    Store(f"sqlite:///{path}", spool=tmp_path / "spool").dispose()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_version VALUES (?, 0)", (SCHEMA_VERSION + 1,))
    with pytest.raises(DataError, match=r"schema version 3.*upgrade poisonlab"):
        Store(f"sqlite:///{path}", spool=tmp_path / "spool")


def test_a_bad_url_is_one_line_without_the_password(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        Store("nosuchdb://user:hunter2@host/db", spool=tmp_path / "spool")
    assert "hunter2" not in str(info.value) and "\n" not in str(info.value)


def test_records_spool_while_the_database_is_locked_and_replay(tmp_path: Path) -> None:
    """SQLite variant of the outage: another connection holds the write lock."""
    path = tmp_path / "serve.db"
    store = Store(f"sqlite:///{path}?timeout=0.05", spool=tmp_path / "spool")
    locker = sqlite3.connect(path, timeout=0.05, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    sent = [_request() for _ in range(5)]
    assert not store.write(sent[:3])
    assert store.n_spooled == 3 and (tmp_path / "spool").exists()
    locker.execute("ROLLBACK")
    locker.close()
    assert store.write(sent[3:])
    assert store.n_spooled == 0 and not (tmp_path / "spool").exists()
    assert store.counts()["request"] == 5
    store.dispose()


def test_postgres_stopped_mid_run_loses_nothing(postgres, pg_url: str, tmp_path: Path) -> None:
    """Stop PostgreSQL while requests keep coming, start it again: every request is stored once."""
    store = Store(pg_url, spool=tmp_path / "spool")
    recorder = Recorder(store, retry_seconds=0.1)
    sent = peak = 0
    stopped = threading.Event()

    def outage() -> None:
        time.sleep(0.3)
        postgres.stop()
        stopped.set()
        time.sleep(1.0)
        postgres.start()

    fault = threading.Thread(target=outage)
    fault.start()
    deadline = time.monotonic() + 60
    while fault.is_alive() or sent < 400:
        recorder.put([_request()])
        sent += 1
        peak = max(peak, store.n_spooled)
        time.sleep(0.005)
        assert time.monotonic() < deadline
    fault.join()
    assert stopped.is_set()
    assert peak > 0  # the outage was seen: records went to the spool
    recorder.flush()
    for _ in range(100):  # the recorder replays the spool once the server answers again
        if store.replay():
            break
        time.sleep(0.1)
    spooled_during_outage = store.n_spooled
    recorder.close()
    assert spooled_during_outage == 0
    assert store.counts()["request"] == sent
    store.dispose()
