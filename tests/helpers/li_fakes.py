"""FAKE LlamaIndex pieces for the HAPS LlamaIndex tests (no model, no network).

* `EchoLLM`: a FAKE LlamaIndex LLM (a `CustomLLM`) that answers ``"<tag>: <last user text>"``
  (or ``"<tag>: <prompt>"`` for completions) and records what reached it: the method, the
  messages or prompt, its ``temperature`` field (HAPS sets it on a per-call ``model_copy``) and the
  call kwargs. It fails on demand: ``errors`` are raised one per call before it answers (before the
  first chunk of a stream); ``stream_error_after`` breaks a stream after that many chunks. Its
  mutable state lives in shared containers typed ``Any``, so the per-call copies HAPS makes write
  into the same log as the original. Chat and async methods are native (not derived from
  ``complete``), so the tests see exactly which method HAPS called.
* `PredictingFakeRouter`: `fake_router.FakeRouter` (FAKE, rule-based) plus ``predict(texts)``,
  the matrix form of the same rules, which `HAPSSelector` reads.
* `StubQueryEngine`: a FAKE query engine that answers a fixed text.
"""

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np
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

from tests.helpers.fake_router import FakeRouter


class RateLimited(Exception):
    """FAKE provider error: HTTP 429 (transient)."""

    status_code = 429


class Unauthorized(Exception):
    """FAKE provider error: HTTP 401 (permanent)."""

    status_code = 401


class StreamBroke(Exception):
    """FAKE error raised in the middle of a stream."""


class EchoLLM(CustomLLM):
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

    # -- recording --------------------------------------------------------------------------
    def _answer(self, method: str, kwargs: dict[str, Any], messages: Any = None, prompt: Any = None) -> str:
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

    def _pieces(self, text: str) -> list[str]:
        words = text.split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)]

    def _check_break(self, i: int) -> None:
        if self.stream_error_after is not None and i >= self.stream_error_after:
            raise StreamBroke(f"{self.tag} broke after {i} chunks")

    # -- chat -------------------------------------------------------------------------------
    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        text = self._answer("chat", kwargs, messages=messages)
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text))

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        await asyncio.sleep(0)
        text = self._answer("achat", kwargs, messages=messages)
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text))

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        def gen() -> ChatResponseGen:
            text = self._answer("stream_chat", kwargs, messages=messages)
            so_far = ""
            for i, piece in enumerate(self._pieces(text)):
                self._check_break(i)
                so_far += piece
                yield ChatResponse(
                    message=ChatMessage(role=MessageRole.ASSISTANT, content=so_far), delta=piece
                )

        return gen()  # lazy, like provider streams: errors surface on the first next()

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        async def gen() -> ChatResponseAsyncGen:
            await asyncio.sleep(0)
            text = self._answer("astream_chat", kwargs, messages=messages)
            so_far = ""
            for i, piece in enumerate(self._pieces(text)):
                self._check_break(i)
                so_far += piece
                yield ChatResponse(
                    message=ChatMessage(role=MessageRole.ASSISTANT, content=so_far), delta=piece
                )

        return gen()

    # -- complete ---------------------------------------------------------------------------
    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(
            text=self._answer("complete", {**kwargs, "formatted": formatted}, prompt=prompt)
        )

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        await asyncio.sleep(0)
        return CompletionResponse(
            text=self._answer("acomplete", {**kwargs, "formatted": formatted}, prompt=prompt)
        )

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        def gen() -> CompletionResponseGen:
            text = self._answer("stream_complete", {**kwargs, "formatted": formatted}, prompt=prompt)
            so_far = ""
            for i, piece in enumerate(self._pieces(text)):
                self._check_break(i)
                so_far += piece
                yield CompletionResponse(text=so_far, delta=piece)

        return gen()

    @llm_completion_callback()
    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        async def gen() -> CompletionResponseAsyncGen:
            await asyncio.sleep(0)
            text = self._answer("astream_complete", {**kwargs, "formatted": formatted}, prompt=prompt)
            so_far = ""
            for i, piece in enumerate(self._pieces(text)):
                self._check_break(i)
                so_far += piece
                yield CompletionResponse(text=so_far, delta=piece)

        return gen()


def _chunk(so_far: str, piece: str) -> ChatResponse:
    return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=so_far), delta=piece)


class NoAsyncLLM(EchoLLM):
    """FAKE LLM whose async methods raise NotImplementedError (some integrations do)."""

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        raise NotImplementedError

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        raise NotImplementedError


class PredictingFakeRouter(FakeRouter):
    """FAKE router: `FakeRouter`'s rules, plus ``predict`` (the rules as [n, actions] matrices)."""

    def predict(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        texts = list(texts)
        self.calls.append({"predict": texts})
        actions = list(self.space.actions)
        quality = np.array([[self.quality(t, a) for a in actions] for t in texts], dtype=float)
        cost = np.array([[self.cost(a) for a in actions] for _ in texts], dtype=float)
        return quality, cost


class StubQueryEngine(CustomQueryEngine):
    """FAKE query engine: answers ``"<answer> <- <query>"`` and counts its calls."""

    answer: str
    calls: Any = Field(default_factory=list)

    def custom_query(self, query_str: str) -> str:
        self.calls.append(query_str)
        return f"{self.answer} <- {query_str}"
