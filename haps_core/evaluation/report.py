"""One block's evaluation (cost-weight sweeps, metrics, paired bootstraps), its report and the pooling.

A router's points come from the *observed* outcomes of its choices, never from its own predictions.
Calibration (ECE, Brier score) is the one place the predictions are compared with the outcomes:
over every cell of the block the router may choose (its allowed actions), for the routers that
predict quality; pooled over blocks it is computed on the union of the blocks' cells (cell-weighted).
"""

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from haps_core.baselines import TrainingSet
from haps_core.decision import choose, cost_weight_grid
from haps_core.evaluation.blocks import Block, best_single_action
from haps_core.metrics import (
    BootstrapResult,
    CalibrationMetrics,
    RouterMetrics,
    calibration_metrics,
    oracle_point,
    paired_bootstrap,
    points_from_choices,
    router_metrics,
    single_action_points,
    zero_router_metrics,
)

logger = logging.getLogger(__name__)


@dataclass
class RouterResult:
    """One router on one block: its sweep and metrics."""

    metrics: RouterMetrics
    costs: np.ndarray
    qualities: np.ndarray
    choices: np.ndarray  # [n_weights, n_queries], positions within the block's actions
    shares: dict[str, dict[str, float]] = field(default_factory=dict)
    calibration: CalibrationMetrics | None = None  # None: the router predicts no quality
    # the (predicted, observed) cells the calibration was computed on, flat, for the pooling
    cells: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.metrics.to_dict(),
            "calibration": self.calibration.to_dict() if self.calibration else None,
            "decision_shares": self.shares,
            "points": [[float(c), float(q)] for c, q in zip(self.costs, self.qualities)],
        }


@dataclass
class BlockReport:
    block: Block
    action_keys: list[str]
    best_action: int
    oracle: tuple[float, float]
    zero: RouterMetrics
    single_points: tuple[np.ndarray, np.ndarray]
    routers: dict[str, RouterResult] = field(default_factory=dict)
    comparisons: dict[str, BootstrapResult] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        sc, sq = self.single_points
        return {
            "block": self.block.name,
            "queries": self.block.n_queries,
            "actions": self.action_keys,
            "best_single_action": self.action_keys[self.best_action],
            "best_single": {"cost": float(sc[self.best_action]), "quality": float(sq[self.best_action])},
            "oracle": {"cost": self.oracle[0], "quality": self.oracle[1]},
            "zero_router": self.zero.to_dict(),
            "routers": {k: v.to_dict() for k, v in self.routers.items()},
            "comparisons": {k: v.to_dict() for k, v in self.comparisons.items()},
        }


@dataclass
class EvaluationReport:
    blocks: list[BlockReport]
    pooled: dict[str, dict[str, float]]
    pooled_comparisons: dict[str, dict[str, float]]
    summary: dict[str, Any] = field(default_factory=dict)
    # router -> pooled calibration (ECE, Brier, reliability bins) over all blocks' cells
    pooled_calibration: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "blocks": [b.to_dict() for b in self.blocks],
            "pooled": self.pooled,
            "pooled_comparisons": self.pooled_comparisons,
            "pooled_calibration": self.pooled_calibration,
        }


def sweep(
    quality: np.ndarray, cost: np.ndarray, block: Block, weights: np.ndarray, allowed: np.ndarray | None
) -> np.ndarray:
    """Choices [n_weights, n_queries] (positions within the block) for each cost weight."""
    return np.stack([choose(quality, cost, w, allowed) for w in weights])


def decision_shares(actions: Sequence[Any], choices: np.ndarray) -> dict[str, dict[str, float]]:
    """Share of decisions per backend and per parameter value, over all swept cost weights."""
    counts = np.bincount(choices.ravel(), minlength=len(actions)) / choices.size
    out: dict[str, dict[str, float]] = {"backend": {}}
    for action, share in zip(actions, counts):
        if share == 0:
            continue
        out["backend"][action.backend] = out["backend"].get(action.backend, 0.0) + float(share)
        for param, value in action.params:
            key = str(value)
            out.setdefault(param, {})[key] = out.setdefault(param, {}).get(key, 0.0) + float(share)
    return {k: {v: round(x, 4) for v, x in sorted(d.items())} for k, d in out.items()}


def calibration_cells(
    name: str, quality: np.ndarray, score: np.ndarray, allowed: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray] | None:
    """The (predicted, observed) cells a router's calibration is computed on, flat, or None.

    Cells of actions outside `allowed` are left out, and so are non-finite predictions (actions
    the router does not know, predicted -inf so that they are never chosen). Predictions outside
    [0, 1] are no quality estimates: None (logged).
    """
    q, s = (quality, score) if allowed is None else (quality[:, allowed], score[:, allowed])
    finite = np.isfinite(q)
    if not finite.all():
        logger.info(
            "%s: %d cell(s) without a finite prediction left out of calibration", name, (~finite).sum()
        )
    p, o = q[finite].astype(np.float64), s[finite].astype(np.float64)
    if p.size == 0 or p.min() < 0.0 or p.max() > 1.0:
        logger.warning("%s: predicted quality is not in [0, 1]; no calibration reported", name)
        return None
    return p, o


