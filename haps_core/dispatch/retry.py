"""The retry and fallback loop: retry transient errors on the chosen action, then fall back.

Retries are bounded with jittered exponential back-off (tenacity); a fallback goes to the next
candidate on a *different* backend; ``call_timeout`` turns a hang into a transient
`CallTimeoutError`; every attempt is recorded. The sync and async loops differ only at the await.
"""

import asyncio
import contextvars
import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)
from tenacity.wait import wait_base

from haps_core.decision import Alternative, RoutingDecision, fallback_order
from haps_core.dispatch.errors import error_text, is_transient
from haps_core.dispatch.settings import RetryWait, check_attempts, check_call_timeout, check_max_backends
from haps_core.errors import AllBackendsFailedError, CallTimeoutError

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Attempt:
    """One call of one candidate action.

    Attributes:
        backend: the backend called.
        parameters: the parameters of the candidate (temperature, prompt_style, ...).
        attempt_number: 1 for the first call of this candidate, 2 for its first retry, ...
        error: ``"ErrorClass: message"`` when the call failed, None when it succeeded.
        transient: whether the error was classified as transient (retried if attempts remain).
        seconds: wall time of this call alone (back-off waits excluded).
    """

    backend: str
    parameters: dict[str, Any] = field(default_factory=dict)
    attempt_number: int = 1
    error: str | None = None
    transient: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in sorted(self.parameters.items()))
        outcome = "ok" if self.ok else f"{self.error} [{'transient' if self.transient else 'permanent'}]"
        return f"{self.backend} ({params}) attempt {self.attempt_number}: {outcome} ({self.seconds:.3f} s)"


def default_wait() -> wait_base:
    """Jittered exponential back-off between retries: 0.05 s, 0.1 s, 0.2 s ... at most 2 s.

    Each wait gets up to 0.05 s of random jitter, so concurrent calls that hit the same rate
    limit do not retry in lockstep. (This is ``wait_exponential_jitter(initial=0.05, max=2)``
    with a jitter scaled to the first wait; spelled with `wait_exponential` + `wait_random`
    because ``initial`` is deprecated in tenacity 9 and ``multiplier`` is missing in 8.x.)
    """
    return wait_exponential(multiplier=0.05, max=2) + wait_random(0, 0.05)


def candidates(decision: RoutingDecision, max_backends: int | None = None) -> list[Alternative]:
    """The actions to try, in order: the choice, then the best runner-up of each other backend.

    A backend that failed is not tried again with other parameters: its failure is about the
    backend (down, rate-limited, bad key), not about the temperature.
    """
    check_max_backends(max_backends)
    seen: set[str] = set()
    out: list[Alternative] = []
    for cand in fallback_order(decision):
        if cand.backend in seen:
            continue
        seen.add(cand.backend)
        out.append(cand)
        if max_backends is not None and len(out) >= max_backends:
            break
    return out


def run_with_timeout(fn: Callable[[], T], timeout: float, backend: str) -> T:
    """``fn()``, or `CallTimeoutError` when it has not returned after ``timeout`` seconds.

    A running Python call cannot be interrupted from outside, so ``fn`` runs in a daemon worker
    thread (with the caller's context variables, so tracing callbacks still nest) that is
    abandoned on timeout: the caller moves on, whatever the worker does later is dropped.
    """
    outcome: dict[str, Any] = {}
    done = threading.Event()
    context = contextvars.copy_context()

    def worker() -> None:
        try:
            outcome["value"] = context.run(fn)
        except BaseException as exc:  # handed to the caller below, whatever it is
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=worker, name=f"haps-call-{backend}", daemon=True).start()
    if not done.wait(timeout):
        raise CallTimeoutError(backend, timeout)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


async def await_with_timeout(call: Awaitable[T], timeout: float | None, backend: str) -> T:
    """``await call``, cancelled with `CallTimeoutError` after ``timeout`` seconds (None: no limit).

    A ``TimeoutError`` the backend raises itself passes through unchanged (it is transient too).
    """
    if timeout is None:
        return await call
    limit = asyncio.timeout(timeout)
    try:
        async with limit:
            return await call
    except TimeoutError:
        if limit.expired():
            raise CallTimeoutError(backend, timeout) from None
        raise


