"""From logs to a trained router: `fit` (the one-call API behind `haps train`) and `fit_router`
(featurised inputs in, a trained router with the record of its training out)."""

import dataclasses
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from haps_core.encoders import HFEncoder, QueryEncoder, embedding_encoder
from haps_core.features import query_features
from haps_core.logs import RoutingLog, read_logs, split_queries
from haps_core.model import HAPSRouter, RouterConfig
from haps_core.model.ood import fit_ood
from haps_core.training import distributed as ddp
from haps_core.training.config import TrainingConfig
from haps_core.training.costs import cost_split_table
from haps_core.training.providers import FineTunedEncoderFeatures
from haps_core.training.styles import PromptStyles, with_prompt_styles
from haps_core.training.trainer import build_router, train_router

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


def fit_router(
    log: RoutingLog,
    encoder: QueryEncoder,
    features: torch.Tensor,
    train_mask: np.ndarray | None = None,
    router_config: RouterConfig | None = None,
    training_config: TrainingConfig | None = None,
    heldout: dict[str, float | int] | None = None,
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
    table, input_model, input_summary = cost_split_table(log, rows)
    start = time.perf_counter()
    provider = None
    if fine_tune:
        if not isinstance(encoder, HFEncoder):
            name = type(encoder).__name__
            msg = f"fine-tuning needs a transformers encoder without the embedding cache, got {name}"
            raise TypeError(msg)
        if router_config.members != 1:
            logger.warning("fine-tuning the encoder trains one member (asked for %d)", router_config.members)
            router_config = RouterConfig.from_dict({**router_config.to_dict(), "members": 1})
        structural = features[:, router_config.embed_dim :] if router_config.use_structural else None
        provider = FineTunedEncoderFeatures(encoder, log.queries, structural, lr=encoder_lr)
    torch.manual_seed(training_config.seed)  # initial weights are part of a seeded run
    router = build_router(log.space, router_config, encoder)
    router.set_input_model(input_model)
    train_idx = np.flatnonzero(train_mask)
    result = train_router(router, features, table, train_idx, training_config, provider)
    if provider is not None:
        ref = torch.as_tensor(train_idx[:256])
        router.reference_features = provider.features(ref.numpy(), grad=False).cpu()
        if table.input_counts is not None:
            router.reference_counts = torch.as_tensor(table.input_counts[ref.numpy()], dtype=torch.float64)
    router.encoder_info = {
        "id": encoder.encoder_id,
        "revision": encoder.revision,
        "kwargs": {"max_length": getattr(encoder, "max_length", None)}
        if hasattr(encoder, "max_length")
        else {},
        "fine_tuned": fine_tune,
    }
    try:  # what the router knows of its training queries: OOD, coverage, explanations
        fit_ood(router, log, train_mask, features=None if provider is not None else features)
    except ValueError as exc:
        logger.warning("no OOD statistics stored: %s", exc)
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
            "input_cost": input_summary,
            "training_config": {k: v for k, v in asdict(training_config).items() if k != "progress"},
        }
    )
    router.training_summary = summary
    return router


def features_for(encoder: QueryEncoder, texts: Sequence[str], use_structural: bool) -> torch.Tensor:
    """Features of texts (embedding through the encoder, which may cache)."""
    return query_features(encoder, list(texts), use_structural)


def resolve_encoder(
    encoder: QueryEncoder | PathLike | None = None, device: str = "auto", cache: bool = True
) -> QueryEncoder:
    """The query encoder to train with: `encoder` itself when it is one, else the encoder of
    that name or path (None: the default MiniLM), with the on-disk embedding cache if `cache`."""
    if isinstance(encoder, QueryEncoder):
        return encoder
    if encoder is not None and not isinstance(encoder, str | os.PathLike):
        msg = f"`encoder` must be a QueryEncoder, a name or a path, got {type(encoder).__name__}"
        raise TypeError(msg)
    return embedding_encoder(None if encoder is None else os.fspath(encoder), device=device, cache=cache)


