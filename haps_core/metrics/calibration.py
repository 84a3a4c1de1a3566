"""Calibration of predicted quality: expected calibration error, Brier score, reliability bins.

A router decides on its predicted quality ``p[q, a]``; the AIQ only checks the ranking those
predictions induce. Calibration checks the values themselves against the observed scores
``s[q, a]`` in ``[0, 1]`` (soft targets: a graded score of 0.7 is a target of 0.7, not a coin).

- **Brier score**: the mean of ``(p - s)^2`` over the cells; 0 is perfect. With binary scores
  it is the usual Brier score of a probability forecast.
- **Expected calibration error (ECE)**: the cells are grouped into bins of similar prediction;
  ECE is the count-weighted mean over bins of ``|mean prediction - mean observed score|``.
  A constant offset ``p = s + d`` gives ECE ``|d|``; predictions equal to the conditional mean
  score give ECE 0 (up to the sampling noise of each bin's mean).

Bins default to **equal mass** (10 bins of about the same number of cells, by rank of the
prediction): predicted quality piles up near 0 and 1, where equal-width bins would leave most
bins empty and one bin holding most cells. Tied predictions always share a bin (a bin may then
hold more than its share), so the result does not depend on the order of the cells.
``strategy="equal_width"`` gives the classic ``[0, 0.1), ..., [0.9, 1]`` bins instead.
"""

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from haps_core.metrics.validate import FloatArray, IntArray

BinStrategy = Literal["equal_mass", "equal_width"]
STRATEGIES: tuple[str, ...] = ("equal_mass", "equal_width")
DEFAULT_BINS = 10