class _Run:
    """The state of one retry-and-fallback run, shared by the sync and async loops."""

    def __init__(
        self,
        decision: RoutingDecision,
        max_attempts_per_backend: int,
        max_backends: int | None,
        wait: RetryWait,
        classify: Callable[[BaseException], bool],
        call_timeout: float | None,
    ) -> None:
        check_attempts(max_attempts_per_backend)
        self.call_timeout = check_call_timeout(call_timeout)
        self.candidates = candidates(decision, max_backends)
        self.classify = classify
        self.retrying: dict[str, Any] = {
            "stop": stop_after_attempt(max_attempts_per_backend),
            "wait": wait if wait is not None else default_wait(),
            "retry": retry_if_exception(classify),
            "reraise": True,
        }
        self.attempts: list[Attempt] = []
        self.last: Exception | None = None

    @contextmanager
    def attempt(self, cand: Alternative, number: int) -> Iterator[None]:
        """Times and records one call of ``cand``; a failure is logged and re-raised."""
        start = time.perf_counter()
        try:
            yield
        except Exception as exc:
            failed = Attempt(
                cand.backend,
                dict(cand.parameters),
                number,
                error_text(exc),
                self.classify(exc),
                time.perf_counter() - start,
            )
            self.attempts.append(failed)
            logger.warning("HAPS call failed: %s", failed.describe())
            raise
        seconds = time.perf_counter() - start
        self.attempts.append(Attempt(cand.backend, dict(cand.parameters), number, None, False, seconds))


def call_with_fallback(
    decision: RoutingDecision,
    call: Callable[[Alternative, int], T],
    *,
    max_attempts_per_backend: int = 3,
    max_backends: int | None = None,
    wait: wait_base | Callable[[RetryCallState], float] | None = None,
    classify: Callable[[BaseException], bool] = is_transient,
    call_timeout: float | None = None,
) -> tuple[T, list[Attempt]]:
    """Calls the decision's action, retrying transient errors, then falling back.

    Args:
        decision: the routing decision (the choice and its runner-ups).
        call: ``call(candidate, attempt_number) -> result``; does the framework work.
        max_attempts_per_backend: calls of one candidate before moving on (1 = no retry).
        max_backends: how many distinct backends to try at most (None: all in the decision).
        wait: tenacity wait strategy between retries (default `default_wait`); tests pass
            ``tenacity.wait_none()``.
        classify: ``exc -> bool``, True when worth retrying (default `is_transient`).
        call_timeout: seconds one attempt may take (None: no limit). A call still running then
            fails with `CallTimeoutError` (transient: retried, then fallen back from); its
            worker thread is abandoned (see `CallTimeoutError`).

    Returns:
        ``(result, attempts)``: the first successful result and every attempt made, the
        successful one last.

    Raises:
        AllBackendsFailedError: every candidate failed; ``.attempts`` lists every attempt.
    """
    run = _Run(decision, max_attempts_per_backend, max_backends, wait, classify, call_timeout)
    for cand in run.candidates:
        try:
            for state in Retrying(**run.retrying):
                number = state.retry_state.attempt_number
                with state, run.attempt(cand, number):
                    if run.call_timeout is None:
                        result = call(cand, number)
                    else:
                        bound = functools.partial(call, cand, number)
                        result = run_with_timeout(bound, run.call_timeout, cand.backend)
            return result, run.attempts
        except Exception as exc:
            run.last = exc
    raise AllBackendsFailedError(run.attempts) from run.last


async def acall_with_fallback(
    decision: RoutingDecision,
    call: Callable[[Alternative, int], Awaitable[T]],
    *,
    max_attempts_per_backend: int = 3,
    max_backends: int | None = None,
    wait: wait_base | Callable[[RetryCallState], float] | None = None,
    classify: Callable[[BaseException], bool] = is_transient,
    call_timeout: float | None = None,
) -> tuple[T, list[Attempt]]:
    """The async twin of `call_with_fallback`: ``call`` is awaited, back-off waits are async.

    With ``call_timeout``, an attempt still pending after that many seconds is cancelled and
    fails with `CallTimeoutError` (transient).
    """
    run = _Run(decision, max_attempts_per_backend, max_backends, wait, classify, call_timeout)
    for cand in run.candidates:
        try:
            async for state in AsyncRetrying(**run.retrying):
                number = state.retry_state.attempt_number
                with state, run.attempt(cand, number):
                    result = await await_with_timeout(call(cand, number), run.call_timeout, cand.backend)
            return result, run.attempts
        except Exception as exc:
            run.last = exc
    raise AllBackendsFailedError(run.attempts) from run.last
