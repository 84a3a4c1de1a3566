"""Turning predicted quality and cost into a choice of action.

The router predicts, per query and action, a quality and a cost; the caller's cost weight
``lambda`` turns them into a utility ``U = quality - lambda * cost``. The choice is the argmax,
with ties going to the cheaper action (a router that is indifferent should not spend money).
"""

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from haps_core.budgets import calibrate_cost_weight, cap_mask, check_budget
from haps_core.utility import check_cost_weight, choose, cost_weight_grid, utilities

if TYPE_CHECKING:
    from haps_core.catalog import RoutingSpace

logger = logging.getLogger(__name__)

__all__ = [
    "Alternative",
    "RouterLike",
    "RoutingDecision",
    "calibrate_cost_weight",
    "cap_mask",
    "check_budget",
    "check_cost_weight",
    "choose",
    "cost_weight_grid",
    "decisions_from_predictions",
    "fallback_order",
    "pool_mask",
    "route_from_predictions",
    "unknown_backends_error",
    "utilities",
]


EVIDENCE_FIELDS = ("confidence", "coverage", "margin", "ood", "ood_score")


def _settings_text(parameters: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in sorted(parameters.items()))


def _money(value: float) -> str:
    return f"${value:.3g}" if math.isfinite(value) else f"${value}"


@dataclass(frozen=True, repr=False)
class Alternative:
    """A runner-up action, kept on a decision so a caller can fall back without re-routing."""

    backend: str
    parameters: dict[str, Any]
    predicted_quality: float
    predicted_cost: float
    action_index: int

    @property
    def temperature(self) -> float | None:
        t = self.parameters.get("temperature")
        return None if t is None else float(t)

    @property
    def prompt_style(self) -> str:
        return str(self.parameters.get("prompt_style", "default"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __repr__(self) -> str:
        return (
            f"Alternative({self.backend}, {_settings_text(self.parameters)}, "
            f"quality={self.predicted_quality:.3f}, cost={_money(self.predicted_cost)})"
        )


@dataclass(frozen=True, repr=False)
class RoutingDecision:
    """What the router chose for one query at one cost weight, and what it would do next.

    Attributes:
        backend: the chosen backend's name (always one of the router's catalog).
        parameters: the chosen parameter values (temperature, prompt_style, ...).
        predicted_quality: the router's predicted score of this action for this query.
        predicted_cost: the router's predicted USD cost of one call (0 if the log had no cost).
        cost_weight: the lambda used (quality points per USD).
        action_index: index of the action in the router's routing space.
        alternatives: runner-up actions by predicted utility, best first, other backends first,
            for fallback when the chosen backend fails.
        over_budget: True when no allowed action fitted `max_cost_per_query`: the choice is then
            the cheapest allowed action (and its predicted cost exceeds the cap).

    Routers that store training statistics (`haps_core.model.ood.fit_ood`) also set, else None:
        confidence: 1 - 2 x the ensemble members' standard deviation of the chosen action's
            predicted quality (1: members agree; 0: they spread over the whole [0, 1]).
        coverage: share of the nearest stored training queries that observed the chosen action.
        margin: predicted utility of the choice minus that of the best other allowed action.
        ood: whether the query is out of distribution (then the choice is the OOD action).
        ood_score: mean cosine distance to the nearest stored training queries.

    With an exploration policy (`haps_core.exploration`; ``route(..., exploration=...)``):
        propensity: the probability with which the policy served this action (1.0: greedy
            routing, a deterministic choice).
        explored: True when the action served is not the greedy choice (that choice is then
            the first runner-up). `to_dict` has both keys only when they differ from 1.0 / False.
    """

    backend: str
    parameters: dict[str, Any]
    predicted_quality: float
    predicted_cost: float
    cost_weight: float
    action_index: int
    alternatives: tuple[Alternative, ...] = ()
    over_budget: bool = False
    confidence: float | None = None
    coverage: float | None = None
    margin: float | None = None
    ood: bool | None = None
    ood_score: float | None = None
    explanation: Any = field(default=None, compare=False)
    propensity: float = 1.0
    explored: bool = False

    @property
    def temperature(self) -> float | None:
        t = self.parameters.get("temperature")
        return None if t is None else float(t)

    @property
    def prompt_style(self) -> str:
        return str(self.parameters.get("prompt_style", "default"))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the integrations put this in response metadata); the evidence
        fields only where set, the explanation never (`explain().to_dict()`)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "explanation"}
        d["parameters"] = dict(self.parameters)
        d["alternatives"] = tuple(a.to_dict() for a in self.alternatives)
        d = {k: v for k, v in d.items() if v is not None or k not in EVIDENCE_FIELDS}
        if self.propensity == 1.0 and not self.explored:  # greedy: the pinned dicts stay as they were
            del d["propensity"], d["explored"]
        d["temperature"] = self.temperature
        d["prompt_style"] = self.prompt_style
        return d

    def explain(self, k: int = 5) -> Any:
        """The `haps_core.model.explain.Explanation` of this decision (top `k` actions); routes
        made with ``route(..., explain=True)`` (or `HAPSRouter.explain`) carry one."""
        if self.explanation is None:
            msg = "this decision carries no explanation: route with `explain=True` (or router.explain)"
            raise ValueError(msg)
        return self.explanation.top(k)

    def __repr__(self) -> str:
        """One short line: backend, settings, rounded predictions, how many runner-ups."""
        return (
            f"RoutingDecision({self.backend}, {_settings_text(self.parameters)}, "
            f"quality={self.predicted_quality:.3f}, cost={_money(self.predicted_cost)}, "
            f"cost_weight={self.cost_weight:g}, alternatives={len(self.alternatives)}"
            f"{', over_budget=True' if self.over_budget else ''}"
            f"{'' if self.confidence is None else f', confidence={self.confidence:.2f}'}"
            f"{', ood=True' if self.ood else ''}"
            f"{f', explored=True, propensity={self.propensity:.3f}' if self.explored else ''})"
        )


