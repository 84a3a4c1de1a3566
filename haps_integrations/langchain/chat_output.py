"""What `ChatHAPS` returns: its results and stream chunks, with the decision record attached.

The record (``response_metadata["haps"]``) gets the call's ``turn`` entry (which turn was routed,
whether it stuck to a tool loop's backend); streams get this run's ids and a closing chunk.
"""

import logging
from collections.abc import Callable, Iterator
from typing import Any

from langchain_core.messages import AIMessageChunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from haps_core.dispatch import Answer, ChunkRules
from haps_integrations.langchain.messages import add_chunks, as_message, with_haps

logger = logging.getLogger(__name__)


def mark_last(chunk: AIMessageChunk) -> AIMessageChunk:
    """Marks the stream's final chunk (``chunk_position="last"``) so aggregators finalise it."""
    return chunk if chunk.chunk_position else chunk.model_copy(update={"chunk_position": "last"})


def _empty_like(chunk: Any) -> Any:
    return "" if isinstance(chunk.content, str) else []


def closing_chunk(last: Any, partial: Any, backend: str) -> Iterator[ChatGenerationChunk]:
    """An empty final chunk when the stream needs one: unmarked last chunk, or no model name."""
    named = bool(getattr(partial, "response_metadata", {}).get("model_name"))
    if getattr(last, "chunk_position", None) != "last" or not named:
        extra = {} if named else {"model_name": backend}
        chunk = AIMessageChunk(content=_empty_like(last), response_metadata=extra)
        yield ChatGenerationChunk(message=mark_last(chunk))


def chunk_rules(turn: dict[str, Any]) -> ChunkRules:
    """Chat-model streams: this run's message ids, the decision (with its ``turn`` entry) on the
    first chunk (or the only one)."""
    full: Callable[[dict[str, Any]], dict[str, Any]] = lambda record: {**record, "turn": turn}  # noqa: E731
    return ChunkRules(
        first=lambda chunk, record: with_haps(chunk, full(record), clear_id=True),
        each=lambda chunk, _: chunk.model_copy(update={"id": None}),
        add=add_chunks,
        empty=lambda record: mark_last(AIMessageChunk(content="", response_metadata={"haps": full(record)})),
    )


def chat_result(answer: Answer[Any], turn: dict[str, Any]) -> ChatResult:
    """A backend's output as this chat model's result (this run's id, the decision attached)."""
    message = as_message(answer.output)
    record = {**answer.record, "turn": turn}
    message = with_haps(message, record, clear_id=True, model_name=answer.attempts[-1].backend)
    return ChatResult(generations=[ChatGeneration(message=message)])
