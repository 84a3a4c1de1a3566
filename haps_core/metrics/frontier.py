"""Cost-quality frontiers: the non-decreasing upper concave envelope of operating points."""

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from haps_core.metrics.validate import FloatArray, _as_1d_float

QUALITY_TOL = 1e-12
"""Slack for float round-off when asking whether a frontier reaches a quality."""


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

        Dominated points and points under the concave envelope are dropped (see
        `_hull_vertices`); the remaining vertices have strictly increasing cost and quality.

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
