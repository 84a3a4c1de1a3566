"""Evaluation blocks (fully observed test queries x actions per `dataset` group) and the
training-side choices made for them: the best single action and each backend's usual setting.
"""

import logging
from dataclasses import dataclass

import numpy as np

from haps_core.baselines import TrainingSet
from haps_core.logs import RoutingLog

logger = logging.getLogger(__name__)


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
