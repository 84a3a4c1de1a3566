"""Issue 17, records and feedback: the stores, the background writer and feedback itself.

Real parts throughout: SQLite files (standard library), SQLAlchemy 2 on a ``sqlite+pysqlite``
URL, JSONL files, threads and processes. The decisions come from the FAKE rule router of
tests/helpers/fake_router.py (our own routing code decides; only its predictions are rules).
"""

import json
import logging
import threading
import time

import pytest

from haps_core.feedback import (
    CallableStore,
    DecisionRecord,
    JSONLStore,
    RecordQueueFullError,
    SQLAlchemyStore,
    SQLiteStore,
    Store,
    UnknownDecisionError,
    WriterPolicy,
    export_rows,
    give_feedback,
    make_record,
    open_store,
    query_hash,
)
from haps_core.feedback.writer import BackgroundWriter
from tests.helpers.fake_router import FakeRouter

SPECS = ["sqlite", "url", "jsonl"]


def _store(kind: str, tmp_path, **settings) -> Store:
    if kind == "sqlite":
        return open_store(tmp_path / "records.db", **settings)
    if kind == "url":
        return open_store(f"sqlite+pysqlite:///{tmp_path / 'records_url.db'}", **settings)
    return open_store(tmp_path / "records.jsonl", **settings)


def _record(text: str = "a hard question", **kw) -> DecisionRecord:
    (decision,) = FakeRouter().route([text])
    haps = {
        "parameters": dict(decision.parameters),
        "served_by": {"backend": decision.backend, "parameters": {}},
    }
    return make_record(decision, text, [], haps=haps, latency_s=0.01, **kw)


def test_issue17_open_store_picks_by_spec(tmp_path):
    assert isinstance(open_store(tmp_path / "a.db"), SQLiteStore)
    assert isinstance(open_store(str(tmp_path / "a.sqlite")), SQLiteStore)
    assert isinstance(open_store(f"sqlite+pysqlite:///{tmp_path / 'b.db'}"), SQLAlchemyStore)
    assert isinstance(open_store(tmp_path / "c.jsonl"), JSONLStore)
    assert isinstance(open_store(lambda item: None), CallableStore)
    store = open_store(tmp_path / "d.db")
    assert open_store(store) is store
    with pytest.raises(ValueError, match=r"must end with one of \['.db'"):
        open_store(tmp_path / "e.csv")
    with pytest.raises(TypeError, match="got int"):
        open_store(3)


def test_issue17_sqlite_store_is_wal_with_two_joined_tables(tmp_path):
    import sqlite3

    store = SQLiteStore(tmp_path / "r.db")
    r = _record()
    store.write([r])
    give_feedback(store, r.decision_id, 0.5)
    with sqlite3.connect(tmp_path / "r.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        joined = conn.execute(
            "SELECT r.backend, f.score FROM records r JOIN feedback f ON r.decision_id = f.decision_id"
        ).fetchall()
    assert joined == [(r.backend, 0.5)]


@pytest.mark.parametrize("kind", SPECS)
def test_issue17_records_round_trip(kind, tmp_path):
    store = _store(kind, tmp_path)
    records = [_record(f"question {i}") for i in range(5)]
    store.write(records)
    assert [r.to_dict() for r in store.records()] == [r.to_dict() for r in records]
    assert store.get(records[2].decision_id) == records[2]
    assert store.get("0" * 32) is None


@pytest.mark.parametrize("kind", SPECS)
def test_issue17_feedback_unknown_id_is_a_clear_error(kind, tmp_path):
    store = _store(kind, tmp_path)
    store.write([_record()])
    with pytest.raises(UnknownDecisionError) as info:
        give_feedback(store, "deadbeef", 1.0)
    assert "'deadbeef'" in str(info.value) and store.name in str(info.value)
    assert store.feedback_entries() == []


@pytest.mark.parametrize("kind", SPECS)
def test_issue17_feedback_twice_keeps_both_and_export_uses_latest(kind, tmp_path):
    store = _store(kind, tmp_path)
    r = _record()
    store.write([r])
    first = give_feedback(store, r.decision_id, "down")
    second = give_feedback(store, r.decision_id, 0.75)
    entries = store.feedback_entries()
    assert [(e.score, e.kind) for e in entries] == [(0.0, "thumbs"), (0.75, "score")]
    assert entries[0].ts == first.ts < second.ts == entries[1].ts
    rows, summary = export_rows(store)
    assert [row["score"] for row in rows] == [0.75]
    assert summary.rows == 1


@pytest.mark.parametrize(
    ("score", "expected", "kind"),
    [
        ("up", 1.0, "thumbs"),
        ("Down", 0.0, "thumbs"),
        (True, 1.0, "thumbs"),
        (False, 0.0, "thumbs"),
        (0.3, 0.3, "score"),
    ],
)
def test_issue17_feedback_scores_and_thumbs(score, expected, kind, tmp_path):
    store = SQLiteStore(tmp_path / "r.db")
    r = _record()
    store.write([r])
    entry = give_feedback(store, r.decision_id, score)
    assert (entry.score, entry.kind) == (expected, kind)


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan"), "meh", None])
def test_issue17_feedback_bad_score_names_what_is_allowed(bad, tmp_path):
    store = SQLiteStore(tmp_path / "r.db")
    r = _record()
    store.write([r])
    with pytest.raises(ValueError, match=r"\[0, 1\]|thumbs"):
        give_feedback(store, r.decision_id, bad)


