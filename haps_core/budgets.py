"""Budgets: checking a USD budget, the per-query cap's action mask, and the cost weight that
fits a target mean cost over reference predictions (used by `haps_core.decision`)."""

import math

import numpy as np

from haps_core.utility import choose, cost_weight_grid


def check_budget(max_cost_per_query: float, name: str = "max_cost_per_query") -> float:
    """Validates a budget: a finite number of USD > 0."""
    budget = float(max_cost_per_query)
    if not math.isfinite(budget) or budget <= 0:
        msg = f"`{name}` must be a positive number of USD, got {max_cost_per_query!r}"
        raise ValueError(msg)
    return budget


def cap_mask(cost: np.ndarray, cap: float, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The actions a hard per-query cap leaves, and which queries no allowed action fits.

    Args:
        cost: predicted USD cost of every action ([n, A]).
        cap: the most a query's chosen action may be predicted to cost.
        allowed: boolean mask of the actions allowed at all ([n, A]).

    Returns:
        (mask [n, A], over [n]): where no allowed action fits, the mask keeps only the cheapest
        allowed action(s) of that query, and ``over`` is True.
    """
    cost = np.asarray(cost, dtype=float)
    with np.errstate(invalid="ignore"):
        fits: np.ndarray = np.asarray(allowed, dtype=bool) & (cost <= cap)
    over: np.ndarray = ~np.asarray(fits.any(axis=-1))
    if over.any():
        finite = allowed & np.isfinite(cost)
        priced = np.where(finite, cost, np.inf)
        cheapest = finite & (priced == priced.min(axis=-1, keepdims=True))
        cheapest = np.where(cheapest.any(axis=-1, keepdims=True), cheapest, allowed)
        fits = np.where(over[:, None], cheapest, fits)
    return fits, over


def calibrate_cost_weight(
    quality: np.ndarray,
    cost: np.ndarray,
    target_mean_cost: float,
    allowed: np.ndarray | None = None,
    max_cost_per_query: float | None = None,
) -> float:
    """The smallest cost weight whose mean predicted cost over reference predictions fits a target.

    Args:
        quality: predicted quality of every action on the reference queries ([n, A]).
        cost: predicted cost (USD) of every action on them ([n, A]).
        target_mean_cost: the mean USD cost per query to fit, over the reference queries.
        allowed: optional boolean mask over actions ([A]): the pool routed among.
        max_cost_per_query: optional hard per-query cap applied while calibrating.
    """
    target = check_budget(target_mean_cost, "target_mean_cost")
    if len(cost) == 0:
        msg = "no reference queries to calibrate `target_mean_cost` on (the router stores none)"
        raise ValueError(msg)
    mask = np.ones(np.shape(cost), dtype=bool)
    if allowed is not None:
        mask = mask & np.asarray(allowed, dtype=bool)
    if max_cost_per_query is not None:
        mask, _ = cap_mask(cost, check_budget(max_cost_per_query), mask)
    cheapest = float(np.where(mask, cost, np.inf).min(axis=1).mean())
    if target < cheapest:
        msg = (
            f"`target_mean_cost`={target:.6g} USD is below the cheapest action's mean predicted "
            f"cost over the reference queries ({cheapest:.6g} USD, among the allowed actions); "
            f"allowed: >= {cheapest:.6g}"
        )
        raise ValueError(msg)
    weights = cost_weight_grid(cost.mean(axis=0), n=200)
    rows = np.arange(len(cost))
    for w in weights:
        chosen = choose(quality, cost, float(w), mask)
        if cost[rows, chosen].mean() <= target:
            return float(w)
    return float(weights[-1])
