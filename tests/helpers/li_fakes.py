"""FAKE LlamaIndex pieces for the HAPS LlamaIndex tests (no model, no network).

* `EchoLLM`: a FAKE LlamaIndex LLM (a `CustomLLM`) that answers ``"<tag>: <last user text>"``
  (or ``"<tag>: <prompt>"`` for completions) and records what reached it: the method, the
  messages or prompt, its ``temperature`` field (HAPS sets it on a per-call ``model_copy``) and the
  call kwargs. It fails on demand: ``errors`` are raised one per call before it answers (before the
  first chunk of a stream); ``stream_error_after`` breaks a stream after that many chunks; its
  first ``hang_calls`` calls hang (`hanging.HangsOnDemand`). Its mutable state lives in shared
  containers typed ``Any``, so the per-call copies HAPS makes write into the same log as the
  original. Chat and async methods are native (not derived from ``complete``), so the tests see
  exactly which method HAPS called.
* `StubQueryEngine`: a FAKE query engine that answers a fixed text.

The FAKE router (`fake_router.FakeRouter`) has ``predict``, which `HAPSSelector` reads.
"""

import asyncio
from collections.abc import Iterator, Sequence
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
)
from llama_index.core.llms import CustomLLM
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.query_engine import CustomQueryEngine
from pydantic import Field

from tests.helpers.hanging import HangsOnDemand


class RateLimited(Exception):
    """FAKE provider error: HTTP 429 (transient)."""

    status_code = 429


class Unauthorized(Exception):
    """FAKE provider error: HTTP 401 (permanent)."""

    status_code = 401


class StreamBroke(Exception):
    """FAKE error raised in the middle of a stream."""


class EchoLLM(HangsOnDemand, CustomLLM):
    """FAKE LlamaIndex LLM: echoes the last user message, records calls, fails on demand."""

    tag: str
    temperature: float | None = None
    context_window: int = 4096
    num_output: int = 256
    errors: Any = Field(default_factory=list)
    """Raised one per call (popped from the front) before answering."""
    stream_error_after: int | None = None
    """A stream raises `StreamBroke` after yielding this many chunks."""
    log: Any = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "EchoLLM"

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(
            context_window=self.context_window,
            num_output=self.num_output,
            is_chat_model=True,
            model_name=self.tag,
        )

    # -- recording and failing ------------------------------------------------------------
    def _answer(self, method: str, kwargs: dict[str, Any], prompt: Any = None, messages: Any = None) -> str:
        self.log.append(
            {
                "method": method,
                "messages": list(messages) if messages is not None else None,
                "prompt": prompt,
                "temperature": self.temperature,
                "kwargs": dict(kwargs),
            }
        )
        if self.errors:
            raise self.errors.pop(0)
        if messages is not None:
            users = [m for m in messages if m.role == MessageRole.USER]
            return f"{self.tag}: {users[-1].content if users else ''}"
        return f"{self.tag}: {prompt}"

    def _cumulative(self, text: str) -> Iterator[tuple[str, str]]:
        """``(text so far, delta)`` per chunk of ``text`` (word by word); breaks on demand."""
        so_far = ""
        for i, word in enumerate(text.split(" ")):
            if self.stream_error_after is not None and i >= self.stream_error_after:
                raise StreamBroke(f"{self.tag} broke after {i} chunks")
            piece = word if i == 0 else " " + word
            so_far += piece
            yield so_far, piece

    # -- chat -------------------------------------------------------------------------------
    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        self._hang()
        return _reply(self._answer("chat", kwargs, messages=messages))

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        await asyncio.sleep(0)
        await self._ahang()
        return _reply(self._answer("achat", kwargs, messages=messages))

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        def gen() -> ChatResponseGen:
            self._hang()
            for so_far, piece in self._cumulative(self._answer("stream_chat", kwargs, messages=messages)):
                yield _reply(so_far, piece)

        return gen()  # lazy, like provider streams: errors surface on the first next()

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        async def gen() -> ChatResponseAsyncGen:
            await asyncio.sleep(0)
            await self._ahang()
            for so_far, piece in self._cumulative(self._answer("astream_chat", kwargs, messages=messages)):
                yield _reply(so_far, piece)

        return gen()

    # -- complete ---------------------------------------------------------------------------
    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self._hang()
        return CompletionResponse(text=self._answer("complete", {**kwargs, "formatted": formatted}, prompt))

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        await asyncio.sleep(0)
        await self._ahang()
        return CompletionResponse(text=self._answer("acomplete", {**kwargs, "formatted": formatted}, prompt))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        def gen() -> CompletionResponseGen:
            self._hang()
            text = self._answer("stream_complete", {**kwargs, "formatted": formatted}, prompt=prompt)
            for so_far, piece in self._cumulative(text):
                yield CompletionResponse(text=so_far, delta=piece)

        return gen()

    @llm_completion_callback()
    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        async def gen() -> CompletionResponseAsyncGen:
            await asyncio.sleep(0)
            await self._ahang()
            text = self._answer("astream_complete", {**kwargs, "formatted": formatted}, prompt=prompt)
            for so_far, piece in self._cumulative(text):
                yield CompletionResponse(text=so_far, delta=piece)

        return gen()


def _reply(text: str, delta: str | None = None) -> ChatResponse:
    return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=delta)


class NoAsyncLLM(EchoLLM):
    """FAKE LLM whose async methods raise NotImplementedError (some integrations do)."""

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        raise NotImplementedError

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        raise NotImplementedError


class StubQueryEngine(CustomQueryEngine):
    """FAKE query engine: answers ``"<answer> <- <query>"`` and counts its calls."""

    answer: str
    calls: Any = Field(default_factory=list)

    def custom_query(self, query_str: str) -> str:
        self.calls.append(query_str)
        return f"{self.answer} <- {query_str}"
