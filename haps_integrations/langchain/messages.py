"""LangChain messages: what the router reads from an input, and what HAPS adds to one.

The router reads the last human message's text parts; a prompt style's text joins the system
message; the decision rides on the answer's ``response_metadata["haps"]``.
"""

import logging
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    convert_to_messages,
)
from langchain_core.prompt_values import PromptValue

from haps_core.dispatch import ChunkRules, query_text, with_system_text

logger = logging.getLogger(__name__)


def to_messages(value: LanguageModelInput | BaseMessage) -> list[BaseMessage]:
    """A chat-model input (str, PromptValue, message or list of message-likes) as messages."""
    if isinstance(value, PromptValue):
        return value.to_messages()
    if isinstance(value, str):
        return [HumanMessage(content=value)]
    if isinstance(value, BaseMessage):
        return [value]
    if isinstance(value, Sequence):
        return convert_to_messages(value)
    msg = (
        f"HAPS input must be a str, a PromptValue, a message or a list of messages, "
        f"got {type(value).__name__}: {value!r:.200}"
    )
    raise TypeError(msg)


def _content_text(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if isinstance(part, str):
            parts.append(part)
        elif isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
            parts.append(part["text"])
    return "\n".join(parts)


def _message_types(messages: Sequence[BaseMessage]) -> str:
    return f"message types: {[type(m).__name__ for m in messages]}"


def extract_query_text(messages: Sequence[BaseMessage]) -> str:
    """The text the router reads: the last human message's text parts (images etc. skipped).

    An input with no human message, or one with no text, is a ValueError.
    """
    return query_text(
        messages,
        lambda m: isinstance(m, HumanMessage),
        _content_text,
        role="human",
        parts="text parts",
        describe=_message_types,
    )


def sent_text(messages: Sequence[BaseMessage]) -> str:
    """The text of every message (system, history, the query): what the input cost is counted on."""
    return "\n".join(_content_text(m) for m in messages)


def read_input(value: LanguageModelInput) -> tuple[list[BaseMessage], str]:
    """``(messages to send, text to route on)`` of one input."""
    messages = to_messages(value)
    return messages, extract_query_text(messages)


def _extend(message: BaseMessage, text: str) -> BaseMessage:
    content = message.content
    if isinstance(content, str):
        new: Any = f"{content}\n\n{text}" if content else text
    else:
        new = [*content, {"type": "text", "text": text}]
    return message.model_copy(update={"content": new})


def apply_system_message(messages: Sequence[BaseMessage], text: str | None) -> list[BaseMessage]:
    """Adds a prompt style's text: appended to the first system message, or prepended as one."""
    return with_system_text(messages, text, lambda m: isinstance(m, SystemMessage), _extend, SystemMessage)


def restyle(messages: list[BaseMessage], text: str | None) -> tuple[list[BaseMessage], str]:
    """A prompt style's text added to ``messages``, and the mechanism (`RoutedCaller` ``restyle``)."""
    return apply_system_message(messages, text), "system_message"


def as_message(output: Any) -> BaseMessage:
    """A backend's output as a message (an LLM backend answers a plain string)."""
    if isinstance(output, BaseMessage):
        return output
    if isinstance(output, str):
        return AIMessage(content=output)
    msg = f"HAPS backend returned {type(output).__name__}, expected a message or a string"
    raise TypeError(msg)


def with_haps(
    message: BaseMessage, record: dict[str, Any], *, clear_id: bool = False, model_name: str | None = None
) -> BaseMessage:
    """A copy of ``message`` with the decision under ``response_metadata["haps"]``.

    ``model_name`` fills ``response_metadata["model_name"]`` when the backend left it empty.
    ``clear_id`` drops the backend run's message id so that the caller's run assigns its own.
    """
    response_metadata = {**message.response_metadata, "haps": record}
    if model_name is not None and not response_metadata.get("model_name"):
        response_metadata["model_name"] = model_name
    update: dict[str, Any] = {"response_metadata": response_metadata}
    if clear_id:
        update["id"] = None
    return message.model_copy(update=update)


def add_chunks(total: Any, chunk: Any) -> Any:
    """The stream so far: message chunks added together (one that cannot be added is skipped)."""
    if total is None:
        return chunk
    try:
        return total + chunk
    except TypeError:
        return total


RUNNABLE_CHUNKS = ChunkRules(
    first=lambda chunk, record: with_haps(chunk, record), each=lambda chunk, _: chunk, add=add_chunks
)
"""`HAPSRunnable` streams: the backend's chunks as they are, the decision on the first."""
