"""Relaying a backend's stream to the caller, chunk by chunk as it comes, sync or async.

The first chunk is taken inside the retry/fallback loop, so a stream that fails before it is
retried or fallen back from like any call. After it, a failure raises `StreamInterruptedError`
with the output so far: falling back then would splice two different answers together.
"""

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from haps_core.dispatch.errors import error_text, is_transient
from haps_core.dispatch.retry import Attempt
from haps_core.errors import StreamInterruptedError

logger = logging.getLogger(__name__)

T = TypeVar("T")


def interrupted_stream(
    backend: str, partial_output: Any, attempts: list[Attempt], exc: Exception
) -> StreamInterruptedError:
    """The error for a stream that broke after its first chunk (no fallback: see the error).

    The last attempt (recorded as a success when the first chunk arrived) is rewritten in place
    to carry the failure, so ``.attempts`` tells the whole story.
    """
    attempts[-1] = replace(attempts[-1], error=error_text(exc), transient=is_transient(exc))
    logger.warning("HAPS backend %r failed mid-stream; not falling back: %s", backend, exc)
    return StreamInterruptedError(backend, partial_output, attempts, exc)


@dataclass(frozen=True)
class ChunkRules:
    """How an integration passes a backend's chunks on (all functions of the decision record)."""

    first: Callable[[Any, dict[str, Any]], Any]
    """``(first chunk, record) -> what the caller gets first`` (the decision attached)."""
    each: Callable[[Any, dict[str, Any]], Any]
    """``(later chunk, record) -> what the caller gets``."""
    add: Callable[[Any, Any], Any]
    """``(output so far, chunk) -> output so far``: a sum of deltas, or the latest cumulative chunk."""
    empty: Callable[[dict[str, Any]], Any] | None = None
    """``record -> the one chunk of a stream that sent nothing``; None: yield nothing."""


class Relay:
    """The rest of a backend's stream after its first chunk, passed on as it comes.

    ``partial`` is the output so far (per `ChunkRules.add`; None for an empty stream) and
    ``last`` the latest chunk passed on. Iterate `chunks` (or `achunks`, matching the backend's
    iterator) for the whole stream as the caller sees it; it closes the backend's iterator.
    """

    def __init__(
        self, first: Any, iterator: Any, record: dict[str, Any], attempts: list[Attempt], rules: ChunkRules
    ) -> None:
        self.first = first
        self.iterator = iterator
        self.record = record
        self.attempts = attempts
        self.rules = rules
        self.partial = self.last = None if first is None else rules.first(first, record)

    @property
    def backend(self) -> str:
        """The backend that is streaming."""
        return self.attempts[-1].backend

    def _opening(self) -> list[Any]:
        """What the caller gets before the backend's second chunk."""
        if self.first is None:
            return [] if self.rules.empty is None else [self.rules.empty(self.record)]
        return [self.partial]

    def _take(self, chunk: Any) -> Any:
        chunk = self.rules.each(chunk, self.record)
        self.last, self.partial = chunk, self.rules.add(self.partial, chunk)
        return chunk

    def _interrupted(self, exc: Exception) -> StreamInterruptedError:
        return interrupted_stream(self.backend, self.partial, self.attempts, exc)

    def __iter__(self) -> "Relay":
        return self

    def __next__(self) -> Any:
        if self.first is None:
            raise StopIteration
        try:
            chunk = next(self.iterator)
        except StopIteration:
            raise
        except Exception as exc:
            raise self._interrupted(exc) from exc
        return self._take(chunk)

    def __aiter__(self) -> "Relay":
        return self

    async def __anext__(self) -> Any:
        if self.first is None:
            raise StopAsyncIteration
        try:
            chunk = await self.iterator.__anext__()
        except StopAsyncIteration:
            raise
        except Exception as exc:
            raise self._interrupted(exc) from exc
        return self._take(chunk)

    def chunks(self) -> Generator[Any, None, None]:
        """The whole stream as the caller sees it; closes the backend's iterator at the end."""
        try:
            yield from self._opening()
            yield from self
        finally:
            close = getattr(self.iterator, "close", None)
            if close is not None:
                close()

    async def achunks(self) -> AsyncGenerator[Any, None]:
        """The async twin of `chunks`."""
        try:
            for chunk in self._opening():
                yield chunk
            async for chunk in self:
                yield chunk
        finally:
            aclose = getattr(self.iterator, "aclose", None)
            if aclose is not None:
                await aclose()


async def anext_or_none(iterator: AsyncIterator[T]) -> T | None:
    """The next item of an async iterator, or None when it is exhausted."""
    try:
        return await iterator.__anext__()
    except StopAsyncIteration:
        return None


async def async_or_thread(acall: Callable[[], Awaitable[T]], call: Callable[[], T]) -> T:
    """``await acall()``; a backend with no async path (NotImplementedError) runs ``call`` in a thread."""
    try:
        return await acall()
    except NotImplementedError:
        return await asyncio.to_thread(call)


async def astream_or_thread(
    astream: Callable[[], Awaitable[AsyncIterator[T]]], stream: Callable[[], Iterator[T]]
) -> AsyncIterator[T]:
    """The backend's async stream; one with none (NotImplementedError) streams ``stream()`` from a thread."""
    try:
        return await astream()
    except NotImplementedError:
        iterator = await asyncio.to_thread(lambda: iter(stream()))
        return _threaded(iterator)


async def _threaded(iterator: Iterator[T]) -> AsyncIterator[T]:
    done = object()
    while (item := await asyncio.to_thread(next, iterator, done)) is not done:
        yield item  # type: ignore[misc]  # not `done`: checked above
