"""The router's ablations, trained the same way on the same queries, and predictors that score
a router over a log's actions (what the evaluation compares)."""

from collections.abc import Callable, Sequence

import numpy as np
import torch

from haps_core.encoders import QueryEncoder
from haps_core.logs import RoutingLog
from haps_core.model import HAPSRouter, RouterConfig
from haps_core.model.input_cost import text_counts
from haps_core.training.config import TrainingConfig
from haps_core.training.fitting import fit_router

# (embeddings, texts) -> (quality, cost) over a log's actions: what the evaluation scores
Predictor = Callable[[np.ndarray, Sequence[str]], tuple[np.ndarray, np.ndarray]]


def subset_log(log: RoutingLog, action_idx: Sequence[int] | np.ndarray) -> RoutingLog:
    """The rows of `log` whose action is in `action_idx`, over the smaller routing space."""
    kept = sorted({int(a) for a in action_idx})
    space = log.space.subset(kept)
    remap = np.full(len(log.space), -1)
    remap[np.asarray(kept)] = [space.index(log.space.actions[a]) for a in kept]
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
        input_tokens=None if log.input_tokens is None else log.input_tokens[keep],
        propensity=None if log.propensity is None else log.propensity[keep],
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


def aligned_predictor(router: HAPSRouter, log: RoutingLog, features: torch.Tensor) -> Predictor:
    """A predictor ``(embeddings, texts) -> (quality, cost)`` over the LOG's actions.

    The router's own features are looked up by query text (features depend on the text only).
    Actions of the log the router does not know get quality -inf, so they are never chosen.
    """
    quality, cost = router.predict_features(features, text_counts(log.queries))
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
    encoder: QueryEncoder,
    features: torch.Tensor,
    train_mask: np.ndarray,
) -> dict[str, Predictor]:
    """The router's ablations, trained the same way on the same queries.

    - flat: one head over all actions, no hierarchy, no PGN;
    - no-pgn: hierarchical with independent low-level heads per backend;
    - model-only: the same HAPS model on each backend's most common configuration only.
    """
    settings = router.training_summary.get("training_config", {})
    known = set(TrainingConfig.__dataclass_fields__)
    training = TrainingConfig(**{k: v for k, v in settings.items() if k in known}, progress=False)
    out: dict[str, Predictor] = {}
    for name, arch in (("flat", "flat"), ("no-pgn", "no_pgn")):
        cfg = RouterConfig.from_dict({**router.config.to_dict(), "architecture": arch})
        ablated = fit_router(log, encoder, features, train_mask, cfg, training)
        out[name] = aligned_predictor(ablated, log, features)
    sub = subset_log(log, model_only_subset(log, train_mask))
    model_only = fit_router(sub, encoder, features, train_mask, router.config, training)
    out["model-only"] = aligned_predictor(model_only, log, features)
    return out
