"""Backend faults, injected one kind at a time, through LangChain and LlamaIndex, sync and async.

FAKED in every test: the router (`fake_router.FakeRouter`, which chooses "large" and keeps
"small" as the fallback) and the backends (`lc_fakes.EchoChatModel`, `li_fakes.EchoLLM`, which
can also hang on their first calls), which answer ``"<backend>: <text>"`` and raise the
injected errors. The injected errors are REAL exception classes of openai, httpx and Python.
The retry/fallback/timeout loop (`haps_core.dispatch`) and the integrations are the real code.
"""

import time

import pytest

from haps_core.errors import AllBackendsFailedError, CallTimeoutError, StreamInterruptedError
from tests.helpers.lc_fakes import EchoChatModel
from tests.helpers.li_fakes import EchoLLM
from tests.helpers.reliability_fakes import (
    PERMANENT_NAMES,
    SURFACES,
    TRANSIENT_NAMES,
    backend_calls,
    build,
    call,
    joined,
    permanent_errors,
    transient_errors,
    user,
)
from tests.helpers.reliability_ledger import DOWN, HANG, PERMANENT, STREAM, TRANSIENT


def summary(meta):
    """(backend, transient, ok) of every attempt of a decision record."""
    return [(a["backend"], a["transient"], a["error"] is None) for a in meta["attempts"]]


# -- transient errors -------------------------------------------------------------------------
@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("error", TRANSIENT_NAMES)
async def test_transient_error_is_retried_on_the_same_backend(surface, error, ledger):
    """FAKED: router, backends. Injected: the chosen backend raises the transient error twice.

    Expected: two retries on the same backend (3 calls), no fallback, the chosen backend's answer,
    every attempt recorded as transient.
    """
    haps, backends = build(surface, large=[transient_errors()[error], transient_errors()[error]])
    text = f"transient {error} via {surface}"
    answer, meta = await call(surface, haps, text)
    assert answer == f"large: {text}"
    assert summary(meta) == [("large", True, False), ("large", True, False), ("large", False, True)]
    assert meta["fallback"] is False and meta["served_by"]["backend"] == "large"
    assert (backend_calls(backends["large"]), backend_calls(backends["small"])) == (3, 0)
    ledger(TRANSIENT, faults=2, calls=1, lost=0, inputs=1)


@pytest.mark.parametrize("surface", SURFACES)
async def test_transient_errors_past_the_retry_budget_fall_back(surface, ledger):
    """FAKED: router, backends. Injected: the chosen backend fails three times (429, connection
    reset, 503): the whole retry budget. Expected: the next backend answers; 4 attempts recorded."""
    errors = transient_errors()
    haps, backends = build(
        surface, large=[errors["rate_limit_429"], errors["connection_reset"], errors["unavailable_503"]]
    )
    text = f"exhausted via {surface}"
    answer, meta = await call(surface, haps, text)
    assert answer == f"small: {text}"
    assert summary(meta) == [("large", True, False)] * 3 + [("small", False, True)]
    assert meta["fallback"] is True and meta["served_by"]["backend"] == "small"
    assert "RateLimitError" in meta["attempts"][0]["error"]
    assert "ConnectionResetError" in meta["attempts"][1]["error"]
    ledger(TRANSIENT, faults=3, calls=1, lost=0, inputs=1)


# -- permanent errors -------------------------------------------------------------------------
@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("error", PERMANENT_NAMES)
async def test_permanent_error_is_not_retried_and_falls_back_at_once(surface, error, ledger):
    """FAKED: router, backends. Injected: the chosen backend raises a permanent error (bad key,
    bad request). Expected: exactly one call to it (no retry), the next backend answers."""
    haps, backends = build(surface, large=[permanent_errors()[error]])
    text = f"permanent {error} via {surface}"
    answer, meta = await call(surface, haps, text)
    assert answer == f"small: {text}"
    assert summary(meta) == [("large", False, False), ("small", False, True)]
    assert (backend_calls(backends["large"]), backend_calls(backends["small"])) == (1, 1)
    ledger(PERMANENT, faults=1, calls=1, lost=0, inputs=1)


