"""Cost-quality metrics of routers: frontiers, AIQ, gap recovered, savings and a paired bootstrap.

A router picks, per query, one action (a backend LLM with parameters). On a test block we know,
for every query ``q`` and action ``a``, the observed score ``S[q, a]`` in ``[0, 1]`` and the cost
``C[q, a] >= 0`` (USD). All metrics here are computed from these two matrices, so that every
router is judged on exactly the same observations and no metric depends on a live backend.

The contract (shared with the rest of the project):

* A single action ``a`` is the point ``(C_a, Q_a)``: its mean cost and mean score over the block.
* The *best single action* is chosen on the training logs and passed in as ``best_action``; its
  point on the test block is ``(C_best, Q_best)``.
* The *oracle* picks, per query, the best-scoring action, ties broken to the cheapest one.
* A router swept over cost weights gives points ``(C, Q)``. Its *frontier* is the upper concave
  envelope of its points in **linear** cost (mixing two operating points at random interpolates
  linearly), with dominated points dropped and made non-decreasing: right of the point of maximum
  quality it stays flat at that maximum. Left of its cheapest point it is undefined.
* The *zero-router* mixes fixed actions; its frontier is the frontier of the single-action points.
* The *effective* frontier of a router uses the zero-router left of the router's cheapest point
  (a fixed-action mixture can always replace the router there) and the router's own frontier from
  its cheapest point on; see `effective_quality`. Left of the cheapest single action the
  zero-router is clamped to its first quality.
* ``AIQ`` is the mean effective quality over ``[min_a C_a, max_a C_a]`` on a log10 cost axis.
* ``GR = (Q@C_best - Q_best) / (Q_oracle - Q_best)`` and ``saving = 1 - C@Q_best / C_best``.
"""

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

LOG_EPS_FRACTION = 1e-6
"""When the cheapest action is free, the log cost axis starts at ``max C * LOG_EPS_FRACTION``."""

QUALITY_TOL = 1e-12
"""Slack for float round-off when asking whether a frontier reaches a quality."""

SAVING95_FRACTION = 0.95
"""``saving95`` asks for this fraction of the best single action's quality."""


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------


def _as_1d_float(values: ArrayLike, name: str) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        msg = f"`{name}` must be a non-empty 1-D array, got shape {arr.shape}"
        raise ValueError(msg)
    if not np.all(np.isfinite(arr)):
        msg = f"`{name}` must be finite (no NaN/inf), got {arr.tolist()!r}"
        raise ValueError(msg)
    return arr


