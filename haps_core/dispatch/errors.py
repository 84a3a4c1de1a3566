"""Error classification: is a failed backend call worth retrying on the same backend?

A rate limit or a timeout is; a bad request or a bad key is not. The answer is read from the
exception itself (an ``is_retryable`` flag, a status code, the class names), so this module
imports no HTTP, provider or framework library.
"""

import logging

logger = logging.getLogger(__name__)

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

    In order:

    1. an ``is_retryable`` flag (a bool), as langchain-core's ``ModelError`` family carries it
       (``ModelRateLimitError``, ``ModelAPIError``, ``ModelConnectionError``,
       ``ModelTimeoutError``: True; ``ModelAuthenticationError``, ``ContextOverflowError``...:
       False); read by attribute, so no framework is imported;
    2. an HTTP status: 408/409/425/429 and every 5xx are transient, other 4xx are not;
    3. ``TimeoutError`` (``asyncio.TimeoutError`` is the same class) and ``ConnectionError``;
    4. class names anywhere in the MRO: rate limits, timeouts and connection failures of client
       libraries (``openai.RateLimitError``, ``httpx.ConnectError``...) are transient;
       authentication, permission, bad-request and not-found errors are not.

    Anything unrecognised is permanent, so an unknown bug falls back at once instead of being
    hammered; ``KeyboardInterrupt``, ``CancelledError`` and ``GeneratorExit`` are never retried.
    """
    if not isinstance(exc, Exception):
        return False
    retryable = getattr(exc, "is_retryable", None)
    if isinstance(retryable, bool):
        return retryable
    status = _status_code(exc)
    if status is not None:
        return status >= 500 or status in _TRANSIENT_STATUS
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    names = [cls.__name__ for cls in type(exc).__mro__]
    if any(part in name for name in names for part in _PERMANENT_NAME_PARTS):
        return False
    return any(part in name for name in names for part in _TRANSIENT_NAME_PARTS)


def error_text(exc: BaseException) -> str:
    """``"ErrorClass: message"``, as an attempt records a failure."""
    return f"{type(exc).__name__}: {exc}"
