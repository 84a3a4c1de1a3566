"""Encoder ablation and seed spread of the HAPS router on haps-bench (issue: the router).

Trains HAPS on the haps-bench train split (dev fraction 0.2, seed 0: the split `haps eval` and
the default router use) with each query representation, evaluates on the dev split block by
block against the per-action logistic regression on frozen MiniLM (`linear`) with a paired
bootstrap, and prints one table:

- frozen MiniLM, SmolLM2-135M hidden states (pooled), MiniLM fine-tuned end to end with the
  routing objective; each with and without the structural text features;
- training time of each (embeddings cached; the first run embeds once);
- for the default configuration, 3 training seeds: mean +- std of AIQ, GR, saving, saving@95.

Every variant uses the same ensemble size (`--members`, default 1: affordable on 2 CPU cores).

Usage: python benchmarks/encoder_ablation.py [--quick] [--skip-finetune] [--json out.json]
"""

import argparse
import json
import logging
import time

import numpy as np

from haps_core import RouterConfig
from haps_core.baselines import KNNRouter, LinearRouter
from haps_core.encoders import embedding_encoder, load_encoder
from haps_core.evaluation import run_evaluation
from haps_core.logs import read_logs, split_queries
from haps_core.paths import bench_logs, bench_prices
from haps_core.training import TrainingConfig, aligned_predictor, features_for, fit_router

KEYS = ("aiq", "q_at_c_best", "gap_recovered", "saving", "saving95")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="1 seed, frozen encoders only")
    parser.add_argument("--skip-finetune", action="store_true")
    parser.add_argument("--json", default=None)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument(
        "--members",
        type=int,
        default=1,
        help="ensemble size of every variant (1 keeps the ablation affordable on a CPU; "
        "the shipped router uses 5)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    log = read_logs(bench_logs(), prices=bench_prices())
    test = split_queries(log.query_ids, 0.2, seed=0)
    train = ~test
    minilm = embedding_encoder()
    emb = minilm.encode(log.queries).numpy()

    variants = [
        ("minilm", True, False),
        ("minilm", False, False),
        ("smollm2", True, False),
        ("smollm2", False, False),
    ]
    if not args.quick and not args.skip_finetune:
        variants += [("minilm-ft", True, False), ("minilm-ft", False, False)]
    rows = []
    predictors = {}
    for name, structural, _ in variants:
        start = time.perf_counter()
        fine_tune = name.endswith("-ft")
        if fine_tune:
            # a fresh, uncached encoder: its weights change
            encoder = load_encoder(None, device="cpu", max_length=128)
        else:
            encoder = embedding_encoder(None if name == "minilm" else name)
        features = features_for(encoder, log.queries, structural)
        embed_s = time.perf_counter() - start
        cfg = RouterConfig(embed_dim=encoder.dim, use_structural=structural, members=args.members)
        tc = TrainingConfig(progress=False, epochs=4 if fine_tune else 60, patience=2 if fine_tune else 8)
        t0 = time.perf_counter()
        router = fit_router(log, encoder, features, train, cfg, tc, fine_tune=fine_tune)
        train_s = time.perf_counter() - t0
        if fine_tune:
            features = features_for(router.encoder, log.queries, structural)
        label = f"{name}{'+struct' if structural else ''}"
        predictors[label] = aligned_predictor(router, log, features)
        rows.append({"variant": label, "train_s": round(train_s, 1), "embed_s": round(embed_s, 1)})
        print(f"trained {label} in {train_s:.1f} s (features {embed_s:.1f} s)", flush=True)

    # seeds of the default configuration
    seeds = [0] if args.quick else [0, 1, 2]
    features = features_for(minilm, log.queries, True)
    for seed in seeds[1:]:
        cfg = RouterConfig(members=args.members)  # the same ensemble size as the seed-0 row
        router = fit_router(log, minilm, features, train, cfg, TrainingConfig(progress=False, seed=seed))
        predictors[f"minilm+struct@seed{seed}"] = aligned_predictor(router, log, features)

    routers = {"knn": KNNRouter(), "linear": LinearRouter(), **predictors}
    compare = [(k, "linear") for k in predictors]
    report = run_evaluation(log, emb, test, routers, model_only=[], compare=compare, n_boot=args.n_boot)
    by = {r["variant"]: r for r in rows}
    print(
        "\n| representation | pooled AIQ | dAIQ vs linear (se) | concise-cot | self-reflection | temperature "
        "| train s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for label in ["linear", "knn", *[r["variant"] for r in rows]]:
        p = report.pooled[label]
        comp = report.pooled_comparisons.get(f"{label} vs linear")
        blocks = [b.routers[label].metrics.aiq for b in report.blocks]
        d = f"{comp['diff']:+.4f} ({comp['se']:.4f})" if comp else "-"
        t = by.get(label, {}).get("train_s", "-")
        print(f"| {label} | {p['aiq']:.4f} | {d} | " + " | ".join(f"{x:.3f}" for x in blocks) + f" | {t} |")
    seed_labels = ["minilm+struct"] + [f"minilm+struct@seed{s}" for s in seeds[1:]]
    print(f"\nDefault configuration (minilm+struct) over {len(seeds)} seed(s), pooled:")
    for k in KEYS:
        vals = np.array([report.pooled[lab][k] for lab in seed_labels])
        print(f"  {k:<14} {vals.mean():.4f} +- {vals.std(ddof=1) if len(vals) > 1 else 0.0:.4f}")
    diffs = [report.pooled_comparisons[f"{lab} vs linear"]["diff"] for lab in seed_labels]
    print(f"  dAIQ vs linear per seed: {[round(x, 4) for x in diffs]}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"rows": rows, "report": report.to_dict()}, fh, indent=2, default=float)


if __name__ == "__main__":
    main()
