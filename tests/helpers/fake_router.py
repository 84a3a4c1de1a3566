"""A FAKE HAPS router for integration tests: rules predict, the REAL decision routine decides.

It implements the `haps_core.decision.RouterLike` protocol the integrations rely on -- ``.space``,
``.default_cost_weight``, ``.predict(texts) -> (quality, cost)`` and ``.route(texts,
cost_weight=None, max_cost_per_query=None) -> list[RoutingDecision]`` -- with hand-written rules
on the query text in place of a network, so tests can predict every decision. ``route`` hands the
rules' predictions to `route_from_predictions`, the routine every real router decides with, so a
cost weight or a budget means here what it means for a trained router: ``max_cost_per_query`` a
hard cap on each query's predicted cost, ``target_mean_cost`` a mean over a fixed reference set of
texts (`REFERENCE_TEXTS` by default, never the routed batch), ``backends=`` the pool routed
among. It imports no framework, so the LangChain and LlamaIndex tests can both use it.

Default rules over `make_space()` (backends "small" and "large", temperature {0.0, 0.7},
prompt style {"default", "cot"}):

* quality: "large" 0.9, "small" 0.6 (0.2 when the text contains "hard");
  +0.05 for temperature 0.7 when the text contains "creative", else for temperature 0.0;
  +0.03 for "cot" when the text contains "step", else for "default".
* cost per query: "small" 0.001 USD, "large" 0.01 USD.

So at cost weight 0 "large" always wins; at cost weight 40 "small" wins unless the text says
"hard"; at cost weight 100 "small" always wins.
"""

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from haps_core.catalog import Action, RoutingSpace
from haps_core.decision import RoutingDecision, pool_mask, route_from_predictions

COSTS = {"small": 0.001, "large": 0.01}

REFERENCE_TEXTS = ("an easy question", "a hard question", "a creative story", "step by step please")
"""The fake's fixed reference set for ``target_mean_cost`` (a trained router stores features)."""

COT_TEXT = "Think step by step, then give the final answer on the last line."


def make_space(
    backends: Sequence[str] = ("small", "large"),
    temperatures: Sequence[float] = (0.0, 0.7),
    styles: Sequence[str] = ("default", "cot"),
    prompt_styles: dict[str, str] | None = None,
) -> RoutingSpace:
    """A routing space with every (backend, temperature, style) combination."""
    actions = [
        Action.make(b, temperature=t, prompt_style=s) for b in backends for t in temperatures for s in styles
    ]
    return RoutingSpace.from_actions(actions, prompt_styles=prompt_styles or {"cot": COT_TEXT})


def default_quality(text: str, action: Action) -> float:
    lowered = text.lower()
    q = {"large": 0.9, "small": 0.6}.get(action.backend, 0.5)
    if action.backend == "small" and "hard" in lowered:
        q = 0.2
    hot = (action.temperature or 0.0) > 0
    if hot == ("creative" in lowered):
        q += 0.05
    wants_cot = "step" in lowered
    if (action.prompt_style == "cot") == wants_cot:
        q += 0.03
    return q


def default_cost(action: Action) -> float:
    return COSTS.get(action.backend, 0.005)


class FakeRouter:
    """A rule-based stand-in for `HAPSRouter` (FAKE: no model; see the module docstring).

    Args:
        space: the routing space (default `make_space()`).
        quality: ``quality(text, action) -> float`` (default `default_quality`).
        cost: ``cost(action) -> float`` USD per query (default `default_cost`).
        default_cost_weight: used when ``route`` gets neither a cost weight nor a budget.
        reference_texts: the fixed reference set ``target_mean_cost`` is calibrated on.

    Attributes:
        calls: one dict per ``route`` call: ``texts``, ``cost_weight``, ``max_cost_per_query``,
            ``target_mean_cost``, ``backends``.
    """

    def __init__(
        self,
        space: RoutingSpace | None = None,
        quality: Callable[[str, Action], float] = default_quality,
        cost: Callable[[Action], float] = default_cost,
        default_cost_weight: float = 0.0,
        reference_texts: Sequence[str] = REFERENCE_TEXTS,
    ) -> None:
        self.space = space if space is not None else make_space()
        self.quality = quality
        self.cost = cost
        self.default_cost_weight = default_cost_weight
        self.reference_texts = list(reference_texts)
        self.calls: list[dict[str, Any]] = []

    def predict(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The rules as predictions: quality and cost of every action per text ([n, A] each)."""
        actions = list(self.space.actions)
        quality = np.array([[self.quality(t, a) for a in actions] for t in texts], dtype=float)
        cost = np.array([[self.cost(a) for a in actions] for _ in texts], dtype=float)
        return quality.reshape(len(texts), len(actions)), cost.reshape(len(texts), len(actions))

    def route(
        self,
        texts: Sequence[str] | str,
        cost_weight: float | None = None,
        max_cost_per_query: float | None = None,
        n_alternatives: int = 3,
        *,
        target_mean_cost: float | None = None,
        backends: Sequence[str] | None = None,
        input_texts: Sequence[str] | None = None,
    ) -> list[RoutingDecision]:
        texts = [texts] if isinstance(texts, str) else list(texts)
        self.calls.append(
            {
                "texts": texts,
                "cost_weight": cost_weight,
                "max_cost_per_query": max_cost_per_query,
                "target_mean_cost": target_mean_cost,
                "backends": None if backends is None else list(backends),
                "input_texts": None if input_texts is None else list(input_texts),
            }
        )
        quality, cost = self.predict(texts)
        return route_from_predictions(
            self.space,
            quality,
            cost,
            cost_weight=cost_weight,
            max_cost_per_query=max_cost_per_query,
            target_mean_cost=target_mean_cost,
            reference=self.predict(self.reference_texts) if target_mean_cost is not None else None,
            allowed=None if backends is None else pool_mask(self.space, backends),
            default_cost_weight=self.default_cost_weight,
            n_alternatives=n_alternatives,
        )