def _validate_scores_costs(s: ArrayLike, c: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Return ``S`` and ``C`` as float arrays after checking the contract on them."""
    s_arr = np.asarray(s, dtype=np.float64)
    c_arr = np.asarray(c, dtype=np.float64)
    if s_arr.ndim != 2 or s_arr.shape[0] == 0 or s_arr.shape[1] == 0:
        msg = f"`S` must be a non-empty 2-D array [n_queries, n_actions], got shape {s_arr.shape}"
        raise ValueError(msg)
    if c_arr.shape != s_arr.shape:
        msg = f"`C` must have the same shape as `S` {s_arr.shape}, got shape {c_arr.shape}"
        raise ValueError(msg)
    if not np.all(np.isfinite(s_arr)):
        msg = f"`S` must not contain NaN/inf, found {int(np.sum(~np.isfinite(s_arr)))} entries"
        raise ValueError(msg)
    if not np.all(np.isfinite(c_arr)):
        msg = f"`C` must not contain NaN/inf, found {int(np.sum(~np.isfinite(c_arr)))} entries"
        raise ValueError(msg)
    if s_arr.min() < 0.0 or s_arr.max() > 1.0:
        msg = f"`S` must lie in [0, 1], got min {s_arr.min()!r} and max {s_arr.max()!r}"
        raise ValueError(msg)
    if c_arr.min() < 0.0:
        msg = f"`C` must be >= 0, got min {c_arr.min()!r}"
        raise ValueError(msg)
    return s_arr, c_arr


def _validate_choices(choices: ArrayLike, n_queries: int, n_actions: int, name: str) -> IntArray:
    """Return ``choices`` as a 2-D int array ``[n_lambdas, n_queries]`` of valid action indices.

    A 1-D array is accepted as a single operating point.
    """
    arr = np.asarray(choices)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] == 0:
        msg = f"`{name}` must be a 2-D array [n_lambdas, n_queries], got shape {arr.shape}"
        raise ValueError(msg)
    if arr.shape[1] != n_queries:
        msg = f"`{name}` must have n_queries={n_queries} columns, got shape {arr.shape}"
        raise ValueError(msg)
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            msg = f"`{name}` must hold integer action indices, got dtype {arr.dtype}"
            raise ValueError(msg)
    arr = arr.astype(np.int64, copy=False)
    if arr.min() < 0 or arr.max() >= n_actions:
        msg = (
            f"`{name}` must hold action indices in [0, {n_actions}), "
            f"got min {int(arr.min())} and max {int(arr.max())}"
        )
        raise ValueError(msg)
    return arr


def _validate_action(best_action: int, n_actions: int) -> int:
    if isinstance(best_action, bool) or not isinstance(best_action, int | np.integer):
        msg = f"`best_action` must be an int, got {best_action!r}"
        raise ValueError(msg)
    if not 0 <= int(best_action) < n_actions:
        msg = f"`best_action` must be in [0, {n_actions}), got {best_action!r}"
        raise ValueError(msg)
    return int(best_action)


# --------------------------------------------------------------------------------------------
# Frontier
# --------------------------------------------------------------------------------------------


def _hull_vertices(costs: FloatArray, qualities: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Vertices of the non-decreasing upper concave envelope of the points.

    Steps: keep the best quality per cost; drop dominated points (a cheaper-or-equal point has at
    least the same quality), which leaves strictly increasing cost and quality; then keep only the
    upper hull (monotone chain), dropping points on or below the chord of their neighbours,
    because a random mixture of the neighbours is at least as good.
    """
    order = np.lexsort((-qualities, costs))  # cost ascending, quality descending within a cost
    pareto_c: list[float] = []
    pareto_q: list[float] = []
    best = -math.inf
    for i in order:
        q = float(qualities[i])
        if q > best:
            pareto_c.append(float(costs[i]))
            pareto_q.append(q)
            best = q
    hull_c: list[float] = []
    hull_q: list[float] = []
    for c, q in zip(pareto_c, pareto_q, strict=True):
        while len(hull_c) >= 2:
            cross = (hull_c[-1] - hull_c[-2]) * (q - hull_q[-2]) - (hull_q[-1] - hull_q[-2]) * (
                c - hull_c[-2]
            )
            if cross < 0.0:  # strict right turn: the last vertex stays on the upper hull
                break
            hull_c.pop()
            hull_q.pop()
        hull_c.append(c)
        hull_q.append(q)
    return np.asarray(hull_c, dtype=np.float64), np.asarray(hull_q, dtype=np.float64)


@dataclass(frozen=True, eq=False)
class Frontier:
    """A non-decreasing, concave, piecewise-linear cost-quality frontier.

    Stored as its hull vertices; between vertices the frontier is linear in *linear* cost because
    mixing two operating points at random mixes their costs and qualities linearly. Right of the
    last vertex (the maximum quality) it stays flat: spending more never has to hurt. Left of the
    first vertex it is undefined (NaN): nothing cheaper was observed.

    Attributes:
        costs: Vertex costs, strictly increasing.
        qualities: Vertex qualities, non-decreasing (strictly increasing when built by
            `from_points`).
    """

    costs: FloatArray
    qualities: FloatArray

    def __post_init__(self) -> None:
        costs = _as_1d_float(self.costs, "costs").copy()
        qualities = _as_1d_float(self.qualities, "qualities").copy()
        if costs.shape != qualities.shape:
            msg = f"`costs` and `qualities` must have the same length, got {costs.size} and {qualities.size}"
            raise ValueError(msg)
        if np.any(np.diff(costs) <= 0.0):
            msg = f"`costs` must be strictly increasing, got {costs.tolist()!r}"
            raise ValueError(msg)
        if np.any(np.diff(qualities) < 0.0):
            msg = f"`qualities` must be non-decreasing, got {qualities.tolist()!r}"
            raise ValueError(msg)
        costs.flags.writeable = False
        qualities.flags.writeable = False
        object.__setattr__(self, "costs", costs)
        object.__setattr__(self, "qualities", qualities)

    @classmethod
    def from_points(cls, costs: ArrayLike, qualities: ArrayLike) -> "Frontier":
        """Build the frontier of operating points ``(costs[i], qualities[i])``.

        Dominated points and points under the concave envelope are dropped (see the module
        docstring); the remaining vertices have strictly increasing cost and quality.

        Args:
            costs: Mean costs of the operating points, >= 0.
            qualities: Mean qualities of the operating points.

        Returns:
            The frontier.

        Raises:
            ValueError: If the arrays are empty, not 1-D, of different lengths, non-finite, or a
                cost is negative.
        """
        c = _as_1d_float(costs, "costs")
        q = _as_1d_float(qualities, "qualities")
        if c.shape != q.shape:
            msg = f"`costs` and `qualities` must have the same length, got {c.size} and {q.size}"
            raise ValueError(msg)
        if c.min() < 0.0:
            msg = f"`costs` must be >= 0, got min {c.min()!r}"
            raise ValueError(msg)
        hull_c, hull_q = _hull_vertices(c, q)
        return cls(hull_c, hull_q)

    @property
    def min_cost(self) -> float:
        """Cost of the cheapest vertex: where the frontier starts being defined."""
        return float(self.costs[0])

    @property
    def max_quality(self) -> float:
        """Quality of the last vertex: the highest quality the frontier reaches."""
        return float(self.qualities[-1])

    def quality_at(self, c: float | ArrayLike) -> Any:
        """Frontier quality at cost(s) ``c``.

        Linear interpolation between vertices, flat right of the last vertex, NaN left of the
        first vertex (no operating point that cheap was observed).

        Args:
            c: A cost or an array of costs.

        Returns:
            A float for a scalar ``c``, otherwise an array of the shape of ``c``.
        """
        arr = np.asarray(c, dtype=np.float64)
        out = np.interp(arr, self.costs, self.qualities)
        out = np.where(arr < self.costs[0], np.nan, out)
        if out.ndim == 0:
            return float(out)
        return out

    def cost_at(self, q: float) -> float:
        """Smallest cost at which the frontier reaches quality ``q``.

        Inverts the piecewise-linear frontier. A quality at or below the first vertex is reached
        at the first vertex's cost (the frontier is undefined further left). Qualities above the
        maximum (beyond a ``QUALITY_TOL`` round-off slack) are never reached: NaN.

        Args:
            q: Target quality.

        Returns:
            The smallest cost, or NaN if the frontier never reaches ``q``.
        """
        q = float(q)
        if math.isnan(q):
            msg = f"`q` must not be NaN, got {q!r}"
            raise ValueError(msg)
        if q > self.max_quality + QUALITY_TOL:
            return math.nan
        if q <= self.qualities[0]:
            return float(self.costs[0])
        q = min(q, self.max_quality)
        # Vertex qualities strictly increase up to the maximum (from_points guarantees it); take
        # the first vertex reaching q so that a flat run (possible when built by hand) resolves to
        # its cheapest end.
        k = int(np.searchsorted(self.qualities, q, side="left"))
        if self.qualities[k] == q:
            return float(self.costs[k])
        q0, q1 = self.qualities[k - 1], self.qualities[k]
        c0, c1 = self.costs[k - 1], self.costs[k]
        return float(c0 + (q - q0) * (c1 - c0) / (q1 - q0))


# --------------------------------------------------------------------------------------------
# Effective frontier of a router
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# AIQ
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Points
# --------------------------------------------------------------------------------------------


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
    ch = _validate_choices(choices, *s_arr.shape, name="choices")
    rows = np.arange(s_arr.shape[0])[None, :]
    return c_arr[rows, ch].mean(axis=1), s_arr[rows, ch].mean(axis=1)


# --------------------------------------------------------------------------------------------
# Router metrics
# --------------------------------------------------------------------------------------------


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


def _saving(router: Frontier | None, zero: Frontier, q_target: float, c_best: float) -> float:
    if c_best <= 0.0:
        return math.nan
    cost = effective_cost_at(router, zero, q_target)
    if math.isnan(cost):
        return math.nan
    return 1.0 - cost / c_best


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


# --------------------------------------------------------------------------------------------
# Paired bootstrap
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BootstrapResult:
    """Paired bootstrap comparison of two routers' AIQ (and quality at one cost).

    Attributes:
        aiq_a: AIQ of router A on the full block.
        aiq_b: AIQ of router B on the full block.
        diff: ``aiq_a - aiq_b`` on the full block.
        se: Standard deviation (ddof=1) of the bootstrap AIQ differences.
        ci_low: 2.5th percentile of the bootstrap AIQ differences.
        ci_high: 97.5th percentile of the bootstrap AIQ differences.
        n_boot: Number of bootstrap resamples.
        at_cost: The cost at which qualities are compared (``C_best`` of the full block unless
            given).
        q_diff: Effective quality of A minus that of B at ``at_cost`` on the full block.
        q_se: Standard deviation (ddof=1) of the bootstrap quality differences at ``at_cost``.
    """

    aiq_a: float
    aiq_b: float
    diff: float
    se: float
    ci_low: float
    ci_high: float
    n_boot: int
    at_cost: float
    q_diff: float
    q_se: float

    def to_dict(self) -> dict[str, float | int]:
        """Plain dict for JSON reports."""
        return asdict(self)


def _block_stats(
    means: FloatArray, n_actions: int, n_lambdas: Sequence[int], at_cost: float
) -> tuple[float, float, float, float]:
    """AIQs and qualities at ``at_cost`` of routers A and B from one (re)sample's column means.

    ``means`` is laid out as ``[S means | C means | A quals | A costs | B quals | B costs]``.
    """
    sa_q = means[:n_actions]
    sa_c = means[n_actions : 2 * n_actions]
    zero = Frontier.from_points(sa_c, sa_q)
    c_min, c_max = float(sa_c.min()), float(sa_c.max())
    out: list[float] = []
    start = 2 * n_actions
    for n_l in n_lambdas:
        quals = means[start : start + n_l]
        costs = means[start + n_l : start + 2 * n_l]
        start += 2 * n_l
        router = Frontier.from_points(costs, quals)
        out.append(aiq(router, zero, c_min, c_max))
        out.append(float(effective_quality(router, zero, at_cost)))
    return out[0], out[2], out[1], out[3]


def paired_bootstrap(
    s: ArrayLike,
    c: ArrayLike,
    choices_a: ArrayLike,
    choices_b: ArrayLike,
    best_action: int,
    n_boot: int = 1000,
    seed: int = 0,
    at_cost: float | None = None,
) -> BootstrapResult:
    """Paired bootstrap over queries of the AIQ difference between routers A and B.

    Queries are resampled with replacement; the same resample is used for both routers and for
    the single-action points, so the zero-router frontier and the AIQ cost range
    ``[min_a C_a, max_a C_a]`` are recomputed on every resample. Pairing removes the
    query-difficulty variance the two routers share, which dominates on small blocks.

    Args:
        s: Scores ``[n_queries, n_actions]`` in ``[0, 1]``.
        c: Costs ``[n_queries, n_actions]``, >= 0.
        choices_a: Router A's action indices ``[n_lambdas_a, n_queries]``.
        choices_b: Router B's action indices ``[n_lambdas_b, n_queries]``.
        best_action: Index of the best single action (training logs); sets the default
            ``at_cost``.
        n_boot: Number of resamples, >= 2.
        seed: Seed of the resampling generator; equal seeds give equal results.
        at_cost: Cost at which to compare effective qualities; defaults to ``C_best`` on the full
            block. It is held fixed across resamples.

    Returns:
        The comparison.
    """
    s_arr, c_arr = _validate_scores_costs(s, c)
    n_queries, n_actions = s_arr.shape
    ch_a = _validate_choices(choices_a, n_queries, n_actions, "choices_a")
    ch_b = _validate_choices(choices_b, n_queries, n_actions, "choices_b")
    best = _validate_action(best_action, n_actions)
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 2:
        msg = f"`n_boot` must be an int >= 2, got {n_boot!r}"
        raise ValueError(msg)
    if at_cost is None:
        at_cost = float(c_arr[:, best].mean())
    elif not math.isfinite(float(at_cost)) or float(at_cost) < 0.0:
        msg = f"`at_cost` must be finite and >= 0, got {at_cost!r}"
        raise ValueError(msg)
    at_cost = float(at_cost)

    rows = np.arange(n_queries)[None, :]
    # Per-query values whose column means are everything a block's metrics need.
    per_query = np.concatenate(
        [
            s_arr,
            c_arr,
            s_arr[rows, ch_a].T,
            c_arr[rows, ch_a].T,
            s_arr[rows, ch_b].T,
            c_arr[rows, ch_b].T,
        ],
        axis=1,
    )
    n_lambdas = (ch_a.shape[0], ch_b.shape[0])

    full = per_query.mean(axis=0)
    aiq_a, aiq_b, q_a, q_b = _block_stats(full, n_actions, n_lambdas, at_cost)

    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_queries, size=(int(n_boot), n_queries))
    offsets = (np.arange(int(n_boot)) * n_queries)[:, None]
    counts = np.bincount((idx + offsets).ravel(), minlength=int(n_boot) * n_queries)
    counts = counts.reshape(int(n_boot), n_queries).astype(np.float64)
    boot_means = counts @ per_query / n_queries

    diffs = np.empty(int(n_boot))
    q_diffs = np.empty(int(n_boot))
    for b in range(int(n_boot)):
        ba, bb, bqa, bqb = _block_stats(boot_means[b], n_actions, n_lambdas, at_cost)
        diffs[b] = ba - bb
        q_diffs[b] = bqa - bqb
    ci_low, ci_high = np.percentile(diffs, [2.5, 97.5])
    result = BootstrapResult(
        aiq_a=aiq_a,
        aiq_b=aiq_b,
        diff=aiq_a - aiq_b,
        se=float(np.std(diffs, ddof=1)),
        ci_low=float(ci_low),
        ci_high=float(ci_high),
        n_boot=int(n_boot),
        at_cost=at_cost,
        q_diff=q_a - q_b,
        q_se=float(np.std(q_diffs, ddof=1)),
    )
    logger.debug("paired bootstrap: %s", result)
    return result
