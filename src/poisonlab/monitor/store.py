"""What ``poisonlab serve`` keeps: requests, windows, alerts and flagged inputs, through SQLAlchemy 2.

:class:`Store` writes to any SQLAlchemy URL (a SQLite file by default; PostgreSQL through
``postgresql+psycopg://``). Its schema is versioned: the ``schema_version`` table holds the
version, and :data:`MIGRATIONS` brings an older database up to :data:`SCHEMA_VERSION` when it is
opened (version 1 had no ``n_flagged`` column on ``requests``).

Nothing is lost while the database is away: a batch that cannot be written is appended to a local
spool file (JSON lines, append-only, fsynced) and replayed, oldest first, by the next write that
reaches the database; every record carries a unique ``uid``, so a batch replayed twice (the
database committed but the answer was lost) is stored once. :class:`Recorder` puts the writes on
a background thread behind a bounded queue (a full queue spools instead of growing) and flushes
on :meth:`Recorder.close`.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from poisonlab.exceptions import DataError, MissingExtraError

SCHEMA_VERSION = 2
RECORD_KINDS = ("request", "window", "alert", "flagged")


def _sqlalchemy() -> Any:  # Any: the sqlalchemy module, an optional dependency
    try:
        import sqlalchemy
    except ImportError:
        raise MissingExtraError("poisonlab serve stores through SQLAlchemy: pip install 'poisonlab[serve]'.") \
            from None
    return sqlalchemy


def new_uid() -> str:
    """A fresh record id (what makes a replayed record land once)."""
    return uuid.uuid4().hex


def _tables(sa: Any, version: int) -> tuple[Any, dict[str, Any]]:
    """The tables at schema ``version`` (1 or 2) on a fresh MetaData."""
    md = sa.MetaData()

    def uid() -> Any:  # Any: a sqlalchemy Column
        return sa.Column("uid", sa.String(32), nullable=False, unique=True)

    req_cols = [sa.Column("id", sa.Integer, primary_key=True), uid(),
                sa.Column("created", sa.Float, nullable=False), sa.Column("n_inputs", sa.Integer, nullable=False),
                sa.Column("seconds", sa.Float, nullable=False), sa.Column("predicted", sa.Text, nullable=False)]
    if version >= 2:
        req_cols.append(sa.Column("n_flagged", sa.Integer, nullable=False, server_default="0"))
    tables = {
        "request": sa.Table("requests", md, *req_cols),
        "window": sa.Table(
            "windows", md, sa.Column("id", sa.Integer, primary_key=True), uid(),
            sa.Column("created", sa.Float, nullable=False), sa.Column("request_count", sa.Integer, nullable=False),
            sa.Column("n", sa.Integer, nullable=False), sa.Column("class_counts", sa.Text, nullable=False),
            sa.Column("class_chi2", sa.Float), sa.Column("class_psi", sa.Float), sa.Column("class_p_value", sa.Float),
            sa.Column("confidence_psi", sa.Float), sa.Column("confidence_ks", sa.Float),
            sa.Column("n_flagged", sa.Integer), sa.Column("alarm", sa.Boolean, nullable=False)),
        "alert": sa.Table(
            "alerts", md, sa.Column("id", sa.Integer, primary_key=True), uid(),
            sa.Column("created", sa.Float, nullable=False), sa.Column("request_count", sa.Integer, nullable=False),
            sa.Column("statistics", sa.Text, nullable=False), sa.Column("message", sa.Text, nullable=False)),
        "flagged": sa.Table(
            "flagged_inputs", md, sa.Column("id", sa.Integer, primary_key=True), uid(),
            sa.Column("created", sa.Float, nullable=False), sa.Column("request_uid", sa.String(32), nullable=False),
            sa.Column("input_hash", sa.String(64), nullable=False), sa.Column("score", sa.Float),
            sa.Column("predicted", sa.Text, nullable=False), sa.Column("input", sa.Text)),
    }
    sa.Table("schema_version", md, sa.Column("version", sa.Integer, nullable=False),
             sa.Column("applied", sa.Float, nullable=False))
    return md, tables


def _migrate_to_1(sa: Any, conn: Any) -> None:
    _tables(sa, 1)[0].create_all(conn)


def _migrate_to_2(sa: Any, conn: Any) -> None:
    conn.execute(sa.text("ALTER TABLE requests ADD COLUMN n_flagged INTEGER NOT NULL DEFAULT 0"))


MIGRATIONS: dict[int, Callable[[Any, Any], None]] = {1: _migrate_to_1, 2: _migrate_to_2}


def schema_version(conn: Any) -> int:
    """The schema version of the database ``conn`` is connected to (0: no poisonlab tables)."""
    sa = _sqlalchemy()
    if not sa.inspect(conn).has_table("schema_version"):
        return 0
    return int(conn.execute(sa.text("SELECT MAX(version) FROM schema_version")).scalar() or 0)


def migrate(engine: Any, target: int = SCHEMA_VERSION) -> int:
    """Bring the database up to ``target`` (each step in its own transaction); returns the version
    found. A database newer than this poisonlab is refused."""
    sa = _sqlalchemy()
    with engine.begin() as conn:
        found = schema_version(conn)
    if found > SCHEMA_VERSION:
        raise DataError(f"The database is at schema version {found}; this poisonlab reads up to "
                        f"{SCHEMA_VERSION}: upgrade poisonlab.")
    for step in range(found + 1, target + 1):
        with engine.begin() as conn:
            MIGRATIONS[step](sa, conn)
            conn.execute(sa.text("INSERT INTO schema_version (version, applied) VALUES (:v, :t)"),
                         {"v": step, "t": time.time()})
    return found


def safe_url(url: str) -> str:
    """``url`` with its password hidden (what may reach a log line)."""
    sa = _sqlalchemy()
    try:
        rendered: str = sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # a URL SQLAlchemy cannot parse: show nothing of it
        return "<unparsable URL>"
    return rendered


class Store:
    """Requests, windows, alerts and flagged inputs in a database, with a spool for outages.

    Parameters
    ----------
    url : str
        Any SQLAlchemy URL (``sqlite:///serve.db``, ``postgresql+psycopg://user@host/db``).
    spool : path
        The append-only file batches go to while the database cannot be reached.
    """

    def __init__(self, url: str, *, spool: str | Path) -> None:
        sa = _sqlalchemy()
        self.url = url
        self.spool_path = Path(spool)
        try:
            kwargs: dict[str, Any] = {"pool_pre_ping": True}
            if url.startswith("postgresql"):
                kwargs["connect_args"] = {"connect_timeout": 3}
            self.engine = sa.create_engine(url, **kwargs)
        except (sa.exc.ArgumentError, ImportError, ValueError) as exc:
            raise DataError(f"--db {safe_url(url)}: not a database URL SQLAlchemy can open "
                            f"({str(exc).splitlines()[0]}).") from None
        try:
            self.found_version = migrate(self.engine)
        except sa.exc.SQLAlchemyError as exc:
            raise DataError(f"--db {safe_url(url)}: cannot open the database "
                            f"({str(exc).splitlines()[0]}).") from None
        self._tables = _tables(sa, SCHEMA_VERSION)[1]
        self._lock = threading.Lock()
        self.n_spooled = self._count_spool()

    def _count_spool(self) -> int:
        if not self.spool_path.exists():
            return 0
        with self.spool_path.open("rb") as handle:
            return sum(1 for _ in handle)

    # ------------------------------------------------------------------ writing
    def write(self, records: Sequence[dict[str, Any]]) -> bool:
        """Write ``records`` (each a dict with ``kind`` in :data:`RECORD_KINDS`, a ``uid`` and the
        table's columns), replaying the spool first; spool them if the database is away. True
        when they reached the database."""
        sa = _sqlalchemy()
        with self._lock:
            try:
                if self.n_spooled:
                    self._replay(sa)
                if records:
                    try:
                        with self.engine.begin() as conn:
                            self._insert(sa, conn, records, dedupe=False)  # fresh uids: no lookup
                    except sa.exc.IntegrityError:  # some were stored before: skip those
                        with self.engine.begin() as conn:
                            self._insert(sa, conn, records)
                return True
            except sa.exc.SQLAlchemyError:
                if records:
                    self._spool(records)
                return False

    def replay(self) -> bool:
        """Try to move the spool into the database; True when it is empty afterwards."""
        return self.write([]) and self.n_spooled == 0

    def spool(self, records: Iterable[dict[str, Any]]) -> None:
        """Append records to the spool file without trying the database."""
        with self._lock:
            self._spool(records)

    def _spool(self, records: Iterable[dict[str, Any]]) -> None:
        lines = [json.dumps(r, separators=(",", ":")) + "\n" for r in records]
        with self.spool_path.open("a", encoding="utf-8") as handle:
            handle.writelines(lines)
            handle.flush()
            os.fsync(handle.fileno())
        self.n_spooled += len(lines)

    def _replay(self, sa: Any, chunk: int = 2000) -> None:
        with self.spool_path.open(encoding="utf-8") as handle, self.engine.begin() as conn:
            batch: list[dict[str, Any]] = []
            for line in handle:
                if line.strip():
                    try:
                        batch.append(json.loads(line))
                    except json.JSONDecodeError:  # a line cut short by a crash mid-write
                        continue
                if len(batch) >= chunk:
                    self._insert(sa, conn, batch)
                    batch = []
            if batch:
                self._insert(sa, conn, batch)
        self.spool_path.unlink()
        self.n_spooled = 0

    def _insert(self, sa: Any, conn: Any, records: Sequence[dict[str, Any]], *, dedupe: bool = True) -> None:
        by_kind: dict[str, list[dict[str, Any]]] = {}
        for r in records:
            by_kind.setdefault(r["kind"], []).append(r)
        for kind, rows in by_kind.items():
            table = self._tables[kind]
            uids = [r["uid"] for r in rows]
            seen = ({u for (u,) in conn.execute(sa.select(table.c.uid).where(table.c.uid.in_(uids)))}
                    if dedupe else set())
            names = set(table.c.keys()) - {"id"}
            fresh = [{k: v for k, v in r.items() if k in names} for r in rows if r["uid"] not in seen]
            if fresh:
                conn.execute(table.insert(), fresh)

    # ------------------------------------------------------------------ reading
    def counts(self) -> dict[str, int]:
        """How many rows each table holds, by record kind."""
        sa = _sqlalchemy()
        with self.engine.connect() as conn:
            return {kind: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar() or 0)
                    for kind, t in self._tables.items()}

    def recent(self, kind: str, limit: int = 100) -> list[dict[str, Any]]:
        """The last ``limit`` rows of one kind, newest first."""
        sa = _sqlalchemy()
        table = self._tables[kind]
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(table).order_by(table.c.id.desc()).limit(limit)).mappings()
            return [dict(r) for r in rows]

    def dispose(self) -> None:
        """Close the connection pool."""
        self.engine.dispose()


class Recorder:
    """Writes records to a :class:`Store` on a background thread.

    ``put`` never blocks the request: records go on a queue of at most ``max_queue``; when it is
    full they are spooled at once. The thread collects records for up to ``flush_seconds`` (or
    ``batch`` records) and writes them in one transaction, and retries the spool every
    ``retry_seconds`` while the database is away. ``close`` flushes.
    """

    def __init__(self, store: Store, *, max_queue: int = 10000, batch: int = 500,
                 flush_seconds: float = 0.25, retry_seconds: float = 0.5) -> None:
        self.store = store
        self.batch = batch
        self.flush_seconds = flush_seconds
        self.retry_seconds = retry_seconds
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._run, name="poisonlab-recorder", daemon=True)
        self._closed = False
        self._thread.start()

    def put(self, records: Iterable[dict[str, Any]]) -> None:
        """Queue records for writing (spooled at once if the queue is full)."""
        overflow = []
        for r in records:
            try:
                self._queue.put_nowait(r)
            except queue.Full:
                overflow.append(r)
        if overflow:
            self.store.spool(overflow)

    def _run(self) -> None:
        stop = False
        while not stop:
            items: list[dict[str, Any]] = []
            try:
                first = self._queue.get(timeout=self.retry_seconds)
            except queue.Empty:
                if self.store.n_spooled:
                    self.store.write([])
                continue
            taken = 1
            if first is None:
                stop = True
            else:
                items.append(first)
            until = time.monotonic() + self.flush_seconds
            while len(items) < self.batch and not stop:
                try:
                    nxt = self._queue.get(timeout=max(until - time.monotonic(), 0.0))
                except queue.Empty:
                    break
                taken += 1
                if nxt is None:
                    stop = True
                else:
                    items.append(nxt)
            try:
                self.store.write(items)
            finally:
                for _ in range(taken):
                    self._queue.task_done()

    def flush(self) -> None:
        """Wait until every queued record has been written or spooled."""
        self._queue.join()

    def close(self, timeout: float = 30.0) -> None:
        """Flush and stop the thread (what SIGTERM's shutdown calls)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout)
