"""SQL stores: SQLite (standard library, WAL mode, one file) and any SQLAlchemy URL, one code path.

Two tables joined by ``decision_id``: ``records`` (one row per routed call: a few columns to
query on plus the whole record as JSON in ``data``) and ``feedback`` (any number of rows per
decision, each with its time). Every statement is plain SQL with ``:name`` parameters, which
both `sqlite3` and SQLAlchemy's ``text()`` take, so the SQLite file and a server database
(PostgreSQL, MySQL) run the very same statements; only how a transaction is opened differs.

SQLite runs in WAL mode with a busy timeout: readers never block the writer, several processes
may write (one at a time, each waiting up to ``timeout`` seconds), and a transaction that
committed survives the process being killed (``synchronous=NORMAL``: only a power loss may lose
the last ones).
"""

import json
import logging
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from haps_core.feedback.base import FeedbackEntry, Store, UnknownDecisionError
from haps_core.feedback.record import DecisionRecord

logger = logging.getLogger(__name__)

T = TypeVar("T")
Exec = Callable[[str, Any], tuple[list[Any], int]]
"""``(sql, params or a list of params) -> (rows, rowcount)`` inside one transaction."""

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS records ("
    " decision_id VARCHAR(64) PRIMARY KEY, ts DOUBLE PRECISION NOT NULL,"
    " status VARCHAR(16) NOT NULL, backend VARCHAR(255) NOT NULL, served_backend VARCHAR(255),"
    " query_hash VARCHAR(64) NOT NULL, propensity DOUBLE PRECISION, cost DOUBLE PRECISION,"
    " latency_s DOUBLE PRECISION, data TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS feedback ("
    " decision_id VARCHAR(64) NOT NULL, ts DOUBLE PRECISION NOT NULL,"
    " score DOUBLE PRECISION NOT NULL, kind VARCHAR(16) NOT NULL)",
    "CREATE INDEX IF NOT EXISTS feedback_decision ON feedback (decision_id)",
    "CREATE INDEX IF NOT EXISTS records_ts ON records (ts)",
)
INSERT_RECORD = (
    "INSERT INTO records (decision_id, ts, status, backend, served_backend, query_hash,"
    " propensity, cost, latency_s, data) VALUES (:decision_id, :ts, :status, :backend,"
    " :served_backend, :query_hash, :propensity, :cost, :latency_s, :data)"
)
INSERT_FEEDBACK = (  # one statement: the id check and the insert cannot be split by a writer
    "INSERT INTO feedback (decision_id, ts, score, kind) SELECT :decision_id, :ts, :score, :kind"
    " WHERE EXISTS (SELECT 1 FROM records WHERE decision_id = :decision_id)"
)
SELECT_ONE = "SELECT data FROM records WHERE decision_id = :decision_id"
SELECT_RECORDS = "SELECT data FROM records ORDER BY ts, decision_id"
SELECT_FEEDBACK = "SELECT decision_id, ts, score, kind FROM feedback ORDER BY ts"


def _row(record: DecisionRecord) -> dict[str, Any]:
    return {
        "decision_id": record.decision_id,
        "ts": record.ts,
        "status": record.status,
        "backend": record.backend,
        "served_backend": record.served_backend,
        "query_hash": record.query_hash,
        "propensity": record.propensity,
        "cost": record.cost,
        "latency_s": record.latency_s,
        "data": json.dumps(record.to_dict(), ensure_ascii=False, default=str),
    }


