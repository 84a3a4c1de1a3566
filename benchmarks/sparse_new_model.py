"""A sparse, optimistically observed model: how much traffic does the router give it? ONE table.

Issue 15's floor: a backend observed on 10% of the queries, with scores drawn optimistic, should
get at cost weight 0 a traffic share within 10 points of what the complete-data router gives it.
Here each named backend in turn keeps its train-split cells only on the 10% of train queries
where its own observed score was highest (its best queries: the most optimistic 10%); every
other backend keeps all its cells. A router trained on that thin log and one trained on the
complete log (same settings, haps-bench, dev split 0.2 seed 0) route the dev queries at cost
weight 0; the table gives the backend's share under each (complete / thin) as route() decides by
default (with coverage shrinkage, `haps_core.model.coverage`, prior 3), with priors of 1 and 5,
with ``risk=1`` (on the ensemble's lower confidence bound) and with ``coverage_prior=0``
(shrinkage off: how the router decided before), and whether the thin share is within 10 points
of the complete one.

Usage: python benchmarks/sparse_new_model.py [--backends a,b] [--members 3] [--epochs 3]
"""

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from thin_logs import select_rows  # noqa: E402  (benchmarks/thin_logs.py)

DEFAULT_BACKENDS = "gpt-35-turbo,gemini-1.0-pro,gpt-4,mistral-large,claude-3-opus-20240229"
KEEP = 0.10  # share of the train queries on which the sparse backend stays observed


def best_queries_only(log: Any, train: np.ndarray, backend: str, rng: np.random.Generator) -> Any:
    """The log with `backend`'s train cells kept only on its best-scoring `KEEP` of train queries."""
    of = np.array([a.backend for a in log.space.actions])[log.row_action] == backend
    rows = np.flatnonzero(of & train[log.row_query])
    total = np.zeros(log.n_queries)
    count = np.zeros(log.n_queries)
    np.add.at(total, log.row_query[rows], log.score[rows])
    np.add.at(count, log.row_query[rows], 1.0)
    queries = np.flatnonzero(train & (count > 0))
    mean = total[queries] / count[queries]
    order = queries[np.lexsort((rng.random(len(queries)), -mean))]  # best first, ties at random
    keep = np.zeros(log.n_queries, dtype=bool)
    keep[order[: int(KEEP * len(queries))]] = True
    drop = of & train[log.row_query] & ~keep[log.row_query]
    return select_rows(log, np.flatnonzero(~drop))


# how each router routes: (label, route() arguments)
SETTINGS = (
    ("default (coverage_prior=3)", {}),
    ("coverage_prior=1", {"coverage_prior": 1.0}),
    ("coverage_prior=5", {"coverage_prior": 5.0}),
    ("default, risk=1", {"risk": 1.0}),
    ("coverage_prior=0 (shrinkage off)", {"coverage_prior": 0.0}),
)


def shares(router: Any, texts: list[str], **route_kwargs: Any) -> dict[str, float]:
    """Each backend's share of `texts` at cost weight 0."""
    decisions = router.route(texts, cost_weight=0.0, **route_kwargs)
    names = [d.backend for d in decisions]
    return {b: names.count(b) / len(names) for b in router.space.backend_names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default=DEFAULT_BACKENDS)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    from haps_core import RouterConfig
    from haps_core.encoders import embedding_encoder
    from haps_core.logs import read_logs, split_queries
    from haps_core.paths import bench_logs, bench_prices
    from haps_core.training import TrainingConfig, features_for, fit_router

    log = read_logs(bench_logs(), prices=bench_prices())
    dev = split_queries(log.query_ids, 0.2, seed=0)
    train = ~dev
    encoder = embedding_encoder("static-minilm")
    config = RouterConfig(embed_dim=encoder.dim, members=args.members, hidden=64)
    features = features_for(encoder, log.queries, config.use_structural)
    training = TrainingConfig(progress=False, seed=0, epochs=args.epochs)
    texts = [log.queries[i] for i in np.flatnonzero(dev)]
    complete = fit_router(log, encoder, features, train, config, training)
    full = [shares(complete, texts, **kw) for _, kw in SETTINGS]
    print(
        f"sparse new model: haps-bench dev ({len(texts)} queries), cost weight 0, {args.members} members "
        f"x 64, {args.epochs} epochs; each backend kept on its best {KEEP:.0%} of train queries; "
        f"share of dev traffic under the complete-data router / the thin-log router, and whether "
        f"they are within 10 points"
    )
    print("| backend | " + " | ".join(label for label, _ in SETTINGS) + " |")
    print("|---|" + "---|" * len(SETTINGS))
    rng = np.random.default_rng(0)
    for backend in args.backends.split(","):
        if backend not in log.space.backend_names:
            raise SystemExit(
                f"--backends: {backend!r} is not in the catalog {sorted(log.space.backend_names)}"
            )
        router = fit_router(
            best_queries_only(log, train, backend, rng), encoder, features, train, config, training
        )
        cells = []
        for (_, kw), ref in zip(SETTINGS, full, strict=True):
            got, want = shares(router, texts, **kw)[backend], ref[backend]
            cells.append(f"{want:.1%} / {got:.1%} {'yes' if abs(got - want) <= 0.10 else 'NO'}")
        print(f"| {backend} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
