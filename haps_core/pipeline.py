"""From logs to a trained router: the steps `haps train`, `haps eval --router` and the default
router share (featurise once, build, train, record what was done)."""

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from haps_core.logs import RoutingLog
from haps_core.model import HAPSRouter, RouterConfig
from haps_core.training import TrainingConfig, build_router, query_features, train_router

logger = logging.getLogger(__name__)


def subset_log(log: RoutingLog, action_idx: Sequence[int]) -> RoutingLog:
    """The rows of `log` whose action is in `action_idx`, over the smaller routing space."""
    action_idx = np.asarray(sorted({int(a) for a in action_idx}))
    space = log.space.subset(action_idx)
    remap = np.full(len(log.space), -1)
    remap[action_idx] = [space.index(log.space.actions[a]) for a in action_idx]
    keep = remap[log.row_action] >= 0
    return RoutingLog(
        space=space,
        query_ids=log.query_ids,
        queries=log.queries,
        row_query=log.row_query[keep],
        row_action=remap[log.row_action[keep]].astype(np.int32),
        score=log.score[keep],
        cost=log.cost[keep],
        groups=log.groups[keep],
        has_cost=log.has_cost,
        n_skipped=log.n_skipped,
        files=log.files,
    )


def model_only_subset(log: RoutingLog, train_mask: np.ndarray) -> np.ndarray:
    """Each backend's most common configuration in the training rows (the model-only catalog)."""
    rows = train_mask[log.row_query]
    counts = np.bincount(log.row_action[rows], minlength=len(log.space))
    chosen: dict[str, int] = {}
    for a, action in enumerate(log.space.actions):
        if action.backend not in chosen or counts[a] > counts[chosen[action.backend]]:
            chosen[action.backend] = a
    return np.array(sorted(chosen.values()))


def fit_router(
    log: RoutingLog,
    encoder: Any,
    features: torch.Tensor,
    train_mask: np.ndarray | None = None,
    router_config: RouterConfig | None = None,
    training_config: TrainingConfig | None = None,
    heldout: dict[str, Any] | None = None,
) -> HAPSRouter:
    """Builds and trains a router on the log's queries selected by `train_mask` (default: all).

    Args:
        log: the validated log.
        encoder: the query encoder (attached to the router; referenced in its checkpoint).
        features: [n_queries, input_dim] features of all the log's queries.
        train_mask: per query, True to train on it.
        router_config, training_config: settings.
        heldout: the evaluation split left out of training ({"fraction", "seed"}), recorded so
            that `haps eval --router` evaluates on queries the router never saw.
    """
    router_config = router_config or RouterConfig(embed_dim=encoder.dim)
    training_config = training_config or TrainingConfig()
    if train_mask is None:
        train_mask = np.ones(log.n_queries, dtype=bool)
    rows = np.flatnonzero(train_mask[log.row_query])
    table = log.outcomes(rows)
    start = time.perf_counter()
    torch.manual_seed(training_config.seed)  # initial weights are part of a seeded run
    router = build_router(log.space, router_config, encoder)
    result = train_router(router, features, table, np.flatnonzero(train_mask), training_config)
    router.encoder_info = {
        "id": encoder.encoder_id,
        "revision": encoder.revision,
        "kwargs": {"max_length": getattr(encoder, "max_length", None)}
        if hasattr(encoder, "max_length")
        else {},
        "fine_tuned": False,
    }
    summary = log.summary()
    summary.update(
        {
            "train_queries": int(train_mask.sum()),
            "train_rows": len(rows),
            "heldout": heldout or {},
            "epochs_run": result.epochs_run,
            "median_best_epoch": result.best_epoch,
            "heldout_regret": round(result.best_dev_regret, 5),
            "seconds": round(time.perf_counter() - start, 1),
            "device": result.device,
            "parameters": router.num_parameters(),
            "training_config": {k: v for k, v in asdict(training_config).items() if k != "progress"},
        }
    )
    router.training_summary = summary
    return router


def features_for(encoder: Any, texts: Sequence[str], use_structural: bool) -> torch.Tensor:
    """Features of texts (embedding through the encoder, which may cache)."""
    return query_features(encoder, list(texts), use_structural)
