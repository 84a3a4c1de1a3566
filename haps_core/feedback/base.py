"""What every record store offers: write records, attach feedback, read both back.

`Store` is the interface the recorder, `feedback` and the export share; its settings say what a
record keeps (``store_text``) and how the background writer in front of it behaves when full.
"""

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from haps_core.errors import HAPSError
from haps_core.feedback.record import DecisionRecord

logger = logging.getLogger(__name__)

WHEN_FULL = ("drop", "block", "raise")
"""What the background writer does when its queue is full (`WriterPolicy.when_full`)."""


class UnknownDecisionError(HAPSError, LookupError):
    """Feedback named a ``decision_id`` the store holds no record of."""

    def __init__(self, decision_id: str, store: str) -> None:
        self.decision_id = decision_id
        self.store = store
        super().__init__(f"no decision record with decision_id {decision_id!r} in store {store}")

    def __str__(self) -> str:  # LookupError would quote the message like a key
        return str(self.args[0])


class RecordQueueFullError(HAPSError):
    """The background writer's queue stayed full (``when_full="raise"``)."""


@dataclass(frozen=True)
class WriterPolicy:
    """The bounded background writer in front of a store.

    Attributes:
        queue_size: records held in memory at most, waiting to be written (>= 1).
        when_full: ``"drop"`` (default): wait up to ``block_s``, then drop the record, count it
            in `BackgroundWriter.dropped` and log a warning (the first drop and every 100th);
            ``"block"``: wait until there is room (the call path waits on the store);
            ``"raise"``: wait up to ``block_s``, then raise `RecordQueueFullError`.
        block_s: seconds a call may wait for room (``drop`` and ``raise``), >= 0.
        batch_size: records written per transaction at most (>= 1).
    """

    queue_size: int = 10_000
    when_full: str = "drop"
    block_s: float = 0.05
    batch_size: int = 256

    def __post_init__(self) -> None:
        if self.when_full not in WHEN_FULL:
            msg = f"`when_full` must be one of {WHEN_FULL}, got {self.when_full!r}"
            raise ValueError(msg)
        for name in ("queue_size", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                msg = f"`{name}` must be an int >= 1, got {value!r}"
                raise ValueError(msg)
        if not isinstance(self.block_s, int | float) or not self.block_s >= 0:
            msg = f"`block_s` must be a number of seconds >= 0, got {self.block_s!r}"
            raise ValueError(msg)


@dataclass(frozen=True)
class FeedbackEntry:
    """One outcome attached to a decision: its score in [0, 1], when, and how it was given."""

    decision_id: str
    ts: float
    score: float
    kind: str = "score"
    """``score`` (a number), ``thumbs`` (up/down) or ``scorer`` (a callable on the response)."""


_clock_lock = threading.Lock()
_last_ts = 0.0


def feedback_time() -> float:
    """UNIX time, strictly increasing within the process (so "latest feedback" is well defined)."""
    global _last_ts
    with _clock_lock:
        _last_ts = max(time.time(), _last_ts + 1e-6)
        return _last_ts


class Store:
    """A place decision records and feedback go (SQLite, SQLAlchemy URL, JSONL, a callable).

    Args:
        store_text: keep query and reply text in records (False: the query's SHA-256 only;
            such records cannot be exported for training, which needs the text).
        writer: the background writer's policy (`WriterPolicy`).
    """

    kind = "store"

    def __init__(self, *, store_text: bool = True, writer: WriterPolicy | None = None) -> None:
        if not isinstance(store_text, bool):
            msg = f"`store_text` must be True or False, got {store_text!r}"
            raise TypeError(msg)
        self.store_text = store_text
        self.writer = writer or WriterPolicy()

    @property
    def name(self) -> str:
        """How errors name this store."""
        return self.kind

    def write(self, records: Sequence[DecisionRecord]) -> None:
        """Writes records (one transaction where the store has them)."""
        raise NotImplementedError

    def add_feedback(self, entry: FeedbackEntry) -> None:
        """Attaches feedback; raises `UnknownDecisionError` when no record has its id."""
        raise NotImplementedError

    def get(self, decision_id: str) -> DecisionRecord | None:
        """The record with ``decision_id``, or None."""
        raise NotImplementedError

    def records(self) -> list[DecisionRecord]:
        """Every record, oldest first."""
        raise NotImplementedError

    def feedback_entries(self) -> list[FeedbackEntry]:
        """Every feedback entry, oldest first."""
        raise NotImplementedError

    def close(self) -> None:
        """Releases what the store holds open (nothing by default)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"
