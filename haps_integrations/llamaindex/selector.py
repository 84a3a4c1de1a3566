"""`HAPSSelector`: a ``BaseSelector`` for ``RouterQueryEngine`` whose choices are backends.

The choices are named after backends of the router's catalog; the selection is what
`haps_core.decision.route_from_predictions` decides with only those backends allowed, and it
carries that action's parameters (`HAPSSelectorResult`).
"""

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from llama_index.core.base.base_selector import BaseSelector, MultiSelection, SingleSelection
from llama_index.core.prompts.mixin import PromptDictType
from llama_index.core.schema import QueryBundle
from llama_index.core.tools.types import ToolMetadata
from pydantic import ConfigDict, Field

from haps_core.decision import (
    Alternative,
    RouterLike,
    RoutingDecision,
    check_cost_weight,
    route_from_predictions,
)
from haps_core.dispatch import check_router, routing_lock, routing_text
from haps_core.errors import RoutingError
from haps_integrations.llamaindex.query import listen_to_queries, note_selection

logger = logging.getLogger(__name__)


class HAPSSelectorResult(MultiSelection):
    """A `SelectorResult` (one selection) that also carries the HAPS decision behind it.

    ``selections[0].index`` is the chosen choice; the other fields describe the action HAPS
    would run on that choice's backend, so the caller can apply its parameters.

    Attributes:
        backend: the chosen choice's name (a backend of the router's catalog).
        parameters: the best parameters of that backend for this query (temperature,
            prompt_style, ...).
        predicted_quality: the router's predicted score of that action.
        predicted_cost: the router's predicted USD cost of one call of it.
        cost_weight: the lambda used.
        action_index: the action's index in the router's routing space.
        candidates: per choice, in choice order: ``index``, ``backend``, its best
            ``parameters``, ``predicted_quality``, ``predicted_cost``, ``utility``,
            ``action_index``.
    """

    model_config = ConfigDict(extra="forbid")

    backend: str
    parameters: dict[str, Any]
    predicted_quality: float
    predicted_cost: float
    cost_weight: float
    action_index: int
    candidates: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def temperature(self) -> float | None:
        """The chosen action's temperature (None if its backend's grid has none)."""
        return self.to_decision().temperature

    @property
    def prompt_style(self) -> str:
        """The chosen action's prompt style (``"default"`` if its backend's grid has none)."""
        return self.to_decision().prompt_style

    def to_decision(self) -> RoutingDecision:
        """The selection as a `RoutingDecision`; the other choices are its alternatives, best first."""
        others = sorted(
            (c for c in self.candidates if c["backend"] != self.backend), key=lambda c: -c["utility"]
        )
        alternatives = tuple(
            Alternative(
                c["backend"],
                dict(c["parameters"]),
                c["predicted_quality"],
                c["predicted_cost"],
                c["action_index"],
            )
            for c in others
        )
        return RoutingDecision(
            self.backend,
            dict(self.parameters),
            self.predicted_quality,
            self.predicted_cost,
            self.cost_weight,
            self.action_index,
            alternatives,
        )


