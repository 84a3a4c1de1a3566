"""haps_core.dispatch: prompt styles, error classification and the retry/fallback loop.

Decisions are built by hand (no router); the "backends" are plain functions.
"""

import asyncio
import subprocess
import sys

import httpx
import openai
import pytest
from tenacity import RetryCallState, wait_none

from haps_core.decision import Alternative, RoutingDecision
from haps_core.dispatch import (
    Attempt,
    acall_with_fallback,
    call_with_fallback,
    candidates,
    default_wait,
    is_transient,
    resolve_prompt_styles,
    system_message_for,
)
from haps_core.errors import AllBackendsFailedError, HAPSError, RoutingError
from tests.helpers.fake_router import make_space


def decision(*backends: str) -> RoutingDecision:
    """A decision for backends[0], with one runner-up per listed backend (and a same-backend one)."""
    first, *rest = backends
    alts = [Alternative(b, {"temperature": 0.0}, 0.5, 0.01, i + 1) for i, b in enumerate(rest)]
    alts.append(Alternative(first, {"temperature": 0.7}, 0.4, 0.01, 99))  # same backend, other params
    return RoutingDecision(first, {"temperature": 0.0, "prompt_style": "cot"}, 0.9, 0.02, 0.0, 0, tuple(alts))


class Status(Exception):
    def __init__(self, status_code: int) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code


class RateLimitError(Exception):
    pass


class APITimeoutError(Exception):
    pass


class ServiceConnectionError(Exception):
    pass


class AuthenticationError(Exception):
    pass


class Flagged(Exception):
    """An error that says itself whether to retry (langchain-core's ``ModelError`` family does)."""

    def __init__(self, is_retryable: object, status_code: int | None = None) -> None:
        super().__init__("flagged")
        self.is_retryable = is_retryable
        self.status_code = status_code


class WithResponse(Exception):
    def __init__(self, code: int) -> None:
        super().__init__("wrapped")
        self.response = type("R", (), {"status_code": code})()


# -- prompt styles ------------------------------------------------------------------------------
def test_resolve_prompt_styles_merges_overrides():
    space = make_space()
    styles = resolve_prompt_styles(space, {"cot": "Reason.", "brand_new": "New style."})
    assert styles["cot"] == "Reason."
    assert styles["brand_new"] == "New style."
    assert styles["default"] == ""
    assert resolve_prompt_styles(None, None) == {}


def test_resolve_prompt_styles_rejects_non_text():
    with pytest.raises(TypeError, match=r"prompt_styles\['cot'\].*int"):
        resolve_prompt_styles(make_space(), {"cot": 3})


def test_system_message_for():
    styles = {"default": "", "cot": "Think.", "blank": "  "}
    assert system_message_for("default", styles) is None
    assert system_message_for("", styles) is None
    assert system_message_for(None, styles) is None
    assert system_message_for("cot", styles) == "Think."
    assert system_message_for("default", {"default": "Be nice."}) == "Be nice."
    with pytest.raises(RoutingError, match=r"'mystery'.*known styles: \['blank', 'cot', 'default'\]"):
        system_message_for("mystery", styles)
    with pytest.raises(RoutingError, match="'blank' has an empty"):
        system_message_for("blank", styles)


# -- classification -----------------------------------------------------------------------------
_REQ = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")