class SQLStore(Store):
    """Records and feedback in SQL tables; the transaction runner is what subclasses supply."""

    kind = "sql"

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self._run(lambda execute: [execute(sql, {}) for sql in SCHEMA])

    def _run(self, work: Callable[[Exec], T]) -> T:
        """Runs ``work(execute)`` in one transaction: committed when it returns, else rolled back."""
        raise NotImplementedError

    def write(self, records: Sequence[DecisionRecord]) -> None:
        if records:
            rows = [_row(r) for r in records]
            self._run(lambda execute: execute(INSERT_RECORD, rows))

    def add_feedback(self, entry: FeedbackEntry) -> None:
        params = {"decision_id": entry.decision_id, "ts": entry.ts, "score": entry.score, "kind": entry.kind}
        _, count = self._run(lambda execute: execute(INSERT_FEEDBACK, params))
        if count != 1:
            raise UnknownDecisionError(entry.decision_id, self.name)

    def get(self, decision_id: str) -> DecisionRecord | None:
        rows, _ = self._run(lambda execute: execute(SELECT_ONE, {"decision_id": decision_id}))
        return DecisionRecord.from_dict(json.loads(rows[0][0])) if rows else None

    def records(self) -> list[DecisionRecord]:
        rows, _ = self._run(lambda execute: execute(SELECT_RECORDS, {}))
        return [DecisionRecord.from_dict(json.loads(data)) for (data,) in rows]

    def feedback_entries(self) -> list[FeedbackEntry]:
        rows, _ = self._run(lambda execute: execute(SELECT_FEEDBACK, {}))
        return [FeedbackEntry(str(d), float(t), float(s), str(k)) for d, t, s, k in rows]


class SQLiteStore(SQLStore):
    """One SQLite file (standard library `sqlite3`), WAL mode; see the module docstring.

    Args:
        path: the database file (created with its tables when missing).
        timeout: seconds a statement waits for another writer's lock.
        **settings: `Store` settings (``store_text``, ``writer``).
    """

    kind = "sqlite"

    def __init__(self, path: str | Path, *, timeout: float = 30.0, **settings: Any) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(self.path, timeout=timeout) as conn:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        conn.close()
        if str(mode).lower() != "wal":
            logger.warning("SQLite store %s runs in journal mode %r, not WAL", self.path, mode)
        super().__init__(**settings)

    @property
    def name(self) -> str:
        return f"sqlite:{self.path}"

    def _run(self, work: Callable[[Exec], T]) -> T:
        conn = sqlite3.connect(self.path, timeout=self.timeout)
        try:
            conn.execute("PRAGMA synchronous=NORMAL")

            def execute(sql: str, params: Any) -> tuple[list[Any], int]:
                if isinstance(params, list):
                    cursor = conn.executemany(sql, params)
                else:
                    cursor = conn.execute(sql, params)
                return cursor.fetchall(), cursor.rowcount

            with conn:  # commits on return, rolls back on an exception
                return work(execute)
        finally:
            conn.close()


class SQLAlchemyStore(SQLStore):
    """Any database SQLAlchemy reaches by URL (``postgresql+psycopg://...``, ``sqlite+pysqlite:///...``).

    Args:
        url: the SQLAlchemy database URL.
        engine_kwargs: passed to ``sqlalchemy.create_engine``.
        **settings: `Store` settings (``store_text``, ``writer``).
    """

    kind = "sqlalchemy"

    def __init__(self, url: str, *, engine_kwargs: dict[str, Any] | None = None, **settings: Any) -> None:
        try:
            import sqlalchemy
        except ImportError as exc:  # pragma: no cover - SQLAlchemy is a dependency of the tests
            msg = f"a store URL ({url!r}) needs SQLAlchemy: pip install 'sqlalchemy>=2'"
            raise ImportError(msg) from exc
        self._text = sqlalchemy.text
        self.engine = sqlalchemy.create_engine(url, **(engine_kwargs or {}))
        super().__init__(**settings)

    @property
    def name(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def _run(self, work: Callable[[Exec], T]) -> T:
        with self.engine.begin() as conn:

            def execute(sql: str, params: Any) -> tuple[list[Any], int]:
                result = conn.execute(self._text(sql), params)
                rows = list(result.fetchall()) if result.returns_rows else []
                return rows, result.rowcount

            return work(execute)

    def close(self) -> None:
        self.engine.dispose()