def test_issue17_scorer_runs_on_the_stored_response(tmp_path):
    store = SQLiteStore(tmp_path / "r.db")
    r = _record(output="The answer is 42.")
    store.write([r])
    entry = give_feedback(store, r.decision_id, lambda response: float("42" in response))
    assert (entry.score, entry.kind) == (1.0, "scorer")
    entry = give_feedback(store, r.decision_id, lambda response, record: float(record.backend == "small"))
    assert entry.score == float(r.backend == "small")


def test_issue17_store_text_false_keeps_only_the_hash(tmp_path):
    store = SQLiteStore(tmp_path / "r.db", store_text=False)
    r = _record("my secret question", output="secret answer", store_text=store.store_text)
    store.write([r])
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("r.db*"))
    assert b"secret" not in raw
    assert store.get(r.decision_id).query_hash == query_hash("my secret question")
    give_feedback(store, r.decision_id, 1.0)
    rows, summary = export_rows(store)
    assert rows == [] and summary.without_text == 1
    with pytest.raises(ValueError, match="store_text=False"):
        give_feedback(store, r.decision_id, lambda response: 1.0)


def test_issue17_callable_store_passes_everything_on():
    items = []
    store = CallableStore(items.append)
    r = _record()
    store.write([r])
    give_feedback(store, r.decision_id, "up")
    assert [i["type"] for i in items] == ["record", "feedback"]
    assert items[0]["decision_id"] == items[1]["decision_id"] == r.decision_id
    with pytest.raises(TypeError, match="keeps nothing"):
        store.records()


def test_issue17_jsonl_torn_last_line_is_skipped_with_a_warning(tmp_path, caplog):
    path = tmp_path / "r.jsonl"
    store = JSONLStore(path)
    records = [_record(f"q{i}") for i in range(3)]
    store.write(records)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 25])  # the last record cut mid-line, as a kill would
    with caplog.at_level(logging.WARNING):
        kept = store.records()
    assert [r.decision_id for r in kept] == [r.decision_id for r in records[:2]]
    assert "torn last line 3" in caplog.text
    path.write_bytes(data[:40] + b"\n" + data)  # a broken line that is NOT the last one
    with pytest.raises(ValueError, match="line 1 is not valid JSON"):
        store.records()


class SlowStore(Store):
    """FAKE store (our own writer logic under test): each write waits until released."""

    kind = "slow"

    def __init__(self, **settings):
        super().__init__(**settings)
        self.release = threading.Event()
        self.written: list[str] = []

    def write(self, records):
        self.release.wait(10)
        self.written += [r.decision_id for r in records]


def test_issue17_writer_full_queue_drops_with_a_counted_warning(caplog):
    store = SlowStore(writer=WriterPolicy(queue_size=2, when_full="drop", block_s=0.01, batch_size=1))
    writer = BackgroundWriter(store)
    with caplog.at_level(logging.WARNING):
        outcomes = [writer.put(_record(f"q{i}")) for i in range(8)]
    store.release.set()
    writer.close()
    assert outcomes.count(False) == writer.dropped >= 5
    assert len(store.written) == outcomes.count(True) == writer.written
    assert "dropped 1 record(s) so far" in caplog.text


def test_issue17_writer_full_queue_raises_or_blocks():
    store = SlowStore(writer=WriterPolicy(queue_size=1, when_full="raise", block_s=0.01, batch_size=1))
    writer = BackgroundWriter(store)
    with pytest.raises(RecordQueueFullError, match="stayed full"):
        for i in range(5):
            writer.put(_record(f"q{i}"))
    store.release.set()
    writer.close()

    store = SlowStore(writer=WriterPolicy(queue_size=1, when_full="block", batch_size=1))
    writer = BackgroundWriter(store)
    threading.Timer(0.2, store.release.set).start()
    start = time.perf_counter()
    assert all(writer.put(_record(f"q{i}")) for i in range(4))
    assert time.perf_counter() - start >= 0.15  # it waited for room instead of dropping
    writer.close()
    assert len(store.written) == 4 and writer.dropped == 0


def test_issue17_writer_policy_checks_its_settings():
    with pytest.raises(ValueError, match="`when_full` must be one of"):
        WriterPolicy(when_full="ignore")
    with pytest.raises(ValueError, match="`queue_size` must be an int >= 1"):
        WriterPolicy(queue_size=0)


@pytest.mark.parametrize("kind", ["sqlite", "url"])
def test_issue17_sql_store_concurrent_writers_and_readers(kind, tmp_path):
    """Eight writer threads (each its own writer and connection) and a reader polling meanwhile."""
    spec = tmp_path / "c.db" if kind == "sqlite" else f"sqlite+pysqlite:///{tmp_path / 'c.db'}"
    stores = [open_store(spec, writer=WriterPolicy(batch_size=7)) for _ in range(8)]
    reader = open_store(spec)
    written: list[str] = []
    seen: list[int] = []
    stop = threading.Event()

    def write(store):
        writer = BackgroundWriter(store)
        for i in range(50):
            r = _record(f"q{i}")
            written.append(r.decision_id)
            writer.put(r)
        writer.close()

    def read():
        while not stop.is_set():
            seen.append(len(reader.records()))

    poll = threading.Thread(target=read)
    poll.start()
    threads = [threading.Thread(target=write, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    poll.join()
    ids = [r.decision_id for r in reader.records()]
    assert sorted(ids) == sorted(written) and len(ids) == 400
    assert seen == sorted(seen)  # a reader never sees a record disappear
    assert json.loads(json.dumps(reader.records()[0].to_dict()))["decision_id"] in written
