"""What HAPS keeps per LlamaIndex query: decisions for the ``Response``, the question, the selection.

A query engine keeps only the text of the LLM's answer, so HAPS listens to the query start and end
events (one handler on the root instrumentation dispatcher) and puts the decisions of the LLM
calls made during a query on its ``Response.metadata["haps"]`` (`haps_decision` reads it back).
"""

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.query import QueryEndEvent, QueryStartEvent
from llama_index.core.instrumentation.events.span import SpanDropEvent

logger = logging.getLogger(__name__)


@dataclass
class _Frame:
    """One query in progress: the decision records of its LLM calls and any HAPS selection."""

    span_id: str | None
    records: list[dict[str, Any]] = field(default_factory=list)
    selection: Any = None  # a HAPSSelectorResult


_FRAMES: ContextVar[tuple[_Frame, ...]] = ContextVar("haps_query_frames", default=())
_QUESTION: ContextVar[str | None] = ContextVar("haps_question", default=None)


def _close(span_id: str | None) -> _Frame | None:
    """Closes the frame of the query span ``span_id`` (and any left open above it)."""
    frames = _FRAMES.get()
    for i in range(len(frames) - 1, -1, -1):
        if frames[i].span_id == span_id:
            _FRAMES.set(frames[:i])
            return frames[i]
    return None


class _QueryEvents(BaseEventHandler):
    """Opens a frame on each query start; on its end, attaches the frame's decisions.

    A query that raises ends with a span drop instead: its frame is closed too, so a selection
    never outlives its query.
    """

    @classmethod
    def class_name(cls) -> str:
        return "HAPSQueryEvents"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if isinstance(event, QueryStartEvent):
            _FRAMES.set((*_FRAMES.get(), _Frame(event.span_id)))
        elif isinstance(event, SpanDropEvent):
            _close(event.span_id)
        elif isinstance(event, QueryEndEvent) and (frame := _close(event.span_id)) and frame.records:
            response = event.response
            if hasattr(response, "metadata"):
                if response.metadata is None:
                    response.metadata = {}
                response.metadata["haps"] = frame.records[-1]
                response.metadata["haps_calls"] = list(frame.records)


_HANDLER: _QueryEvents | None = None


def listen_to_queries() -> None:
    """Registers the query event handler on the root dispatcher (once per process)."""
    global _HANDLER
    if _HANDLER is None:
        _HANDLER = _QueryEvents()
        get_dispatcher().add_event_handler(_HANDLER)


def note_record(record: dict[str, Any]) -> None:
    """Adds an LLM call's decision record to every query in progress (inner and outer)."""
    for frame in _FRAMES.get():
        frame.records.append(record)


def note_selection(selection: Any) -> None:
    """Keeps a `HAPSSelector` result for the HAPS LLM calls of the rest of this query."""
    if frames := _FRAMES.get():
        frames[-1].selection = selection


def current_selection() -> Any:
    """The innermost query's HAPS selection in progress, if any."""
    for frame in reversed(_FRAMES.get()):
        if frame.selection is not None:
            return frame.selection
    return None


@contextmanager
def question_of(prompt_args: Mapping[str, Any], template: Any) -> Iterator[None]:
    """While a templated prompt is predicted: the user's question, its ``query_str`` variable."""
    value = prompt_args.get("query_str", (getattr(template, "kwargs", None) or {}).get("query_str"))
    token = _QUESTION.set(value if isinstance(value, str) and value.strip() else None)
    try:
        yield
    finally:
        _QUESTION.reset(token)


def current_question() -> str | None:
    """The question of the templated prompt being predicted (`question_of`), if any."""
    return _QUESTION.get()


def haps_decision(response: Any) -> dict[str, Any] | None:
    """The HAPS decision record behind a query engine's ``Response`` (or an LLM response).

    A query engine's ``Response.metadata["haps"]``: the record of the last HAPS LLM call of
    that query (``metadata["haps_calls"]``: all of them, e.g. refine steps); an LLM response's
    ``additional_kwargs["haps"]``. None when no HAPS LLM answered.
    """
    for name in ("metadata", "additional_kwargs"):
        found = (getattr(response, name, None) or {}).get("haps")
        if found is not None:
            return dict(found)
    return None
