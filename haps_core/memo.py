"""A one-entry memo for per-batch text work that several steps of one routing call repeat.

Routing a batch featurises its texts (embedding, structural features) and counts them for the
input cost; both want the same tokens and the same character statistics. Rather than thread
intermediate results through every signature, the functions that compute them remember their
last batch: asked again for an equal batch (the usual case: the very same strings), they return
the stored result. Results are shared: callers must not modify them.
"""

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
# Batches larger than this (training, evaluation) are computed but not kept: routing batches are
# small, and keeping a whole log's tokens alive would cost memory for nothing.
MAX_KEPT = 4096
_SLOTS: list[list[Any]] = []


def last_batch(fn: Callable[[Sequence[str]], T]) -> Callable[[Sequence[str]], T]:
    """Decorates ``fn(texts)`` to reuse its result for a batch equal to the last one.

    Thread-safe: the stored (key, result) pair is replaced in one assignment, and a race only
    computes a result twice. The key is the tuple of texts (the same string objects compare by
    identity, so a hit costs one pass over references).
    """
    slot: list[tuple[tuple[str, ...], T]] = []
    _SLOTS.append(slot)

    @functools.wraps(fn)
    def wrapper(texts: Sequence[str]) -> T:
        key = tuple(texts)
        held = slot[0] if slot else None
        if held is not None and held[0] == key:
            return held[1]
        result = fn(key)
        if len(key) > MAX_KEPT:
            return result
        if slot:
            slot[0] = (key, result)
        else:
            slot.append((key, result))
        return result

    wrapper.cache_clear = slot.clear  # type: ignore[attr-defined]
    return wrapper


def clear_all() -> None:
    """Forgets every memoised batch (benchmarks call it so a repeated batch is timed in full)."""
    for slot in _SLOTS:
        slot.clear()