def _validate(predicted: ArrayLike, observed: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Flattens both arrays after checking they match in shape, are finite and lie in [0, 1]."""
    p = np.asarray(predicted, dtype=np.float64)
    s = np.asarray(observed, dtype=np.float64)
    if p.shape != s.shape:
        msg = f"`predicted` and `observed` must have the same shape, got {p.shape} and {s.shape}"
        raise ValueError(msg)
    if p.size == 0:
        msg = f"`predicted` must hold at least one cell, got shape {p.shape}"
        raise ValueError(msg)
    for name, arr in (("predicted", p), ("observed", s)):
        bad = int(np.sum(~np.isfinite(arr)))
        if bad:
            msg = f"`{name}` must be finite (no NaN/inf), found {bad} of {arr.size} entries"
            raise ValueError(msg)
        if arr.min() < 0.0 or arr.max() > 1.0:
            msg = f"`{name}` must lie in [0, 1], got min {float(arr.min())!r} and max {float(arr.max())!r}"
            raise ValueError(msg)
    return p.ravel(), s.ravel()


def _check_bins(n_bins: int, strategy: str) -> None:
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        msg = f"`n_bins` must be an int >= 1, got {n_bins!r}"
        raise ValueError(msg)
    if strategy not in STRATEGIES:
        msg = f"`strategy` must be one of {list(STRATEGIES)}, got {strategy!r}"
        raise ValueError(msg)


def bin_index(predicted: FloatArray, n_bins: int, strategy: str) -> IntArray:
    """The bin of each (flat, validated) prediction, in ``[0, n_bins)``; bins ordered by prediction.

    equal_mass: bin = floor(rank * n_bins / n), the rank of a value being the number of smaller
    predictions (so ties share the lowest rank, and a bin). equal_width: bin = floor(p * n_bins),
    with p = 1 in the last bin.
    """
    _check_bins(n_bins, strategy)
    n = predicted.size
    if strategy == "equal_width":
        return np.minimum((predicted * n_bins).astype(np.int64), n_bins - 1)
    rank = np.searchsorted(np.sort(predicted, kind="stable"), predicted, side="left")
    return (rank.astype(np.int64) * n_bins) // n


@dataclass(frozen=True)
class ReliabilityBins:
    """Reliability-diagram data: per non-empty bin, ordered by prediction.

    Attributes:
        lower, upper: the smallest and largest prediction in the bin.
        mean_predicted: mean prediction of the bin's cells.
        mean_observed: mean observed score of the bin's cells.
        counts: number of cells in the bin.
    """

    lower: FloatArray
    upper: FloatArray
    mean_predicted: FloatArray
    mean_observed: FloatArray
    counts: IntArray
    strategy: str

    @property
    def n_cells(self) -> int:
        return int(self.counts.sum())

    @property
    def gaps(self) -> FloatArray:
        """Per bin: mean prediction - mean observed score (> 0: over-confident)."""
        return self.mean_predicted - self.mean_observed

    def ece(self) -> float:
        """Count-weighted mean absolute gap over the bins."""
        return float(np.sum(self.counts * np.abs(self.gaps)) / self.n_cells)

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "lower": self.lower.tolist(),
            "upper": self.upper.tolist(),
            "mean_predicted": self.mean_predicted.tolist(),
            "mean_observed": self.mean_observed.tolist(),
            "counts": self.counts.tolist(),
        }


def reliability_bins(
    predicted: ArrayLike,
    observed: ArrayLike,
    n_bins: int = DEFAULT_BINS,
    strategy: BinStrategy = "equal_mass",
) -> ReliabilityBins:
    """Bin means and counts of predicted quality vs observed score (see the module docstring).

    Args:
        predicted: predicted quality in [0, 1], any shape (e.g. [n_queries, n_actions]).
        observed: the observed scores in [0, 1], same shape.
        n_bins: number of bins (>= 1); empty bins are left out of the result.
        strategy: "equal_mass" (default) or "equal_width".
    """
    p, s = _validate(predicted, observed)
    idx = bin_index(p, n_bins, strategy)
    counts = np.bincount(idx, minlength=n_bins)
    keep = counts > 0
    sum_p = np.bincount(idx, weights=p, minlength=n_bins)[keep]
    sum_s = np.bincount(idx, weights=s, minlength=n_bins)[keep]
    lower = np.full(n_bins, np.inf)
    upper = np.full(n_bins, -np.inf)
    np.minimum.at(lower, idx, p)
    np.maximum.at(upper, idx, p)
    n = counts[keep].astype(np.int64)
    return ReliabilityBins(lower[keep], upper[keep], sum_p / n, sum_s / n, n, strategy)


def expected_calibration_error(
    predicted: ArrayLike,
    observed: ArrayLike,
    n_bins: int = DEFAULT_BINS,
    strategy: BinStrategy = "equal_mass",
) -> float:
    """ECE: count-weighted mean over bins of |mean prediction - mean observed score|."""
    return reliability_bins(predicted, observed, n_bins, strategy).ece()


def brier_score(predicted: ArrayLike, observed: ArrayLike) -> float:
    """Mean squared difference between predicted quality and observed score (soft targets)."""
    p, s = _validate(predicted, observed)
    return float(np.mean((p - s) ** 2))


@dataclass(frozen=True)
class CalibrationMetrics:
    """ECE and Brier score of one router's predicted quality on a set of cells."""

    ece: float
    brier: float
    n_cells: int
    bins: ReliabilityBins

    def to_dict(self, with_bins: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"ece": self.ece, "brier": self.brier, "cells": self.n_cells}
        if with_bins:
            out["reliability"] = self.bins.to_dict()
        return out


def calibration_metrics(
    predicted: ArrayLike,
    observed: ArrayLike,
    n_bins: int = DEFAULT_BINS,
    strategy: BinStrategy = "equal_mass",
) -> CalibrationMetrics:
    """ECE, Brier score and reliability bins of `predicted` against `observed` (all cells)."""
    bins = reliability_bins(predicted, observed, n_bins, strategy)
    return CalibrationMetrics(bins.ece(), brier_score(predicted, observed), bins.n_cells, bins)
