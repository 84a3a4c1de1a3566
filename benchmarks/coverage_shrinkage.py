"""What coverage shrinkage costs in AIQ: HAPS with and without it, on complete and thin logs. ONE table.

`route()` shrinks a backend that is rare in the training log and rare near a query toward the
local mean (`haps_core.model.coverage`); `benchmarks/sparse_new_model.py` shows what that buys
against a backend logged only on its best queries. This shows what it costs where no backend is
singled out: HAPS trained on the haps-bench train split (dev fraction 0.2, seed 0) complete,
thinned to 25% of its cells and to one action per query (`benchmarks/thin_logs.py`'s thinnings),
evaluated on the complete dev blocks as `haps eval` does, on its raw predictions and on the
quality `route()` decides on at coverage priors 1, 3 (the default) and 5; pooled AIQ and paired
bootstraps of each prior against the raw predictions.

Usage: python benchmarks/coverage_shrinkage.py [--members 2] [--logs complete,thin25,bandit] [--n-boot 500]
"""

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from thin_logs import one_per_query, thin_cells  # noqa: E402  (benchmarks/thin_logs.py)

PRIORS = (1.0, 3.0, 5.0)


def shrunk_predictor(router: Any, log: Any, features: Any, base: Any, prior: float) -> Any:
    """`base` (the router's aligned predictor) with the quality `route()` decides on."""
    from haps_core.model.guarded import covered_quality
    from haps_core.model.ood import evidence

    if [a.key for a in router.space.actions] != [a.key for a in log.space.actions]:
        raise SystemExit("the router's catalog differs from the log's")
    ev = evidence(router, features)
    row_of = {text: i for i, text in enumerate(log.queries)}

    def predict(embeddings: np.ndarray, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        quality, cost = base(embeddings, texts)
        rows = [row_of[t] for t in texts]
        sub = (
            None if ev is None else type(ev)(*(getattr(ev, f)[rows] for f in _ROW_FIELDS), ev.backend_common)
        )
        return covered_quality(router, quality, sub, prior), cost

    return predict


_ROW_FIELDS = ("score", "flagged", "index", "similarity", "coverage", "backend_support")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=2, help="HAPS ensemble size (as thin_logs.py's table)")
    parser.add_argument("--logs", default="complete,thin25,bandit")
    parser.add_argument("--n-boot", type=int, default=500)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    from haps_core import RouterConfig
    from haps_core.encoders import embed_texts, embedding_encoder
    from haps_core.evaluation import run_evaluation
    from haps_core.logs import read_logs, split_queries
    from haps_core.paths import bench_logs, bench_prices
    from haps_core.training import TrainingConfig, aligned_predictor, features_for, fit_router

    full = read_logs(bench_logs(), prices=bench_prices())
    test = split_queries(full.query_ids, 0.2, seed=0)
    encoder = embedding_encoder()
    embeddings = embed_texts(encoder, full.queries)
    config = RouterConfig(embed_dim=encoder.dim, members=args.members)
    features = features_for(encoder, full.queries, config.use_structural)
    training = TrainingConfig(progress=False, seed=0)
    rows = []
    for name in args.logs.split(","):
        if name == "thin25":
            log = thin_cells(full, ~test, 0.25, seed=0)[0]
        elif name == "bandit":
            log = one_per_query(full, ~test, seed=0)[0]
        elif name == "complete":
            log = full
        else:
            raise SystemExit(f"--logs: unknown log {name!r}; allowed: complete, thin25, bandit")
        router = fit_router(log, encoder, features, ~test, config, training)
        base = aligned_predictor(router, log, features)
        routers: dict[str, Any] = {"raw": base}
        routers.update({f"prior {p:g}": shrunk_predictor(router, log, features, base, p) for p in PRIORS})
        compare = [(f"prior {p:g}", "raw") for p in PRIORS]
        report = run_evaluation(
            log, embeddings, test, routers, model_only=[], compare=compare, n_boot=args.n_boot
        )
        cells = [f"{report.pooled['raw']['aiq']:.4f}"]
        for p in PRIORS:
            c = report.pooled_comparisons[f"prior {p:g} vs raw"]
            cells.append(f"{report.pooled[f'prior {p:g}']['aiq']:.4f} ({c['diff']:+.4f} +- {c['se']:.4f})")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    print(
        f"\ncoverage shrinkage: pooled haps-bench dev AIQ of HAPS ({args.members} members, default encoder "
        f"{encoder.encoder_id}), raw predictions and the quality route() decides on "
        "(dAIQ against raw +- se)\n"
    )
    print("| log | raw | " + " | ".join(f"prior {p:g}" for p in PRIORS) + " |")
    print("|---|---|" + "---|" * len(PRIORS))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
