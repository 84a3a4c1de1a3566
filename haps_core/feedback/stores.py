"""The file and callable sinks, and `open_store`, which picks a store from a spec.

A JSONL store appends one JSON object per line (``{"type": "record", ...}`` or ``{"type":
"feedback", ...}``), each written and flushed whole; a process killed mid-write leaves at most a
torn last line, which reading detects, skips and names in a warning. A callable store hands every
record and feedback entry (as dicts with that ``type`` key) to the callable: a queue, a tracing
system; it keeps nothing, so it cannot check or export.
"""

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from haps_core.feedback.base import FeedbackEntry, Store, UnknownDecisionError
from haps_core.feedback.record import DecisionRecord
from haps_core.feedback.sql import SQLAlchemyStore, SQLiteStore

logger = logging.getLogger(__name__)

SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
JSONL_SUFFIXES = (".jsonl",)


class JSONLStore(Store):
    """Records and feedback appended to one JSONL file (see the module docstring).

    Args:
        path: the file (created when missing; appended to otherwise).
        **settings: `Store` settings (``store_text``, ``writer``).
    """

    kind = "jsonl"

    def __init__(self, path: str | Path, **settings: Any) -> None:
        super().__init__(**settings)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return f"jsonl:{self.path}"

    def _append(self, items: Sequence[dict[str, Any]]) -> None:
        lines = "".join(json.dumps(item, ensure_ascii=False, default=str) + "\n" for item in items)
        with self._lock, open(self.path, "a", encoding="utf-8") as fh:
            fh.write(lines)
            fh.flush()
            os.fsync(fh.fileno())

    def write(self, records: Sequence[DecisionRecord]) -> None:
        if records:
            self._append([{"type": "record", **r.to_dict()} for r in records])

    def add_feedback(self, entry: FeedbackEntry) -> None:
        if self.get(entry.decision_id) is None:
            raise UnknownDecisionError(entry.decision_id, self.name)
        self._append([{"type": "feedback", **vars(entry)}])

    def _items(self) -> Iterator[dict[str, Any]]:
        """Every complete line's object; a torn last line is skipped with a warning."""
        if not self.path.exists():
            return
        with open(self.path, "rb") as fh:
            data = fh.read()
        lines = data.split(b"\n")
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError:
                if number == len(lines):  # no newline after it: a write cut short
                    logger.warning(
                        "skipped a torn last line %d of %s (%d bytes: the writer was stopped mid-write)",
                        number,
                        self.path,
                        len(line),
                    )
                    return
                msg = f"{self.path} line {number} is not valid JSON: {line[:80]!r}"
                raise ValueError(msg) from None
            if isinstance(item, dict):
                yield item

    def get(self, decision_id: str) -> DecisionRecord | None:
        for item in self._items():
            if item.get("type") == "record" and item.get("decision_id") == decision_id:
                return DecisionRecord.from_dict(item)
        return None

    def records(self) -> list[DecisionRecord]:
        return [DecisionRecord.from_dict(i) for i in self._items() if i.get("type") == "record"]

    def feedback_entries(self) -> list[FeedbackEntry]:
        out = []
        for i in self._items():
            if i.get("type") == "feedback":
                out.append(FeedbackEntry(i["decision_id"], float(i["ts"]), float(i["score"]), i["kind"]))
        return out


class CallableStore(Store):
    """Hands each record and feedback entry, as a dict with a ``type`` key, to ``sink``.

    It keeps nothing: feedback is passed on unchecked, and reading back raises `TypeError`.
    """

    kind = "callable"

    def __init__(self, sink: Callable[[dict[str, Any]], Any], **settings: Any) -> None:
        if not callable(sink):
            msg = f"`sink` must be callable, got {type(sink).__name__}"
            raise TypeError(msg)
        super().__init__(**settings)
        self.sink = sink

    @property
    def name(self) -> str:
        return f"callable:{getattr(self.sink, '__qualname__', type(self.sink).__name__)}"

    def write(self, records: Sequence[DecisionRecord]) -> None:
        for r in records:
            self.sink({"type": "record", **r.to_dict()})

    def add_feedback(self, entry: FeedbackEntry) -> None:
        self.sink({"type": "feedback", **vars(entry)})

    def _unreadable(self) -> TypeError:
        return TypeError(f"store {self.name} keeps nothing to read back: use a SQLite, URL or JSONL store")

    def get(self, decision_id: str) -> DecisionRecord | None:
        raise self._unreadable()

    def records(self) -> list[DecisionRecord]:
        raise self._unreadable()

    def feedback_entries(self) -> list[FeedbackEntry]:
        raise self._unreadable()


def open_store(spec: Any, **settings: Any) -> Store:
    """The store a spec names.

    Args:
        spec: a `Store` (returned as is); a path ending ``.db``, ``.sqlite`` or ``.sqlite3``
            (`SQLiteStore`); a URL with ``://`` (`SQLAlchemyStore`); a path ending ``.jsonl``
            (`JSONLStore`); or a callable taking one dict (`CallableStore`).
        **settings: `Store` settings (``store_text``, ``writer``) for a store made here.

    Raises:
        ValueError: a path with another suffix; TypeError: any other kind of spec.
    """
    if isinstance(spec, Store):
        if settings:
            msg = f"settings {sorted(settings)} apply to a store made from a spec, not to {spec!r}"
            raise ValueError(msg)
        return spec
    if isinstance(spec, str) and "://" in spec:
        return SQLAlchemyStore(spec, **settings)
    if isinstance(spec, str | os.PathLike):
        path = Path(spec)
        suffix = path.suffix.lower()
        if suffix in SQLITE_SUFFIXES:
            return SQLiteStore(path, **settings)
        if suffix in JSONL_SUFFIXES:
            return JSONLStore(path, **settings)
        allowed = [*SQLITE_SUFFIXES, *JSONL_SUFFIXES]
        msg = f"`store` {str(spec)!r} must end with one of {allowed}, or be a URL with '://'"
        raise ValueError(msg)
    if callable(spec):
        return CallableStore(spec, **settings)
    msg = (
        "`store` must be a Store, a .db/.sqlite/.jsonl path, a SQLAlchemy URL or a callable, "
        f"got {type(spec).__name__}"
    )
    raise TypeError(msg)