def decisions_from_predictions(
    space: Any,
    quality: np.ndarray,
    cost: np.ndarray,
    cost_weight: float,
    n_alternatives: int = 3,
    allowed: np.ndarray | None = None,
    over_budget: np.ndarray | None = None,
) -> list[RoutingDecision]:
    """One `RoutingDecision` per row of predictions ([n, A] over `space`'s actions).

    With `allowed` (a boolean mask, [A] or [n, A]) neither the choice nor a runner-up is ever an
    excluded action. `over_budget` ([n] booleans) is copied onto the decisions.

    Runner-ups put the best action of each *other* backend first (a fallback after a backend
    failure should change backend), then the chosen backend's other settings, by utility.
    One argsort covers the whole batch and each row's scan stops as soon as the kept
    runner-ups are settled: on the request path this is O(kept) Python work per query, not
    O(actions).
    """
    cost_weight = check_cost_weight(cost_weight)
    if isinstance(n_alternatives, bool) or not isinstance(n_alternatives, int) or n_alternatives < 0:
        msg = f"`n_alternatives` must be an integer >= 0, got {n_alternatives!r}"
        raise ValueError(msg)
    mask = None if allowed is None else np.broadcast_to(np.asarray(allowed, dtype=bool), np.shape(quality))
    chosen = choose(quality, cost, cost_weight, mask)
    orders = np.argsort(-utilities(quality, cost, cost_weight), axis=1, kind="stable")
    actions = space.actions
    backend_of = [a.backend for a in actions]
    n_backends = len(set(backend_of))
    decisions = []
    for i, a in enumerate(chosen.tolist()):
        seen = {backend_of[a]}
        firsts: list[int] = []
        rest: list[int] = []
        for j in orders[i].tolist():
            if len(firsts) >= n_alternatives or (
                len(seen) == n_backends and len(firsts) + len(rest) >= n_alternatives
            ):
                break
            if j == a or (mask is not None and not mask[i, j]):
                continue
            if backend_of[j] not in seen:
                firsts.append(j)
                seen.add(backend_of[j])
            elif len(rest) < n_alternatives:
                rest.append(j)
        alts = tuple(
            Alternative(backend_of[j], actions[j].parameters, float(quality[i, j]), float(cost[i, j]), int(j))
            for j in (firsts + rest)[:n_alternatives]
        )
        action = actions[a]
        decisions.append(
            RoutingDecision(
                backend=action.backend,
                parameters=action.parameters,
                predicted_quality=float(quality[i, a]),
                predicted_cost=float(cost[i, a]),
                cost_weight=cost_weight,
                action_index=int(a),
                alternatives=alts,
                over_budget=bool(over_budget[i]) if over_budget is not None else False,
            )
        )
    return decisions