def fit(
    log: RoutingLog | PathLike | Sequence[PathLike],
    *,
    encoder: QueryEncoder | PathLike | None = None,
    router_config: RouterConfig | None = None,
    training_config: TrainingConfig | None = None,
    prices: Mapping[str, tuple[float, float]] | PathLike | None = None,
    skip_invalid: bool = False,
    holdout_fraction: float = 0.0,
    holdout_seed: int = 0,
    fine_tune_encoder: bool = False,
    encoder_lr: float = 2e-5,
    device: str = "auto",
    cache: bool = True,
    prompt_styles: PromptStyles | None = None,
) -> HAPSRouter:
    """Trains a router on routing logs in one call, exactly as `haps train` does.

    The encoder is made here and the features computed through
    `haps_core.features.query_features`, so it is named once; with the same settings and seed,
    ``fit(path)`` gives the router ``haps train --logs path`` saves.

    Args:
        log: a `RoutingLog`, or the path(s) of log files in format v1.
        encoder: a `QueryEncoder`, or the name or path of one; default: the bundled MiniLM.
        router_config: the network's settings; its `embed_dim` is always the encoder's.
        training_config: the run's settings; default `TrainingConfig(device=device)`.
        prices: price table for rows without cost (when reading files).
        skip_invalid: drop invalid rows instead of failing (when reading files).
        holdout_fraction: share of queries left out of training (and recorded in the router)
            for a later `haps eval --router`; 0 trains on every query.
        holdout_seed: seed of that split.
        fine_tune_encoder: train the encoder end to end (one ensemble member; no cache).
        encoder_lr: the encoder's learning rate when fine-tuning.
        device: where the encoder runs, and training too unless `training_config` names one.
        cache: keep the embeddings of a named encoder in the on-disk cache.
        prompt_styles: the system-message text of each logged prompt style, recorded in the
            checkpoint: a mapping, the path of a JSON file of one, or ``"builtin"`` for the built-in
            texts (`haps_core.catalog.BUILTIN_PROMPT_STYLES`). Styles left without a text train
            (with one warning) and are recorded as having none. A `RoutingLog` read against a
            catalog keeps the catalog's texts unless these replace them.

    Example:
        >>> router = haps_core.fit("logs.jsonl", holdout_fraction=0.2)  # doctest: +SKIP
        >>> router.save_pretrained("my-router")  # doctest: +SKIP
    """
    if isinstance(log, RoutingLog):
        if prices is not None or skip_invalid:
            msg = "`prices` and `skip_invalid` apply to reading log files: `log` is a RoutingLog already"
            raise ValueError(msg)
    else:
        log = _read(log, prices, skip_invalid)
    log = with_prompt_styles(log, prompt_styles)
    training = training_config or TrainingConfig(device=device)
    if training.device == "auto" and device != "auto":
        training = dataclasses.replace(training, device=device)
    train_mask = np.ones(log.n_queries, dtype=bool)
    heldout: dict[str, float | int] | None = None
    if holdout_fraction:
        train_mask = ~split_queries(log.query_ids, holdout_fraction, seed=holdout_seed)
        heldout = {"fraction": holdout_fraction, "seed": holdout_seed}
    with ddp.main_process_first():  # rank 0 fills the embedding cache, the others read it
        enc = resolve_encoder(encoder, device=device, cache=cache and not fine_tune_encoder)
        rconfig = dataclasses.replace(router_config or RouterConfig(), embed_dim=enc.dim)
        features = query_features(enc, log.queries, rconfig.use_structural)
    router = fit_router(
        log,
        enc,
        features,
        train_mask,
        rconfig,
        training,
        heldout,
        fine_tune=fine_tune_encoder,
        encoder_lr=encoder_lr,
    )
    if not log.has_cost:
        router.default_cost_weight = 0.0
    return router


def _read(
    files: PathLike | Sequence[PathLike],
    prices: Mapping[str, tuple[float, float]] | PathLike | None,
    skip_invalid: bool,
) -> RoutingLog:
    paths = [files] if isinstance(files, str | os.PathLike) else list(files)
    if isinstance(prices, os.PathLike):
        prices = Path(prices)
    log = read_logs(
        [p if isinstance(p, str) else Path(p) for p in paths], prices=prices, skip_invalid=skip_invalid
    )
    if log.n_skipped:
        logger.warning("skipped %d invalid row(s)", log.n_skipped)
    return log
