"""Calling one backend: which errors are transient, per-call timeouts, per-backend rate limits."""

import threading
import time
from collections.abc import Callable
from typing import Any

from haps_core.collect.replay import Outcome
from haps_core.errors import CallTimeoutError

_TRANSIENT_NAMES = (
    "RateLimit",
    "Timeout",
    "APIConnection",
    "ServiceUnavailable",
    "InternalServer",
    "Overloaded",
)
_TRANSIENT_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


def is_transient(exc: BaseException) -> bool:
    """Timeouts, dropped connections, rate limits and 5xx answers are worth retrying."""
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    if any(n in type(exc).__name__ for n in _TRANSIENT_NAMES):
        return True
    return getattr(exc, "status_code", None) in _TRANSIENT_STATUS


class BudgetSpent(Exception):
    """The call budget ran out between retries."""


def with_timeout(fn: Callable[[], Outcome], backend: str, timeout: float | None) -> Outcome:
    if timeout is None:
        return fn()
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=target, daemon=True, name=f"haps-collect-{backend}")
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise CallTimeoutError(backend, timeout)
    if "error" in box:
        raise box["error"]
    return box["value"]


class RateLimiter:
    def __init__(self, per_second: float | None) -> None:
        self.interval = 0.0 if not per_second else 1.0 / per_second
        self.lock = threading.Lock()
        self.next = 0.0

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next)
            self.next = start + self.interval
        time.sleep(max(0.0, start - now))
