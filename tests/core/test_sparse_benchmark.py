"""Issue 15's sparse-new-model set-up (`benchmarks/sparse_new_model.py`): the thinning it applies.

REAL: the haps-bench log and its dev split. Only the thinning is tested here (no training): the
named backend keeps its train cells on its best-scoring 10% of train queries, nothing else moves.
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np

from haps_core.logs import read_logs, split_queries
from haps_core.paths import bench_logs, bench_prices

ROOT = Path(__file__).resolve().parents[2]


def _benchmark():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(
        "sparse_new_model", ROOT / "benchmarks" / "sparse_new_model.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_issue15_sparse_backend_keeps_only_its_best_tenth_of_train_queries() -> None:
    bench = _benchmark()
    log = read_logs(bench_logs(), prices=bench_prices())
    train = ~split_queries(log.query_ids, 0.2, seed=0)
    backend = "gpt-4"
    thin = bench.best_queries_only(log, train, backend, np.random.default_rng(0))
    names = np.array([a.backend for a in log.space.actions])
    of_full, of_thin = names[log.row_action] == backend, names[thin.row_action] == backend
    seen_before = np.unique(log.row_query[of_full & train[log.row_query]])
    seen_after = np.unique(thin.row_query[of_thin & train[thin.row_query]])
    assert len(seen_after) == int(bench.KEEP * len(seen_before))
    # the kept queries are the backend's best: none kept scores below one dropped
    mean = {q: log.score[of_full & (log.row_query == q)].mean() for q in seen_before}
    kept = set(seen_after.tolist())
    assert min(mean[q] for q in kept) >= max(mean[q] for q in seen_before if q not in kept)
    # every other backend's rows, and the backend's dev rows, are untouched
    others = ~of_full | ~train[log.row_query]
    assert int(others.sum()) == int((~of_thin | ~train[thin.row_query]).sum())
