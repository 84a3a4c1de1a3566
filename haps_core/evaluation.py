"""The evaluation harness: blocks, baselines, cost-weight sweeps, metrics, comparisons, plots.

A log that joins sources with different action sets has no single "fully observed" matrix, so it
is evaluated block by block (ARCHITECTURE section 5): for each `dataset` value, the largest set
of test queries and actions in which every (query, action) outcome is observed. Every router is
swept over cost weights on each block; its points come from the *observed* outcomes of its
choices, never from its own predictions. Results are reported per block and pooled
(query-weighted mean over blocks).
"""

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from haps_core import metrics as M
from haps_core.baselines import BaselineRouter, TrainingSet
from haps_core.decision import choose, cost_weight_grid
from haps_core.logs import RoutingLog

logger = logging.getLogger(__name__)

# A predictor maps (embeddings, texts) of queries to (quality, cost) over all actions.
Predictor = Callable[[np.ndarray, Sequence[str]], tuple[np.ndarray, np.ndarray]]


@dataclass
class Block:
    """A fully observed evaluation block: test queries x actions of one group."""

    name: str
    query_idx: np.ndarray
    action_idx: np.ndarray
    score: np.ndarray
    cost: np.ndarray

    @property
    def n_queries(self) -> int:
        return len(self.query_idx)


