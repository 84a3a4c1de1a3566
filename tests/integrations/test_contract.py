"""The retry / fallback / timeout / stream contract, over every call of both integrations.

FAKE parts: the router (`fake_router.FakeRouter`: at cost weight 0 it chooses "large", with
"small" as the fallback) and the backends (`lc_fakes.EchoChatModel`, `li_fakes.EchoLLM`), which
answer ``"<backend>: <text>"`` word by word and fail on demand. The call loop is the real code.

Every surface (`SURFACES`: each public call of `HAPSRunnable`, `ChatHAPS` and `HAPSLLM`) is
crossed with every fault (`FAULTS`; the stream faults only with the streaming surfaces), and one
helper, `check`, asserts what the fault's row says: who answered, every attempt in order, what
reached each backend, and the error when nothing could answer.
"""

import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from llama_index.core.base.llms.types import ChatMessage, CompletionResponse, MessageRole
from tenacity import wait_none

from haps_core.errors import AllBackendsFailedError, StreamInterruptedError
from haps_integrations.langchain import ChatHAPS, HAPSRunnable
from haps_integrations.llamaindex import HAPSLLM
from tests.helpers.fake_router import FakeRouter
from tests.helpers.lc_fakes import EchoChatModel, RateLimited, Unauthorized
from tests.helpers.li_fakes import EchoLLM

TEXT = "one two three"


# -- the surfaces -----------------------------------------------------------------------------
@dataclass
class Outcome:
    """What a caller saw: the answer and its decision record, or the error; streamed pieces."""

    text: str | None = None
    record: dict[str, Any] | None = None
    error: BaseException | None = None
    pieces: list[str] = field(default_factory=list)


Run = Callable[[Any, Outcome], Awaitable[tuple[str, dict[str, Any]]]]


def _record(response: Any) -> tuple[str, dict[str, Any]]:
    """(text, decision record) of a LangChain message or a LlamaIndex response."""
    if hasattr(response, "response_metadata"):
        return response.content, response.response_metadata["haps"]
    text = response.text if isinstance(response, CompletionResponse) else response.message.content
    return text, response.additional_kwargs["haps"]


def _piece(chunk: Any) -> str:
    return chunk.content if hasattr(chunk, "content") else (chunk.delta or "")


def _user() -> list[ChatMessage]:
    return [ChatMessage(role=MessageRole.USER, content=TEXT)]


def _answering(call: Callable[[Any], Any]) -> Run:
    """A surface that answers once: ``call(haps)`` gives the answer (a batch of one, an awaitable)."""

    async def run(h: Any, out: Outcome) -> tuple[str, dict[str, Any]]:
        answer = call(h)
        if inspect.isawaitable(answer):
            answer = await answer
        if isinstance(answer, list):
            (answer,) = answer
        return _record(answer)

    return run


def _streaming(open_stream: Callable[[Any], Any]) -> Run:
    """A streaming surface: ``open_stream(haps)`` gives the stream (or, async, an awaitable of it)."""

    async def run(h: Any, out: Outcome) -> tuple[str, dict[str, Any]]:
        chunks: list[Any] = []

        def take(chunk: Any) -> None:
            chunks.append(chunk)
            if piece := _piece(chunk):
                out.pieces.append(piece)

        stream = open_stream(h)
        if inspect.isawaitable(stream):
            stream = await stream
        if hasattr(stream, "__aiter__"):
            async for chunk in stream:
                take(chunk)
        else:
            for chunk in stream:
                take(chunk)
        return "".join(out.pieces), _record(chunks[0])[1]

    return run


@dataclass(frozen=True)
class Surface:
    name: str
    integration: type
    run: Run
    streams: bool = False

    @property
    def langchain(self) -> bool:
        return self.integration is not HAPSLLM


