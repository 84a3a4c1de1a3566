"""From logs to a trained router: the steps `haps train`, `haps eval --router` and the default
router share (featurise once, build, train, record what was done)."""

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from haps_core.features import query_features
from haps_core.logs import RoutingLog
from haps_core.model import HAPSRouter, RouterConfig
from haps_core.training import (
    FineTunedEncoderFeatures,
    TrainingConfig,
    build_router,
    train_router,
)

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
    fine_tune: bool = False,
    encoder_lr: float = 2e-5,
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
        fine_tune: train the encoder end to end with the routing objective (one ensemble
            member: members would otherwise share, and fight over, one encoder). The tuned
            encoder's weights are then saved with the checkpoint.
        encoder_lr: the encoder's learning rate when fine-tuning.
    """
    router_config = router_config or RouterConfig(embed_dim=encoder.dim)
    training_config = training_config or TrainingConfig()
    if train_mask is None:
        train_mask = np.ones(log.n_queries, dtype=bool)
    rows = np.flatnonzero(train_mask[log.row_query])
    table = log.outcomes(rows)
    start = time.perf_counter()
    provider = None
    if fine_tune:
        if router_config.members != 1:
            logger.warning("fine-tuning the encoder trains one member (asked for %d)", router_config.members)
            router_config = RouterConfig.from_dict({**router_config.to_dict(), "members": 1})
        structural = features[:, router_config.embed_dim :] if router_config.use_structural else None
        provider = FineTunedEncoderFeatures(encoder, log.queries, structural, lr=encoder_lr)
    torch.manual_seed(training_config.seed)  # initial weights are part of a seeded run
    router = build_router(log.space, router_config, encoder)
    train_idx = np.flatnonzero(train_mask)
    result = train_router(router, features, table, train_idx, training_config, provider)
    if provider is not None:
        ref = torch.as_tensor(train_idx[:256])
        router.reference_features = provider.features(ref.numpy(), grad=False).cpu()
    router.encoder_info = {
        "id": encoder.encoder_id,
        "revision": encoder.revision,
        "kwargs": {"max_length": getattr(encoder, "max_length", None)}
        if hasattr(encoder, "max_length")
        else {},
        "fine_tuned": fine_tune,
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
            "skip_l2": result.skip_l2,
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


def aligned_predictor(router: HAPSRouter, log: RoutingLog, features: torch.Tensor) -> Any:
    """A predictor ``(embeddings, texts) -> (quality, cost)`` over the LOG's actions.

    The router's own features are looked up by query text (features depend on the text only).
    Actions of the log the router does not know get quality -inf, so they are never chosen.
    """
    quality, cost = router.predict_features(features)
    row_of = {text: i for i, text in enumerate(log.queries)}
    pos = np.array([router.space._index.get(a, -1) for a in log.space.actions])
    known = pos >= 0
    q_full = np.full((len(log.queries), len(log.space)), -np.inf)
    c_full = np.zeros((len(log.queries), len(log.space)))
    q_full[:, known] = quality[:, pos[known]]
    c_full[:, known] = cost[:, pos[known]]

    def predict(embeddings: np.ndarray, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        rows = [row_of[t] for t in texts]
        return q_full[rows], c_full[rows]

    return predict


def ablations(
    router: HAPSRouter,
    log: RoutingLog,
    encoder: Any,
    features: torch.Tensor,
    train_mask: np.ndarray,
) -> dict[str, Any]:
    """The router's ablations, trained the same way on the same queries (ARCHITECTURE 5).

    - flat: one head over all actions, no hierarchy, no PGN;
    - no-pgn: hierarchical with independent low-level heads per backend;
    - model-only: the same HAPS model on each backend's most common configuration only.
    """
    settings = router.training_summary.get("training_config", {})
    known = set(TrainingConfig.__dataclass_fields__)
    training = TrainingConfig(**{k: v for k, v in settings.items() if k in known}, progress=False)
    out: dict[str, Any] = {}
    for name, arch in (("flat", "flat"), ("no-pgn", "no_pgn")):
        cfg = RouterConfig.from_dict({**router.config.to_dict(), "architecture": arch})
        ablated = fit_router(log, encoder, features, train_mask, cfg, training)
        out[name] = aligned_predictor(ablated, log, features)
    sub = subset_log(log, model_only_subset(log, train_mask))
    model_only = fit_router(sub, encoder, features, train_mask, router.config, training)
    out["model-only"] = aligned_predictor(model_only, log, features)
    return out
