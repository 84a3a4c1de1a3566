"""A whole evaluation run: fit the baselines, predict, evaluate every block, pool."""

import logging
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from haps_core.baselines import BaselineRouter, RandomRouter
from haps_core.evaluation.blocks import find_blocks, model_only_actions, training_set
from haps_core.evaluation.report import EvaluationReport, evaluate_block, pool, pool_calibration
from haps_core.logs import RoutingLog

logger = logging.getLogger(__name__)

# A predictor maps (embeddings, texts) of queries to (quality, cost) over all actions.
Predictor = Callable[[np.ndarray, Sequence[str]], tuple[np.ndarray, np.ndarray]]


def predict_all(
    routers: Mapping[str, BaselineRouter | Predictor], embeddings: np.ndarray, texts: Sequence[str]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for name, router in routers.items():
        fn = router.predict if isinstance(router, BaselineRouter) else router
        out[name] = fn(embeddings, texts)
    return out


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

    Calibration of predicted quality (ECE, Brier) is reported for every router but the random
    baseline (random scores, no quality estimate) and its model-only rows; the zero-router,
    best single action and oracle make no per-query predictions and have none.
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
    no_quality = {name for name, r in routers.items() if isinstance(r, RandomRouter)}
    calibrate = [n for n in routers if n not in no_quality]
    calibrate += [f"{n}-model-only" for n in calibrate]
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
        reports.append(
            evaluate_block(block, train, predictions, compare, n_boot=n_boot, seed=seed, calibrate=calibrate)
        )
    pooled, pooled_comps = pool(reports)
    pooled_calibration = pool_calibration(reports)
    for name, cal in pooled_calibration.items():
        pooled[name].update(ece=cal.ece, brier=cal.brier)
    summary = {
        **log.summary(),
        "train_queries": int((~test_mask).sum()),
        "test_queries": int(test_mask.sum()),
    }
    return EvaluationReport(
        reports, pooled, pooled_comps, summary, {k: v.to_dict() for k, v in pooled_calibration.items()}
    )
