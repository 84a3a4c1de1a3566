"""HAPS's own exception types.

Everything HAPS raises for a reason of its own derives from `HAPSError`, so callers can catch the
library's failures in one place. Argument errors stay plain `ValueError`/`TypeError` (with the
parameter, the bad value and what is allowed), as Python code expects.
"""

from collections.abc import Sequence
from typing import Any


class HAPSError(Exception):
    """Base class of the errors HAPS raises itself."""


class RoutingError(HAPSError):
    """The router could not produce a usable decision (bad space, unknown style, bad output)."""


class CheckpointError(HAPSError):
    """A router checkpoint is missing, malformed, or does not match its catalog/config."""


class AllBackendsFailedError(HAPSError):
    """Every candidate action of a decision failed; the message lists every attempt.

    Attributes:
        attempts: the `haps_core.dispatch.Attempt` records, in the order they were made.
    """

    def __init__(self, attempts: Sequence[Any], message: str | None = None) -> None:
        self.attempts = list(attempts)
        if message is None:
            lines = [f"all {len(self.attempts)} attempt(s) failed:"]
            lines += [f"  {i}. {a.describe()}" for i, a in enumerate(self.attempts, 1)]
            message = "\n".join(lines)
        super().__init__(message)


class StreamInterruptedError(HAPSError):
    """A backend failed after it had already streamed output, so HAPS could not fall back.

    Falling back mid-stream would splice two different answers together, so HAPS raises instead.
    The original error is the ``__cause__``.

    Attributes:
        backend: the backend that was streaming.
        partial_output: what had been streamed before the failure (for LangChain, the chunks
            added together into one message chunk).
        attempts: every attempt made for this call, the failed stream last.
    """

    def __init__(
        self, backend: str, partial_output: Any, attempts: Sequence[Any], error: BaseException
    ) -> None:
        self.backend = backend
        self.partial_output = partial_output
        self.attempts = list(attempts)
        message = (
            f"backend {backend!r} failed after streaming had started "
            f"({type(error).__name__}: {error}); the partial output is in `.partial_output`"
        )
        super().__init__(message)


class CallTimeoutError(HAPSError, TimeoutError):
    """A backend call took longer than the integration's ``call_timeout``; HAPS stopped waiting.

    It is a `TimeoutError`, so the retry loop treats it as transient: the backend is retried,
    then HAPS falls back to the next candidate. An async call is cancelled; a sync call cannot be
    interrupted from outside, so its worker thread is abandoned and finishes (or hangs) in the
    background, its result discarded.

    Attributes:
        backend: the backend that did not answer in time.
        timeout: the limit, in seconds.
    """

    def __init__(self, backend: str, timeout: float) -> None:
        self.backend = backend
        self.timeout = timeout
        super().__init__(
            f"backend {backend!r} did not answer within call_timeout={timeout:g} s; HAPS stopped waiting"
        )


class DataNotFoundError(HAPSError, FileNotFoundError):
    """The benchmark data a command needs is not where HAPS looked for it."""
