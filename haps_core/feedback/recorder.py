"""The recorder: what the routed caller and the integrations use to write records and take feedback.

`Recorder` turns one call into one `DecisionRecord`, puts its ``decision_id`` into the
``haps`` metadata and hands the record to its `BackgroundWriter`; `recording` is the context
manager `haps_core.dispatch.RoutedCaller` wraps each call in, so every served call and every
failed input (with its attempts) writes exactly one record, and a caller without a recorder
does nothing more than before.
"""

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from haps_core.feedback.base import FeedbackEntry, Store
from haps_core.feedback.record import DecisionRecord, make_record
from haps_core.feedback.scoring import Score, give_feedback
from haps_core.feedback.stores import open_store
from haps_core.feedback.writer import BackgroundWriter

logger = logging.getLogger(__name__)


class Recorder:
    """Writes decision records of one surface to one store, through a background writer.

    Args:
        store: a `Store` or a spec for `open_store` (path, URL, callable).
        space: the router's `RoutingSpace` (its prices give a record's actual cost), or None.
        source: the surface the records come from (``HAPSRunnable``, ``ChatHAPS``, ...).
    """

    def __init__(self, store: Any, space: Any = None, source: str = "") -> None:
        self.store: Store = open_store(store)
        self.space = space
        self.source = source
        self.writer = BackgroundWriter(self.store)

    def prices(self) -> Any:
        """``backend name -> Backend`` of the router's catalog (None without one)."""
        return None if self.space is None else self.space.backend

    def served(
        self,
        decision: Any,
        text: str,
        attempts: Sequence[Any],
        output: Any,
        haps: dict[str, Any] | None,
        latency_s: float,
    ) -> DecisionRecord:
        """Records a served call; sets ``haps["decision_id"]`` (the response metadata's record)."""
        record = make_record(
            decision,
            text,
            attempts,
            output=output,
            haps=haps,
            latency_s=latency_s,
            prices=self.prices(),
            store_text=self.store.store_text,
            source=self.source,
        )
        if haps is not None:
            haps["decision_id"] = record.decision_id
        self.writer.put(record)
        return record

    def failed(self, decision: Any, text: str, error: BaseException, latency_s: float) -> DecisionRecord:
        """Records a call every candidate failed (its attempts from ``error.attempts``)."""
        record = make_record(
            decision,
            text,
            list(getattr(error, "attempts", [])),
            latency_s=latency_s,
            error=error,
            store_text=self.store.store_text,
            source=self.source,
        )
        error.add_note(f"HAPS decision_id: {record.decision_id}")
        self.writer.put(record)
        return record

    def feedback(self, decision_id: str, score: Score) -> FeedbackEntry:
        """Attaches feedback (`give_feedback`), after the records queued so far are written."""
        self.writer.flush()
        return give_feedback(self.store, decision_id, score)

    def flush(self) -> None:
        """Waits until every record queued so far is written."""
        self.writer.flush()

    def close(self) -> None:
        """Flushes and stops the writer, then closes the store."""
        self.writer.close()
        self.store.close()


class _Recording:
    """One call under `recording`: `served` is told the answer; a failure is recorded on exit."""

    def __init__(self, recorder: Recorder | None, plan: Any) -> None:
        self.recorder = recorder
        self.plan = plan
        self.start = time.perf_counter()

    def served(self, answer: Any) -> None:
        if self.recorder is not None:
            plan = self.plan
            seconds = time.perf_counter() - self.start
            self.recorder.served(
                plan.decision, _text(plan), answer.attempts, answer.output, answer.record, seconds
            )


def _text(plan: Any) -> str:
    text = getattr(plan, "text", None)
    return text if isinstance(text, str) else ""


@contextmanager
def recording(recorder: Recorder | None, plan: Any) -> Iterator[_Recording]:
    """Wraps one routed call: ``with recording(r, plan) as rec: ...; rec.served(answer)``.

    An exception leaving the block (every candidate failed) is recorded as a failed call and
    re-raised; with ``recorder`` None nothing is recorded.
    """
    rec = _Recording(recorder, plan)
    try:
        yield rec
    except Exception as exc:
        if recorder is not None:
            try:
                recorder.failed(plan.decision, _text(plan), exc, time.perf_counter() - rec.start)
            except Exception:  # a failing store must not hide the call's own error
                logger.exception("HAPS could not record a failed call")
        raise


def recorder_for(store: Any, router: Any, source: str) -> Recorder | None:
    """The recorder of an integration's ``store=`` setting over ``router`` (whose catalog prices
    give actual costs); None: no store, nothing recorded."""
    if store is None:
        return None
    if isinstance(store, Recorder):
        return store
    return Recorder(store, getattr(router, "space", None), source)


def need_recorder(recorder: Recorder | None, owner: str) -> Recorder:
    """``recorder``, or a clear error when ``owner`` was made without a store."""
    if recorder is None:
        msg = f"{owner} has no record store: pass `store=` (a .db/.jsonl path, a URL or a Store) for feedback"
        raise ValueError(msg)
    return recorder


def haps_of(metadata: Mapping[str, Any]) -> str | None:
    """The ``decision_id`` in a response's metadata (``{"haps": {...}}`` or the haps dict itself)."""
    haps = metadata.get("haps", metadata)
    value = haps.get("decision_id") if isinstance(haps, Mapping) else None
    return value if isinstance(value, str) else None


class FeedbackMixin:
    """``feedback`` and ``flush_records`` for an integration whose `RoutedCaller` is ``_caller``."""

    def _recorder(self) -> Recorder | None:
        caller: Any = getattr(self, "_caller", None)
        return getattr(caller, "recorder", None)

    def feedback(self, decision_id: str, score: Score) -> FeedbackEntry:
        """Attaches an outcome to the served call ``decision_id`` (``response_metadata["haps"]
        ["decision_id"]``): a number in [0, 1], ``"up"``/``"down"`` (True/False), or a scorer
        called on the stored response. Kept with its time; the export uses the latest.

        Raises:
            ValueError: made without ``store=``, or a bad score.
            UnknownDecisionError: the store holds no record with that id.
        """
        return need_recorder(self._recorder(), type(self).__name__).feedback(decision_id, score)

    def flush_records(self) -> None:
        """Waits until every decision record queued so far is in the store (no-op without one)."""
        if (recorder := self._recorder()) is not None:
            recorder.flush()
