"""A FAKE HAPS router for integration tests (the real `HAPSRouter` is tested elsewhere).

It implements only the duck-typed protocol the integrations rely on -- ``.space``,
``.route(texts, cost_weight=None, max_cost_per_query=None) -> list[RoutingDecision]`` and
``.default_cost_weight`` -- with hand-written rules on the query text instead of a network, so
tests can predict every decision. It imports no framework, so the LangChain and LlamaIndex tests
can both use it.

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

from haps_core.catalog import Action, RoutingSpace
from haps_core.decision import Alternative, RoutingDecision

COSTS = {"small": 0.001, "large": 0.01}

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

    Attributes:
        calls: one dict per ``route`` call: ``texts``, ``cost_weight``, ``max_cost_per_query``.
    """

    def __init__(
        self,
        space: RoutingSpace | None = None,
        quality: Callable[[str, Action], float] = default_quality,
        cost: Callable[[Action], float] = default_cost,
        default_cost_weight: float = 0.0,
    ) -> None:
        self.space = space if space is not None else make_space()
        self.quality = quality
        self.cost = cost
        self.default_cost_weight = default_cost_weight
        self.calls: list[dict[str, Any]] = []

    def route(
        self,
        texts: Sequence[str],
        cost_weight: float | None = None,
        max_cost_per_query: float | None = None,
    ) -> list[RoutingDecision]:
        texts = list(texts)
        self.calls.append(
            {"texts": texts, "cost_weight": cost_weight, "max_cost_per_query": max_cost_per_query}
        )
        lam = self.default_cost_weight if cost_weight is None else float(cost_weight)
        return [self._decide(text, lam, max_cost_per_query) for text in texts]

    def _decide(self, text: str, lam: float, budget: float | None) -> RoutingDecision:
        actions = list(self.space.actions)
        costs = [self.cost(a) for a in actions]
        allowed = [budget is None or c <= budget for c in costs]
        if not any(allowed):  # nothing fits the budget: the cheapest action
            cheapest = min(costs)
            allowed = [c == cheapest for c in costs]
        scored = []
        for i, (a, c, ok) in enumerate(zip(actions, costs, allowed)):
            if ok:
                q = self.quality(text, a)
                scored.append((q - lam * c, -c, i, q, c))
        scored.sort(reverse=True)  # best utility first; ties to the cheaper action
        _, _, best, q_best, c_best = scored[0]
        chosen = actions[best]
        # runner-ups: other backends first, then by utility, ties to the cheaper
        rest = sorted(scored[1:], key=lambda s: (actions[s[2]].backend == chosen.backend, -s[0], -s[1]))
        alternatives = tuple(
            Alternative(actions[i].backend, actions[i].parameters, q, c, i) for _, _, i, q, c in rest
        )
        return RoutingDecision(
            backend=chosen.backend,
            parameters=chosen.parameters,
            predicted_quality=q_best,
            predicted_cost=c_best,
            cost_weight=lam,
            action_index=best,
            alternatives=alternatives,
        )
