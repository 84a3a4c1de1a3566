"""Decision records and feedback: what every HAPS deployment served, and how it went.

Each routed call writes one `DecisionRecord` (decision, propensity, predictions, actual usage and
cost, latency, attempts) to a `Store`: SQLite by default (`SQLiteStore`), any SQLAlchemy URL,
a JSONL file or a callable (`open_store` picks by spec), through a bounded `BackgroundWriter`.
`give_feedback` attaches an outcome later by ``decision_id``; `export_log` joins records and
feedback into routing-log rows (format v1) that `haps train` reads.
"""

from haps_core.feedback.base import (
    WHEN_FULL,
    FeedbackEntry,
    RecordQueueFullError,
    Store,
    UnknownDecisionError,
    WriterPolicy,
)
from haps_core.feedback.export import ExportSummary, export_log, export_rows
from haps_core.feedback.record import DecisionRecord, make_record, new_decision_id, query_hash
from haps_core.feedback.recorder import Recorder, recorder_for, recording
from haps_core.feedback.router import RecordingRouter, decision_id_of
from haps_core.feedback.scoring import THUMBS, Score, give_feedback, resolve_score
from haps_core.feedback.sql import SQLAlchemyStore, SQLiteStore, SQLStore
from haps_core.feedback.stores import CallableStore, JSONLStore, open_store
from haps_core.feedback.writer import BackgroundWriter

__all__ = [
    "THUMBS",
    "WHEN_FULL",
    "BackgroundWriter",
    "CallableStore",
    "DecisionRecord",
    "ExportSummary",
    "FeedbackEntry",
    "JSONLStore",
    "RecordQueueFullError",
    "Recorder",
    "RecordingRouter",
    "SQLAlchemyStore",
    "SQLStore",
    "SQLiteStore",
    "Score",
    "Store",
    "UnknownDecisionError",
    "WriterPolicy",
    "decision_id_of",
    "export_log",
    "export_rows",
    "give_feedback",
    "make_record",
    "new_decision_id",
    "open_store",
    "query_hash",
    "recorder_for",
    "recording",
    "resolve_score",
]
