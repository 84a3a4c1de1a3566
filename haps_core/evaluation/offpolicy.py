"""Off-policy evaluation: a router's mean quality and cost estimated from a bandit log.

A bandit log observes one action per query, chosen by a logging policy with a known
probability (the `propensity` column). The router evaluated is deterministic at a cost weight:
pi(x) = argmax_a quality(x, a) - w * cost(x, a). Three estimators, each with a normal 95%
interval from its per-row contributions (one row = one logged decision):

- IPS: mean of 1[a_i = pi(x_i)] / p_i * r_i (unbiased; high variance when few rows match);
- SNIPS: the same weights self-normalised (slightly biased, much steadier);
- DR (doubly robust): a reward model's prediction for pi(x_i) plus the IPS-weighted residual of
  the logged action, r_hat(x_i, pi(x_i)) + 1[a_i = pi(x_i)] / p_i * (r_i - r_hat(x_i, a_i)).
  Unbiased whatever the reward model when the propensities are right; a good one cuts the
  variance. The default reward model (`fit_reward_model`) is a per-action ridge regression on
  the query embeddings (the linear-probability cousin of the logistic baseline, in closed form),
  *cross-fitted* on the bandit rows: each fold's rows are predicted by a model fitted on the
  other folds, so no row's own outcome enters its residual.
  The evaluated router's own predictions would work too, but they are what is being judged, and
  their errors (over-confidence) then go unchecked into the direct term.
"""

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from haps_core.baselines import BaselineRouter
from haps_core.decision import choose
from haps_core.evaluation.blocks import training_set
from haps_core.logs import RoutingLog

logger = logging.getLogger(__name__)

ESTIMATORS = ("ips", "snips", "dr")
Z95 = 1.959963984540054


@dataclass
class Estimate:
    """One estimate with its standard error and 95% normal interval."""

    value: float
    se: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "se": self.se, "low": self.low, "high": self.high}


@dataclass
class OffPolicyResult:
    """The estimates of one router at one cost weight on a bandit log.

    Attributes:
        cost_weight: the weight the router decided at.
        n_rows: bandit rows used (rows with a propensity).
        matches: rows whose logged action is the router's choice.
        ess: effective sample size of the IPS weights, (sum w)^2 / sum w^2.
        quality, cost: estimator name ("ips", "snips", "dr") -> its estimate.
    """

    cost_weight: float
    n_rows: int
    matches: int
    ess: float
    quality: dict[str, Estimate]
    cost: dict[str, Estimate]

    def to_dict(self) -> dict[str, Any]:
        return {
            "cost_weight": self.cost_weight,
            "rows": self.n_rows,
            "matches": self.matches,
            "ess": self.ess,
            "quality": {k: v.to_dict() for k, v in self.quality.items()},
            "cost": {k: v.to_dict() for k, v in self.cost.items()},
        }


def bandit_rows(log: RoutingLog) -> np.ndarray:
    """Indices of the rows that carry a propensity; ValueError (naming the column) when none does."""
    if log.propensity is None or not np.isfinite(log.propensity).any():
        files = ", ".join(log.files) or "the log"
        msg = (
            f"off-policy evaluation needs the `propensity` column (the logging policy's probability "
            f"of each row's action, in (0, 1]); no row of {files} has it"
        )
        raise ValueError(msg)
    return np.flatnonzero(np.isfinite(log.propensity))


def _mean_estimate(x: np.ndarray) -> Estimate:
    value = float(x.mean())
    se = float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else math.nan
    return Estimate(value, se, value - Z95 * se, value + Z95 * se)


def _snips(w: np.ndarray, r: np.ndarray) -> Estimate:
    total = float(w.sum())
    if total == 0:
        return Estimate(math.nan, math.nan, math.nan, math.nan)
    value = float((w * r).sum() / total)
    d = w * (r - value) / w.mean()  # the delta method's influence of each row
    se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else math.nan
    return Estimate(value, se, value - Z95 * se, value + Z95 * se)


def _estimates(w: np.ndarray, r: np.ndarray, direct: np.ndarray, logged: np.ndarray) -> dict[str, Estimate]:
    """IPS, SNIPS and DR of one outcome; `direct`: reward model at the router's choice,
    `logged`: at the logged action (per row)."""
    return {
        "ips": _mean_estimate(w * r),
        "snips": _snips(w, r),
        "dr": _mean_estimate(direct + w * (r - logged)),
    }


