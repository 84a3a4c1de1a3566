"""LlamaIndex messages: what the router reads from a call, and what HAPS adds to one.

The router reads the last user message's text blocks (``complete`` passes its prompt as one user
message); a prompt style's text joins the system message in ``chat`` and goes before the prompt
in ``complete``; the decision rides on each response's ``additional_kwargs["haps"]``.
"""

import logging
from collections.abc import Sequence
from typing import Any, TypeVar

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    MessageRole,
    TextBlock,
)

from haps_core.dispatch import ChunkRules, query_text, with_system_text

logger = logging.getLogger(__name__)

R = TypeVar("R", ChatResponse, CompletionResponse)

Query = str | Sequence[ChatMessage]
"""What a call routes on: a ``complete`` prompt, or ``chat`` messages."""


def message_text(message: ChatMessage) -> str:
    """The text parts of a message, joined (images, audio, tool calls... are skipped)."""
    return "\n".join(block.text for block in message.blocks if isinstance(block, TextBlock))


def _roles(messages: Sequence[ChatMessage]) -> str:
    return f"roles: {[str(m.role.value) for m in messages]}"


def extract_query_text(messages: Sequence[ChatMessage]) -> str:
    """The text the router reads: the last user message's text parts.

    No user message, or one without text, is a ValueError.
    """
    return query_text(
        messages,
        lambda m: m.role == MessageRole.USER,
        message_text,
        role="user",
        parts="text blocks",
        describe=_roles,
    )


def as_messages(query: Query) -> list[ChatMessage]:
    """A prompt as one user message; messages as they are."""
    if isinstance(query, str):
        return [ChatMessage(role=MessageRole.USER, content=query)]
    return list(query)


def sent_text(query: Query) -> str:
    """The text of the whole prompt (every message, a filled template's context included): what
    the input cost is counted on, while routing reads the question."""
    return "\n".join(message_text(m) for m in as_messages(query))


def _extend(message: ChatMessage, text: str) -> ChatMessage:
    blocks = list(message.blocks)
    if len(blocks) == 1 and isinstance(blocks[0], TextBlock):
        old = blocks[0].text
        blocks = [TextBlock(text=f"{old}\n\n{text}" if old else text)]
    else:
        blocks.append(TextBlock(text=text))
    return message.model_copy(update={"blocks": blocks})


def _system(text: str) -> ChatMessage:
    return ChatMessage(role=MessageRole.SYSTEM, content=text)


def apply_system_message(messages: Sequence[ChatMessage], text: str | None) -> list[ChatMessage]:
    """Adds a prompt style's text: appended to the first system message, or prepended as one.

    The input is not modified.
    """
    return with_system_text(messages, text, lambda m: m.role == MessageRole.SYSTEM, _extend, _system)


def restyle(query: Query, text: str | None) -> tuple[Query, str]:
    """A prompt style's text added to a call (`RoutedCaller` ``restyle``), and the mechanism.

    ``chat``: a system message; ``complete``: put before the prompt, as LlamaIndex does with
    ``system_prompt``.
    """
    if isinstance(query, str):
        return (f"{text}\n\n{query}" if text else query), "prompt_prefix"
    return apply_system_message(query, text), "system_message"


def with_haps(response: R, record: dict[str, Any]) -> R:
    """A copy of ``response`` with the decision under ``additional_kwargs["haps"]``."""
    return response.model_copy(update={"additional_kwargs": {**response.additional_kwargs, "haps": record}})


def _latest(_: Any, chunk: Any) -> Any:
    return chunk  # LlamaIndex chunks are cumulative: the latest one is the output so far


CHAT_CHUNKS = ChunkRules(
    first=with_haps,
    each=with_haps,
    add=_latest,
    empty=lambda record: with_haps(
        ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=""), delta=""), record
    ),
)
"""``stream_chat``: every chunk carries the decision; an empty stream still yields one response."""
COMPLETION_CHUNKS = ChunkRules(
    first=with_haps,
    each=with_haps,
    add=_latest,
    empty=lambda record: with_haps(CompletionResponse(text="", delta=""), record),
)
"""``stream_complete``: as `CHAT_CHUNKS`."""
