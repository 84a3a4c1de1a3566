"""A validated log, column-wise (`RoutingLog`), and its sparse queries x actions pivot (`OutcomeTable`).

The pivot keeps one entry per observed cell, sorted by query then action, with CSR-style offsets,
so a large log never materialises a dense matrix; dense blocks are cut out only for the (small)
query/action subsets that evaluation and training ask for.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from haps_core.catalog import RoutingSpace


@dataclass
class RoutingLog:
    """Validated log rows, column-wise, against a routing space.

    Attributes:
        space: the actions the log's rows use (inferred, or the catalog given to `read_logs`).
        query_ids: the distinct query ids, in order of first appearance.
        queries: the query text of each id (same order).
        row_query: per row, index into `query_ids`.
        row_action: per row, index into `space.actions`.
        score: per row, the observed score.
        cost: per row, USD of one call (0 when the log has no cost information).
        groups: per row, the `dataset` value ("" when absent): logs that join sources with
            different action sets are evaluated one block per group.
        has_cost: whether cost was given or computable for the rows.
        input_tokens: per row, the logged input tokens (NaN where the row has none; None when
            the log was built without them).
        propensity: per row, the probability with which the logging policy chose the row's
            action for its query (NaN where the row has none; None when no row has one).
        n_skipped: rows dropped because ``skip_invalid=True`` was asked for.
        files: the files read.
    """

    space: RoutingSpace
    query_ids: list[str]
    queries: list[str]
    row_query: np.ndarray
    row_action: np.ndarray
    score: np.ndarray
    cost: np.ndarray
    groups: np.ndarray
    has_cost: bool = True
    n_skipped: int = 0
    files: list[str] = field(default_factory=list)
    input_tokens: np.ndarray | None = None
    propensity: np.ndarray | None = None

    @property
    def n_rows(self) -> int:
        return int(self.score.shape[0])

    @property
    def n_queries(self) -> int:
        return len(self.query_ids)

    def summary(self) -> dict[str, Any]:
        """Shape of the log, for reports and checkpoints' training-data summary."""
        return {
            "files": [Path(f).name for f in self.files],
            "rows": self.n_rows,
            "queries": self.n_queries,
            "backends": len(self.space.backends),
            "actions": len(self.space),
            "observed_cells": int(self.outcomes().n_cells),
            "has_cost": self.has_cost,
            "groups": sorted({str(g) for g in self.groups}),
            "rows_skipped": self.n_skipped,
        }

    def outcomes(self, rows: np.ndarray | None = None) -> "OutcomeTable":
        """Pivots (a subset of) the rows into a sparse queries x actions outcome table.

        Repeated observations of a cell are averaged; `OutcomeTable.count` keeps how many. A
        cell's propensity is the mean over its rows that have one (NaN when none has).
        """
        sel: np.ndarray | slice = slice(None) if rows is None else rows
        q = self.row_query[sel].astype(np.int64)
        a = self.row_action[sel].astype(np.int64)
        n_actions = len(self.space)
        keys = q * n_actions + a
        uniq, inverse = np.unique(keys, return_inverse=True)
        count = np.bincount(inverse, minlength=len(uniq)).astype(np.int64)
        score = np.bincount(inverse, weights=self.score[sel], minlength=len(uniq)) / count
        cost = np.bincount(inverse, weights=self.cost[sel], minlength=len(uniq)) / count
        propensity = None
        if self.propensity is not None:
            p = self.propensity[sel]
            known = np.isfinite(p)
            n_known = np.bincount(inverse, weights=known, minlength=len(uniq))
            total = np.bincount(inverse, weights=np.where(known, p, 0.0), minlength=len(uniq))
            with np.errstate(invalid="ignore", divide="ignore"):
                propensity = np.where(n_known > 0, total / n_known, np.nan)
        return OutcomeTable(
            space=self.space,
            query_ids=self.query_ids,
            queries=self.queries,
            cell_query=(uniq // n_actions).astype(np.int64),
            cell_action=(uniq % n_actions).astype(np.int64),
            score=score,
            cost=cost,
            count=count,
            has_cost=self.has_cost,
            propensity=propensity,
        )

    def group_rows(self, group: str) -> np.ndarray:
        return np.flatnonzero(self.groups == group)


@dataclass
class OutcomeTable:
    """Sparse outcome table: one entry per observed (query, action) cell, sorted by query.

    Unobserved cells are missing, never zero. ``indptr[q]:indptr[q+1]`` are query q's cells.
    """

    space: RoutingSpace
    query_ids: list[str]
    queries: list[str]
    cell_query: np.ndarray
    cell_action: np.ndarray
    score: np.ndarray
    cost: np.ndarray
    count: np.ndarray
    has_cost: bool = True
    # Per cell, the known input side of `cost` when `cost` holds only the side the router's
    # head predicts (training on logs with input tokens; see `haps_core.model.input_cost`).
    input_cost: np.ndarray | None = None
    # Per query, the `text_counts` of its text (what the input side of cost is computed from).
    input_counts: np.ndarray | None = None
    # Per cell, the logging policy's mean propensity of its rows (NaN where none was logged);
    # None when the log has no propensities (bandit logs: see `RoutingLog.propensity`).
    propensity: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.indptr = np.searchsorted(self.cell_query, np.arange(len(self.query_ids) + 1))

    @property
    def n_cells(self) -> int:
        return int(self.score.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.query_ids), len(self.space))

    def observed_queries(self) -> np.ndarray:
        """Indices of queries with at least one observed cell."""
        return np.flatnonzero(np.diff(self.indptr) > 0)

    def dense(
        self, query_idx: Sequence[int] | np.ndarray, action_idx: Sequence[int] | np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Dense (score, cost, observed mask) for the given queries x actions.

        Only ever called on subsets (a batch, an evaluation block), so memory stays bounded by
        what the caller asks for.
        """
        score, cost, mask = self._scatter(query_idx, action_idx, (self.score, self.cost))
        return score, cost, mask

    def dense_input_cost(self, query_idx: Sequence[int] | np.ndarray) -> np.ndarray:
        """Dense known input cost of the given queries x all actions (0 where unobserved or unknown)."""
        if self.input_cost is None:
            return np.zeros((len(query_idx), len(self.space)))
        return self._scatter(query_idx, None, (self.input_cost,))[0]

    def dense_propensity(self, query_idx: Sequence[int] | np.ndarray) -> np.ndarray:
        """Dense propensity of the given queries x all actions (NaN where unobserved or unknown)."""
        if self.propensity is None:
            return np.full((len(query_idx), len(self.space)), np.nan)
        known = self._scatter(query_idx, None, (np.isfinite(self.propensity).astype(float),))[0]
        values = self._scatter(query_idx, None, (np.nan_to_num(self.propensity, nan=1.0),))[0]
        return np.where(known > 0, values, np.nan)

    def full_cost(self) -> np.ndarray:
        """Per cell, the whole cost of the call (`cost` plus the known input side, if split)."""
        return self.cost if self.input_cost is None else self.cost + self.input_cost

    def _scatter(
        self,
        query_idx: Sequence[int] | np.ndarray,
        action_idx: Sequence[int] | np.ndarray | None,
        values: tuple[np.ndarray, ...],
    ) -> tuple[np.ndarray, ...]:
        """Dense [queries, actions] copies of per-cell `values`, then the observed mask."""
        query_idx = np.asarray(query_idx, dtype=np.int64)
        if action_idx is None:
            action_idx = np.arange(len(self.space))
        action_idx = np.asarray(action_idx, dtype=np.int64)
        n_q, n_a = len(query_idx), len(action_idx)
        out = [np.zeros((n_q, n_a)) for _ in values]
        mask = np.zeros((n_q, n_a), dtype=bool)
        action_pos = np.full(len(self.space), -1, dtype=np.int64)
        action_pos[action_idx] = np.arange(n_a)
        starts, ends = self.indptr[query_idx], self.indptr[query_idx + 1]
        lengths = ends - starts
        if lengths.sum() == 0:
            return (*out, mask)
        rows = np.repeat(np.arange(n_q), lengths)
        cells = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends, strict=True)])
        cols = action_pos[self.cell_action[cells]]
        keep = cols >= 0
        rows, cols, cells = rows[keep], cols[keep], cells[keep]
        for dense, per_cell in zip(out, values, strict=True):
            dense[rows, cols] = per_cell[cells]
        mask[rows, cols] = True
        return (*out, mask)

    def action_counts(self, query_idx: np.ndarray | None = None) -> np.ndarray:
        """Number of observed queries per action (over all queries or the given subset)."""
        cells = np.arange(self.n_cells)
        if query_idx is not None:
            keep = np.zeros(len(self.query_ids), dtype=bool)
            keep[np.asarray(query_idx)] = True
            cells = cells[keep[self.cell_query]]
        return np.bincount(self.cell_action[cells], minlength=len(self.space))
