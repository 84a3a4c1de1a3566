"""Warm starts: update a trained router on new routing logs instead of retraining it.

`warm_start` (behind ``haps train --init-from ROUTER``) continues training a copy of a router
on a log, typically the records a deployment served (a bandit log: one action per query, with
the propensity an exploration policy recorded). The copy keeps the router's weights, input
standardisation, encoder and input-token model; the policy term weights each bandit row by
min(1 / propensity, `propensity_clip`) as in `fit`; each member's early stopping starts from
the weights as they came, so an update that does not help on the member's held-out queries
leaves it as it was. A log with actions the router does not know extends its catalog first
(`haps_core.model.extend.extend_router`: new rows start from the catalog's mean), and backends
held to exploration (`add_backend`) are released once the log holds enough rows of them.
"""

import copy
import dataclasses
import logging
import time
from typing import Any

import numpy as np
import torch

from haps_core.catalog import RoutingSpace
from haps_core.features import query_features
from haps_core.logs import OutcomeTable, RoutingLog
from haps_core.model import HAPSRouter
from haps_core.model.extend import extend_router, release_explore_only
from haps_core.model.input_cost import text_counts
from haps_core.model.ood import fit_ood
from haps_core.training.config import TrainingConfig
from haps_core.training.trainer import train_router

logger = logging.getLogger(__name__)

# An update is a short fine-tune: a smaller step, fewer epochs, no linear-path warm-up (that
# would refit the linear path from scratch and forget what the router knew).
WARM_DEFAULTS: dict[str, Any] = {"epochs": 15, "lr": 5e-4, "patience": 4, "skip_warmup_steps": 0}


def warm_config(**overrides: Any) -> TrainingConfig:
    """The default `TrainingConfig` of a warm start (`WARM_DEFAULTS`), with `overrides`."""
    return TrainingConfig(**{**WARM_DEFAULTS, "progress": False, **overrides})


def _copy(router: HAPSRouter) -> HAPSRouter:
    encoder, router.encoder = router.encoder, None  # shared, not copied
    try:
        out = copy.deepcopy(router)
    finally:
        router.encoder = encoder
    out.encoder = encoder
    return out


def _union_space(router: HAPSRouter, log: RoutingLog) -> RoutingSpace:
    """The router's catalog plus the log's actions it lacks (their backends from the log)."""
    known = set(router.space.actions)
    extra = [a for a in log.space.actions if a not in known]
    if not extra:
        return router.space
    names = set(router.space.backend_names)
    backends = list(router.space.backends)
    for b in log.space.backends:
        if b.name in names:
            mine = router.space.backend(b.name)
            grid = {k: set(v) for k, v in mine.grid}
            for k, v in b.grid:
                grid.setdefault(k, set()).update(v)
            merged = dataclasses.replace(mine, grid=tuple((k, tuple(v)) for k, v in grid.items()))
            backends[backends.index(mine)] = merged
        else:
            backends.append(b)
    return RoutingSpace(tuple(backends), (*router.space.actions, *extra), router.space.prompt_styles)


def on_space(log: RoutingLog, space: RoutingSpace) -> RoutingLog:
    """`log` with its rows' actions renumbered into `space` (which holds all of them)."""
    if log.space == space:
        return log
    mapping = np.array([space.index(a) for a in log.space.actions], dtype=np.int64)
    return dataclasses.replace(log, space=space, row_action=mapping[log.row_action])


def head_table(router: HAPSRouter, log: RoutingLog, rows: np.ndarray) -> OutcomeTable:
    """The training table of `rows` with the cost the router's head predicts: the whole cost,
    or, for backends whose input tokens the router models, the cost less the input side."""
    model = router.input_model
    if not (log.has_cost and model.active):
        return log.outcomes(rows)
    space = log.space
    counts = text_counts(log.queries)
    backend_of = np.asarray(space.backend_index())
    price = np.asarray([b.input_price for b in space.backends])[backend_of] / 1e6
    q, a = log.row_query, log.row_action
    predicted = model.tokens(space, counts[q])[np.arange(log.n_rows), a]
    logged = log.input_tokens if log.input_tokens is not None else np.full(log.n_rows, np.nan)
    actual = np.where(np.isfinite(logged), logged, predicted) * price[a]
    table = dataclasses.replace(log, cost=np.maximum(log.cost - actual, 0.0)).outcomes(rows)
    table.input_cost = dataclasses.replace(log, cost=predicted * price[a]).outcomes(rows).cost
    table.input_counts = counts
    return table


def warm_start(
    router: HAPSRouter,
    log: RoutingLog,
    *,
    features: torch.Tensor | None = None,
    train_mask: np.ndarray | None = None,
    training_config: TrainingConfig | None = None,
    prior: float | dict[str, float] | None = None,
    refit_statistics: bool = True,
) -> HAPSRouter:
    """An updated copy of `router`, trained further on `log` (see the module docstring).

    Args:
        router: the trained router to start from (with its encoder, unless `features`).
        log: the new routing log (a bandit log with `propensity`, or any log in format v1).
        features: [n_queries, input_dim] router features of the log's queries (default: the
            router's encoder).
        train_mask: per log query, True to train on it (default: all).
        training_config: default `warm_config()`.
        prior: the mean quality of actions the log adds to the catalog (None: the catalog's mean).
        refit_statistics: recompute the OOD statistics on the log's training queries.
    """
    start = time.perf_counter()
    config = training_config or warm_config()
    space = _union_space(router, log)
    out = _copy(router) if space == router.space else extend_router(router, space, prior)
    log = on_space(log, out.space)
    if train_mask is None:
        train_mask = np.ones(log.n_queries, dtype=bool)
    if features is None:
        if out.encoder is None:
            msg = "`router` has no encoder attached: attach one or pass `features`"
            raise ValueError(msg)
        features = query_features(out.encoder, log.queries, out.config.use_structural)
    rows = np.flatnonzero(train_mask[log.row_query])
    table = head_table(out, log, rows)
    result = train_router(out, features, table, np.flatnonzero(train_mask), config, warm=True)
    counts = np.bincount(log.row_action[rows], minlength=len(out.space))
    per_backend: dict[str, int] = {}
    for j, action in enumerate(out.space.actions):
        per_backend[action.backend] = per_backend.get(action.backend, 0) + int(counts[j])
    released = release_explore_only(out, per_backend)
    if refit_statistics:
        try:
            fit_ood(out, log, train_mask, features=features)
        except ValueError as exc:
            logger.warning("OOD statistics kept from the starting router: %s", exc)
    bandit = 0 if log.propensity is None else int(np.isfinite(log.propensity[rows]).sum())
    out.training_summary = {
        **router.training_summary,
        "warm_start": {
            "from": router.training_summary.get("files", []),
            "rows": len(rows),
            "bandit_rows": bandit,
            "queries": int(train_mask.sum()),
            "epochs_run": result.epochs_run,
            "heldout_regret": round(result.best_dev_regret, 5),
            "released_backends": released,
            "seconds": round(time.perf_counter() - start, 1),
        },
    }
    return out
