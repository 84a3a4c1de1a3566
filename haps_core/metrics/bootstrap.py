"""Paired bootstrap over queries of the AIQ difference between two routers."""

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike

from haps_core.metrics.aiq import aiq, effective_quality
from haps_core.metrics.frontier import Frontier
from haps_core.metrics.validate import FloatArray, _validate_action, _validate_choices, _validate_scores_costs

logger = logging.getLogger(__name__)


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