def fallback_order(decision: RoutingDecision) -> list[Alternative]:
    """Candidates to try in order: the choice, then runner-ups on other backends first."""
    first = Alternative(
        decision.backend,
        decision.parameters,
        decision.predicted_quality,
        decision.predicted_cost,
        decision.action_index,
    )
    return [first, *decision.alternatives]


@runtime_checkable
class RouterLike(Protocol):
    """What the integrations, the CLI and the selector need of a router: its catalog, its
    predictions, and `route` (which real and test routers implement with `route_from_predictions`).
    """

    space: "RoutingSpace"
    default_cost_weight: float

    def predict(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Predicted quality and cost of every action per text: ([n, A], [n, A])."""
        ...

    def route(
        self,
        texts: Sequence[str] | str,
        cost_weight: float | None = None,
        max_cost_per_query: float | None = None,
        n_alternatives: int = 3,
    ) -> list[RoutingDecision]:
        """One decision per text (`HAPSRouter.route`; it also takes ``target_mean_cost=``, ``backends=``,
        ``input_texts=`` and ``exploration=``, which the integrations pass only when they are set)."""
        ...


def unknown_backends_error(unknown: Sequence[str], catalog: Sequence[str]) -> str:
    """The message for pool backends that the router's catalog does not know."""
    return (
        f"the router cannot route to {sorted(unknown)}: not in its catalog {sorted(catalog)}. "
        "To add a backend, retrain the router with logs that include it, or add it from its prices "
        "with `router.add_backend(name, prices, grid)` (served through exploration until it has evidence)"
    )


def pool_mask(space: "RoutingSpace", backends: Sequence[str]) -> np.ndarray:
    """Boolean mask over `space`'s actions ([A]) of the actions of `backends`.

    Raises:
        TypeError: `backends` is a string. ValueError: it is empty or names an unknown backend.
    """
    if isinstance(backends, str):
        msg = f"`backends` must be a list of backend names, got the string {backends!r}"
        raise TypeError(msg)
    pool, catalog = set(backends), space.backend_names
    if not pool:
        msg = f"`backends` is empty: give at least one of the router's backends {sorted(catalog)}"
        raise ValueError(msg)
    if unknown := sorted(pool - set(catalog)):
        raise ValueError(unknown_backends_error(unknown, catalog))
    return np.array([a.backend in pool for a in space.actions], dtype=bool)


def route_from_predictions(
    space: "RoutingSpace",
    quality: np.ndarray,
    cost: np.ndarray,
    *,
    cost_weight: float | None = None,
    max_cost_per_query: float | None = None,
    target_mean_cost: float | None = None,
    reference: tuple[np.ndarray, np.ndarray] | None = None,
    default_cost_weight: float = 0.0,
    allowed: np.ndarray | None = None,
    n_alternatives: int = 3,
    exploration: Any = None,
    explore_only: np.ndarray | None = None,
) -> list[RoutingDecision]:
    """THE decision routine: predictions of a batch -> one `RoutingDecision` per query.

    Every router (`HAPSRouter.route`, `haps route`, `HAPSSelector`, the tests' fakes) decides
    through here, so a cost weight or a budget means the same everywhere. A query's decision
    never depends on the other queries of the batch.

    Args:
        space: the routing space the predictions are over.
        quality, cost: predicted quality and USD cost of every action ([n, A]).
        cost_weight: lambda >= 0; default `default_cost_weight` (or calibrated, below).
        max_cost_per_query: a hard cap: the chosen action's (and every runner-up's) predicted
            cost is <= it; where no allowed action fits, the cheapest one, with ``over_budget``.
        target_mean_cost: the cost weight is calibrated so that the mean predicted cost over
            the fixed `reference` predictions fits it (not with `cost_weight`; combines with a cap).
        reference: (quality, cost) predictions of the fixed reference queries.
        default_cost_weight: the cost weight when neither knob is given.
        allowed: optional boolean mask over actions ([A]) or per query ([n, A]); excluded
            actions are never chosen nor offered.
        n_alternatives: runner-up actions kept per decision for fallback.
        exploration: an `haps_core.exploration.Exploration` (None: greedy): the greedy choice
            is replaced by a draw among the allowed actions, with its propensity recorded.
        explore_only: [A] mask of actions never chosen greedily, only served by `exploration`
            (a backend just added with `HAPSRouter.add_backend`, until it has evidence).
    """
    if explore_only is not None and np.asarray(explore_only).any():
        return _with_explore_only(
            space, quality, cost, np.asarray(explore_only, dtype=bool), exploration, allowed,
            cost_weight=cost_weight, max_cost_per_query=max_cost_per_query,
            target_mean_cost=target_mean_cost, reference=reference,
            default_cost_weight=default_cost_weight, n_alternatives=n_alternatives,
        )  # fmt: skip
    if cost_weight is not None and target_mean_cost is not None:
        msg = "give either `cost_weight` or `target_mean_cost`, not both"
        raise ValueError(msg)
    mask = np.ones(np.shape(quality), dtype=bool)
    if allowed is not None:
        mask = np.broadcast_to(np.asarray(allowed, dtype=bool), np.shape(quality))
        if not mask.any(axis=-1).all():
            msg = "`allowed` excludes every action of some query"
            raise ValueError(msg)
    if target_mean_cost is not None:
        if reference is None:
            msg = "`target_mean_cost` needs `reference`: predictions of a fixed reference set of queries"
            raise ValueError(msg)
        pool = None if allowed is None or np.ndim(allowed) != 1 else allowed
        cost_weight = calibrate_cost_weight(*reference, target_mean_cost, pool, max_cost_per_query)
    elif cost_weight is None:
        cost_weight = default_cost_weight
    if max_cost_per_query is not None:
        capped, over = cap_mask(cost, check_budget(max_cost_per_query), mask)
        out = decisions_from_predictions(space, quality, cost, cost_weight, n_alternatives, capped, over)
        return out if exploration is None else exploration.apply(space, out, quality, cost, capped)
    out = decisions_from_predictions(space, quality, cost, cost_weight, n_alternatives, allowed)
    return out if exploration is None else exploration.apply(space, out, quality, cost, mask)


def _with_explore_only(
    space: "RoutingSpace",
    quality: np.ndarray,
    cost: np.ndarray,
    explore_only: np.ndarray,
    exploration: Any,
    allowed: np.ndarray | None,
    **kw: Any,
) -> list[RoutingDecision]:
    """`route_from_predictions` where `explore_only` actions are left out of the greedy choice
    (and of the runner-ups) but stay candidates of the exploration draw."""
    full = np.ones(np.shape(quality), dtype=bool)
    if allowed is not None:
        full = full & np.asarray(allowed, dtype=bool)
    greedy = full & ~explore_only
    if not greedy.any(axis=-1).all():  # nothing proven is allowed: the new actions are all there is
        greedy = full
    out = route_from_predictions(space, quality, cost, allowed=greedy, **kw)
    if exploration is None:
        return out
    cap = kw.get("max_cost_per_query")
    candidates = full if cap is None else cap_mask(cost, float(cap), full)[0]
    return exploration.apply(space, out, quality, cost, candidates)
