"""What the router reads and how an integration asks it: checked, serialised, one pass per batch.

The router reads one text per query (the last user turn's text parts), checked, made encodable
and capped in length; the backend always gets the caller's input unchanged. Routing holds a
per-router lock, and its answer is checked before any backend is called.
"""

import logging
import math
import threading
import weakref
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from haps_core.decision import (
    RouterLike,
    RoutingDecision,
    check_budget,
    check_cost_weight,
    fallback_order,
    unknown_backends_error,
)
from haps_core.dispatch.settings import Costs
from haps_core.errors import RoutingError
from haps_core.text import SURROGATE, count_surrogates, replace_surrogates

logger = logging.getLogger(__name__)

M = TypeVar("M")

COST_WEIGHT_KEY = "haps_cost_weight"
"""The per-call key of the cost weight (lambda), in both integrations (a kwarg or a configurable key)."""
MAX_COST_KEY = "haps_max_cost_per_query"
"""The per-call key of the hard USD cap on one query's predicted cost."""
TARGET_MEAN_KEY = "haps_target_mean_cost"
"""The per-call key of the mean USD cost per query (over the router's reference set) to fit."""

MAX_ROUTING_CHARS = 32_000
"""The most characters of one query that the router reads (its head); the backend gets them all.

The encoder reads at most a few hundred tokens anyway, and the structural features saturate long
before this; tokenizing a megabyte just to throw most of it away would put seconds of CPU on the
request path.
"""


def query_text(
    messages: Sequence[M],
    is_user: Callable[[M], bool],
    text_of: Callable[[M], str],
    *,
    role: str,
    parts: str,
    describe: Callable[[Sequence[M]], str],
) -> str:
    """The text the router reads: the last user message's text parts (images etc. skipped).

    The router was trained on user queries, so system prompts and earlier turns are not part of
    what it scores. An input with no user message, or one with no text, is an error rather than
    a guess (the router cannot score an empty query).

    Args:
        messages: the conversation, in any framework's message type.
        is_user: whether a message is the user's.
        text_of: a message's text parts, joined.
        role: how the framework names the user's role in messages ("human", "user").
        parts: how it names a message's text parts ("text parts", "text blocks").
        describe: what the input holds, for the error when it has no user message.
    """
    for message in reversed(messages):
        if is_user(message):
            text = text_of(message)
            if not text.strip():
                msg = (
                    f"HAPS routes on the last {role} message's text, which is empty or whitespace-only "
                    f"(no text parts with content: {len(text)} characters in its {parts}); "
                    "nothing to route on"
                )
                raise ValueError(msg)
            return text
    msg = f"HAPS routes on the last {role} message, but the input has none ({describe(messages)})"
    raise ValueError(msg)


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
    router: RouterLike,
    texts: Sequence[str],
    cost_weight: float | None,
    max_cost_per_query: float | None,
    known_backends: Collection[str],
    max_chars: int = MAX_ROUTING_CHARS,
    target_mean_cost: float | None = None,
    input_texts: Sequence[str] | None = None,
    exploration: Any = None,
) -> list[RoutingDecision]:
    """``router.route`` (one forward pass for ``texts``), checked before anything is called.

    Each text goes through `routing_text` (empty ones are refused, unpaired surrogates replaced,
    long ones cut to ``max_chars``), and routing holds `routing_lock`. The input cost is counted
    on the whole of each text, or on ``input_texts`` (what each call sends in all) when given:
    ``input_texts=`` reaches the router only when that differs from what it routes on. Routing is among
    ``known_backends`` only (``backends=`` is passed when they are not the whole catalog;
    ``target_mean_cost=`` and ``exploration=`` only when set). A router that returns the
    wrong number of decisions, or names a backend the caller has no model for, is a bug in the
    router or its catalog; failing here names it, instead of a ``KeyError`` deep in a framework.
    A decision whose choice or runner-ups have a non-finite predicted quality or cost is logged:
    the query lies far outside what the router was trained on, and its predictions mean little.

    Raises:
        TypeError, ValueError: a text is not a string, or is empty.
        RoutingError: wrong number of decisions, or an unknown backend.
    """
    sent = list(texts if input_texts is None else input_texts)
    texts = [routing_text(t, max_chars, f"texts[{i}]") for i, t in enumerate(texts)]
    with routing_lock(router):
        extra: dict[str, Any] = {}
        if sent != texts:
            extra["input_texts"] = sent
        if target_mean_cost is not None:
            extra["target_mean_cost"] = target_mean_cost
        if exploration is not None:
            extra["exploration"] = exploration
        if set(known_backends) != set(router.space.backend_names):
            extra["backends"] = sorted(known_backends)
        decisions = list(
            router.route(texts, cost_weight=cost_weight, max_cost_per_query=max_cost_per_query, **extra)
        )
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
        "HAPS routed %d queries (cost_weight=%s, max_cost=%s, target_mean_cost=%s)",
        len(texts),
        cost_weight,
        max_cost_per_query,
        target_mean_cost,
    )
    return decisions


