"""The framework-free call loop that both integrations (LangChain, LlamaIndex) share.

A routing decision names an action (backend + parameters) and its runner-ups. Calling it well
takes three things that do not depend on any framework, so they live here once:

* prompt styles: the system-message text of the chosen ``prompt_style``
  (`resolve_prompt_styles`, `system_message_for`);
* error classification: a rate limit or a timeout is worth retrying on the same backend, a bad
  request or a bad key is not (`is_transient`). The classification reads status codes and class
  names, so this module imports no HTTP or provider library;
* the loop: retry transient errors on the chosen action (tenacity, bounded, with jittered
  exponential back-off), then fall back to the next candidate on a *different* backend, recording
  every attempt (`call_with_fallback`, `acall_with_fallback`). An optional ``call_timeout`` bounds
  each attempt, so a backend that hangs is a (transient) `CallTimeoutError`, not a stuck request.
  When every candidate fails, one `AllBackendsFailedError` lists them all;
* what the router reads: the routing text is checked, made encodable and capped in length
  (`routing_text`), and routing is serialised per router (`routing_lock`), while the backend
  always gets the caller's input unchanged.

Around the loop, the pieces every integration needs identically: checked routing and the record
of a call (`route_checked`, `served_candidate`, `decision_record`, `interrupted_stream`), and the
checks and settings of an integration's constructor and calls (`check_router`, `call_costs`,
`checked_prompt_styles`, `parameter_report`, `warn_unreachable`...).

The integrations supply a ``call(candidate, attempt_number)`` function that does the
framework-specific work (apply the parameters, call the model).
"""

import asyncio
import contextvars
import functools
import logging
import math
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
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

from haps_core.catalog import DEFAULT_PROMPT_STYLE, RoutingSpace
from haps_core.decision import Alternative, RoutingDecision, check_cost_weight, fallback_order
from haps_core.errors import (
    AllBackendsFailedError,
    CallTimeoutError,
    RoutingError,
    StreamInterruptedError,
)
from haps_core.text import SURROGATE, count_surrogates, replace_surrogates

logger = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = [
    "MAX_ROUTING_CHARS",
    "PROMPT_STYLE",
    "Attempt",
    "acall_with_fallback",
    "call_costs",
    "call_with_fallback",
    "candidates",
    "check_attempts",
    "check_call_timeout",
    "check_max_backends",
    "check_router",
    "checked_prompt_styles",
    "decision_record",
    "default_wait",
    "interrupted_stream",
    "is_transient",
    "parameter_report",
    "resolve_prompt_styles",
    "route_checked",
    "routing_lock",
    "routing_text",
    "served_candidate",
    "system_message_for",
    "warn_unreachable",
]

PROMPT_STYLE = "prompt_style"
"""The action parameter that names a prompt style (sent as a system message, not to the model)."""


