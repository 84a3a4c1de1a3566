"""Turning predicted quality and cost into a choice of action.

The router predicts, per query and action, a quality and a cost; the caller's cost weight
``lambda`` turns them into a utility ``U = quality - lambda * cost``. The choice is the argmax,
with ties going to the cheaper action (a router that is indifferent should not spend money).
"""

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from haps_core.catalog import RoutingSpace

logger = logging.getLogger(__name__)


def check_cost_weight(cost_weight: float, name: str = "cost_weight") -> float:
    """Validates a cost weight: a finite number >= 0 (USD^-1: quality points per dollar)."""
    if isinstance(cost_weight, bool) or not isinstance(cost_weight, int | float):
        msg = f"`{name}` must be a number >= 0, got {cost_weight!r}"
        raise TypeError(msg)
    if not np.isfinite(cost_weight) or cost_weight < 0:
        msg = f"`{name}` must be a finite number >= 0, got {cost_weight!r}"
        raise ValueError(msg)
    return float(cost_weight)


def utilities(quality: np.ndarray, cost: np.ndarray, cost_weight: float) -> np.ndarray:
    """``quality - cost_weight * cost``, elementwise.

    At cost weight 0 the cost is ignored entirely (0 x an infinite predicted cost is quality, not
    NaN). A NaN prediction gives a NaN utility, without a floating-point warning; `choose` never
    picks it.
    """
    quality = np.asarray(quality, dtype=float)
    if cost_weight == 0:
        return quality + np.zeros_like(np.asarray(cost, dtype=float))  # broadcast like the formula
    with np.errstate(invalid="ignore", over="ignore"):
        return quality - cost_weight * np.asarray(cost, dtype=float)


def choose(
    quality: np.ndarray,
    cost: np.ndarray,
    cost_weight: float,
    allowed: np.ndarray | None = None,
) -> np.ndarray:
    """Index of the best action per row of ``quality``/``cost`` ([n, A]).

    Args:
        quality: predicted quality per query and action.
        cost: predicted cost (USD) per query and action.
        cost_weight: lambda >= 0.
        allowed: optional boolean mask over actions ([A]) or per query ([n, A]).

    Returns:
        int array [n] of action indices; ties go to the cheapest action.
    """
    cost_weight = check_cost_weight(cost_weight)
    cost = np.asarray(cost, dtype=float)
    u = utilities(quality, cost, cost_weight)
    # A prediction that is not a finite number (a query far outside the training data can
    # overflow the cost head) must never win by accident: np.argmax picks NaN over everything.
    # Such actions rank below every finite utility, yet above the actions `allowed` excludes.
    u = np.where(np.isfinite(u), u, -np.finfo(float).max)
    # Ties (within float noise) go to the cheaper action: subtract a tiny cost-proportional term
    # (a non-finite cost counts as the most expensive).
    finite_cost = np.isfinite(cost)
    scale = max(float(np.max(np.abs(cost), where=finite_cost, initial=0.0)), 1e-12)
    u = u - 1e-9 * np.where(finite_cost, cost / scale, 2.0)
    if allowed is not None:
        if not np.any(allowed):
            msg = "`allowed` excludes every action"
            raise ValueError(msg)
        u = np.where(allowed, u, -np.inf)
    return np.argmax(u, axis=-1)


def cost_weight_grid(action_costs: np.ndarray, n: int = 40) -> np.ndarray:
    """Cost weights that sweep from 'quality only' to 'cheapest action only'.

    Starts at 0, then log-spaced from where the most expensive action's cost starts to matter
    (0.01 quality points) to where the cheapest action's cost outweighs any quality difference.
    Logs without cost give just [0].
    """
    costs = np.asarray(action_costs, dtype=float)
    positive = costs[costs > 0]
    if positive.size == 0:
        return np.zeros(1)
    low, high = 1e-2 / positive.max(), 1e1 / positive.min()
    return np.concatenate([[0.0], np.geomspace(low, high, n - 1)])


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
    """

    backend: str
    parameters: dict[str, Any]
    predicted_quality: float
    predicted_cost: float
    cost_weight: float
    action_index: int
    alternatives: tuple[Alternative, ...] = ()

    @property
    def temperature(self) -> float | None:
        t = self.parameters.get("temperature")
        return None if t is None else float(t)

    @property
    def prompt_style(self) -> str:
        return str(self.parameters.get("prompt_style", "default"))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the integrations put this in response metadata)."""
        d = asdict(self)
        d["temperature"] = self.temperature
        d["prompt_style"] = self.prompt_style
        return d

    def __repr__(self) -> str:
        """One short line: backend, settings, rounded predictions, how many runner-ups."""
        return (
            f"RoutingDecision({self.backend}, {_settings_text(self.parameters)}, "
            f"quality={self.predicted_quality:.3f}, cost={_money(self.predicted_cost)}, "
            f"cost_weight={self.cost_weight:g}, alternatives={len(self.alternatives)})"
        )