def offpolicy_evaluate(
    log: RoutingLog,
    quality: np.ndarray,
    cost: np.ndarray,
    cost_weights: Sequence[float] = (0.0,),
    reward_model: tuple[np.ndarray, np.ndarray] | None = None,
    clip: float | None = None,
) -> list[OffPolicyResult]:
    """IPS, SNIPS and DR estimates of a router's mean quality and cost on a bandit log.

    Args:
        log: a log with a `propensity` column; rows without one are left out.
        quality, cost: [n_queries, n_actions] the router's predictions for every query of `log`
            and every action of `log.space` (an action the router does not know: quality -inf).
        cost_weights: the weights the router decides at (one result each).
        reward_model: (quality, cost) [n_queries, n_actions] of the DR reward model; default:
            the router's own predictions (prefer `fit_reward_model`, as `haps eval` does).
        clip: cap on the weights 1 / p (None: none, the estimates stay unbiased).

    Raises:
        ValueError: when no row has a propensity, or the predictions' shape is not the log's.
    """
    rows = bandit_rows(log)
    assert log.propensity is not None  # bandit_rows raised otherwise
    shape = (log.n_queries, len(log.space))
    for name, array in (("quality", quality), ("cost", cost)):
        if np.shape(array) != shape:
            msg = f"`{name}` must be [n_queries, n_actions] = {list(shape)}, got {list(np.shape(array))}"
            raise ValueError(msg)
    if clip is not None and not (isinstance(clip, int | float) and clip >= 1):
        msg = f"`clip` must be None or a number >= 1, got {clip!r}"
        raise ValueError(msg)
    q_hat, c_hat = reward_model if reward_model is not None else (quality, cost)
    q_hat = np.where(np.isfinite(q_hat), q_hat, 0.0)
    c_hat = np.where(np.isfinite(c_hat), c_hat, 0.0)
    query, action = log.row_query[rows], log.row_action[rows]
    inv = 1.0 / log.propensity[rows]
    if clip is not None:
        inv = np.minimum(inv, clip)
    score, call_cost = log.score[rows], log.cost[rows]
    results = []
    for weight in cost_weights:
        pick = choose(quality, cost, float(weight))[query]
        w = np.where(pick == action, inv, 0.0)
        ess = float(w.sum() ** 2 / (w**2).sum()) if w.any() else 0.0
        results.append(
            OffPolicyResult(
                cost_weight=float(weight),
                n_rows=len(rows),
                matches=int((w > 0).sum()),
                ess=ess,
                quality=_estimates(w, score, q_hat[query, pick], q_hat[query, action]),
                cost=_estimates(w, call_cost, c_hat[query, pick], c_hat[query, action]),
            )
        )
    return results


def _ridge(x: np.ndarray, y: np.ndarray, mask: np.ndarray, l2: float) -> np.ndarray:
    """Per action: the observed mean (with one pseudo-observation of the overall mean) plus a
    ridge regression of the residual on `x`; the weights [d + 1, A], the last row the intercept."""
    d, n_a = x.shape[1], y.shape[1]
    coef = np.zeros((d + 1, n_a))
    overall = float(y[mask].mean()) if mask.any() else 0.0
    for a in range(n_a):
        rows = mask[:, a]
        if not rows.any():
            coef[d, a] = overall
            continue
        xa, ya = x[rows], y[rows, a]
        mean = (ya.sum() + overall) / (len(ya) + 1)  # one pseudo-observation of the overall mean
        # the dual form (an action's rows are usually fewer than the embedding's dimensions)
        gram = xa @ xa.T + l2 * np.eye(len(ya))
        coef[:d, a] = xa.T @ np.linalg.solve(gram, ya - mean)
        coef[d, a] = mean
    return coef


def fit_reward_model(
    log: RoutingLog,
    embeddings: np.ndarray,
    folds: int = 2,
    seed: int = 0,
    l2: float = 1.0,
    baseline: BaselineRouter | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cross-fitted DR reward model of quality and cost from the query embeddings: each fold's
    queries are predicted by a model fitted on the other folds' observed rows.

    The default model is a per-action ridge regression (closed form, so cheap on any log): the
    action's observed mean plus a linear correction from the embedding, for quality (clipped to
    [0, 1]) and for log-cost. Any baseline router (e.g. `LinearRouter()`, the per-action logistic
    regression) can be given instead; it is refitted on each fold.

    Args:
        log: the (bandit) log.
        embeddings: [n_queries, d] query embeddings of the log's queries.
        folds: number of query folds (>= 2).
        seed: seeds the folds.
        l2: the ridge penalty of the default model (> 0).
        baseline: a baseline router to fit per fold instead of the ridge model.

    Returns:
        (quality, cost), each [n_queries, n_actions].
    """
    if not isinstance(folds, int) or folds < 2:
        msg = f"`folds` must be an integer >= 2, got {folds!r}"
        raise ValueError(msg)
    if not (isinstance(l2, int | float) and l2 > 0):
        msg = f"`l2` must be a number > 0, got {l2!r}"
        raise ValueError(msg)
    n_q, n_a = log.n_queries, len(log.space)
    quality, cost = np.zeros((n_q, n_a)), np.zeros((n_q, n_a))
    fold = np.random.default_rng(seed).permutation(n_q) % folds
    observed = np.zeros(n_q, dtype=bool)
    observed[log.row_query] = True
    x_all = np.asarray(embeddings, dtype=np.float64)
    for k in range(folds):
        train = training_set(log, observed & (fold != k), embeddings)
        target = np.flatnonzero(fold == k)
        if len(train.texts) < 2:
            msg = f"the log has too few observed queries ({len(train.texts)}) to fit the reward model"
            raise ValueError(msg)
        if not len(target):
            continue
        if baseline is not None:
            q, c = baseline.fit(train).predict(embeddings[target], [log.queries[i] for i in target])
        else:
            x = np.asarray(train.embeddings, dtype=np.float64)
            xt = np.hstack([x_all[target], np.ones((len(target), 1))])
            q = np.clip(xt @ _ridge(x, train.score, train.mask, l2), 0.0, 1.0)
            log_c = np.log(np.maximum(train.cost, 1e-12))
            c = np.exp(xt @ _ridge(x, log_c, train.mask, l2)) if log.has_cost else np.zeros_like(q)
        quality[target], cost[target] = q, c
    return quality, cost