def _openai(cls, code):
    return cls("boom", response=httpx.Response(code, request=_REQ), body=None)


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (TimeoutError("t"), True),
        (asyncio.TimeoutError(), True),  # noqa: UP041 - the alias is what asyncio code raises
        (ConnectionError("c"), True),
        (ConnectionResetError("reset"), True),
        (Status(429), True),
        (Status(408), True),
        (Status(500), True),
        (Status(503), True),
        (Status(400), False),
        (Status(401), False),
        (Status(403), False),
        (Status(404), False),
        (WithResponse(502), True),
        (WithResponse(401), False),
        (RateLimitError("r"), True),
        (APITimeoutError("t"), True),
        (ServiceConnectionError("c"), True),
        (AuthenticationError("a"), False),
        (ValueError("bug"), False),
        (KeyError("bug"), False),
        (KeyboardInterrupt(), False),
        (httpx.ReadTimeout("slow", request=_REQ), True),
        (httpx.ConnectError("refused", request=_REQ), True),
        (httpx.HTTPStatusError("x", request=_REQ, response=httpx.Response(503, request=_REQ)), True),
        (openai.APITimeoutError(request=_REQ), True),
        (openai.APIConnectionError(request=_REQ), True),
        (_openai(openai.RateLimitError, 429), True),
        (_openai(openai.InternalServerError, 500), True),
        (_openai(openai.AuthenticationError, 401), False),
        (_openai(openai.PermissionDeniedError, 403), False),
        (_openai(openai.BadRequestError, 400), False),
        (_openai(openai.NotFoundError, 404), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_is_transient(exc, transient):
    assert is_transient(exc) is transient


def test_is_retryable_is_asked_first():
    """An ``is_retryable`` bool wins over the status code and the class name; a non-bool is ignored."""
    assert is_transient(Flagged(True, status_code=401)) is True
    assert is_transient(Flagged(False, status_code=429)) is False
    assert is_transient(Flagged("yes", status_code=503)) is True  # not a bool: the status decides
    assert is_transient(Flagged(None, status_code=400)) is False


def test_langchain_core_model_errors_are_classified_by_their_flag():
    from langchain_core import exceptions as lc

    assert is_transient(lc.ModelRateLimitError("429")) is True
    assert is_transient(lc.ModelAPIError("500")) is True
    assert is_transient(lc.ModelConnectionError("down")) is True
    assert is_transient(lc.ModelTimeoutError("slow")) is True
    assert is_transient(lc.ModelAuthenticationError("bad key")) is False
    assert is_transient(lc.ModelInvalidRequestError("bad")) is False
    assert is_transient(lc.ContextOverflowError("too long")) is False


# -- candidates ---------------------------------------------------------------------------------
def test_candidates_one_per_backend_in_order():
    d = decision("large", "small", "medium")
    assert [c.backend for c in candidates(d)] == ["large", "small", "medium"]
    assert candidates(d)[0].parameters == {"temperature": 0.0, "prompt_style": "cot"}
    assert [c.backend for c in candidates(d, max_backends=2)] == ["large", "small"]
    with pytest.raises(ValueError, match="max_backends.*0"):
        candidates(d, max_backends=0)


# -- the loop -----------------------------------------------------------------------------------
class Script:
    """Per backend, a list of outcomes: an exception to raise or a value to return."""

    def __init__(self, **outcomes):
        self.outcomes = {k: list(v) for k, v in outcomes.items()}
        self.calls: list[tuple[str, int]] = []

    def __call__(self, cand: Alternative, number: int):
        self.calls.append((cand.backend, number))
        outcome = self.outcomes[cand.backend].pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def acall(self, cand: Alternative, number: int):
        await asyncio.sleep(0)
        return self(cand, number)


def test_success_first_time():
    script = Script(large=["L"])
    result, attempts = call_with_fallback(decision("large", "small"), script, wait=wait_none())
    assert result == "L"
    assert attempts == [
        Attempt("large", {"temperature": 0.0, "prompt_style": "cot"}, 1, None, False, attempts[0].seconds)
    ]
    assert attempts[0].ok and attempts[0].seconds >= 0


def test_transient_is_retried_then_succeeds():
    script = Script(large=[Status(429), TimeoutError("t"), "L"])
    result, attempts = call_with_fallback(decision("large", "small"), script, wait=wait_none())
    assert result == "L"
    assert script.calls == [("large", 1), ("large", 2), ("large", 3)]
    assert [a.transient for a in attempts] == [True, True, False]
    assert attempts[0].error == "Status: HTTP 429"


def test_transient_exhausted_falls_back_to_another_backend():
    script = Script(large=[Status(503)] * 3, small=["S"])
    result, attempts = call_with_fallback(decision("large", "small"), script, wait=wait_none())
    assert result == "S"
    assert script.calls == [("large", 1), ("large", 2), ("large", 3), ("small", 1)]
    assert attempts[-1].backend == "small" and attempts[-1].parameters == {"temperature": 0.0}


def test_permanent_error_falls_back_immediately():
    script = Script(large=[Status(401)], small=["S"])
    result, _ = call_with_fallback(decision("large", "small"), script, wait=wait_none())
    assert result == "S"
    assert script.calls == [("large", 1), ("small", 1)]


def test_failed_backend_is_not_retried_with_other_parameters():
    script = Script(large=[Status(401)], small=[Status(401)])
    with pytest.raises(AllBackendsFailedError):
        call_with_fallback(decision("large", "small"), script, wait=wait_none())
    assert script.calls == [("large", 1), ("small", 1)]


def test_all_failing_lists_every_attempt():
    script = Script(large=[Status(429), Status(429)], small=[ValueError("bad input")])
    with pytest.raises(AllBackendsFailedError) as info:
        call_with_fallback(decision("large", "small"), script, max_attempts_per_backend=2, wait=wait_none())
    err = info.value
    assert isinstance(err, HAPSError)
    assert [(a.backend, a.attempt_number) for a in err.attempts] == [("large", 1), ("large", 2), ("small", 1)]
    text = str(err)
    assert text.splitlines()[0] == "all 3 attempt(s) failed:"
    assert "large (prompt_style='cot', temperature=0.0) attempt 1: Status: HTTP 429 [transient]" in text
    assert "small (temperature=0.0) attempt 1: ValueError: bad input [permanent]" in text
    assert isinstance(err.__cause__, ValueError)


def test_wait_is_injectable_and_used_between_retries():
    seen: list[int] = []

    def wait(state: RetryCallState) -> float:
        seen.append(state.attempt_number)
        return 0.0

    call_with_fallback(decision("large"), Script(large=[Status(429), Status(429), "L"]), wait=wait)
    assert seen == [1, 2]


def test_default_wait_is_bounded():
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})
    waits = []
    for n in (1, 2, 3, 10, 50):
        state.attempt_number = n
        waits.append(default_wait()(state))
    assert 0.05 <= waits[0] <= 0.1
    assert all(w <= 2.05 for w in waits)
    assert waits[-1] >= 2.0


