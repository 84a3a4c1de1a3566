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

from haps_core.decision import RouterLike, RoutingDecision, check_cost_weight, fallback_order
from haps_core.dispatch.settings import Costs
from haps_core.errors import RoutingError
from haps_core.text import SURROGATE, count_surrogates, replace_surrogates

logger = logging.getLogger(__name__)

M = TypeVar("M")

COST_WEIGHT_KEY = "haps_cost_weight"
"""The per-call key of the cost weight (lambda), in both integrations (a kwarg or a configurable key)."""
MAX_COST_KEY = "haps_max_cost_per_query"
"""The per-call key of the USD budget per query the router calibrates a cost weight from."""

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


def call_costs(
    router: RouterLike, cost_weight: Any, max_cost: Any, instance: Costs, names: tuple[str, str]
) -> Costs:
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
        msg = f"give either `{names[0]}` or `{names[1]}`, not both (got {cost_weight!r} and {max_cost!r})"
        raise ValueError(msg)
    if cost_weight is not None:
        return check_cost_weight(cost_weight, names[0]), None
    if max_cost is not None:
        return None, check_cost_weight(max_cost, names[1])
    if instance[0] is not None or instance[1] is not None:
        return instance
    return float(getattr(router, "default_cost_weight", 0.0) or 0.0), None


def check_pool(catalog: Collection[str], backends: Any, model: str, extra: str) -> None:
    """Checks an integration's pool (``backends``) against the router's catalog, name for name.

    Args:
        catalog: the router's backend names.
        backends: the pool given (must be a non-empty mapping of name -> model).
        model: how the error names one model of the pool ("a runnable", "an LLM").
        extra: how it names models the catalog lacks ("runnables without a catalog entry").

    Raises:
        TypeError: ``backends`` is not a mapping. ValueError: it is empty or does not match.
    """
    if not isinstance(backends, Mapping):
        msg = f"`backends` must be a dict of backend name -> model, got {type(backends).__name__}"
        raise TypeError(msg)
    if not backends:
        msg = f"`backends` is empty: give one model per backend of the router's catalog {sorted(catalog)}"
        raise ValueError(msg)
    known, given = set(catalog), set(backends)
    if known != given:
        msg = (
            "`backends` must match the router's catalog exactly: "
            f"catalog backends without {model}: {sorted(known - given)}; "
            f"{extra}: {sorted(given - known)} "
            f"(catalog: {sorted(known)}; given: {sorted(given)})"
        )
        raise ValueError(msg)


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