class HAPSSelector(BaseSelector):
    """Selects, among choices named after backends, the one HAPS predicts does best.

    For the query, the router predicts quality and cost of every action; the decision routine
    (`route_from_predictions`) chooses among the actions of the choices' backends, by
    ``utility = quality - cost_weight * cost`` (ties go to the cheaper action, as in routing).
    Each choice is reported with its backend's best action. Prompts play no part:
    `_get_prompts` is empty.

    Args:
        router: a HAPS router with ``.space`` and ``.predict(texts) -> (quality, cost)``
            (numpy arrays [n, actions]), and optionally ``.default_cost_weight``.
        cost_weight: lambda (quality points per USD, >= 0); None: the router's default. Change
            it later with the ``cost_weight`` attribute or `with_cost_weight` (a new selector).

    Example:
        .. code-block:: python

            engine = RouterQueryEngine(
                selector=HAPSSelector(router, cost_weight=20.0),
                query_engine_tools=[
                    QueryEngineTool.from_defaults(small_engine, name="small", description="..."),
                    QueryEngineTool.from_defaults(large_engine, name="large", description="..."),
                ],
                llm=llm,  # for summarising multiple selections; HAPS makes one
            )
            response = engine.query("...")
            response.metadata["selector_result"].backend  # and .parameters, .predicted_cost ...

    Choices are matched to backends by ``ToolMetadata.name``; a choice whose name is not a
    backend of the catalog is a ValueError that lists the known names.

    The selection's parameters are applied when the chosen tool's engine answers with a
    `HAPSLLM` whose pool has the chosen backend: inside that query, the HAPSLLM serves the
    selection (that backend, these parameters; the other choices as fallbacks) instead of
    routing again. Another LLM gets no parameters: read them from ``selector_result``.
    """

    def __init__(self, router: RouterLike, cost_weight: float | None = None) -> None:
        check_router(router, needs=("space", "predict"))
        self._router = router
        self._cost_weight: float | None = None
        self.cost_weight = cost_weight
        listen_to_queries()

    @property
    def router(self) -> RouterLike:
        return self._router

    @property
    def cost_weight(self) -> float | None:
        """Lambda used by the next selections (None: the router's ``default_cost_weight``)."""
        return self._cost_weight

    @cost_weight.setter
    def cost_weight(self, value: float | None) -> None:
        self._cost_weight = None if value is None else check_cost_weight(value)

    def with_cost_weight(self, cost_weight: float | None) -> "HAPSSelector":
        """A new selector over the same router at another cost weight (this one is unchanged)."""
        return HAPSSelector(self._router, cost_weight)

    def _get_prompts(self) -> PromptDictType:
        return {}

    def _update_prompts(self, prompts: PromptDictType) -> None:
        """No prompts to update: selection is by predicted utility."""

    def _effective_cost_weight(self) -> float:
        if self._cost_weight is not None:
            return self._cost_weight
        return float(getattr(self._router, "default_cost_weight", 0.0) or 0.0)

    def _choice_backends(self, choices: Sequence[ToolMetadata]) -> list[str]:
        known = list(self._router.space.backend_names)
        if not choices:
            msg = f"HAPSSelector got no choices; name them after backends of the catalog: {known}"
            raise ValueError(msg)
        names = [c.name for c in choices]
        unknown = [(i, n) for i, n in enumerate(names) if n not in known]
        if unknown:
            listed = ", ".join(f"choice {i}: {n!r}" for i, n in unknown)
            msg = (
                "HAPSSelector matches choices to backends by `ToolMetadata.name` "
                f"(e.g. QueryEngineTool.from_defaults(engine, name=...)); not backends: {listed}. "
                f"Known backends: {known}"
            )
            raise ValueError(msg)
        backends = [str(n) for n in names]  # all backend names: checked above
        dupes = sorted({n for n in backends if backends.count(n) > 1})
        if dupes:
            msg = f"HAPSSelector choices name these backends more than once: {dupes} (choices: {backends})"
            raise ValueError(msg)
        return backends

    def _query_text(self, query: QueryBundle) -> str:
        text = query.query_str
        if not text or not text.strip():
            msg = "HAPSSelector got an empty query: there is nothing to route on"
            raise ValueError(msg)
        return routing_text(text, name="query.query_str")

    def _predict(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """The router's predictions for one query, holding its `routing_lock`."""
        with routing_lock(self._router):
            return self._router.predict([text])

    def _decide(
        self, backends: list[str], quality: np.ndarray, cost: np.ndarray, cost_weight: float
    ) -> HAPSSelectorResult:
        space = self._router.space
        quality, cost = np.asarray(quality, dtype=float), np.asarray(cost, dtype=float)
        n_actions = len(space.actions)
        if quality.shape != (1, n_actions) or cost.shape != (1, n_actions):
            msg = (
                f"router.predict returned shapes {quality.shape} and {cost.shape} for one query; "
                f"expected (1, {n_actions}) (one column per action of its routing space)"
            )
            raise RoutingError(msg)
        # One decision per choice (only its backend allowed: its best action), and a last one
        # with every choice's backend allowed: the selection.
        of_backend = np.array([a.backend for a in space.actions])
        allowed = np.array([of_backend == b for b in backends] + [np.isin(of_backend, backends)])
        rows = len(allowed)
        *per_choice, chosen = route_from_predictions(
            space,
            np.repeat(quality, rows, axis=0),
            np.repeat(cost, rows, axis=0),
            cost_weight=cost_weight,
            allowed=allowed,
            n_alternatives=0,
        )
        candidates: list[dict[str, Any]] = [
            {
                "index": index,
                "backend": backend,
                "parameters": dict(d.parameters),
                "predicted_quality": d.predicted_quality,
                "predicted_cost": d.predicted_cost,
                "utility": d.predicted_quality - cost_weight * d.predicted_cost,
                "action_index": d.action_index,
            }
            for index, (backend, d) in enumerate(zip(backends, per_choice))
        ]
        if chosen.backend not in backends:  # only when no offered backend has a finite prediction
            msg = f"router.predict gave no finite prediction for any offered backend {backends}"
            raise RoutingError(msg)
        best = next(c for c in candidates if c["backend"] == chosen.backend)
        params = ", ".join(f"{k}={v!r}" for k, v in sorted(best["parameters"].items()))
        reason = (
            f"HAPS: {best['backend']!r} ({params}) has the best predicted utility "
            f"{best['utility']:.4g} = quality {best['predicted_quality']:.4g} - {cost_weight:g} x "
            f"cost {best['predicted_cost']:.4g} USD among {backends}"
        )
        logger.debug("%s", reason)
        return HAPSSelectorResult(
            selections=[SingleSelection(index=best["index"], reason=reason)],
            backend=chosen.backend,
            parameters=dict(chosen.parameters),
            predicted_quality=chosen.predicted_quality,
            predicted_cost=chosen.predicted_cost,
            cost_weight=cost_weight,
            action_index=chosen.action_index,
            candidates=candidates,
        )

    def _select(self, choices: Sequence[ToolMetadata], query: QueryBundle) -> HAPSSelectorResult:
        backends = self._choice_backends(choices)
        cost_weight = self._effective_cost_weight()
        quality, cost = self._predict(self._query_text(query))
        return note_selected(self._decide(backends, quality, cost, cost_weight))

    async def _aselect(self, choices: Sequence[ToolMetadata], query: QueryBundle) -> HAPSSelectorResult:
        backends = self._choice_backends(choices)
        cost_weight = self._effective_cost_weight()
        # the router's forward pass is CPU/GPU work: keep it off the event loop
        quality, cost = await asyncio.to_thread(self._predict, self._query_text(query))
        return note_selected(self._decide(backends, quality, cost, cost_weight))


def note_selected(result: HAPSSelectorResult) -> HAPSSelectorResult:
    """Keeps ``result`` for the rest of the query, so a `HAPSLLM` of the chosen engine serves it."""
    note_selection(result)
    return result
