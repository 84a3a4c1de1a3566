"""Collection strategies on the replay world (issue 16): how good a router a budget buys.

The replay world answers every (question, action) cell from the haps-bench log, so collecting
costs nothing here but is priced as the log's calls were. For each budget (a share of the cost
of the full train-split grid), strategy and seed: `haps_core.collect` picks cells of the
haps-bench TRAIN split (the `haps eval` split: dev fraction 0.2, seed 0), a router is trained on
the collected log (`haps_core.fit`, the bundled MiniLM with its embedding cache), and evaluated
like `haps eval` on the complete dev blocks of the full log. The reference is the router trained
on the whole train grid; "gain" is AIQ minus the zero-router's AIQ, "kept" the share of the full
router's gain. The adaptive - uniform difference is paired by seed (mean +- SE over seeds).

Usage: python benchmarks/collect.py [--budgets 0.1,0.25,0.5] [--seeds 0,1,2]
       [--strategies uniform,adaptive] [--epochs 60] [--members 1] [--json out.json]
"""

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="0.1,0.25,0.5")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--strategies", default="uniform,adaptive,thompson")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--members", type=int, default=1)
    parser.add_argument("--n-boot", type=int, default=200)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import torch

    from haps_core import RouterConfig, TrainingConfig, fit
    from haps_core.collect import ReplayWorld, collect, read_collected
    from haps_core.encoders import embed_texts, embedding_encoder
    from haps_core.evaluation import run_evaluation
    from haps_core.logs import read_logs, split_queries
    from haps_core.paths import bench_logs, bench_prices
    from haps_core.training import aligned_predictor

    torch.set_num_threads(1)
    log = read_logs(bench_logs(), prices=bench_prices())
    test_mask = split_queries(log.query_ids, 0.2, seed=0)
    train_ids = {q for q, t in zip(log.query_ids, test_mask, strict=True) if not t}
    world = ReplayWorld(log, prices=bench_prices()).subset(train_ids)
    full_usd = math.fsum(world.estimate(q, a) for q, acts in enumerate(world.available()) for a in acts)
    encoder = embedding_encoder(device="cpu")
    embeddings = embed_texts(encoder, log.queries)
    fast = {"skip_warmup_steps": 50} if "skip_warmup_steps" in TrainingConfig.__dataclass_fields__ else {}

    def evaluate(path: Path, seed: int) -> dict[str, float]:
        collected = read_collected(path)
        router = fit(
            collected,
            encoder=encoder,
            router_config=RouterConfig(embed_dim=encoder.dim, members=args.members),
            training_config=TrainingConfig(
                epochs=args.epochs, seed=seed, progress=False, device="cpu", **fast
            ),
            device="cpu",
        )
        predictor = aligned_predictor(router, log, router.featurize(log.queries))
        report = run_evaluation(
            log, embeddings, test_mask, {"haps": predictor}, model_only=(), n_boot=args.n_boot
        )
        return {"aiq": report.pooled["haps"]["aiq"], "zero_aiq": report.pooled["zero-router"]["aiq"]}

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        full = collect(replay=world, strategy="full", output=Path(tmp) / "full.jsonl")
        ref = evaluate(full.output, 0)
        ref_gain = ref["aiq"] - ref["zero_aiq"]
        print(
            f"full train grid: {full.cells} cells, ${full.spent_usd:.2f}; AIQ {ref['aiq']:.4f}, "
            f"zero-router {ref['zero_aiq']:.4f} ({time.perf_counter() - t0:.0f} s)",
            file=sys.stderr,
        )
        for frac in (float(b) for b in args.budgets.split(",")):
            for strategy in args.strategies.split(","):
                for seed in (int(s) for s in args.seeds.split(",")):
                    t0 = time.perf_counter()
                    out = Path(tmp) / f"{strategy}-{frac}-{seed}.jsonl"
                    res = collect(
                        replay=world, strategy=strategy, seed=seed, budget_usd=frac * full_usd, output=out
                    )
                    m = evaluate(out, seed)
                    gain = m["aiq"] - m["zero_aiq"]
                    rows.append(
                        {
                            "budget": frac,
                            "strategy": strategy,
                            "seed": seed,
                            "cells": res.cells,
                            "usd": res.spent_usd,
                            "aiq": m["aiq"],
                            "gain": gain,
                            "kept": gain / ref_gain,
                        }
                    )
                    print(
                        f"  {strategy} {frac:.0%} seed {seed}: {res.cells} cells ${res.spent_usd:.2f} "
                        f"AIQ {m['aiq']:.4f} kept {gain / ref_gain:.1%} ({time.perf_counter() - t0:.0f} s)",
                        file=sys.stderr,
                    )

    print(
        f"\nfull train grid: {full.cells} cells, ${full.spent_usd:.2f}, AIQ {ref['aiq']:.4f} "
        f"(zero-router {ref['zero_aiq']:.4f}, gain {ref_gain:.4f})"
    )
    print("| budget | strategy | seeds | cells | USD | AIQ (mean +- SE) | kept of full gain |")
    print("|---|---|---|---|---|---|---|")
    for frac in sorted({r["budget"] for r in rows}):
        by = {}
        for strategy in args.strategies.split(","):
            sel = [r for r in rows if r["budget"] == frac and r["strategy"] == strategy]
            aiq = np.array([r["aiq"] for r in sel])
            se = aiq.std(ddof=1) / math.sqrt(len(aiq)) if len(aiq) > 1 else float("nan")
            by[strategy] = {r["seed"]: r["aiq"] for r in sel}
            print(
                f"| {frac:.0%} | {strategy} | {len(sel)} | {np.mean([r['cells'] for r in sel]):.0f} | "
                f"{np.mean([r['usd'] for r in sel]):.2f} | {aiq.mean():.4f} +- {se:.4f} | "
                f"{np.mean([r['kept'] for r in sel]):.1%} |"
            )
        for other in (s for s in by if s != "uniform" and "uniform" in by):
            seeds = sorted(set(by["uniform"]) & set(by[other]))
            d = np.array([by[other][s] - by["uniform"][s] for s in seeds])
            se = d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else float("nan")
            print(f"| {frac:.0%} | {other} - uniform | {len(d)} | | | {d.mean():+.4f} +- {se:.4f} | |")
    if args.json:
        Path(args.json).write_text(json.dumps({"full": {**ref, "cells": full.cells}, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
