"""The static encoder refined on the routing objective: its token vectors fitted to the logs.

The distilled vectors (`haps_core.encoders.distill`) come from MiniLM alone. The training logs
say which actions do well on which queries; refining moves the vectors of the tokens those
queries hold so that a per-action linear probe on the pooled vector predicts each observed
(query, action) score (masked binary cross-entropy: the router's supervised quality term),
jointly with the probe, with an L2 pull toward the distilled vectors and early stopping on
held-out training queries. Tokens absent from the training queries keep their vectors. The
result is another static encoder (its own id, config and sha256, so its own embedding-cache
fingerprint) that a router trains on like any other; a router checkpoint carries its files.
"""

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from haps_core.encoders.distill import write_static_folder
from haps_core.encoders.static import StaticEncoder
from haps_core.model.ood import observed_scores

logger = logging.getLogger(__name__)

REFINED_ENCODER_ID = "static-minilm-refined"


def refine_static(
    encoder: StaticEncoder,
    log: Any,
    train_mask: np.ndarray,
    target: str | Path,
    *,
    epochs: int = 30,
    lr: float = 1e-3,
    probe_lr: float = 3e-2,
    pull: float = 1.0,
    holdout: float = 0.1,
    batch_queries: int = 256,
    patience: int = 4,
    seed: int = 0,
    encoder_id: str = REFINED_ENCODER_ID,
) -> StaticEncoder:
    """Refines `encoder`'s vectors on `log`'s queries under `train_mask` and writes the result
    to the new folder `target` (see the module docstring).

    Args:
        lr, probe_lr: Adam learning rates of the token vectors and of the probe (``lr=0``: the
            probe alone, on the distilled vectors: the baseline the refinement must beat).
        pull: weight of the mean squared distance of the moved vectors to the distilled ones.
        holdout: share of the training queries held out for early stopping (seeded).

    Raises:
        ValueError: `target` exists, or there are too few training queries to hold some out.
    """
    target = Path(target)
    if target.exists():
        msg = f"target={str(target)!r} exists: refining writes a new folder and replaces nothing"
        raise ValueError(msg)
    queries = np.flatnonzero(np.asarray(train_mask, dtype=bool))
    rng = np.random.default_rng(seed)
    rng.shuffle(queries)
    n_hold = round(holdout * len(queries))
    if n_hold < 1 or n_hold >= len(queries):
        msg = f"holdout={holdout!r} of {len(queries)} training queries leaves no query on one side"
        raise ValueError(msg)
    torch.manual_seed(seed)
    flat, lengths = encoder._flat_ids([log.queries[i] for i in queries])
    tokens, compact = np.unique(flat, return_inverse=True)  # only the tokens the queries hold move
    base = encoder.embeddings[torch.as_tensor(tokens)].clone()
    table = torch.nn.Parameter(base.clone())
    probe = torch.nn.Linear(base.shape[1], len(log.space))
    ids = torch.as_tensor(compact, dtype=torch.long)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    observed, mean = observed_scores(log, queries)
    score, mask = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(observed)
    opt = torch.optim.Adam([{"params": [table], "lr": lr}, {"params": probe.parameters(), "lr": probe_lr}])

    def loss_of(rows: np.ndarray) -> torch.Tensor:
        spans = [ids[starts[i] : starts[i + 1]] for i in rows]
        offsets = torch.as_tensor(np.concatenate([[0], np.cumsum([len(s) for s in spans])[:-1]]))
        pooled = F.normalize(F.embedding_bag(torch.cat(spans), table, offsets, mode="mean"), dim=-1)
        m = mask[rows]
        bce = F.binary_cross_entropy_with_logits(probe(pooled)[m], score[rows][m])
        return bce + pull * (table - base).square().sum(1).mean()

    held, fit_rows = np.arange(n_hold), np.arange(n_hold, len(queries))
    best, best_state, waited = float("inf"), table.detach().clone(), 0
    for epoch in range(epochs):
        order = rng.permutation(fit_rows)
        for s in range(0, len(order), batch_queries):
            opt.zero_grad()
            loss_of(order[s : s + batch_queries]).backward()
            opt.step()
        with torch.no_grad():
            value = float(loss_of(held))
        logger.info("refining the static encoder: epoch %d, held-out loss %.4f", epoch + 1, value)
        if value < best - 1e-5:
            best, best_state, waited = value, table.detach().clone(), 0
        else:
            waited += 1
            if waited >= patience:
                break
    refined = encoder.embeddings.clone()
    refined[torch.as_tensor(tokens)] = best_state
    config = {
        **encoder.config,
        "encoder_id": encoder_id,
        "refined": {
            "from_sha256": encoder.config.get("sha256"),
            "objective": "masked BCE of a per-action linear probe on observed scores",
            "training_queries": int(len(queries) - n_hold),
            "tokens_moved": len(tokens),
            "pull": pull,
            "held_out_loss": best,
            "seed": seed,
        },
    }
    write_static_folder(target, refined, Path(encoder.folder) / "tokenizer.json", config)
    return StaticEncoder(target, encoder_id=encoder_id)
