"""Seeding, and a log's outcomes as dense tensors a block of queries at a time.

Outcomes are densified per block, never for a whole split, so memory stays flat on logs with
millions of queries; on CUDA the copies go through pinned memory without blocking.
"""

import numpy as np
import torch

from haps_core.logs import OutcomeTable

# At most this many (query, action) cells are dense at once (about 40 MB for scores, costs and
# mask).
MAX_DENSE_CELLS = 1 << 22
# Held-out evaluation also runs the network a block of queries at a time: the PGN's activations
# grow with queries x actions x backends (see RouterNet.forward).
EVAL_BLOCK_QUERIES = 1024


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def _to_device(array: np.ndarray, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A host array on `device`; on CUDA through pinned memory with a non-blocking copy, so
    the copy of one batch's outcomes overlaps the GPU work already queued."""
    if device.type != "cuda":
        return torch.as_tensor(array, dtype=dtype, device=device)
    return torch.as_tensor(array, dtype=dtype).pin_memory().to(device, non_blocking=True)


def _batch_tensors(
    table: OutcomeTable, query_idx: np.ndarray, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Dense (score, cost, observed mask) of the `query_idx` queries on `device`."""
    score, cost, mask = table.dense(query_idx)
    return (
        _to_device(score, torch.float32, device),
        _to_device(cost, torch.float32, device),
        _to_device(mask, torch.bool, device),
    )


def _chunks(n_queries: int, n_actions: int, max_queries: int | None = None) -> list[slice]:
    """Position ranges covering `n_queries` rows with at most MAX_DENSE_CELLS cells (and at
    most `max_queries` rows) each."""
    step = max(1, MAX_DENSE_CELLS // max(n_actions, 1))
    if max_queries is not None:
        step = max(1, min(step, max_queries))
    return [slice(s, min(s + step, n_queries)) for s in range(0, n_queries, step)]
