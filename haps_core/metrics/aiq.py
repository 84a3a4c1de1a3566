"""A router's effective frontier (zero-router left of its cheapest point), AIQ and savings."""

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from haps_core.metrics.frontier import Frontier
from haps_core.metrics.validate import FloatArray

LOG_EPS_FRACTION = 1e-6
"""When the cheapest action is free, the log cost axis starts at ``max C * LOG_EPS_FRACTION``."""

SAVING95_FRACTION = 0.95
"""``saving95`` asks for this fraction of the best single action's quality."""


def _zero_quality(zero: Frontier, c: FloatArray) -> FloatArray:
    """Zero-router quality, clamped to its first quality left of the cheapest action."""
    return np.interp(c, zero.costs, zero.qualities)


def effective_quality(router: Frontier | None, zero: Frontier, c: float | ArrayLike) -> Any:
    """Quality of a router's effective frontier at cost(s) ``c``.

    The rule (the project's contract): ``F_eff(c) = F_zero(c)`` for ``c < c_r_min`` and
    ``F_eff(c) = F_r(c)`` for ``c >= c_r_min``, where ``c_r_min`` is the cost of the router's
    cheapest point and ``F_r`` the frontier of the router's own points. Below its cheapest point
    the router can always be replaced by a mixture of fixed actions, so it gets the zero-router's
    quality there. It is deliberately *not* the frontier of the union of router and single-action
    points: above ``c_r_min`` the router is judged on its own points only, so a router worse than
    a fixed-action mixture shows as such. Left of the cheapest single action the zero-router is
    undefined and clamped to its first quality.

    Args:
        router: The router's frontier; None means the zero-router itself.
        zero: The zero-router frontier (of the single-action points).
        c: A cost or an array of costs.

    Returns:
        A float for a scalar ``c``, otherwise an array of the shape of ``c``.
    """
    arr = np.asarray(c, dtype=np.float64)
    out = _zero_quality(zero, arr)
    if router is not None:
        use_router = arr >= router.costs[0]
        out = np.where(use_router, np.interp(arr, router.costs, router.qualities), out)
    if out.ndim == 0:
        return float(out)
    return out


def effective_cost_at(router: Frontier | None, zero: Frontier, q: float) -> float:
    """Smallest cost at which a router's effective frontier reaches quality ``q``.

    The effective frontier (see `effective_quality`) starts at the cheaper of the router's and
    the zero-router's first vertex. Left of ``c_r_min`` it is the zero-router, from ``c_r_min``
    on the router's own frontier, so the answer is the zero-router's cost if that lies below
    ``c_r_min`` and otherwise the router's.

    Args:
        router: The router's frontier; None means the zero-router itself.
        zero: The zero-router frontier.
        q: Target quality.

    Returns:
        The smallest cost, or NaN if the effective frontier never reaches ``q``.
    """
    if router is None:
        return zero.cost_at(q)
    if zero.min_cost < router.min_cost:
        c_zero = zero.cost_at(q)
        if not math.isnan(c_zero) and c_zero < router.min_cost:
            return c_zero
    return router.cost_at(q)


def _saving(router: Frontier | None, zero: Frontier, q_target: float, c_best: float) -> float:
    if c_best <= 0.0:
        return math.nan
    cost = effective_cost_at(router, zero, q_target)
    if math.isnan(cost):
        return math.nan
    return 1.0 - cost / c_best


def _log_axis(c_min: float, c_max: float) -> tuple[float, float] | None:
    """Validate the AIQ cost range; return the log-axis range, or None if it is degenerate."""
    c_min = float(c_min)
    c_max = float(c_max)
    if not (math.isfinite(c_min) and math.isfinite(c_max)):
        msg = f"`c_min` and `c_max` must be finite, got {c_min!r} and {c_max!r}"
        raise ValueError(msg)
    if c_min < 0.0:
        msg = f"`c_min` must be >= 0, got {c_min!r}"
        raise ValueError(msg)
    if c_max < c_min:
        msg = f"`c_max` must be >= `c_min`={c_min!r}, got {c_max!r}"
        raise ValueError(msg)
    if c_max == c_min:
        return None
    if c_min <= 0.0:
        c_min = c_max * LOG_EPS_FRACTION
    return c_min, c_max


