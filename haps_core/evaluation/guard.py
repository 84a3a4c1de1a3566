"""The update guard: accept a new router only if, off-policy on recent records, it is not worse.

Before an updated router (`haps train --init-from`, `add_backend`) replaces the one serving,
both are judged on the same recent bandit log (served records with their propensities): each
router's routing choice per logged query, at the serving cost weight, and the off-policy
estimate of the mean utility ``score - cost_weight * cost`` it would have got (DR by default, or
SNIPS; `haps_core.evaluation.offpolicy`). The two estimates share their rows, so the test is on
the paired per-row differences: the candidate is rejected when its estimate is below the
current one's by more than `max_se` standard errors of that difference (2 by default).
"""

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from haps_core.evaluation.offpolicy import bandit_rows, fit_reward_model
from haps_core.logs import RoutingLog

logger = logging.getLogger(__name__)

GUARD_ESTIMATORS = ("dr", "snips")


@dataclass
class GuardResult:
    """The guard's verdict: each router's estimate, their paired difference and its SE."""

    accepted: bool
    estimator: str
    cost_weight: float
    rows: int
    current: float
    candidate: float
    diff: float
    se: float
    max_se: float
    matches: tuple[int, int]

    @property
    def message(self) -> str:
        verdict = "accepted" if self.accepted else "REJECTED"
        return (
            f"update {verdict}: off-policy {self.estimator.upper()} utility at cost weight "
            f"{self.cost_weight:g} on {self.rows} recent records: candidate {self.candidate:.4f}, "
            f"current {self.current:.4f}, difference {self.diff:+.4f} (se {self.se:.4f}); "
            f"the bound is -{self.max_se:g} se = {-self.max_se * self.se:+.4f}"
            + ("" if self.accepted else " (override with a larger `max_se`, `--guard-max-se`)")
        )

    def to_dict(self) -> dict[str, Any]:
        return {**{k: getattr(self, k) for k in self.__dataclass_fields__}, "message": self.message}


def _contributions(
    log: RoutingLog, rows: np.ndarray, pick: np.ndarray, r_hat: np.ndarray, reward: np.ndarray, estimator: str
) -> np.ndarray:
    """Per bandit row, its contribution to the estimate (whose mean is the estimate)."""
    assert log.propensity is not None
    query, action = log.row_query[rows], log.row_action[rows]
    w = np.where(pick[query] == action, 1.0 / log.propensity[rows], 0.0)
    if estimator == "dr":
        known = pick[query] >= 0
        direct = np.where(known, r_hat[query, np.maximum(pick[query], 0)], r_hat.mean())
        return direct + w * (reward - r_hat[query, action])
    total = w.sum()
    if total == 0:
        return np.full(len(rows), math.nan)
    value = float((w * reward).sum() / total)
    return value + w * (reward - value) / w.mean()  # the delta method's influence, around the value


def _picks(router: Any, log: RoutingLog, texts: Sequence[str], cost_weight: float) -> np.ndarray:
    """Per log query, the log action the router routes it to (-1: an action the log lacks)."""
    index = {a: i for i, a in enumerate(log.space.actions)}
    decisions = router.route(list(texts), cost_weight=cost_weight)
    return np.array([index.get(router.space.actions[d.action_index], -1) for d in decisions])


def update_guard(
    current: Any,
    candidate: Any,
    log: RoutingLog,
    *,
    cost_weight: float | None = None,
    estimator: str = "dr",
    max_se: float = 2.0,
    embeddings: np.ndarray | None = None,
) -> GuardResult:
    """Judges `candidate` against `current` on the bandit rows of `log` (module docstring).

    Args:
        current, candidate: routers (`HAPSRouter` or any `RouterLike` with an encoder).
        log: recent records as a routing log with `propensity` (rows without one are left out).
        cost_weight: the serving cost weight (default: `current.default_cost_weight`).
        estimator: "dr" (doubly robust, with a cross-fitted ridge reward model) or "snips".
        max_se: how many standard errors worse the candidate may be and still be accepted.
        embeddings: [n_queries, d] query embeddings for the reward model (default: the current
            router's encoder).
    """
    if estimator not in GUARD_ESTIMATORS:
        msg = f"`estimator` must be one of {GUARD_ESTIMATORS}, got {estimator!r}"
        raise ValueError(msg)
    if isinstance(max_se, bool) or not isinstance(max_se, int | float) or not max_se >= 0:
        msg = f"`max_se` must be a number >= 0 (standard errors), got {max_se!r}"
        raise ValueError(msg)
    rows = bandit_rows(log)
    weight = float(current.default_cost_weight if cost_weight is None else cost_weight)
    queries = np.unique(log.row_query[rows])
    texts = [log.queries[i] for i in queries]
    n_q = log.n_queries
    picks = []
    for router in (current, candidate):
        pick = np.full(n_q, -1, dtype=np.int64)
        pick[queries] = _picks(router, log, texts, weight)
        picks.append(pick)
    reward = log.score[rows] - weight * log.cost[rows]
    r_hat = np.zeros((n_q, len(log.space)))
    if estimator == "dr":
        if embeddings is None:
            from haps_core.encoders import embed_texts

            embeddings = np.zeros((n_q, current.encoder.dim), dtype=np.float32)
            embeddings[queries] = embed_texts(current.encoder, texts)
        q_hat, c_hat = fit_reward_model(log, embeddings)
        r_hat = q_hat - weight * c_hat
    cur, cand = (_contributions(log, rows, p, r_hat, reward, estimator) for p in picks)
    d = cand - cur
    diff = float(d.mean())
    se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else math.nan
    accepted = bool(diff >= -max_se * se) if math.isfinite(se) else bool(diff >= 0)
    query, action = log.row_query[rows], log.row_action[rows]
    result = GuardResult(
        accepted=accepted,
        estimator=estimator,
        cost_weight=weight,
        rows=len(rows),
        current=float(cur.mean()),
        candidate=float(cand.mean()),
        diff=diff,
        se=se,
        max_se=float(max_se),
        matches=(int((picks[0][query] == action).sum()), int((picks[1][query] == action).sum())),
    )
    (logger.info if accepted else logger.warning)("%s", result.message)
    return result
