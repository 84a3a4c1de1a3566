"""The decision record: one served (or failed) routed call, as a store keeps it.

A record is built from what the routed caller knows after the call (the decision, every attempt,
the backend's output) without importing any framework: token usage and the reply text are read
by duck typing from LangChain messages (``usage_metadata``, ``content``), LlamaIndex responses
(``raw["usage"]``, ``message.content``, ``text``) or plain strings and dicts.
"""

import hashlib
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

logger = logging.getLogger(__name__)

STATUSES = ("ok", "failed")


def new_decision_id() -> str:
    """A fresh, stable decision id: a uuid4 in hex (32 characters)."""
    return uuid.uuid4().hex


def query_hash(text: str) -> str:
    """The SHA-256 hex digest of a query's UTF-8 text (what a record keeps when text is not)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class DecisionRecord:
    """One routed call as a store keeps it (JSON-ready through `to_dict`).

    Attributes:
        decision_id: stable id (uuid4 hex); also in the response's ``haps`` metadata.
        ts: UNIX time the record was made (after the call).
        query: the routed text, or None when the store keeps hashes only (``store_text=False``).
        query_hash: SHA-256 of the routed text (always kept).
        backend, parameters: the router's choice (parameters as sent, pinned ones included).
        served_backend, served_parameters: the action that answered (after any fallback);
            None for a failed call.
        propensity: probability that the routing policy chose ``backend``/``parameters``
            (``decision.propensity``; 1.0 for the deterministic greedy policy).
        predicted_quality, predicted_cost, cost_weight: the router's prediction and lambda.
        input_tokens, output_tokens: usage the backend reported (None: not reported).
        cost: actual USD of the served call from that usage and the catalog prices (None
            without usage).
        latency_s: wall seconds of the whole call (every attempt and back-off wait).
        attempts: every call made (`haps_core.dispatch.Attempt.to_dict`).
        fallback: whether the served action differs from the choice.
        status: ``"ok"`` or ``"failed"`` (every candidate failed; ``error`` says why).
        error: the error text of a failed call.
        response: the reply text (None when not kept or not text).
        source: which surface wrote it (``HAPSRunnable``, ``ChatHAPS``, ``HAPSLLM``, ``router``).
    """

    decision_id: str
    ts: float
    query: str | None
    query_hash: str
    backend: str
    parameters: dict[str, Any]
    propensity: float
    predicted_quality: float
    predicted_cost: float
    cost_weight: float | None = None
    served_backend: str | None = None
    served_parameters: dict[str, Any] | None = None
    input_tokens: float | None = None
    output_tokens: float | None = None
    cost: float | None = None
    latency_s: float | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    fallback: bool = False
    status: str = "ok"
    error: str | None = None
    response: str | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            msg = f"`status` must be one of {STATUSES}, got {self.status!r}"
            raise ValueError(msg)

    @property
    def n_attempts(self) -> int:
        return len(self.attempts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DecisionRecord":
        """The record of a `to_dict` mapping; unknown keys (a newer writer's) are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def usage_of(output: Any) -> tuple[float | None, float | None]:
    """``(input_tokens, output_tokens)`` the backend reported in ``output`` (None: not reported).

    Reads LangChain's ``usage_metadata`` (``input_tokens``/``output_tokens``), an OpenAI-style
    ``usage`` (``prompt_tokens``/``completion_tokens``) on the output or its ``raw``, in that order.
    A stream (its first ``(chunk, iterator)`` pair) reports none: its record is written when
    the first chunk arrives, before the usage is known.
    """
    if isinstance(output, tuple):
        return None, None
    sources = [_get(output, "usage_metadata"), _get(output, "usage")]
    raw = _get(output, "raw")
    if raw is not None:
        sources.append(_get(raw, "usage"))
    for usage in sources:
        if usage is None:
            continue
        for keys in (("input_tokens", "output_tokens"), ("prompt_tokens", "completion_tokens")):
            tin, tout = _get(usage, keys[0]), _get(usage, keys[1])
            if isinstance(tin, int | float) and isinstance(tout, int | float):
                return float(tin), float(tout)
    return None, None


def text_of(output: Any) -> str | None:
    """The reply text of ``output`` (a string, ``.content``, ``.message.content``, ``.text``), or None
    (also for a stream, whose record is written at its first chunk)."""
    if isinstance(output, tuple):
        return None
    if isinstance(output, str):
        return output
    for path in (("content",), ("message", "content"), ("text",)):
        value: Any = output
        for key in path:
            value = _get(value, key)
        if isinstance(value, str):
            return value
    return None


def make_record(
    decision: Any,
    text: str,
    attempts: Sequence[Any],
    *,
    output: Any = None,
    haps: Mapping[str, Any] | None = None,
    latency_s: float | None = None,
    error: BaseException | None = None,
    prices: Any = None,
    store_text: bool = True,
    source: str = "",
    decision_id: str | None = None,
) -> DecisionRecord:
    """The record of one call: served (``error`` None) or failed.

    Args:
        decision: the `RoutingDecision` (its ``propensity`` read with a default of 1.0).
        text: the routed text.
        attempts: every `Attempt` made (objects with ``to_dict`` or dicts).
        output: the backend's output (usage and reply text are read from it).
        haps: the ``haps`` metadata record (parameters as sent, ``served_by``, ``fallback``).
        latency_s: wall seconds of the call.
        error: the exception a failed call ended with.
        prices: ``backend name -> Backend`` lookup (``space.backend``) for the actual cost.
        store_text: keep the query and reply text (False: the query's hash only).
        source: the surface writing the record.
        decision_id: the id to use (default: a fresh one).
    """
    haps = dict(haps or {})
    served = haps.get("served_by") or {}
    tin, tout = usage_of(output) if error is None else (None, None)
    cost = None
    served_backend = served.get("backend") if error is None else None
    if served_backend is not None and tin is not None and tout is not None and prices is not None:
        try:
            cost = float(prices(served_backend).cost(tin, tout))
        except (KeyError, AttributeError, TypeError) as exc:
            logger.debug("no price for %r: %s", served_backend, exc)
    cost_weight = getattr(decision, "cost_weight", None)
    return DecisionRecord(
        decision_id=decision_id or new_decision_id(),
        ts=time.time(),
        query=text if store_text else None,
        query_hash=query_hash(text),
        backend=decision.backend,
        parameters=dict(haps.get("parameters", decision.parameters)),
        propensity=float(getattr(decision, "propensity", 1.0)),
        predicted_quality=float(decision.predicted_quality),
        predicted_cost=float(decision.predicted_cost),
        cost_weight=None if cost_weight is None else float(cost_weight),
        served_backend=served_backend,
        served_parameters=dict(served.get("parameters", {})) if error is None else None,
        input_tokens=tin,
        output_tokens=tout,
        cost=cost,
        latency_s=latency_s,
        attempts=[a.to_dict() if hasattr(a, "to_dict") else dict(a) for a in attempts],
        fallback=bool(haps.get("fallback", False)),
        status="ok" if error is None else "failed",
        error=None if error is None else f"{type(error).__name__}: {error}",
        response=text_of(output) if store_text and error is None else None,
        source=source,
    )
