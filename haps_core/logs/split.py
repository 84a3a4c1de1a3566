"""The deterministic train/dev split of a log's queries, by hashed query id."""

import hashlib
from collections.abc import Sequence

import numpy as np


def split_queries(query_ids: Sequence[str], dev_fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """Deterministic query-level split: returns a boolean mask, True for the dev split.

    Hashing the id (not shuffling positions) keeps a query on the same side whatever the row
    order, file split or subset of the log, so a query never leaks from dev into train.
    """
    if not 0.0 < dev_fraction < 1.0:
        msg = f"`dev_fraction` must be in (0, 1), got {dev_fraction!r}"
        raise ValueError(msg)
    out = np.zeros(len(query_ids), dtype=bool)
    for i, qid in enumerate(query_ids):
        digest = hashlib.sha256(f"{seed}:{qid}".encode()).digest()
        out[i] = int.from_bytes(digest[:8], "big") / 2**64 < dev_fraction
    return out