# -- a hang beyond the call timeout -----------------------------------------------------------
@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("hangs", [1, 99], ids=["hangs-once", "hangs-always"])
async def test_hang_beyond_call_timeout_is_abandoned(surface, hangs, ledger):
    """FAKED: router, backends; the chosen backend hangs (30 s) on its first ``hangs`` calls.

    Expected with ``call_timeout=0.2`` and 2 attempts per backend: each hanging attempt is
    abandoned after 0.2 s as a transient `CallTimeoutError`; hanging once, the retry on the same
    backend answers; hanging always, the next backend answers. Nothing waits for the hang.
    """
    slow = (
        EchoChatModel(tag="large", hang_calls=hangs)
        if surface.startswith("langchain")
        else (EchoLLM(tag="large", hang_calls=hangs))
    )
    haps, _ = build(surface, large=slow, call_timeout=0.2, max_attempts=2)
    text = f"hang via {surface}"
    start = time.perf_counter()
    try:
        answer, meta = await call(surface, haps, text)
        elapsed = time.perf_counter() - start
        n_hangs = min(hangs, 2)
        expected = [("large", True, False)] * n_hangs
        expected.append(("large" if hangs == 1 else "small", False, True))
        assert answer == f"{expected[-1][0]}: {text}"
        assert summary(meta) == expected
        assert all(CallTimeoutError.__name__ in a["error"] for a in meta["attempts"][:n_hangs])
        assert "call_timeout=0.2 s" in meta["attempts"][0]["error"]
        assert 0.2 * n_hangs <= elapsed < 0.2 * n_hangs + 2.0, elapsed
    finally:
        slow.release.set()  # lets an abandoned sync worker thread finish
    ledger(HANG, faults=n_hangs, calls=1, lost=0, inputs=1)


async def test_stream_hanging_before_its_first_token_is_abandoned(ledger):
    """FAKED: router, backends; the chosen backend's stream hangs before its first chunk.

    Expected with ``call_timeout=0.2`` (which bounds a stream until its first chunk) and 2
    attempts per backend: both attempts abandoned, the next backend streams the whole answer.
    """
    slow = EchoChatModel(tag="large", hang_calls=99)
    haps, _ = build(
        "langchain.stream", large=slow, small=EchoChatModel(tag="small"), call_timeout=0.2, max_attempts=2
    )
    start = time.perf_counter()
    try:
        chunks, error = await consume("langchain.stream", haps, "hanging stream")
        assert error is None and joined(chunks) == "small: hanging stream"
        assert summary(first_record("langchain.stream", chunks)) == [("large", True, False)] * 2 + [
            ("small", False, True)
        ]
        assert time.perf_counter() - start < 2.4
    finally:
        slow.release.set()
    ledger(HANG, faults=2, calls=1, lost=0, inputs=1)


def test_call_timeout_is_validated(ledger):
    """FAKED: router, backends. A bad ``call_timeout`` is refused when the integration is built."""
    bad_values = (0, -1.0, float("inf"), float("nan"))
    for bad in bad_values:
        with pytest.raises(ValueError, match=r"`call_timeout` must be None \(no limit\) or a finite number"):
            build("langchain.invoke", call_timeout=bad)
        with pytest.raises(ValueError, match=r"`call_timeout` must be None"):
            build("llamaindex.chat", call_timeout=bad)
    ledger(HANG, faults=2 * len(bad_values), calls=2 * len(bad_values), lost=0, inputs=len(bad_values))


# -- streams that break -------------------------------------------------------------------------
STREAMS = (
    "langchain.stream",
    "langchain.astream",
    "chat_haps.stream",
    "llamaindex.stream_chat",
    "llamaindex.astream_chat",
    "llamaindex.stream_complete",
)


def stream_backend(surface, tag, *, errors=(), after=None):
    if surface.startswith(("langchain", "chat_haps")):
        return EchoChatModel(tag=tag, errors=list(errors), stream_error_after=after)
    return EchoLLM(tag=tag, errors=list(errors), stream_error_after=after)


async def consume(surface, haps, text):
    """Every chunk the caller receives, and the exception that ended the stream (or None)."""
    chunks = []
    try:
        if surface in ("langchain.stream", "chat_haps.stream"):
            for chunk in haps.stream(text):
                chunks.append(chunk)
        elif surface == "langchain.astream":
            async for chunk in haps.astream(text):
                chunks.append(chunk)
        elif surface == "llamaindex.stream_chat":
            for chunk in haps.stream_chat([user(text)]):
                chunks.append(chunk)
        elif surface == "llamaindex.astream_chat":
            async for chunk in await haps.astream_chat([user(text)]):
                chunks.append(chunk)
        elif surface == "llamaindex.stream_complete":
            for chunk in haps.stream_complete(text):
                chunks.append(chunk)
        else:
            raise ValueError(surface)
    except Exception as exc:
        return chunks, exc
    return chunks, None


def first_record(surface, chunks):
    first = chunks[0]
    if surface.startswith(("langchain", "chat_haps")):
        return first.response_metadata["haps"]
    return first.additional_kwargs["haps"]


