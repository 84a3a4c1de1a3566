"""Cost-quality metrics of routers: frontiers, AIQ, gap recovered, savings and a paired bootstrap.

Every metric is computed from a test block's observed scores ``S[q, a]`` in ``[0, 1]`` and costs
``C[q, a] >= 0`` alone, so every router is judged on the same observations and no metric depends
on a live backend. The definitions live with `Frontier`, `effective_quality`, `aiq` and `RouterMetrics`.
"""

from haps_core.metrics.aiq import (
    LOG_EPS_FRACTION,
    SAVING95_FRACTION,
    aiq,
    effective_cost_at,
    effective_quality,
)
from haps_core.metrics.bootstrap import BootstrapResult, paired_bootstrap
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
    "FloatArray",
    "Frontier",
    "IntArray",
    "RouterMetrics",
    "aiq",
    "effective_cost_at",
    "effective_quality",
    "oracle_point",
    "paired_bootstrap",
    "points_from_choices",
    "router_metrics",
    "single_action_points",
    "zero_router_metrics",
]
