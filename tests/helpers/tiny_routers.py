"""A tiny router trained in the test process (tiny random BERT, synthetic log), shared by tests."""

from pathlib import Path

from haps_core.logs import read_logs
from haps_core.model import RouterConfig
from haps_core.training import TrainingConfig, fit
from tests.helpers.logs import synthetic_rows, write_jsonl
from tests.helpers.tiny_models import make_tiny_bert

PRICES = {"small": (0.5, 1.0), "large": (10.0, 20.0)}  # what the synthetic log's costs are priced at
TEXTS = ["Who wrote Hamlet? #3", "Compute 17 * 23 + 4 and explain #5", "the cat sat on the mat"]


def tiny_router(root: Path, n_queries: int = 80, members: int = 2, seed: int = 0):
    """(router, encoder folder, log file): a 2-member router trained on the synthetic log."""
    enc = make_tiny_bert(root / "enc")
    logs = write_jsonl(root / "logs.jsonl", synthetic_rows(n_queries, seed=seed))
    training = TrainingConfig(epochs=3, progress=False, device="cpu", skip_warmup_steps=60, seed=seed)
    router = fit(logs, encoder=str(enc), router_config=RouterConfig(hidden=16, members=members),
                 training_config=training, cache=False, prices=PRICES)  # fmt: skip
    return router, enc, logs


def read(path: Path):
    return read_logs(path)