def evaluate_block(
    block: Block,
    train: TrainingSet,
    predictions: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]],
    compare: Sequence[tuple[str, str]] = (),
    n_boot: int = 1000,
    seed: int = 0,
    calibrate: Collection[str] | None = None,
) -> BlockReport:
    """Sweeps each router's predictions over cost weights on one block.

    Args:
        block: the block.
        train: training outcomes (for the best single action).
        predictions: router name -> (quality [n, A_all], cost [n, A_all], allowed mask over the
            block's actions or None) for the block's queries.
        compare: pairs of router names to compare with a paired bootstrap.
        calibrate: the routers whose predicted quality is scored for calibration (ECE, Brier);
            None: all of them. Routers whose predictions are no quality estimates (random
            scores) belong outside it.
    """
    best = best_single_action(train, block)
    sc, sq = single_action_points(block.score, block.cost)
    weights = cost_weight_grid(sc)
    report = BlockReport(
        block=block,
        action_keys=[train.space.actions[a].key for a in block.action_idx],
        best_action=best,
        oracle=oracle_point(block.score, block.cost),
        zero=zero_router_metrics(block.score, block.cost, best),
        single_points=(sc, sq),
    )
    for name, (quality, cost, allowed) in predictions.items():
        q, c = quality[:, block.action_idx], cost[:, block.action_idx]
        choices = sweep(q, c, block, weights, allowed)
        pc, pq = points_from_choices(block.score, block.cost, choices)
        report.routers[name] = RouterResult(
            router_metrics(pc, pq, block.score, block.cost, best),
            pc,
            pq,
            choices,
            decision_shares([train.space.actions[a] for a in block.action_idx], choices),
        )
        if calibrate is None or name in calibrate:
            cells = calibration_cells(name, q, block.score, allowed)
            if cells is not None:
                report.routers[name].calibration = calibration_metrics(*cells)
                report.routers[name].cells = cells
    for a, b in compare:
        if a in report.routers and b in report.routers:
            report.comparisons[f"{a} vs {b}"] = paired_bootstrap(
                block.score,
                block.cost,
                report.routers[a].choices,
                report.routers[b].choices,
                best,
                n_boot=n_boot,
                seed=seed,
            )
    return report


def pool(reports: Sequence[BlockReport]) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Query-weighted means over blocks; comparisons combine per-block bootstraps.

    Blocks hold disjoint (query, action) sets, so the pooled difference's standard error is
    sqrt(sum w_i^2 se_i^2) with w_i the block's share of queries.
    """
    total = sum(r.block.n_queries for r in reports)
    pooled: dict[str, dict[str, float]] = {}
    rows: dict[str, list[tuple[float, dict[str, float]]]] = {}
    for r in reports:
        w = r.block.n_queries / total
        rows.setdefault("zero-router", []).append((w, r.zero.to_dict()))
        rows.setdefault("oracle", []).append((w, {"quality": r.oracle[1], "cost": r.oracle[0]}))
        sc, sq = r.single_points
        rows.setdefault("best-single", []).append(
            (w, {"quality": float(sq[r.best_action]), "cost": float(sc[r.best_action])})
        )
        for name, res in r.routers.items():
            rows.setdefault(name, []).append((w, res.metrics.to_dict()))
    for name, items in rows.items():
        keys = items[0][1].keys()
        pooled[name] = {}
        for k in keys:
            vals = [(w, d[k]) for w, d in items if np.isfinite(d[k])]
            wsum = sum(w for w, _ in vals)
            pooled[name][k] = float(sum(w * v for w, v in vals) / wsum) if wsum > 0 else float("nan")
    comps: dict[str, dict[str, float]] = {}
    for r in reports:
        w = r.block.n_queries / total
        for key, boot in r.comparisons.items():
            c = comps.setdefault(key, {"diff": 0.0, "var": 0.0, "weight": 0.0})
            c["diff"] += w * boot.diff
            c["var"] += (w * boot.se) ** 2
            c["weight"] += w
    pooled_comps = {}
    for key, c in comps.items():
        diff = c["diff"] / c["weight"]
        se = float(np.sqrt(c["var"]) / c["weight"])
        pooled_comps[key] = {"diff": diff, "se": se, "z": diff / se if se > 0 else float("inf")}
    return pooled, pooled_comps


def pool_calibration(reports: Sequence[BlockReport]) -> dict[str, CalibrationMetrics]:
    """Per router, calibration over the union of its cells in every block (cell-weighted).

    ECE is not additive over blocks, so it is recomputed on the union rather than averaged;
    a router is pooled only over the blocks where it has a calibration.
    """
    cells: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for r in reports:
        for name, res in r.routers.items():
            if res.cells is not None:
                cells.setdefault(name, []).append(res.cells)
    return {
        name: calibration_metrics(
            np.concatenate([p for p, _ in parts]), np.concatenate([o for _, o in parts])
        )
        for name, parts in cells.items()
    }