def call_costs(
    router: RouterLike,
    cost_weight: Any,
    max_cost: Any,
    instance: Costs,
    names: tuple[str, ...],
    target_mean_cost: Any = None,
) -> Costs:
    """One call's ``(cost weight, cap, target mean cost)``.

    A per-call setting (None when not given) replaces the ``instance`` settings entirely. The
    cap (``max_cost``) combines with either of the others; a cost weight and a target mean cost
    exclude each other. With nothing set anywhere, the router's ``default_cost_weight``.

    Args:
        router: the HAPS router (for its ``default_cost_weight``).
        cost_weight: the per-call cost weight, or None.
        max_cost: the per-call hard USD cap per query, or None.
        instance: the integration's own ``(cost_weight, max_cost_per_query, target_mean_cost)``.
        names: how a caller spells the per-call settings (for error messages), in that order.
        target_mean_cost: the per-call target mean USD cost per query, or None.

    Raises:
        ValueError: a cost weight and a target are both given, or a value is out of range.
        TypeError: a per-call setting is not a number.
    """
    target_name = names[2] if len(names) > 2 else TARGET_MEAN_KEY
    if cost_weight is not None and target_mean_cost is not None:
        msg = (
            f"give either `{names[0]}` or `{target_name}`, not both "
            f"(got {cost_weight!r} and {target_mean_cost!r})"
        )
        raise ValueError(msg)
    if cost_weight is not None or max_cost is not None or target_mean_cost is not None:
        return (
            None if cost_weight is None else check_cost_weight(cost_weight, names[0]),
            None if max_cost is None else _positive(max_cost, names[1]),
            None if target_mean_cost is None else _positive(target_mean_cost, target_name),
        )
    if any(v is not None for v in instance):
        return instance
    return float(getattr(router, "default_cost_weight", 0.0) or 0.0), None, None


def _positive(value: Any, name: str) -> float:
    check_cost_weight(value, name)  # the type check and its message
    return check_budget(value, name)


_POOL_WARNED: set[tuple[tuple[str, ...], tuple[str, ...]]] = set()


def check_pool(catalog: Collection[str], backends: Any, model: str, extra: str) -> None:
    """Checks an integration's pool (``backends``): a non-empty subset of the router's catalog.

    A pool smaller than the catalog is routed within; one warning (once per process for each
    catalog and pool) names the catalog backends it lacks.

    Args:
        catalog: the router's backend names.
        backends: the pool given (a non-empty mapping of name -> model).
        model: how the warning names one model of the pool ("a runnable", "an LLM").
        extra: how the error names models the catalog lacks ("runnables without a catalog entry").

    Raises:
        TypeError: ``backends`` is not a mapping. ValueError: it is empty or names a backend
        the catalog does not know.
    """
    if not isinstance(backends, Mapping):
        msg = f"`backends` must be a dict of backend name -> model, got {type(backends).__name__}"
        raise TypeError(msg)
    if not backends:
        msg = f"`backends` is empty: give a model for at least one of the router's backends {sorted(catalog)}"
        raise ValueError(msg)
    known, given = set(catalog), set(backends)
    if unknown := sorted(given - known):
        msg = f"`backends` has {extra}: {unknown}; {unknown_backends_error(unknown, sorted(known))}"
        raise ValueError(msg)
    missing = tuple(sorted(known - given))
    key = (tuple(sorted(known)), tuple(sorted(given)))
    if missing and key not in _POOL_WARNED:
        _POOL_WARNED.add(key)
        logger.warning(
            "HAPS: routing among %d of the router's %d backends; catalog backends without %s "
            "(never chosen): %s",
            len(given),
            len(known),
            model,
            list(missing),
        )


def pin_backend(decision: RoutingDecision, backend: str, known: Sequence[str]) -> RoutingDecision:
    """The decision restricted to ``backend``: its best candidate, no other backend to fall to.

    Raises:
        ValueError: ``backend`` is not one of ``known``.
    """
    if backend not in known:
        msg = (
            f"`model` must name one of the backends {list(known)} (or be this router's name), got {backend!r}"
        )
        raise ValueError(msg)
    same = [c for c in fallback_order(decision) if c.backend == backend]
    if not same:  # the router listed no action of this backend: call it with its own defaults
        logger.warning(
            "HAPS: model=%r pinned, but the decision has no action of it; using its defaults", backend
        )
        return RoutingDecision(backend, {}, float("nan"), float("nan"), decision.cost_weight, -1)
    best = same[0]
    return RoutingDecision(
        backend,
        dict(best.parameters),
        best.predicted_quality,
        best.predicted_cost,
        decision.cost_weight,
        best.action_index,
        tuple(same[1:]),
    )
