"""Operating points (single actions, oracle, a router's choices) and a router's headline metrics."""

import logging
import math
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike

from haps_core.metrics.aiq import SAVING95_FRACTION, _saving, aiq, effective_quality
from haps_core.metrics.frontier import QUALITY_TOL, Frontier
from haps_core.metrics.validate import (
    FloatArray,
    IntArray,
    _validate_action,
    _validate_choices,
    _validate_scores_costs,
)

logger = logging.getLogger(__name__)


def single_action_points(s: ArrayLike, c: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Mean cost and mean score of every fixed action over the block.

    Args:
        s: Scores ``[n_queries, n_actions]`` in ``[0, 1]``.
        c: Costs ``[n_queries, n_actions]``, >= 0.

    Returns:
        ``(costs, quals)``, each of length ``n_actions``.
    """
    s_arr, c_arr = _validate_scores_costs(s, c)
    return c_arr.mean(axis=0), s_arr.mean(axis=0)


def _oracle_choice(s_arr: FloatArray, c_arr: FloatArray) -> IntArray:
    best = s_arr.max(axis=1, keepdims=True)
    masked_cost = np.where(s_arr == best, c_arr, np.inf)
    return np.argmin(masked_cost, axis=1)


def oracle_point(s: ArrayLike, c: ArrayLike) -> tuple[float, float]:
    """Mean cost and score of the per-query oracle.

    The oracle takes each query's best-scoring action; among equally scoring actions it takes
    the cheapest, because the oracle is the cost-aware upper bound on quality.

    Args:
        s: Scores ``[n_queries, n_actions]`` in ``[0, 1]``.
        c: Costs ``[n_queries, n_actions]``, >= 0.

    Returns:
        ``(C_oracle, Q_oracle)``.
    """
    s_arr, c_arr = _validate_scores_costs(s, c)
    choice = _oracle_choice(s_arr, c_arr)
    rows = np.arange(s_arr.shape[0])
    return float(c_arr[rows, choice].mean()), float(s_arr[rows, choice].mean())


def points_from_choices(s: ArrayLike, c: ArrayLike, choices: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Operating points of a router from its per-query choices.

    Args:
        s: Scores ``[n_queries, n_actions]`` in ``[0, 1]``.
        c: Costs ``[n_queries, n_actions]``, >= 0.
        choices: Action indices ``[n_lambdas, n_queries]``, one row per cost weight (a 1-D array
            is one row).

    Returns:
        ``(costs, quals)`` of length ``n_lambdas``: per row the mean observed cost and score of
        the chosen actions.
    """
    s_arr, c_arr = _validate_scores_costs(s, c)
    n_queries, n_actions = s_arr.shape
    ch = _validate_choices(choices, n_queries, n_actions, "choices")
    rows = np.arange(s_arr.shape[0])[None, :]
    return c_arr[rows, ch].mean(axis=1), s_arr[rows, ch].mean(axis=1)


@dataclass
class RouterMetrics:
    """Headline metrics of a router (or of the zero-router) on one test block.

    Attributes:
        aiq: Mean effective quality over ``[min_a C_a, max_a C_a]`` on a log cost axis.
        q_at_c_best: Effective frontier quality at the best single action's cost.
        gap_recovered: ``(Q@C_best - Q_best) / (Q_oracle - Q_best)``; NaN if the oracle is no
            better than the best single action. Negative when the router is worse than it.
        saving: ``1 - C@Q_best / C_best``; NaN if the effective frontier never reaches
            ``Q_best`` or ``C_best == 0``.
        saving95: Same with target quality ``0.95 * Q_best``.
        max_quality: Highest quality of the router's own frontier.
        min_cost: Cost of the router's cheapest operating point.
    """

    aiq: float
    q_at_c_best: float
    gap_recovered: float
    saving: float
    saving95: float
    max_quality: float
    min_cost: float

    def to_dict(self) -> dict[str, float]:
        """Plain ``{name: float}`` for JSON reports."""
        return {k: float(v) for k, v in asdict(self).items()}


def _metrics(
    router: Frontier | None,
    zero: Frontier,
    sa_costs: FloatArray,
    sa_quals: FloatArray,
    q_oracle: float,
    best_action: int,
) -> RouterMetrics:
    c_best = float(sa_costs[best_action])
    q_best = float(sa_quals[best_action])
    own = router if router is not None else zero
    q_at = float(effective_quality(router, zero, c_best))
    gap = q_oracle - q_best
    gap_recovered = math.nan if abs(gap) <= QUALITY_TOL else (q_at - q_best) / gap
    return RouterMetrics(
        aiq=aiq(router, zero, float(sa_costs.min()), float(sa_costs.max())),
        q_at_c_best=q_at,
        gap_recovered=gap_recovered,
        saving=_saving(router, zero, q_best, c_best),
        saving95=_saving(router, zero, SAVING95_FRACTION * q_best, c_best),
        max_quality=own.max_quality,
        min_cost=own.min_cost,
    )


def router_metrics(
    points_costs: ArrayLike,
    points_quals: ArrayLike,
    s: ArrayLike,
    c: ArrayLike,
    best_action: int,
) -> RouterMetrics:
    """Metrics of a router given its swept operating points on the block ``(S, C)``.

    The router's frontier is built from its points and combined with the zero-router of the
    block's single actions into the effective frontier (see `effective_quality`).

    Args:
        points_costs: Mean cost of the router per cost weight.
        points_quals: Mean score of the router per cost weight.
        s: Scores ``[n_queries, n_actions]`` in ``[0, 1]``.
        c: Costs ``[n_queries, n_actions]``, >= 0.
        best_action: Index of the best single action, chosen on the training logs.

    Returns:
        The metrics.
    """
    s_arr, c_arr = _validate_scores_costs(s, c)
    best = _validate_action(best_action, s_arr.shape[1])
    sa_costs, sa_quals = c_arr.mean(axis=0), s_arr.mean(axis=0)
    zero = Frontier.from_points(sa_costs, sa_quals)
    router = Frontier.from_points(points_costs, points_quals)
    _, q_oracle = oracle_point(s_arr, c_arr)
    result = _metrics(router, zero, sa_costs, sa_quals, q_oracle, best)
    logger.debug("router metrics: %s", result)
    return result


def zero_router_metrics(s: ArrayLike, c: ArrayLike, best_action: int) -> RouterMetrics:
    """Metrics of the zero-router: random mixtures of fixed actions, the baseline to beat.

    Args:
        s: Scores ``[n_queries, n_actions]`` in ``[0, 1]``.
        c: Costs ``[n_queries, n_actions]``, >= 0.
        best_action: Index of the best single action, chosen on the training logs.

    Returns:
        The metrics; ``max_quality`` and ``min_cost`` are those of the zero-router frontier.
    """
    s_arr, c_arr = _validate_scores_costs(s, c)
    best = _validate_action(best_action, s_arr.shape[1])
    sa_costs, sa_quals = c_arr.mean(axis=0), s_arr.mean(axis=0)
    zero = Frontier.from_points(sa_costs, sa_quals)
    _, q_oracle = oracle_point(s_arr, c_arr)
    return _metrics(None, zero, sa_costs, sa_quals, q_oracle, best)
