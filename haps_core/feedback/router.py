"""`RecordingRouter`: a router that writes a decision record for every query it routes.

For applications that call the backends themselves: wrap the router, route as before, send the
query where the decision says, then (optionally) report what the call did with `served` and
the outcome with `feedback`. Everything else is the wrapped router's (``space``, ``predict``...).
Do not hand a `RecordingRouter` to an integration that has its own ``store=``: each call would
be recorded twice.
"""

import logging
from collections.abc import Sequence
from typing import Any

from haps_core.decision import RoutingDecision
from haps_core.feedback.base import FeedbackEntry
from haps_core.feedback.record import make_record, new_decision_id
from haps_core.feedback.recorder import Recorder
from haps_core.feedback.scoring import Score

logger = logging.getLogger(__name__)


def decision_id_of(decision: RoutingDecision) -> str:
    """The ``decision_id`` a `RecordingRouter` gave ``decision``.

    Raises:
        ValueError: the decision was not routed by a `RecordingRouter`.
    """
    value = getattr(decision, "decision_id", None)
    if not isinstance(value, str):
        msg = "this decision carries no decision_id: route it with a RecordingRouter"
        raise ValueError(msg)
    return value


class RecordingRouter:
    """Wraps ``router`` so that `route` writes one record per query to ``store``.

    Args:
        router: a HAPS router (`HAPSRouter` or any `RouterLike`).
        store: a `Store` or a spec (`open_store`: .db/.sqlite path, URL, .jsonl path, callable).

    `route` records each decision at once, with the choice as the served action and no usage.
    To record what the call did too, route with ``record=False``, call the backend, then
    `record` the decision with the call's output (usage, reply text) and latency. Each recorded
    decision carries ``decision.decision_id`` (also `decision_id_of`).
    """

    def __init__(self, router: Any, store: Any) -> None:
        self.router = router
        self.recorder = Recorder(store, getattr(router, "space", None), "router")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.router, name)

    @property
    def store(self) -> Any:
        return self.recorder.store

    def route(
        self, texts: Sequence[str] | str, *args: Any, record: bool = True, **kwargs: Any
    ) -> list[RoutingDecision]:
        """``router.route(texts, ...)``; with ``record`` (default) each decision is recorded."""
        decisions: list[RoutingDecision] = self.router.route(texts, *args, **kwargs)
        if record:
            queries = [texts] if isinstance(texts, str) else list(texts)
            for text, decision in zip(queries, decisions):
                self.record(decision, text)
        return decisions

    def record(
        self, decision: RoutingDecision, text: str, *, output: Any = None, latency_s: float | None = None
    ) -> str:
        """Records one routed ``decision`` for ``text``, with the call's ``output`` and latency;
        returns (and sets on the decision) its ``decision_id``."""
        return self._write(decision, text, output, latency_s)

    def _write(self, decision: RoutingDecision, text: str, output: Any, latency_s: float | None) -> str:
        haps = {
            "parameters": dict(decision.parameters),
            "served_by": {"backend": decision.backend, "parameters": dict(decision.parameters)},
            "fallback": False,
        }
        decision_id = new_decision_id()
        record = make_record(
            decision,
            text,
            [],
            output=output,
            haps=haps,
            latency_s=latency_s,
            prices=self.recorder.prices(),
            store_text=self.recorder.store.store_text,
            source="router",
            decision_id=decision_id,
        )
        object.__setattr__(decision, "decision_id", decision_id)  # a frozen dataclass with a __dict__
        self.recorder.writer.put(record)
        return decision_id

    def feedback(self, decision_id: str, score: Score) -> FeedbackEntry:
        """Attaches feedback to a routed decision (`haps_core.feedback.give_feedback`)."""
        return self.recorder.feedback(decision_id, score)

    def flush(self) -> None:
        self.recorder.flush()

    def close(self) -> None:
        self.recorder.close()