def _peel_to_full(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Greedy largest full sub-matrix: repeatedly drop the emptiest row or column."""
    rows = np.arange(mask.shape[0])
    cols = np.arange(mask.shape[1])
    sub = mask
    while sub.size and not sub.all():
        row_fill, col_fill = sub.mean(1), sub.mean(0)
        if row_fill.min() <= col_fill.min():
            keep = np.ones(len(rows), dtype=bool)
            keep[np.argmin(row_fill)] = False
            rows, sub = rows[keep], sub[keep]
        else:
            keep = np.ones(len(cols), dtype=bool)
            keep[np.argmin(col_fill)] = False
            cols, sub = cols[keep], sub[:, keep]
    return rows, cols


def find_blocks(log: RoutingLog, test_mask: np.ndarray, min_queries: int = 20) -> list[Block]:
    """The evaluation blocks of the test queries, one per `dataset` group.

    Args:
        log: the validated log.
        test_mask: per query of the log, True when it is a test (dev) query.
        min_queries: blocks with fewer queries, or fewer than 2 actions, are skipped (logged).
    """
    blocks = []
    for group in sorted({str(g) for g in log.groups}):
        rows = log.group_rows(group)
        rows = rows[test_mask[log.row_query[rows]]]
        if rows.size == 0:
            continue
        table = log.outcomes(rows)
        queries = table.observed_queries()
        actions = np.flatnonzero(table.action_counts() > 0)
        _, _, mask = table.dense(queries, actions)
        keep_q, keep_a = _peel_to_full(mask)
        name = group or "all"
        if len(keep_q) < min_queries or len(keep_a) < 2:
            logger.warning(
                "group %r: largest fully observed block is %d queries x %d actions; skipped "
                "(needs >= %d queries and >= 2 actions)",
                name,
                len(keep_q),
                len(keep_a),
                min_queries,
            )
            continue
        q_idx, a_idx = queries[keep_q], actions[keep_a]
        score, cost, _ = table.dense(q_idx, a_idx)
        blocks.append(Block(name, q_idx, a_idx, score, cost))
        logger.info("block %s: %d queries x %d actions", name, len(q_idx), len(a_idx))
    return blocks


def training_set(log: RoutingLog, query_mask: np.ndarray, embeddings: np.ndarray) -> TrainingSet:
    """Dense training outcomes of the queries selected by `query_mask`."""
    rows = np.flatnonzero(query_mask[log.row_query])
    table = log.outcomes(rows)
    q_idx = table.observed_queries()
    score, cost, mask = table.dense(q_idx)
    return TrainingSet(
        embeddings=embeddings[q_idx],
        texts=[log.queries[i] for i in q_idx],
        query_ids=[log.query_ids[i] for i in q_idx],
        score=score,
        cost=cost,
        mask=mask,
        space=log.space,
    )


def best_single_action(train: TrainingSet, block: Block) -> int:
    """Position (within the block) of the block action with the best TRAINING mean score.

    Picking it on the test block would be a winner's curse among many near-equal settings.
    Ties go to the cheaper action (training mean cost).
    """
    q, c = train.action_means()
    counts = train.mask.sum(0)[block.action_idx]
    qa, ca = q[block.action_idx], c[block.action_idx]
    qa = np.where(counts > 0, qa, -np.inf)
    order = np.lexsort((ca, -qa))
    return int(order[0])


def model_only_actions(train: TrainingSet, action_idx: np.ndarray) -> np.ndarray:
    """For each backend among `action_idx`, its most observed (most common) configuration."""
    counts = train.mask.sum(0)
    chosen: dict[str, int] = {}
    for a in action_idx:
        backend = train.space.actions[a].backend
        if backend not in chosen or counts[a] > counts[chosen[backend]]:
            chosen[backend] = int(a)
    return np.array(sorted(chosen.values()))


@dataclass
class RouterResult:
    """One router on one block: its sweep and metrics."""

    metrics: M.RouterMetrics
    costs: np.ndarray
    qualities: np.ndarray
    choices: np.ndarray  # [n_weights, n_queries], positions within the block's actions
    shares: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.metrics.to_dict(),
            "decision_shares": self.shares,
            "points": [[float(c), float(q)] for c, q in zip(self.costs, self.qualities)],
        }


@dataclass
class BlockReport:
    block: Block
    action_keys: list[str]
    best_action: int
    oracle: tuple[float, float]
    zero: M.RouterMetrics
    single_points: tuple[np.ndarray, np.ndarray]
    routers: dict[str, RouterResult] = field(default_factory=dict)
    comparisons: dict[str, M.BootstrapResult] = field(default_factory=dict)

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

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "blocks": [b.to_dict() for b in self.blocks],
            "pooled": self.pooled,
            "pooled_comparisons": self.pooled_comparisons,
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


def evaluate_block(
    block: Block,
    train: TrainingSet,
    predictions: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]],
    compare: Sequence[tuple[str, str]] = (),
    n_boot: int = 1000,
    seed: int = 0,
) -> BlockReport:
    """Sweeps each router's predictions over cost weights on one block.

    Args:
        block: the block.
        train: training outcomes (for the best single action).
        predictions: router name -> (quality [n, A_all], cost [n, A_all], allowed mask over the
            block's actions or None) for the block's queries.
        compare: pairs of router names to compare with a paired bootstrap.
    """
    best = best_single_action(train, block)
    sc, sq = M.single_action_points(block.score, block.cost)
    weights = cost_weight_grid(sc)
    report = BlockReport(
        block=block,
        action_keys=[train.space.actions[a].key for a in block.action_idx],
        best_action=best,
        oracle=M.oracle_point(block.score, block.cost),
        zero=M.zero_router_metrics(block.score, block.cost, best),
        single_points=(sc, sq),
    )
    for name, (quality, cost, allowed) in predictions.items():
        q, c = quality[:, block.action_idx], cost[:, block.action_idx]
        choices = sweep(q, c, block, weights, allowed)
        pc, pq = M.points_from_choices(block.score, block.cost, choices)
        report.routers[name] = RouterResult(
            M.router_metrics(pc, pq, block.score, block.cost, best),
            pc,
            pq,
            choices,
            decision_shares([train.space.actions[a] for a in block.action_idx], choices),
        )
    for a, b in compare:
        if a in report.routers and b in report.routers:
            report.comparisons[f"{a} vs {b}"] = M.paired_bootstrap(
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
        for key, res in r.comparisons.items():
            c = comps.setdefault(key, {"diff": 0.0, "var": 0.0, "weight": 0.0})
            c["diff"] += w * res.diff
            c["var"] += (w * res.se) ** 2
            c["weight"] += w
    pooled_comps = {}
    for key, c in comps.items():
        diff = c["diff"] / c["weight"]
        se = float(np.sqrt(c["var"]) / c["weight"])
        pooled_comps[key] = {"diff": diff, "se": se, "z": diff / se if se > 0 else float("inf")}
    return pooled, pooled_comps


def predict_all(
    routers: Mapping[str, BaselineRouter | Predictor], embeddings: np.ndarray, texts: Sequence[str]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for name, router in routers.items():
        fn = router.predict if isinstance(router, BaselineRouter) else router
        out[name] = fn(embeddings, texts)
    return out


# ---------------------------------------------------------------------------------------------
# Text output


_COLUMNS = (
    ("aiq", "AIQ"),
    ("q_at_c_best", "Q@C_best"),
    ("gap_recovered", "GR"),
    ("saving", "saving"),
    ("saving95", "saving@95"),
)


def _fmt(v: float) -> str:
    return "   -  " if v is None or not np.isfinite(v) else f"{v:+.3f}" if v < 0 else f"{v:.3f} "


def format_report(report: EvaluationReport) -> str:
    """A plain-text table: one section per block and one pooled."""
    lines = []
    head = f"{'router':<22}" + "".join(f"{t:>11}" for _, t in _COLUMNS)
    for r in report.blocks:
        sc, sq = r.single_points
        lines.append(
            f"\n== block {r.block.name}: {r.block.n_queries} queries x {len(r.action_keys)} actions; "
            f"best single (train) = {r.action_keys[r.best_action]} "
            f"(Q={sq[r.best_action]:.3f}, C=${sc[r.best_action]:.5f}); oracle Q={r.oracle[1]:.3f} "
            f"C=${r.oracle[0]:.5f}"
        )
        lines.append(head)
        for name, m in [("zero-router", r.zero)] + [(k, v.metrics) for k, v in r.routers.items()]:
            d = m.to_dict()
            lines.append(f"{name:<22}" + "".join(f"{_fmt(d[k]):>11}" for k, _ in _COLUMNS))
        for key, res in r.comparisons.items():
            lines.append(f"  paired bootstrap {key}: dAIQ = {res.diff:+.4f} +- {res.se:.4f} (se)")
        if "haps" in r.routers:
            shares = r.routers["haps"].shares
            parts = [f"{k}: " + ", ".join(f"{v} {x:.0%}" for v, x in d.items()) for k, d in shares.items()]
            lines.append("  haps decisions over the sweep: " + "; ".join(parts))
    lines.append(f"\n== pooled over {len(report.blocks)} blocks (query-weighted)")
    lines.append(head)
    for name, d in report.pooled.items():
        if name in ("oracle", "best-single"):
            continue
        lines.append(f"{name:<22}" + "".join(f"{_fmt(d.get(k, float('nan'))):>11}" for k, _ in _COLUMNS))
    for name in ("best-single", "oracle"):
        if name in report.pooled:
            d = report.pooled[name]
            lines.append(f"{name:<22} Q={d['quality']:.3f} C=${d['cost']:.5f}")
    for key, c in report.pooled_comparisons.items():
        lines.append(
            f"paired bootstrap {key}: dAIQ = {c['diff']:+.4f} +- {c['se']:.4f} (se), z = {c['z']:.2f}"
        )
    return "\n".join(lines)


def plot_report(report: EvaluationReport, path: str) -> None:
    """Cost-quality frontiers of every router per block (log cost axis), saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(report.blocks)
    fig, axes = plt.subplots(1, n, figsize=(5.5 * n, 4.5), squeeze=False)
    for ax, r in zip(axes[0], report.blocks):
        sc, sq = r.single_points
        ax.scatter(sc, sq, s=12, c="lightgray", label="single actions", zorder=1)
        zero = M.Frontier.from_points(sc, sq)
        ax.plot(zero.costs, zero.qualities, "k--", lw=1.2, label="zero-router", zorder=2)
        for name, res in r.routers.items():
            f = M.Frontier.from_points(res.costs, res.qualities)
            ax.plot(f.costs, f.qualities, marker=".", lw=1.5, label=name, zorder=3)
        ax.scatter(
            [sc[r.best_action]],
            [sq[r.best_action]],
            marker="*",
            s=120,
            c="gold",
            edgecolors="k",
            label="best single (train)",
            zorder=4,
        )
        ax.scatter([r.oracle[0]], [r.oracle[1]], marker="^", s=60, c="red", label="oracle", zorder=4)
        ax.set_xscale("log")
        ax.set_xlabel("mean cost per query (USD, log scale)")
        ax.set_ylabel("mean quality")
        ax.set_title(f"{r.block.name} ({r.block.n_queries} q x {len(r.action_keys)} a)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# The whole run


def run_evaluation(
    log: RoutingLog,
    embeddings: np.ndarray,
    test_mask: np.ndarray,
    routers: Mapping[str, BaselineRouter | Predictor],
    model_only: Sequence[str] = ("knn",),
    compare: Sequence[tuple[str, str]] = (),
    n_boot: int = 1000,
    seed: int = 0,
    min_block_queries: int = 20,
) -> EvaluationReport:
    """Fits baselines on the training queries and evaluates every router on each test block.

    Args:
        log: the validated log.
        embeddings: [n_queries, d] embeddings of all the log's queries.
        test_mask: per query, True for test (dev) queries; the rest train the baselines.
        routers: name -> baseline (fitted here on the training queries) or an already trained
            predictor ``(embeddings, texts) -> (quality, cost)``.
        model_only: routers also evaluated restricted to each backend's most common
            configuration (the "<name>-model-only" rows): what routing models alone gives.
        compare: router name pairs for the paired bootstrap.
    """
    train = training_set(log, ~test_mask, embeddings)
    for name, router in routers.items():
        if isinstance(router, BaselineRouter):
            logger.info("fitting baseline %s on %d training queries", name, len(train.texts))
            router.fit(train)
    blocks = find_blocks(log, test_mask, min_queries=min_block_queries)
    if not blocks:
        msg = (
            "no evaluation block: no group of test queries has >= 2 actions observed for "
            f">= {min_block_queries} queries; use more test queries (dev fraction) or a denser log"
        )
        raise ValueError(msg)
    reports = []
    for block in blocks:
        texts = [log.queries[i] for i in block.query_idx]
        raw = predict_all(routers, embeddings[block.query_idx], texts)
        predictions: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {
            k: (q, c, None) for k, (q, c) in raw.items()
        }
        keep = model_only_actions(train, block.action_idx)
        allowed = np.isin(block.action_idx, keep)
        if allowed.sum() < len(block.action_idx):
            for name in model_only:
                if name in raw:
                    q, c = raw[name]
                    predictions[f"{name}-model-only"] = (q, c, allowed)
        reports.append(evaluate_block(block, train, predictions, compare, n_boot=n_boot, seed=seed))
    pooled, pooled_comps = pool(reports)
    summary = {
        **log.summary(),
        "train_queries": int((~test_mask).sum()),
        "test_queries": int(test_mask.sum()),
    }
    return EvaluationReport(reports, pooled, pooled_comps, summary)
