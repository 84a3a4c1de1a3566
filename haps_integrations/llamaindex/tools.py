"""`HAPSLLM` as a function-calling LLM: capabilities, tool-bound backends and the agent turn.

``chat_with_tools`` (and its async / streaming twins, which ``FunctionAgent`` and ``ReActAgent``
call) route among the backends that can call tools only: each is wrapped in a `ToolBoundLLM` that
calls the backend's own ``chat_with_tools``, so its tool format and parsing stay its own; the
served backend parses the tool calls (``get_tool_calls_from_response``).
"""

import logging
from collections.abc import AsyncGenerator, Generator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
    ToolCallBlock,
)
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import LLM
from pydantic import ConfigDict, Field

from haps_core.capabilities import Capabilities
from haps_core.decision import RouterLike
from haps_core.dispatch import Applied, Plan
from haps_core.dispatch.turns import Turn
from haps_integrations.llamaindex.params import apply_parameters

logger = logging.getLogger(__name__)


def capabilities_of(llm: Any) -> Capabilities:
    """What a LlamaIndex LLM shows it can do: tool calling when it is a `FunctionCallingLLM` whose
    metadata says so; its context window when it reports one (> 0)."""
    metadata = getattr(llm, "metadata", None)
    tools = isinstance(llm, FunctionCallingLLM) and bool(
        getattr(metadata, "is_function_calling_model", False)
    )
    window = getattr(metadata, "context_window", None)
    return Capabilities(
        tool_calling=tools, context_window=window if isinstance(window, int) and window > 0 else None
    )


def tool_pool(router: RouterLike, backends: Mapping[str, LLM]) -> dict[str, LLM]:
    """The backends that can call tools (catalog first, then the object); a ValueError naming every
    backend and its capabilities when none can."""
    caps = {
        name: router.space.backend(name).capabilities.filled(capabilities_of(llm))
        for name, llm in backends.items()
    }
    capable = {name: llm for name, llm in backends.items() if caps[name].tool_calling}
    if not capable:
        listed = ", ".join(f"{name!r}: {caps[name].to_dict() or 'unknown'}" for name in sorted(caps))
        msg = (
            "cannot chat with tools: no backend in the pool has `tool_calling` (backends and their "
            f"capabilities: {listed}); give a FunctionCallingLLM backend, or declare it in the catalog"
        )
        raise ValueError(msg)
    return capable


class ToolBoundLLM(LLM):
    """A backend with tools bound: its ``chat`` is the backend's ``chat_with_tools``."""

    llm: Any = Field(exclude=True)
    """The backend: a `FunctionCallingLLM`."""
    tools: list[Any] = Field(default_factory=list, exclude=True)
    options: dict[str, Any] = Field(default_factory=dict)

    model_config = ConfigDict(arbitrary_types_allowed=True)

    @property
    def metadata(self) -> LLMMetadata:
        return self.llm.metadata

    def _history(self, messages: Sequence[ChatMessage]) -> dict[str, Any]:
        return {"chat_history": list(messages), **self.options}

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self.llm.chat_with_tools(self.tools, **self._history(messages), **kwargs)

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return await self.llm.achat_with_tools(self.tools, **self._history(messages), **kwargs)

    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        return self.llm.stream_chat_with_tools(self.tools, **self._history(messages), **kwargs)

    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        return await self.llm.astream_chat_with_tools(self.tools, **self._history(messages), **kwargs)

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return self.llm.complete(prompt, formatted=formatted, **kwargs)

    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return await self.llm.acomplete(prompt, formatted=formatted, **kwargs)

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        return self.llm.stream_complete(prompt, formatted=formatted, **kwargs)

    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        return await self.llm.astream_complete(prompt, formatted=formatted, **kwargs)


def apply_through(llm: Any, params: Mapping[str, Any]) -> Applied[Any]:
    """`apply_parameters`, on the backend inside a `ToolBoundLLM`."""
    if not isinstance(llm, ToolBoundLLM):
        return apply_parameters(llm, params)
    inner = apply_parameters(llm.llm, params)
    bound = llm if inner.backend is llm.llm else llm.model_copy(update={"llm": inner.backend})
    return replace(inner, backend=bound)


@dataclass(frozen=True)
class TurnPlan(Plan[Any]):
    """A `Plan` with the ``turn`` entry of its decision record (multi-turn routing)."""

    turn: dict[str, Any] = field(default_factory=dict)


def _has_tool_calls(message: ChatMessage) -> bool:
    return any(isinstance(b, ToolCallBlock) for b in message.blocks) or bool(
        message.additional_kwargs.get("tool_calls")
    )


def _served(message: ChatMessage) -> str | None:
    record = message.additional_kwargs.get("haps") or {}
    backend = (record.get("served_by") or {}).get("backend", record.get("backend"))
    return backend if isinstance(backend, str) else None


def read_turn(messages: Sequence[ChatMessage], context_chars: int) -> Turn:
    """The conversation's features, and whether it continues a tool loop (see the LangChain twin)."""
    users = [i for i, m in enumerate(messages) if m.role == MessageRole.USER]
    trailing = messages[(users[-1] + 1 if users else 0) :]
    model_turns = [m for m in trailing if m.role == MessageRole.ASSISTANT]
    in_loop = (
        bool(trailing) and trailing[-1].role == MessageRole.TOOL and any(map(_has_tool_calls, model_turns))
    )
    return Turn(
        user_turns=len(users),
        tool_calls=sum(_has_tool_calls(m) for m in messages if m.role == MessageRole.ASSISTANT),
        tool_results=sum(m.role == MessageRole.TOOL for m in messages),
        messages=len(messages),
        context_chars=context_chars,
        in_tool_loop=in_loop,
        loop_backend=_served(model_turns[-1]) if in_loop else None,
    )


def marked(response: ChatResponse) -> ChatResponse:
    """``response`` with its decision record on its message too, so an agent's memory keeps it
    (the next call of the loop reads which backend served it)."""
    record = response.additional_kwargs.get("haps")
    if record is None:
        return response
    message = response.message.model_copy(
        update={"additional_kwargs": {**response.message.additional_kwargs, "haps": record}}
    )
    return response.model_copy(update={"message": message})


def marked_stream(chunks: Generator[ChatResponse, None, None]) -> Generator[ChatResponse, None, None]:
    for chunk in chunks:
        yield marked(chunk)


async def amarked_stream(chunks: AsyncGenerator[ChatResponse, None]) -> AsyncGenerator[ChatResponse, None]:
    async for chunk in chunks:
        yield marked(chunk)