# -- prompt styles ----------------------------------------------------------------------------
def resolve_prompt_styles(
    space: RoutingSpace | None, overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The system-message text of every prompt style: the router's own, then ``overrides``.

    Overrides may change a style's text or add styles the router does not know (harmless: the
    router never chooses them). Texts must be strings; an empty text means "no system message".

    Args:
        space: the router's routing space (its ``prompt_styles``), or None for overrides only.
        overrides: style name -> system-message text.

    Returns:
        style name -> text.
    """
    styles = dict(space.prompt_styles) if space is not None else {}
    for name, text in (overrides or {}).items():
        if not isinstance(name, str) or not name:
            msg = f"`prompt_styles` keys must be non-empty strings, got {name!r}"
            raise ValueError(msg)
        if not isinstance(text, str):
            msg = (
                f"`prompt_styles[{name!r}]` must be a string (the system-message text), "
                f"got {type(text).__name__}: {text!r}"
            )
            raise TypeError(msg)
        styles[name] = text
    return styles


def system_message_for(style: str | None, styles: Mapping[str, str]) -> str | None:
    """The system message to send for ``style``, or None when the style adds nothing.

    ``None``, ``""`` and ``"default"`` add nothing (unless ``"default"`` was given a text).
    Any other style must have a non-empty text: silently sending a routed "cot" call without its
    instruction would make the router's choice meaningless, so that is an error.

    Raises:
        RoutingError: the style is unknown or has an empty text.
    """
    if not style:
        return None
    text = styles.get(style)
    if style == DEFAULT_PROMPT_STYLE:
        return text or None
    if text is None:
        msg = (
            f"prompt style {style!r} has no system-message text; known styles: {sorted(styles)}. "
            f"Pass prompt_styles={{{style!r}: '...'}} to define it."
        )
        raise RoutingError(msg)
    if not text.strip():
        msg = (
            f"prompt style {style!r} has an empty system-message text, so choosing it would "
            f"change nothing. Pass prompt_styles={{{style!r}: '...'}} to define it."
        )
        raise RoutingError(msg)
    return text


def styles_without_text(space: RoutingSpace, styles: Mapping[str, str]) -> list[str]:
    """Prompt styles that actions of ``space`` use but that have no text (for early checks)."""
    missing = set()
    for action in space.actions:
        style = action.prompt_style
        if style != DEFAULT_PROMPT_STYLE and not (styles.get(style) or "").strip():
            missing.add(style)
    return sorted(missing)


def checked_prompt_styles(space: RoutingSpace, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """`resolve_prompt_styles`, checked up front: every style the router can choose has a text.

    Raises:
        ValueError: an action of ``space`` uses a style with no (or an empty) text.
    """
    styles = resolve_prompt_styles(space, overrides)
    missing = styles_without_text(space, styles)
    if missing:
        msg = (
            f"the router can choose prompt styles {missing}, which have no system-message text; "
            "pass `prompt_styles={name: text}` for them"
        )
        raise ValueError(msg)
    return styles


# -- error classification ---------------------------------------------------------------------
_TRANSIENT_STATUS = frozenset({408, 409, 425, 429})
_TRANSIENT_NAME_PARTS = (
    "RateLimit",
    "Timeout",
    "TimedOut",
    "Connection",
    "ConnectError",
    "NetworkError",
    "ServiceUnavailable",
    "InternalServerError",
    "Overloaded",
    "TooManyRequests",
)
_PERMANENT_NAME_PARTS = (
    "Authentication",
    "PermissionDenied",
    "BadRequest",
    "NotFound",
    "UnprocessableEntity",
    "InvalidRequest",
)


def _status_code(exc: BaseException) -> int | None:
    """The HTTP status carried by an exception (``status_code``, ``status``, ``response``)."""
    for value in (
        getattr(exc, "status_code", None),
        getattr(exc, "status", None),
        getattr(getattr(exc, "response", None), "status_code", None),
    ):
        if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
            return value
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same call later may succeed.

    Transient: HTTP 408/409/425/429 and every 5xx; ``TimeoutError`` (``asyncio.TimeoutError`` is
    the same class) and ``ConnectionError``; and, by class name anywhere in the MRO, rate limits,
    timeouts and connection failures of client libraries (``openai.RateLimitError``,
    ``openai.APITimeoutError``, ``openai.APIConnectionError``, ``httpx.TimeoutException``,
    ``httpx.ConnectError``...). Permanent: other 4xx statuses (400, 401, 403, 404, 422...), and
    anything unrecognised, so an unknown bug falls back at once instead of being hammered.
    """
    if not isinstance(exc, Exception):
        return False  # KeyboardInterrupt, CancelledError, GeneratorExit: never retry
    status = _status_code(exc)
    if status is not None:
        return status >= 500 or status in _TRANSIENT_STATUS
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    names = [cls.__name__ for cls in type(exc).__mro__]
    if any(part in name for name in names for part in _PERMANENT_NAME_PARTS):
        return False
    return any(part in name for name in names for part in _TRANSIENT_NAME_PARTS)


# -- attempts and the fallback loop -----------------------------------------------------------
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
    if max_backends is not None and (isinstance(max_backends, bool) or max_backends < 1):
        msg = f"`max_backends` must be None or an int >= 1, got {max_backends!r}"
        raise ValueError(msg)
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


