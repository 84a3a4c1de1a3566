"""Router variants against the baselines on the haps-bench dev split, in one table.

Trains each variant (RouterConfig / TrainingConfig overrides given as JSON) on the haps-bench
train split (dev fraction 0.2, seed 0: the split `haps eval` and the default router use) with
frozen embeddings, and prints pooled AIQ, the paired-bootstrap difference against the per-action
logistic regression (`linear`) and kNN, and each block's AIQ. For trying a training idea against
the baselines without touching the shipped router.

Usage:
    python benchmarks/router_variants.py '{"regret": {"router": {"members": 1},
        "training": {"stop_on": "regret"}}, "smollm2": {"encoder": "smollm2",
        "router": {"members": 1}}}' [--threads 2]
"""

import argparse
import json
import logging
import time

import torch

from haps_core import RouterConfig
from haps_core.baselines import KNNRouter, LinearRouter
from haps_core.encoders import embedding_encoder
from haps_core.evaluation import run_evaluation
from haps_core.logs import read_logs, split_queries
from haps_core.paths import bench_logs, bench_prices
from haps_core.training import TrainingConfig, aligned_predictor, features_for, fit_router


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", help='JSON: {label: {"encoder", "router": {...}, "training": {...}}}')
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--n-boot", type=int, default=1000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = json.loads(args.variants)
    log = read_logs(bench_logs(), prices=bench_prices())
    test = split_queries(log.query_ids, 0.2, seed=0)
    minilm = embedding_encoder()
    emb = minilm.encode(log.queries).numpy()
    predictors = {}
    for label, spec in variants.items():
        encoder = embedding_encoder(spec["encoder"]) if spec.get("encoder") else minilm
        rcfg = RouterConfig(embed_dim=encoder.dim, **spec.get("router", {}))
        feats = features_for(encoder, log.queries, rcfg.use_structural)
        tcfg = TrainingConfig(progress=False, **spec.get("training", {}))
        start = time.perf_counter()
        router = fit_router(log, encoder, feats, ~test, rcfg, tcfg)
        s = router.training_summary
        print(
            f"trained {label} in {time.perf_counter() - start:.1f} s "
            f"(median best epoch {s['median_best_epoch']}, linear-path L2 {s.get('skip_l2')})",
            flush=True,
        )
        predictors[label] = aligned_predictor(router, log, feats)
    routers = {"knn": KNNRouter(), "linear": LinearRouter(), **predictors}
    compare = [(k, base) for k in predictors for base in ("linear", "knn")]
    report = run_evaluation(log, emb, test, routers, model_only=[], compare=compare, n_boot=args.n_boot)
    names = [b.block.name for b in report.blocks]
    print("\n| router | pooled AIQ | d vs linear (se) | d vs knn (se) | " + " | ".join(names) + " |")
    print("|---" * (4 + len(names)) + "|")
    for label in ["zero-router", "knn", "linear", *predictors]:
        cells = []
        for base in ("linear", "knn"):
            c = report.pooled_comparisons.get(f"{label} vs {base}")
            cells.append(f"{c['diff']:+.4f} ({c['se']:.4f})" if c else "-")
        blocks = [
            f"{b.routers[label].metrics.aiq:.4f}" if label in b.routers else f"{b.zero.aiq:.4f}"
            for b in report.blocks
        ]
        print(f"| {label} | {report.pooled[label]['aiq']:.4f} | {' | '.join(cells)} | {' | '.join(blocks)} |")


if __name__ == "__main__":
    main()
