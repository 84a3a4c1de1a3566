"""Helpers of the reliability suite: build an integration over FAKE parts and call it uniformly.

FAKED here: the router (`fake_router.FakeRouter`: rules on the text; at cost weight 0 it
chooses "large", with "small" as the fallback) and the backends (`lc_fakes.EchoChatModel`,
`li_fakes.EchoLLM`), which answer ``"<backend>: <text>"`` and raise the errors a test injects
(or hang, with ``hang_calls``). The errors themselves are the REAL exception classes of the
openai and httpx clients (or of Python), built the way those clients build them.
"""

from typing import Any

import httpx
import openai
from langchain_core.messages import AIMessageChunk
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from tenacity import wait_none

from haps_integrations.langchain import ChatHAPS, HAPSRunnable
from haps_integrations.llamaindex import HAPSLLM
from tests.helpers.fake_router import FakeRouter
from tests.helpers.lc_fakes import EchoChatModel
from tests.helpers.li_fakes import EchoLLM

REQUEST = httpx.Request("POST", "https://api.example.invalid/v1/chat/completions")


def _status(cls: type, code: int, text: str) -> Exception:
    return cls(text, response=httpx.Response(code, request=REQUEST), body=None)


def transient_errors() -> dict[str, BaseException]:
    """One fresh instance of each transient error class, by name."""
    return {
        "rate_limit_429": _status(openai.RateLimitError, 429, "Rate limit reached"),
        "api_timeout": openai.APITimeoutError(request=REQUEST),
        "read_timeout": httpx.ReadTimeout("timed out reading the response", request=REQUEST),
        "connection_reset": ConnectionResetError(104, "Connection reset by peer"),
        "api_connection": openai.APIConnectionError(request=REQUEST),
        "server_500": _status(openai.InternalServerError, 500, "Internal server error"),
        "bad_gateway_502": _status(openai.APIStatusError, 502, "Bad gateway"),
        "unavailable_503": httpx.HTTPStatusError(
            "Service Unavailable", request=REQUEST, response=httpx.Response(503, request=REQUEST)
        ),
    }


TRANSIENT_NAMES = tuple(transient_errors())


def permanent_errors() -> dict[str, BaseException]:
    """One fresh instance of each permanent error class, by name."""
    return {
        "auth_401": _status(openai.AuthenticationError, 401, "Incorrect API key provided"),
        "bad_request_400": _status(openai.BadRequestError, 400, "Invalid 'messages'"),
    }


PERMANENT_NAMES = tuple(permanent_errors())

SURFACES = ("langchain.invoke", "langchain.ainvoke", "llamaindex.chat", "llamaindex.achat")
"""The four call paths every backend fault goes through."""


def user(text: str) -> ChatMessage:
    return ChatMessage(role=MessageRole.USER, content=text)


def build(surface: str, large: Any = None, small: Any = None, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """The integration of ``surface`` over a FAKE router and FAKE backends ("large", "small").

    ``large``/``small``: a backend to use, or a list of errors for an echo backend to raise.
    """
    langchain = surface.startswith("langchain") or surface.startswith("chat_haps")
    make = (
        (lambda tag, e: EchoChatModel(tag=tag, errors=e))
        if langchain
        else (lambda tag, e: EchoLLM(tag=tag, errors=e))
    )
    backends = {}
    for tag, given in (("large", large), ("small", small)):
        is_backend = given is not None and not isinstance(given, list)
        backends[tag] = given if is_backend else make(tag, list(given or []))
    kwargs.setdefault("retry_wait", wait_none())
    if surface.startswith("chat_haps"):
        return ChatHAPS(router=FakeRouter(), backends=backends, **kwargs), backends
    if langchain:
        return HAPSRunnable(router=FakeRouter(), backends=backends, **kwargs), backends
    return HAPSLLM(router=FakeRouter(), backends=backends, **kwargs), backends


async def call(surface: str, haps: Any, text: str) -> tuple[str, dict[str, Any]]:
    """Calls ``haps`` through ``surface``; returns (answer text, the decision record)."""
    if surface == "langchain.invoke":
        message = haps.invoke(text)
    elif surface == "langchain.ainvoke":
        message = await haps.ainvoke(text)
    elif surface == "llamaindex.chat":
        response = haps.chat([user(text)])
        return response.message.content, response.additional_kwargs["haps"]
    elif surface == "llamaindex.achat":
        response = await haps.achat([user(text)])
        return response.message.content, response.additional_kwargs["haps"]
    else:
        raise ValueError(surface)
    return message.content, message.response_metadata["haps"]


def backend_calls(backend: Any) -> int:
    """How many calls reached a FAKE backend (its shared log)."""
    return len(backend.log)


def joined(chunks: list[Any]) -> str:
    """The text of streamed chunks (LangChain message chunks or LlamaIndex deltas)."""
    parts = []
    for c in chunks:
        if isinstance(c, AIMessageChunk):
            parts.append(c.content)
        else:
            parts.append(c.delta or "")
    return "".join(parts)