def check_attempts(value: int, name: str = "max_attempts_per_backend") -> int:
    """Validates a number of calls per backend: an int >= 1 (``name`` is the setting's name)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"`{name}` must be an int >= 1, got {value!r}"
        raise ValueError(msg)
    return value


def check_call_timeout(value: float | None, name: str = "call_timeout") -> float | None:
    """Validates a per-attempt time limit: None (no limit) or a finite number of seconds > 0."""
    if value is None:
        return None
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value <= 0:
        msg = f"`{name}` must be None (no limit) or a finite number of seconds > 0, got {value!r}"
        raise ValueError(msg)
    return float(value)


def _run_with_timeout(fn: Callable[[], T], timeout: float | None, backend: str) -> T:
    """``fn()``, or `CallTimeoutError` when it has not returned after ``timeout`` seconds.

    A running Python call cannot be interrupted from outside, so with a limit ``fn`` runs in a
    daemon worker thread (with the caller's context variables, so tracing callbacks still nest)
    that is abandoned on timeout: the caller moves on, whatever the worker does later is dropped.
    """
    if timeout is None:
        return fn()
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


async def _await_with_timeout(call: Awaitable[T], timeout: float | None, backend: str) -> T:
    """``await call``, cancelled with `CallTimeoutError` after ``timeout`` seconds.

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


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _failed(
    cand: Alternative, number: int, exc: Exception, start: float, classify: Callable[[BaseException], bool]
) -> Attempt:
    attempt = Attempt(
        cand.backend,
        dict(cand.parameters),
        number,
        _error_text(exc),
        classify(exc),
        time.perf_counter() - start,
    )
    logger.warning("HAPS call failed: %s", attempt.describe())
    return attempt


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
    check_attempts(max_attempts_per_backend)
    call_timeout = check_call_timeout(call_timeout)
    attempts: list[Attempt] = []
    last: Exception | None = None
    for cand in candidates(decision, max_backends):
        retrying = Retrying(
            stop=stop_after_attempt(max_attempts_per_backend),
            wait=wait if wait is not None else default_wait(),
            retry=retry_if_exception(classify),
            reraise=True,
        )
        try:
            for state in retrying:
                with state:
                    number = state.retry_state.attempt_number
                    start = time.perf_counter()
                    try:
                        result = _run_with_timeout(
                            functools.partial(call, cand, number), call_timeout, cand.backend
                        )
                    except Exception as exc:
                        attempts.append(_failed(cand, number, exc, start, classify))
                        raise
                    attempts.append(
                        Attempt(
                            cand.backend,
                            dict(cand.parameters),
                            number,
                            None,
                            False,
                            time.perf_counter() - start,
                        )
                    )
            return result, attempts
        except Exception as exc:
            last = exc
            continue
    raise AllBackendsFailedError(attempts) from last


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
    check_attempts(max_attempts_per_backend)
    call_timeout = check_call_timeout(call_timeout)
    attempts: list[Attempt] = []
    last: Exception | None = None
    for cand in candidates(decision, max_backends):
        retrying = AsyncRetrying(
            stop=stop_after_attempt(max_attempts_per_backend),
            wait=wait if wait is not None else default_wait(),
            retry=retry_if_exception(classify),
            reraise=True,
        )
        try:
            async for state in retrying:
                with state:
                    number = state.retry_state.attempt_number
                    start = time.perf_counter()
                    try:
                        result = await _await_with_timeout(call(cand, number), call_timeout, cand.backend)
                    except Exception as exc:
                        attempts.append(_failed(cand, number, exc, start, classify))
                        raise
                    attempts.append(
                        Attempt(
                            cand.backend,
                            dict(cand.parameters),
                            number,
                            None,
                            False,
                            time.perf_counter() - start,
                        )
                    )
            return result, attempts
        except Exception as exc:
            last = exc
            continue
    raise AllBackendsFailedError(attempts) from last


# -- around the loop: checked routing, who served, the record, a broken stream ----------------
# Framework-free pieces that every integration needs identically, so that a decision reads the
# same in a LangChain message's ``response_metadata["haps"]`` and a LlamaIndex response's
# ``additional_kwargs["haps"]``.
MAX_ROUTING_CHARS = 32_000
"""The most characters of one query that the router reads (its head); the backend gets them all.

The encoder reads at most a few hundred tokens anyway, and the structural features saturate long
before this; tokenizing a megabyte just to throw most of it away would put seconds of CPU on the
request path.
"""


def routing_text(text: Any, max_chars: int = MAX_ROUTING_CHARS, name: str = "query") -> str:
    """The text a router reads for one query: checked, made encodable, capped in length.

    * Not a string: TypeError; empty or whitespace-only: ValueError (nothing to route on).
    * Unpaired surrogates (U+D800-U+DFFF: what undecodable bytes become under Python's
      ``surrogateescape``, or what a JSON ``"\\udXXX"`` escape gives) cannot be encoded as UTF-8
      and crash tokenizers: each is replaced by U+FFFD for routing (logged at INFO).
    * Longer than ``max_chars`` characters: the first ``max_chars`` are routed on, with a warning.

    Only what the router reads changes: the integrations send the caller's input unchanged.

    Args:
        text: the query text.
        max_chars: the most characters routed on (an int >= 1).
        name: how the caller names ``text`` in error messages.
    """
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
        msg = f"`max_chars` must be an int >= 1, got {max_chars!r}"
        raise ValueError(msg)
    if not isinstance(text, str):
        msg = f"`{name}` must be a string to route on, got {type(text).__name__}: {text!r:.80}"
        raise TypeError(msg)
    if not text.strip():
        msg = f"`{name}` is empty or whitespace-only ({len(text)} characters): there is nothing to route on"
        raise ValueError(msg)
    if SURROGATE.search(text):
        count = count_surrogates(text)
        logger.info("HAPS: %s has %d unpaired surrogate(s) (invalid UTF-8); routed as U+FFFD", name, count)
        text = replace_surrogates(text)
    if len(text) > max_chars:
        logger.warning(
            "HAPS: %s has %d characters; routing on its first %d (max_chars); the backend gets all of it",
            name,
            len(text),
            max_chars,
        )
        text = text[:max_chars]
    return text


_ROUTING_LOCKS: "weakref.WeakKeyDictionary[Any, threading.Lock]" = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()
_SHARED_LOCK = threading.Lock()


@contextmanager
def routing_lock(router: Any) -> Iterator[None]:
    """Holds ``router``'s lock: one routing call at a time per router object.

    A router is shared by every request of an integration, and async calls route in worker
    threads. Its encoder's Hugging Face tokenizer is not safe to call from several threads at
    once (a call switches truncation off while another tokenizes: embeddings of the wrong length,
    or a crash), so the integrations route one batch at a time per router. Batching
    (``batch``/``abatch``) is the way to route many queries fast.
    """
    with _LOCKS_GUARD:
        try:
            lock = _ROUTING_LOCKS.setdefault(router, threading.Lock())
        except TypeError:  # not weak-referenceable or unhashable: one lock for all such routers
            lock = _SHARED_LOCK
    with lock:
        yield


def route_checked(
    router: Any,
    texts: Sequence[str],
    cost_weight: float | None,
    max_cost_per_query: float | None,
    known_backends: Collection[str],
    max_chars: int = MAX_ROUTING_CHARS,
) -> list[RoutingDecision]:
    """``router.route`` (one forward pass for ``texts``), checked before anything is called.

    Each text goes through `routing_text` (empty ones are refused, unpaired surrogates replaced,
    long ones cut to ``max_chars``), and routing holds `routing_lock`. A router that returns the
    wrong number of decisions, or names a backend the caller has no model for, is a bug in the
    router or its catalog; failing here names it, instead of a ``KeyError`` deep in a framework.
    A decision whose choice or runner-ups have a non-finite predicted quality or cost is logged:
    the query lies far outside what the router was trained on, and its predictions mean little.

    Raises:
        TypeError, ValueError: a text is not a string, or is empty.
        RoutingError: wrong number of decisions, or an unknown backend.
    """
    texts = [routing_text(t, max_chars, f"texts[{i}]") for i, t in enumerate(texts)]
    with routing_lock(router):
        decisions = list(router.route(texts, cost_weight=cost_weight, max_cost_per_query=max_cost_per_query))
    if len(decisions) != len(texts):
        msg = f"router returned {len(decisions)} decisions for {len(texts)} queries"
        raise RoutingError(msg)
    for i, d in enumerate(decisions):
        if d.backend not in known_backends:
            msg = f"router chose backend {d.backend!r}, which has no model (have: {sorted(known_backends)})"
            raise RoutingError(msg)
        values = [(c.predicted_quality, c.predicted_cost) for c in fallback_order(d)]
        if not all(math.isfinite(q) and math.isfinite(c) for q, c in values):
            logger.warning(
                "HAPS: the router's predictions for texts[%d] (%.60r) are not all finite (quality, "
                "cost of the choice and runner-ups: %s): the query lies far outside the router's "
                "training data; chose %r",
                i,
                texts[i],
                values,
                d.backend,
            )
    logger.debug(
        "HAPS routed %d queries (cost_weight=%s, max_cost=%s)", len(texts), cost_weight, max_cost_per_query
    )
    return decisions


def served_candidate(decision: RoutingDecision, attempts: Sequence[Attempt]) -> Alternative:
    """The candidate that answered: the last attempt's backend (`candidates` has one per backend)."""
    backend = attempts[-1].backend
    return next(c for c in fallback_order(decision) if c.backend == backend)


def decision_record(
    decision: RoutingDecision,
    served: Alternative,
    applied: Mapping[str, str],
    attempts: Sequence[Attempt],
    max_cost_per_query: float | None = None,
) -> dict[str, Any]:
    """The JSON-ready record an integration attaches to a response under ``"haps"``.

    Keys: the decision's own (`RoutingDecision.to_dict`: backend, parameters, temperature,
    prompt_style, predicted quality and cost, cost_weight, action_index, alternatives), then
    ``max_cost_per_query``, ``served_by`` (backend and parameters that answered, after any
    fallback), ``fallback`` (whether that differs from the choice), ``applied`` (parameter ->
    mechanism that carried it to the model) and ``attempts`` (every call, `Attempt.to_dict`).
    """
    record = decision.to_dict()
    record["alternatives"] = list(record["alternatives"])  # JSON-shaped: lists, not tuples
    record.update(
        max_cost_per_query=max_cost_per_query,
        served_by={"backend": served.backend, "parameters": dict(served.parameters)},
        fallback=served.action_index != decision.action_index,
        applied=dict(applied),
        attempts=[a.to_dict() for a in attempts],
    )
    return record


def interrupted_stream(
    backend: str, partial_output: Any, attempts: list[Attempt], exc: Exception
) -> StreamInterruptedError:
    """The error for a stream that broke after its first chunk (no fallback: see the error).

    The last attempt (recorded as a success when the first chunk arrived) is rewritten in place
    to carry the failure, so ``.attempts`` tells the whole story.
    """
    attempts[-1] = replace(attempts[-1], error=_error_text(exc), transient=is_transient(exc))
    logger.warning("HAPS backend %r failed mid-stream; not falling back: %s", backend, exc)
    return StreamInterruptedError(backend, partial_output, attempts, exc)


# -- an integration's settings and start-up checks --------------------------------------------
# What an integration checks when it is built (the router, the pool, the prompt styles, how each
# parameter reaches each backend) and how it settles one call's cost trade-off.
def check_router(router: Any) -> None:
    """Checks that ``router`` looks like a HAPS router: ``.space`` and ``.route(...)``.

    Raises:
        TypeError: either attribute is missing.
    """
    for attr in ("space", "route"):
        if not hasattr(router, attr):
            msg = (
                f"`router` must have `.space` and `.route(texts, cost_weight=..., "
                f"max_cost_per_query=...)` (a HAPSRouter); {type(router).__name__} has no `.{attr}`"
            )
            raise TypeError(msg)


def check_max_backends(value: int | None) -> int | None:
    """Validates ``max_backends``: None (every backend of the decision) or an int >= 1."""
    if value is not None and (isinstance(value, bool) or value < 1):
        msg = f"`max_backends` must be None (every backend) or an int >= 1, got {value!r}"
        raise ValueError(msg)
    return value


def call_costs(
    router: Any,
    cost_weight: Any,
    max_cost: Any,
    instance: tuple[float | None, float | None],
    names: tuple[str, str],
) -> tuple[float | None, float | None]:
    """One call's ``(cost weight, budget)``; at most one of the two is set.

    A per-call setting (``cost_weight`` or ``max_cost``; None when not given) replaces the
    ``instance`` settings entirely, so a per-call budget overrides an instance cost weight and vice
    versa. With nothing set anywhere, the router's ``default_cost_weight`` (0.0 if it has none).

    Args:
        router: the HAPS router (for its ``default_cost_weight``).
        cost_weight: the per-call cost weight, or None.
        max_cost: the per-call USD budget per query, or None.
        instance: the integration's own ``(cost_weight, max_cost_per_query)`` settings.
        names: how a caller spells the two per-call settings (for error messages).

    Raises:
        ValueError: both per-call settings are given, or one is negative or not finite.
        TypeError: a per-call setting is not a number.
    """
    if cost_weight is not None and max_cost is not None:
        msg = f"give either {names[0]} or {names[1]}, not both (got {cost_weight!r} and {max_cost!r})"
        raise ValueError(msg)
    if cost_weight is not None:
        return check_cost_weight(cost_weight, names[0]), None
    if max_cost is not None:
        return None, check_cost_weight(max_cost, names[1])
    if instance[0] is not None or instance[1] is not None:
        return instance
    return float(getattr(router, "default_cost_weight", 0.0) or 0.0), None


def parameter_report(
    space: RoutingSpace,
    apply: Callable[[str, dict[str, Any]], Mapping[str, str]],
    details: Mapping[str, str],
    pinned: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """How each parameter of each backend's grid reaches its model (the integrations' check).

    Args:
        space: the router's routing space (its backends and their parameter grids).
        apply: ``apply(backend_name, parameters) -> {parameter: mechanism}``: the mechanism the
            integration would use; called once per backend with a sample value of each
            parameter (the grid's last; `PROMPT_STYLE` excluded: it is a system message).
        details: mechanism -> a sentence that explains it.
        pinned: parameters the integration sets on every call (reported for every backend).

    Returns:
        ``{backend: {parameter: {"mechanism": ..., "reaches_model": bool, "detail": ...}}}``;
        ``reaches_model`` is False for the ``"not_applied"`` mechanism.
    """
    pinned = dict(pinned or {})
    report: dict[str, dict[str, dict[str, Any]]] = {}
    for backend in space.backends:
        grid = backend.parameters
        sample = {p: values[-1] for p, values in grid.items() if p != PROMPT_STYLE}
        sample.update(pinned)
        applied = apply(backend.name, sample)
        routes = {}
        for param in sorted(set(grid) | set(pinned)):
            mechanism = "system_message" if param == PROMPT_STYLE else applied[param]
            routes[param] = {
                "mechanism": mechanism,
                "reaches_model": mechanism != "not_applied",
                "detail": details[mechanism],
            }
        report[backend.name] = routes
    return report


_WARNED: set[tuple[str, str, tuple[str, ...]]] = set()


def warn_unreachable(
    report: Mapping[str, Mapping[str, Mapping[str, Any]]], kinds: Mapping[str, str], check_name: str
) -> None:
    """Logs the parameters of a `parameter_report` that cannot reach their backend's model.

    Once per process for each (backend, class name, parameters): integrations are rebuilt per
    call (LangChain's ``configurable_fields``, LlamaIndex's ``with_cost_weight``), and the
    warning would flood the logs.

    Args:
        report: a `parameter_report`.
        kinds: backend name -> the class name of its model (for the message).
        check_name: the integration's method that prints the report (for the message).
    """
    for backend, routes in report.items():
        lost = tuple(sorted(p for p, r in routes.items() if not r["reaches_model"]))
        key = (backend, kinds[backend], lost)
        if lost and key not in _WARNED:
            _WARNED.add(key)
            logger.warning(
                "HAPS backend %r (%s): parameters %s have no way to reach the model; the "
                "router's choice of them will be ignored (see %s())",
                *key,
                check_name,
            )