def decisions_from_predictions(
    space: Any,
    quality: np.ndarray,
    cost: np.ndarray,
    cost_weight: float,
    n_alternatives: int = 3,
    allowed: np.ndarray | None = None,
) -> list[RoutingDecision]:
    """One `RoutingDecision` per row of predictions ([n, A] over `space`'s actions).

    With `allowed` (a boolean mask, [A] or [n, A]) neither the choice nor a runner-up is ever an
    excluded action.

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
        """One decision per text."""
        ...


def check_budget(max_cost_per_query: float, name: str = "max_cost_per_query") -> float:
    """Validates a budget: a finite number of USD > 0."""
    budget = float(max_cost_per_query)
    if not math.isfinite(budget) or budget <= 0:
        msg = f"`{name}` must be a positive number of USD, got {max_cost_per_query!r}"
        raise ValueError(msg)
    return budget


def calibrate_cost_weight(quality: np.ndarray, cost: np.ndarray, max_cost_per_query: float) -> float:
    """The smallest cost weight whose mean predicted cost over reference predictions fits a budget.

    Args:
        quality: predicted quality of every action on the reference queries ([n, A]).
        cost: predicted cost (USD) of every action on them ([n, A]).
        max_cost_per_query: budget in USD per query (a mean over the reference queries).
    """
    budget = check_budget(max_cost_per_query)
    if len(cost) == 0:
        msg = "no reference queries to calibrate the budget on: pass `features`"
        raise ValueError(msg)
    cheapest = float(cost.min(axis=1).mean())
    if budget < cheapest:
        msg = (
            f"`max_cost_per_query`={budget:.6g} USD is below the cheapest action's mean "
            f"predicted cost ({cheapest:.6g} USD per query); allowed: >= {cheapest:.6g}"
        )
        raise ValueError(msg)
    weights = cost_weight_grid(cost.mean(axis=0), n=200)
    for w in weights:
        chosen = choose(quality, cost, float(w))
        if cost[np.arange(len(cost)), chosen].mean() <= budget:
            return float(w)
    return float(weights[-1])


def route_from_predictions(
    space: "RoutingSpace",
    quality: np.ndarray,
    cost: np.ndarray,
    *,
    cost_weight: float | None = None,
    max_cost_per_query: float | None = None,
    reference: tuple[np.ndarray, np.ndarray] | None = None,
    default_cost_weight: float = 0.0,
    allowed: np.ndarray | None = None,
    n_alternatives: int = 3,
) -> list[RoutingDecision]:
    """THE decision routine: predictions of a batch -> one `RoutingDecision` per query.

    Every router (`HAPSRouter.route`, `haps route`, `HAPSSelector`, the tests' fakes) decides
    through here, so a cost weight or a budget means the same everywhere.

    Args:
        space: the routing space the predictions are over.
        quality, cost: predicted quality and USD cost of every action ([n, A]).
        cost_weight: lambda >= 0; default `default_cost_weight`.
        max_cost_per_query: alternatively a budget in USD per query, calibrated to a cost weight
            on `reference` predictions (default: this batch's own).
        reference: (quality, cost) predictions of reference queries for the budget.
        default_cost_weight: the cost weight when neither knob is given.
        allowed: optional boolean mask over actions ([A]) or per query ([n, A]); excluded
            actions are never chosen.
        n_alternatives: runner-up actions kept per decision for fallback.
    """
    if cost_weight is not None and max_cost_per_query is not None:
        msg = "give either `cost_weight` or `max_cost_per_query`, not both"
        raise ValueError(msg)
    if max_cost_per_query is not None:
        ref_q, ref_c = reference if reference is not None else (quality, cost)
        cost_weight = calibrate_cost_weight(ref_q, ref_c, max_cost_per_query)
    elif cost_weight is None:
        cost_weight = default_cost_weight
    if allowed is not None:
        mask = np.broadcast_to(np.asarray(allowed, dtype=bool), np.shape(quality))
        if not mask.any(axis=-1).all():
            msg = "`allowed` excludes every action of some query"
            raise ValueError(msg)
    return decisions_from_predictions(space, quality, cost, cost_weight, n_alternatives, allowed)
