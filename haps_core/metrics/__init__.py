"""Cost-quality metrics of routers: frontiers, AIQ, gap recovered, savings and a paired bootstrap.

Every metric is computed from a test block's observed scores ``S[q, a]`` in ``[0, 1]`` and costs
``C[q, a] >= 0`` alone, so every router is judged on the same observations and no metric depends
on a live backend. Calibration (ECE, Brier score) checks predicted quality against the same
scores. The definitions live with `Frontier`, `effective_quality`, `aiq` and `RouterMetrics`.
"""

from haps_core.metrics.aiq import (
    LOG_EPS_FRACTION,
    SAVING95_FRACTION,
    aiq,
    effective_cost_at,
    effective_quality,
)
from haps_core.metrics.bootstrap import BootstrapResult, paired_bootstrap
from haps_core.metrics.calibration import (
    CalibrationMetrics,
    ReliabilityBins,
    brier_score,
    calibration_metrics,
    expected_calibration_error,
    reliability_bins,
)
from haps_core.metrics.frontier import QUALITY_TOL, Frontier
from haps_core.metrics.points import (
    RouterMetrics,
    oracle_point,
    points_from_choices,
    router_metrics,
    single_action_points,
    zero_router_metrics,
)
from haps_core.metrics.validate import FloatArray, IntArray

__all__ = [
    "LOG_EPS_FRACTION",
    "QUALITY_TOL",
    "SAVING95_FRACTION",
    "BootstrapResult",
    "CalibrationMetrics",
    "FloatArray",
    "Frontier",
    "IntArray",
    "ReliabilityBins",
    "RouterMetrics",
    "aiq",
    "brier_score",
    "calibration_metrics",
    "effective_cost_at",
    "effective_quality",
    "expected_calibration_error",
    "oracle_point",
    "paired_bootstrap",
    "points_from_choices",
    "reliability_bins",
    "router_metrics",
    "single_action_points",
    "zero_router_metrics",
]