@pytest.mark.parametrize("surface", STREAMS)
@pytest.mark.parametrize("kind", ["transient", "permanent"])
async def test_stream_breaking_before_the_first_token_is_retried_or_falls_back(surface, kind, ledger):
    """FAKED: router, backends. Injected: the chosen backend's stream fails before its first
    chunk (a connection reset: transient; a broken stream: permanent). Expected: the caller gets
    one complete answer: from the same backend after a retry, or from the next backend."""
    if kind == "transient":
        large = stream_backend(surface, "large", errors=[transient_errors()["connection_reset"]])
    else:
        large = stream_backend(surface, "large", after=0)
    haps, backends = build(surface, large=large, small=stream_backend(surface, "small"))
    text = f"stream breaks early via {surface}"
    chunks, error = await consume(surface, haps, text)
    assert error is None
    answered_by = "large" if kind == "transient" else "small"
    assert joined(chunks) == f"{answered_by}: {text}"
    meta = first_record(surface, chunks)
    assert meta["served_by"]["backend"] == answered_by
    assert summary(meta) == [("large", kind == "transient", False), (answered_by, False, True)]
    ledger(STREAM, faults=1, calls=1, lost=0, inputs=1)


@pytest.mark.parametrize("surface", STREAMS)
async def test_stream_breaking_after_the_first_token_raises_with_the_partial_output(surface, ledger):
    """FAKED: router, backends. Injected: the chosen backend's stream breaks after 2 chunks.

    Expected: the caller receives those 2 chunks and then `StreamInterruptedError` carrying them
    (``partial_output``) and the cause; no other backend is called (no spliced answer), and the
    stream never just ends as if the truncated text were the whole answer.
    """
    haps, backends = build(surface, large=stream_backend(surface, "large", after=2))
    text = f"stream breaks late via {surface} here"
    chunks, error = await consume(surface, haps, text)
    assert isinstance(error, StreamInterruptedError), error
    partial = "large: stream"  # the first two chunks of "large: <text>"
    assert joined(chunks) == partial
    if surface.startswith(("langchain", "chat_haps")):
        assert error.partial_output.content == partial
    else:
        partial_output = error.partial_output
        assert (getattr(partial_output, "text", None) or partial_output.message.content) == partial
    assert error.backend == "large" and error.__cause__ is not None
    assert error.attempts[-1].error is not None  # the record tells the whole story
    assert backend_calls(backends["small"]) == 0
    ledger(STREAM, faults=1, calls=1, lost=0, inputs=1)


async def test_a_streaming_chat_model_never_returns_a_truncated_invoke(ledger):
    """FAKED: router, backends. `ChatHAPS(streaming=True)` answers ``invoke`` from a stream;
    injected: the stream breaks after 2 chunks. Expected: invoke/ainvoke raise
    `StreamInterruptedError` with the partial text, instead of returning it as the answer."""
    for method in ("invoke", "ainvoke"):
        large = stream_backend("chat_haps", "large", after=2)
        haps, _ = build("chat_haps.invoke", large=large, streaming=True)
        text = f"truncated {method}"
        with pytest.raises(StreamInterruptedError) as info:
            result = getattr(haps, method)(text)
            if method == "ainvoke":
                await result
        assert info.value.partial_output.content == "large: truncated"
    ledger(STREAM, faults=2, calls=2, lost=0, inputs=2)


# -- every backend down -------------------------------------------------------------------------
@pytest.mark.parametrize("surface", (*SURFACES, "langchain.stream", "llamaindex.stream_chat"))
async def test_all_backends_down_raise_one_error_listing_every_attempt(surface, ledger):
    """FAKED: router, backends. Injected: "large" answers 503 three times (its retry budget),
    "small" answers 401. Expected: one `AllBackendsFailedError` whose ``attempts`` and message
    list all 4 calls in order; nothing is returned."""
    errors = transient_errors()
    large = [errors["unavailable_503"], errors["server_500"], errors["bad_gateway_502"]]
    small = [permanent_errors()["auth_401"]]
    if "stream" in surface:
        large = stream_backend(surface, "large", errors=large)
        small = stream_backend(surface, "small", errors=small)
        haps, _ = build(surface, large=large, small=small)
        chunks, error = await consume(surface, haps, "everything is down")
        assert chunks == []
    else:
        haps, _ = build(surface, large=large, small=small)
        with pytest.raises(AllBackendsFailedError) as info:
            await call(surface, haps, "everything is down")
        error = info.value
    assert isinstance(error, AllBackendsFailedError)
    assert [(a.backend, a.attempt_number, a.transient) for a in error.attempts] == [
        ("large", 1, True),
        ("large", 2, True),
        ("large", 3, True),
        ("small", 1, False),
    ]
    text = str(error)
    assert text.startswith("all 4 attempt(s) failed:")
    assert "HTTPStatusError" in text and "AuthenticationError" in text and "[permanent]" in text
    ledger(DOWN, faults=4, calls=1, lost=0, inputs=1)
