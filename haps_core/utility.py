"""Utility of an action, ``quality - lambda * cost``, and the argmax that picks one.

Ties go to the cheaper action (a router that is indifferent should not spend money).
"""

import numpy as np

__all__ = ["check_cost_weight", "choose", "cost_weight_grid", "utilities"]


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
    # (a non-finite cost counts as the most expensive), scaled per row, so that a query's choice
    # never depends on the other rows of the call.
    finite_cost = np.isfinite(cost)
    row_max = np.max(np.abs(cost), axis=-1, keepdims=True, where=finite_cost, initial=0.0)
    scale = np.maximum(row_max, 1e-12)
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