def test_classifier_is_injectable():
    script = Script(large=[ValueError("flaky"), "L"])
    result, _ = call_with_fallback(decision("large"), script, wait=wait_none(), classify=lambda e: True)
    assert result == "L"


def test_interrupts_are_never_swallowed():
    script = Script(large=[KeyboardInterrupt()], small=["S"])
    with pytest.raises(KeyboardInterrupt):
        call_with_fallback(decision("large", "small"), script, wait=wait_none())
    assert script.calls == [("large", 1)]


def test_bad_arguments():
    with pytest.raises(ValueError, match="max_attempts_per_backend.*0"):
        call_with_fallback(decision("large"), Script(large=["L"]), max_attempts_per_backend=0)


async def test_async_twin_retries_and_falls_back():
    script = Script(large=[Status(429), Status(401)], small=["S"])
    result, attempts = await acall_with_fallback(decision("large", "small"), script.acall, wait=wait_none())
    assert result == "S"
    assert [(a.backend, a.attempt_number, a.transient) for a in attempts] == [
        ("large", 1, True),
        ("large", 2, False),
        ("small", 1, False),
    ]


async def test_async_twin_all_fail():
    script = Script(large=[Status(401)], small=[Status(403)])
    with pytest.raises(AllBackendsFailedError, match="all 2 attempt"):
        await acall_with_fallback(decision("large", "small"), script.acall, wait=wait_none())


async def test_async_cancellation_propagates():
    async def call(cand, number):
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await acall_with_fallback(decision("large", "small"), call, wait=wait_none())


def test_haps_core_imports_no_framework():
    code = (
        "import sys\n"
        "for name in ('langchain_core', 'langchain', 'llama_index', 'llama_index.core'):\n"
        "    sys.modules[name] = None\n"
        "import haps_core.dispatch, haps_core.errors, haps_core.decision\n"
        "bad = [m for m in sys.modules if m.startswith(('langchain', 'llama_index')) and sys.modules[m]]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