_LANGCHAIN_CALLS = (
    ("invoke", _answering(lambda h: h.invoke(TEXT)), False),
    ("ainvoke", _answering(lambda h: h.ainvoke(TEXT)), False),
    ("batch", _answering(lambda h: h.batch([TEXT])), False),
    ("abatch", _answering(lambda h: h.abatch([TEXT])), False),
    ("stream", _streaming(lambda h: h.stream(TEXT)), True),
    ("astream", _streaming(lambda h: h.astream(TEXT)), True),
)
SURFACES = (
    *(Surface(f"HAPSRunnable.{n}", HAPSRunnable, run, s) for n, run, s in _LANGCHAIN_CALLS),
    *(Surface(f"ChatHAPS.{n}", ChatHAPS, run, s) for n, run, s in _LANGCHAIN_CALLS),
    Surface("HAPSLLM.chat", HAPSLLM, _answering(lambda h: h.chat(_user()))),
    Surface("HAPSLLM.achat", HAPSLLM, _answering(lambda h: h.achat(_user()))),
    Surface("HAPSLLM.complete", HAPSLLM, _answering(lambda h: h.complete(TEXT))),
    Surface("HAPSLLM.acomplete", HAPSLLM, _answering(lambda h: h.acomplete(TEXT))),
    Surface("HAPSLLM.stream_chat", HAPSLLM, _streaming(lambda h: h.stream_chat(_user())), True),
    Surface("HAPSLLM.astream_chat", HAPSLLM, _streaming(lambda h: h.astream_chat(_user())), True),
    Surface("HAPSLLM.stream_complete", HAPSLLM, _streaming(lambda h: h.stream_complete(TEXT)), True),
    Surface("HAPSLLM.astream_complete", HAPSLLM, _streaming(lambda h: h.astream_complete(TEXT)), True),
)


# -- the faults -------------------------------------------------------------------------------
BREAK = "<the stream's own error>"
"""Stands for the error an echo backend's stream breaks with (its class differs by framework)."""
TIMEOUT = "CallTimeoutError: backend 'large' did not answer within call_timeout=0.1 s; HAPS stopped waiting"


@dataclass(frozen=True)
class Fault:
    """One row: how the backends fail, and what the caller must see.

    ``attempts``: every attempt in order, ``(backend, attempt_number, transient, error)`` with
    ``error`` None for the call that answered. ``outcome``: ``"answer"`` (the last attempt's
    backend answers), ``"all_down"`` (`AllBackendsFailedError`) or ``"interrupted"``
    (`StreamInterruptedError` after the first two chunks).
    """

    name: str
    large: Callable[[], dict[str, Any]]
    attempts: tuple[tuple[str, int, bool, str | None], ...]
    outcome: str = "answer"
    small: Callable[[], dict[str, Any]] = dict
    settings: dict[str, Any] = field(default_factory=dict)
    streams_only: bool = False


FAULTS = (
    Fault(
        "transient then success: the same backend is retried",
        lambda: {"errors": [RateLimited("slow down")]},
        (("large", 1, True, "RateLimited: slow down"), ("large", 2, False, None)),
    ),
    Fault(
        "transient past the retry budget: fallback",
        lambda: {"errors": [RateLimited("429 a"), RateLimited("429 b"), RateLimited("429 c")]},
        (
            ("large", 1, True, "RateLimited: 429 a"),
            ("large", 2, True, "RateLimited: 429 b"),
            ("large", 3, True, "RateLimited: 429 c"),
            ("small", 1, False, None),
        ),
    ),
    Fault(
        "permanent: fallback at once, unretried",
        lambda: {"errors": [Unauthorized("bad key")]},
        (("large", 1, False, "Unauthorized: bad key"), ("small", 1, False, None)),
    ),
    Fault(
        "transient then permanent: one retry, then fallback",
        lambda: {"errors": [RateLimited("a"), Unauthorized("b")]},
        (
            ("large", 1, True, "RateLimited: a"),
            ("large", 2, False, "Unauthorized: b"),
            ("small", 1, False, None),
        ),
    ),
    Fault(
        "hang beyond call_timeout: CallTimeoutError, then fallback",
        lambda: {"hang_calls": 99},
        (("large", 1, True, TIMEOUT), ("small", 1, False, None)),
        settings={"call_timeout": 0.1, "max_attempts": 1},
    ),
    Fault(
        "all down: one error listing every attempt",
        lambda: {"errors": [RateLimited("slow down"), Unauthorized("bad key")]},
        (
            ("large", 1, True, "RateLimited: slow down"),
            ("large", 2, False, "Unauthorized: bad key"),
            ("small", 1, False, "Unauthorized: also bad"),
        ),
        outcome="all_down",
        small=lambda: {"errors": [Unauthorized("also bad")]},
    ),
    Fault(
        "stream breaks before its first token: fallback",
        lambda: {"stream_error_after": 0},
        (("large", 1, False, BREAK), ("small", 1, False, None)),
        streams_only=True,
    ),
    Fault(
        "stream breaks after its first token: StreamInterruptedError with the partial output",
        lambda: {"stream_error_after": 2},
        (("large", 1, False, BREAK),),
        outcome="interrupted",
        streams_only=True,
    ),
)

CASES = [
    pytest.param(surface, fault, id=f"{surface.name}: {fault.name}")
    for surface in SURFACES
    for fault in FAULTS
    if surface.streams or not fault.streams_only
]


