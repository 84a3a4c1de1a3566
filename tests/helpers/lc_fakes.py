"""FAKE LangChain chat-model backends for the HAPS integration tests (no model, no network).

`EchoChatModel` answers ``"<tag>: <last human text>"`` and records what reached it: the messages,
its ``temperature`` field (HAPS sets it by ``model_copy``) and the invoke kwargs. It can also fail
on demand: ``errors`` are raised one per call before it answers, ``stream_error_after`` breaks a
stream after that many chunks, and its first ``hang_calls`` calls hang (`hanging.HangsOnDemand`).
Its mutable state is in shared containers, so the per-call copies HAPS makes (``model_copy``) write
into the same log as the original.
"""

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field

from tests.helpers.hanging import HangsOnDemand


class RateLimited(Exception):
    """FAKE provider error: HTTP 429 (transient)."""

    status_code = 429


class Unauthorized(Exception):
    """FAKE provider error: HTTP 401 (permanent)."""

    status_code = 401


class EchoChatModel(HangsOnDemand, BaseChatModel):
    """FAKE backend: echoes the last human message, records calls, fails on demand."""

    tag: str
    temperature: float | None = None
    delay: float = 0.0
    """Async calls sleep a random time up to this, so concurrent calls finish out of order."""
    errors: list[BaseException] = Field(default_factory=list)
    """Raised one per call (popped from the front) before answering."""
    stream_error_after: int | None = None
    """A stream raises after yielding this many chunks."""
    # typed Any so that pydantic keeps the very same list when a copy is built from these fields
    log: Any = Field(default_factory=list)
    events: Any = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "echo-fake"

    def _answer(
        self, messages: list[BaseMessage], kwargs: dict[str, Any], stop: list[str] | None = None
    ) -> str:
        self.log.append(
            {
                "messages": list(messages),
                "temperature": self.temperature,
                "stop": stop,
                "kwargs": dict(kwargs),
            }
        )
        if self.errors:
            raise self.errors.pop(0)
        human = [m for m in messages if isinstance(m, HumanMessage)]
        return f"{self.tag}: {human[-1].content if human else ''}"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self._hang()
        return self._result(messages, kwargs, stop)

    def _result(self, messages: list[BaseMessage], kwargs: dict[str, Any], stop: list[str] | None) -> Any:
        return ChatResult(
            generations=[ChatGeneration(message=AIMessage(content=self._answer(messages, kwargs, stop)))]
        )

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        await self._ahang()
        if self.delay:
            await asyncio.sleep(random.random() * self.delay)
        return self._result(messages, kwargs, stop)

    def _pieces(
        self, messages: list[BaseMessage], kwargs: dict[str, Any], stop: list[str] | None
    ) -> list[str]:
        words = self._answer(messages, kwargs, stop).split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)]

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        self._hang()
        yield from self._chunks(messages, kwargs, stop)

    def _chunks(
        self, messages: list[BaseMessage], kwargs: dict[str, Any], stop: list[str] | None
    ) -> Iterator[ChatGenerationChunk]:
        for i, piece in enumerate(self._pieces(messages, kwargs, stop)):
            if self.stream_error_after is not None and i == self.stream_error_after:
                raise RuntimeError(f"{self.tag} stream broke after {i} chunks")
            self.events.append(f"produced {i}")
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        await self._ahang()
        for chunk in self._chunks(messages, kwargs, stop):
            await asyncio.sleep(0)
            yield chunk