def _aiq_exact(router: Frontier | None, zero: Frontier, lo: float, hi: float) -> float:
    """Exact mean of the effective frontier over ``[lo, hi]`` on a log10 cost axis.

    Between breakpoints (vertices of both frontiers and the switch at ``c_r_min``) the effective
    frontier is ``g(c) = g1 + m (c - c1)`` in linear cost, and with ``c = 10**x``,
    ``integral g dx = g1 (x2 - x1) + m ((c2 - c1) / ln 10 - c1 (x2 - x1))``.
    """
    inner = [zero.costs]
    if router is not None:
        inner.append(router.costs)
    cuts = np.concatenate(inner)
    cuts = cuts[(cuts > lo) & (cuts < hi)]
    b = np.unique(np.concatenate(([lo, hi], cuts)))
    c1, c2 = b[:-1], b[1:]
    g1 = _zero_quality(zero, c1)
    g2 = _zero_quality(zero, c2)
    if router is not None:
        # c_r_min is a breakpoint, so a piece lies wholly on one side of it.
        on_router = c1 >= router.costs[0]
        g1 = np.where(on_router, np.interp(c1, router.costs, router.qualities), g1)
        g2 = np.where(on_router, np.interp(c2, router.costs, router.qualities), g2)
    x1, x2 = np.log10(c1), np.log10(c2)
    dx = x2 - x1
    slope = (g2 - g1) / (c2 - c1)
    total = np.sum(g1 * dx + slope * ((c2 - c1) / math.log(10.0) - c1 * dx))
    return float(total / (math.log10(hi) - math.log10(lo)))


def aiq(
    router: Frontier | None,
    zero: Frontier,
    c_min: float,
    c_max: float,
    n_grid: int | None = None,
) -> float:
    """Area under the effective frontier on a log10 cost axis, as a mean quality in ``[0, 1]``.

    A log axis weights each factor of cost equally: a router that is good only in the expensive
    decade should not dominate one that is good across cheap decades. Dividing by the log range
    makes AIQ a mean quality, comparable across blocks with different cost ranges.

    Degenerate cost ranges (logs without cost, or equal costs) are defined as follows:

    * ``c_max == c_min`` (e.g. all costs zero): cost cannot be traded, so routing is by quality
      alone and AIQ is the frontier's maximum quality (the router's, or the zero-router's when
      ``router`` is None).
    * ``c_min <= 0 < c_max``: the log axis starts at ``c_max * LOG_EPS_FRACTION`` (1e-6) instead.

    Args:
        router: The router's frontier; None gives the zero-router AIQ.
        zero: The zero-router frontier.
        c_min: Lower end of the cost range, normally ``min_a C_a``.
        c_max: Upper end of the cost range, normally ``max_a C_a``.
        n_grid: None (default) integrates exactly, piece by piece (the frontier is linear in
            linear cost, hence not in log cost). An int uses the trapezoid rule on that many
            points uniform in log10 cost instead (a cross-check; 2001 points are accurate to
            about 1e-7).

    Returns:
        The AIQ.

    Raises:
        ValueError: If the cost range is invalid or ``n_grid < 2``.
    """
    axis = _log_axis(c_min, c_max)
    if axis is None:
        return router.max_quality if router is not None else zero.max_quality
    lo, hi = axis
    if n_grid is None:
        return _aiq_exact(router, zero, lo, hi)
    if isinstance(n_grid, bool) or not isinstance(n_grid, int | np.integer) or n_grid < 2:
        msg = f"`n_grid` must be an int >= 2 or None, got {n_grid!r}"
        raise ValueError(msg)
    x = np.linspace(math.log10(lo), math.log10(hi), int(n_grid))
    c = 10.0**x
    c[0], c[-1] = lo, hi
    q = np.asarray(effective_quality(router, zero, c), dtype=np.float64)
    area = float(np.sum(0.5 * (q[1:] + q[:-1]) * np.diff(x)))
    return area / float(x[-1] - x[0])