# -- one run, one check -------------------------------------------------------------------------
def build(surface: Surface, fault: Fault) -> tuple[Any, dict[str, Any]]:
    make = EchoChatModel if surface.langchain else EchoLLM
    backends = {"large": make(tag="large", **fault.large()), "small": make(tag="small", **fault.small())}
    haps = surface.integration(
        router=FakeRouter(), backends=backends, retry_wait=wait_none(), **fault.settings
    )
    return haps, backends


async def run(surface: Surface, haps: Any) -> Outcome:
    out = Outcome()
    try:
        out.text, out.record = await surface.run(haps, out)
    except Exception as exc:
        out.error = exc
    return out


def _attempts(attempts: list[Any]) -> list[tuple[str, int, bool, str | None]]:
    as_dicts = [a if isinstance(a, dict) else a.to_dict() for a in attempts]
    return [(a["backend"], a["attempt_number"], a["transient"], a["error"]) for a in as_dicts]


def _expected(surface: Surface, fault: Fault) -> list[tuple[str, int, bool, str | None]]:
    broke = "RuntimeError: large stream broke" if surface.langchain else "StreamBroke: large broke"
    return [(b, n, t, broke if e == BREAK else e) for b, n, t, e in fault.attempts]


def _same_attempts(actual: list[Any], surface: Surface, fault: Fault) -> None:
    got, want = _attempts(actual), _expected(surface, fault)
    assert [g[:3] for g in got] == [w[:3] for w in want]
    for (*_, error), (*_, expected) in zip(got, want):
        assert (error is None) if expected is None else error.startswith(expected), (error, expected)


def check(surface: Surface, fault: Fault, out: Outcome, backends: dict[str, Any]) -> None:
    """The contract: the outcome the row names, every attempt, and what reached each backend."""
    calls = {b: sum(1 for a in fault.attempts if a[0] == b) for b in backends}
    assert {b: len(backend.started) for b, backend in backends.items()} == calls
    if fault.outcome == "answer":
        assert out.error is None, out.error
        served = fault.attempts[-1][0]
        assert out.text == f"{served}: {TEXT}"
        _same_attempts(out.record["attempts"], surface, fault)
        assert out.record["backend"] == "large", "the decision is kept; served_by says who answered"
        assert out.record["served_by"]["backend"] == served
        assert out.record["fallback"] is (served != "large")
        reached = backends[served].log[-1]["temperature"]
        assert reached == out.record["served_by"]["parameters"]["temperature"], (
            "the candidate's own parameters"
        )
    elif fault.outcome == "all_down":
        error = out.error
        assert isinstance(error, AllBackendsFailedError), error
        assert out.pieces == []
        _same_attempts(error.attempts, surface, fault)
        message = str(error)
        assert message.startswith(f"all {len(fault.attempts)} attempt(s) failed:")
        for a in error.attempts:
            assert f"{a.backend} (" in message
            assert f"{a.error} [{'transient' if a.transient else 'permanent'}]" in message
    else:
        error = out.error
        assert isinstance(error, StreamInterruptedError), error
        assert out.pieces == ["large:", " one"], "the chunks before the failure reached the caller"
        partial = error.partial_output
        assert _record(partial)[0] == "large: one"
        assert error.backend == "large"
        assert type(error.__cause__).__name__ == ("RuntimeError" if surface.langchain else "StreamBroke")
        _same_attempts(error.attempts, surface, fault)


@pytest.mark.parametrize(("surface", "fault"), CASES)
async def test_contract(surface: Surface, fault: Fault) -> None:
    haps, backends = build(surface, fault)
    start = time.perf_counter()
    try:
        out = await run(surface, haps)
    finally:
        for backend in backends.values():
            backend.release.set()  # lets an abandoned sync worker thread of a hang finish
    assert time.perf_counter() - start < 5.0, "nothing waits for a hanging backend"
    check(surface, fault, out, backends)


def test_every_surface_and_fault_is_in_the_table() -> None:
    names = {s.name for s in SURFACES}
    for cls, methods in (
        (HAPSRunnable, ("invoke", "ainvoke", "batch", "abatch", "stream", "astream")),
        (ChatHAPS, ("invoke", "ainvoke", "batch", "abatch", "stream", "astream")),
        (HAPSLLM, ("chat", "achat", "complete", "stream_chat", "astream_chat")),
    ):
        assert {f"{cls.__name__}.{m}" for m in methods} <= names
    assert len(CASES) == len(SURFACES) * 6 + sum(s.streams for s in SURFACES) * 2
