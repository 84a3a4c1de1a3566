"""HAPS, its ablations and the baselines trained on thinned haps-bench logs (issue 15, item 7).

Real outcome logs are thin: a budget observes a fraction of the (query, action) cells, and
production observes one action per query. This thins the haps-bench TRAIN split (dev fraction
0.2, seed 0: the split `haps eval` and the default router use) in two ways:

- ``thin25``: each observed (query, action) cell kept with probability 0.25 (at least one per query);
- ``bandit``: one action per query, uniformly among its observed actions (one row of it), with
  the logging propensity 1 / n_observed recorded;

and trains HAPS, its `flat` and `no_pgn` ablations, kNN and the per-action logistic regression
(`linear`) on each, and on the complete log. The baselines choose their hyper-parameters (k, L2)
on the observed cells of an inner dev split of the training queries (no training query is
complete on a thin log). Every router is then evaluated on the complete held-out dev blocks
exactly as `haps eval` does (`run_evaluation`: pooled AIQ, Q@C_best, ... and paired bootstraps
of HAPS against each), and a summary gives each router's AIQ on every log and the share of its
complete-log AIQ it keeps.

Usage:
    python benchmarks/thin_logs.py [--members 5] [--seed 0] [--logs thin25,bandit,complete]
        [--training '{"skip_warmup_steps": 0}'] [--router '{"hidden": 128}'] [--json out.json]
    python benchmarks/thin_logs.py --quick   # a smoke test: tiny training, a few seconds a router
"""

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from haps_core import RouterConfig
from haps_core.baselines import BASELINES, KNNRouter, LinearRouter
from haps_core.encoders import embed_texts, embedding_encoder
from haps_core.evaluation import format_report, run_evaluation
from haps_core.logs import RoutingLog, read_logs, split_queries
from haps_core.paths import bench_logs, bench_prices
from haps_core.training import TrainingConfig, aligned_predictor, features_for, fit_router

LOGS = ("thin25", "bandit", "complete")
VARIANTS = (("haps", "haps"), ("flat", "flat"), ("no-pgn", "no_pgn"))
# Wider grids than the baselines' defaults: a thin log may want stronger smoothing. Both are
# still chosen on the inner split's observed cells, never on the dev blocks.
KNN_CANDIDATES = (5, 10, 20, 40, 80, 160)
LINEAR_CANDIDATES = (1e-4, 1e-3, 1e-2, 1e-1)
SUMMARY_ROUTERS = ("zero-router", "constant", "knn", "linear", "haps", "flat", "no-pgn")


def select_rows(log: RoutingLog, rows: np.ndarray, propensity: np.ndarray | None = None) -> RoutingLog:
    """The log restricted to `rows` (same queries and routing space); every per-row array is
    cut the same way. `propensity` (per kept row) is attached when the log format has it."""
    n = log.n_rows
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(log):
        value = getattr(log, f.name)
        if isinstance(value, np.ndarray) and value.shape[:1] == (n,):
            changes[f.name] = value[rows]
    if propensity is not None and "propensity" in {f.name for f in dataclasses.fields(log)}:
        changes["propensity"] = propensity
    return dataclasses.replace(log, **changes)


def _cells(log: RoutingLog, train_mask: np.ndarray) -> dict[int, dict[int, list[int]]]:
    """Training query -> action -> its row indices."""
    out: dict[int, dict[int, list[int]]] = {}
    for r in np.flatnonzero(train_mask[log.row_query]):
        out.setdefault(int(log.row_query[r]), {}).setdefault(int(log.row_action[r]), []).append(int(r))
    return out


def thin_cells(
    log: RoutingLog, train_mask: np.ndarray, keep: float, seed: int
) -> tuple[RoutingLog, np.ndarray]:
    """Each observed training (query, action) cell kept with probability `keep` (all its rows),
    at least one cell per query; the test queries' rows are all kept. Returns the log and the
    kept rows."""
    rng = np.random.default_rng(seed)
    rows = [np.flatnonzero(~train_mask[log.row_query])]
    for _, cells in sorted(_cells(log, train_mask).items()):
        actions = sorted(cells)
        kept = [a for a in actions if rng.random() < keep]
        if not kept:
            kept = [actions[int(rng.integers(len(actions)))]]
        rows.append(np.array([r for a in kept for r in cells[a]]))
    idx = np.sort(np.concatenate(rows))
    return select_rows(log, idx), idx


def one_per_query(log: RoutingLog, train_mask: np.ndarray, seed: int) -> tuple[RoutingLog, np.ndarray]:
    """A bandit log: per training query ONE action drawn uniformly among its observed actions
    (one of its rows); the propensity of that row is 1 / n_observed (NaN on the complete test
    rows). Returns the log and the per-row propensity."""
    rng = np.random.default_rng(seed)
    test_rows = np.flatnonzero(~train_mask[log.row_query])
    picked, prop = [], []
    for _, cells in sorted(_cells(log, train_mask).items()):
        actions = sorted(cells)
        a = actions[int(rng.integers(len(actions)))]
        picked.append(cells[a][int(rng.integers(len(cells[a])))])
        prop.append(1.0 / len(actions))
    idx = np.concatenate([test_rows, np.array(picked, dtype=np.int64)])
    propensity = np.concatenate([np.full(len(test_rows), np.nan), np.array(prop)])
    order = np.argsort(idx, kind="stable")
    return select_rows(log, idx[order], propensity[order]), propensity[order]


def train_variants(
    log: RoutingLog,
    encoder: Any,
    features: torch.Tensor,
    train_mask: np.ndarray,
    router_cfg: RouterConfig,
    training: TrainingConfig,
    variants: list[str] | None = None,
) -> tuple[dict[str, Any], dict[str, float]]:
    """HAPS and its ablations (those named in `variants`, default all) trained on the log's
    training queries: predictors and seconds."""
    predictors, seconds = {}, {}
    for name, arch in VARIANTS:
        if variants is not None and name not in variants:
            continue
        cfg = dataclasses.replace(router_cfg, architecture=arch)
        start = time.perf_counter()
        router = fit_router(log, encoder, features, train_mask, cfg, training)
        seconds[name] = round(time.perf_counter() - start, 1)
        s = router.training_summary
        print(
            f"  trained {name} in {seconds[name]} s (median best epoch {s['median_best_epoch']}, "
            f"linear-path L2 {s.get('skip_l2')})",
            file=sys.stderr,
            flush=True,
        )
        predictors[name] = aligned_predictor(router, log, features)
    return predictors, seconds


def baselines(seed: int, quick: bool = False) -> dict[str, Any]:
    """`haps eval`'s baselines, kNN and the logistic regression with the wider grids (`quick`:
    fewer steps of the logistic regression, for the smoke test)."""
    return {
        "random": BASELINES["random"](seed=seed),
        "constant": BASELINES["constant"](),
        "knn": KNNRouter(candidates=KNN_CANDIDATES, seed=seed),
        "linear": LinearRouter(candidates=LINEAR_CANDIDATES, steps=30 if quick else 300, seed=seed),
    }


def summary_table(results: dict[str, dict[str, Any]]) -> str:
    """Pooled AIQ per router and log, the share of the complete-log AIQ kept, and HAPS's paired
    bootstrap differences (+- se) against each router on the same log."""
    names = [n for n in LOGS if n in results]
    head = "| router | " + " | ".join(f"AIQ {n}" for n in names)
    thin = [n for n in names if n != "complete"]
    has_full = "complete" in results
    if has_full:
        head += " | " + " | ".join(f"kept {n}" for n in thin)
    head += " | " + " | ".join(f"HAPS - router {n} (se)" for n in names) + " |"
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for router in SUMMARY_ROUTERS:
        if not all(router in results[n]["pooled"] for n in names):
            continue
        aiq = {n: results[n]["pooled"][router]["aiq"] for n in names}
        cells = [f"{aiq[n]:.4f}" for n in names]
        if has_full:
            cells += [f"{aiq[n] / aiq['complete']:.1%}" for n in thin]
        for n in names:
            c = results[n]["comparisons"].get(f"haps vs {router}")
            cells.append(f"{c['diff']:+.4f} ({c['se']:.4f})" if c else "-")
        lines.append(f"| {router} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0, help="seed of the thinning, training and bootstrap")
    p.add_argument(
        "--members",
        type=int,
        default=5,
        help="HAPS ensemble size (shipped: MiniLM router 5, static router 3)",
    )
    p.add_argument("--logs", default=",".join(LOGS), help=f"comma-separated, of {LOGS}")
    p.add_argument("--variants", default="haps,flat,no-pgn", help="HAPS variants to train")
    p.add_argument("--router", default="{}", help="JSON RouterConfig overrides")
    p.add_argument("--training", default="{}", help="JSON TrainingConfig overrides")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument(
        "--tune",
        action="store_true",
        help="for choosing settings: evaluate on an inner dev part (25%%) of the TRAIN split; "
        "the real dev queries are left out of everything",
    )
    p.add_argument("--quick", action="store_true", help="a smoke test: 1 member, tiny training")
    p.add_argument("--json", default=None, metavar="FILE", help="write the results as JSON here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n for n in args.logs.split(",") if n]
    unknown = sorted(set(names) - set(LOGS))
    if unknown:
        msg = f"`--logs` has unknown names {unknown}; allowed: {list(LOGS)}"
        raise SystemExit(msg)
    training_kw = json.loads(args.training)
    members, n_boot = args.members, args.n_boot
    if args.quick:
        members, n_boot = 1, 50
        training_kw = {"epochs": 1, "skip_warmup_steps": 20, "skip_l2": 1e-3, **training_kw}
    training = TrainingConfig(progress=False, seed=args.seed, **training_kw)
    full = read_logs(bench_logs(), prices=bench_prices())
    test = split_queries(full.query_ids, 0.2, seed=0)
    if args.tune:  # the dev queries' rows are dropped; an inner split of the train queries is the test
        full = select_rows(full, np.flatnonzero(~test[full.row_query]))
        test = split_queries(full.query_ids, 0.25, seed=1) & ~test
    encoder = embedding_encoder()
    embeddings = embed_texts(encoder, full.queries)
    router_cfg = RouterConfig(embed_dim=encoder.dim, members=members, **json.loads(args.router))
    features = features_for(encoder, full.queries, router_cfg.use_structural)
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        extra: dict[str, Any] = {}
        if name == "thin25":
            log, _ = thin_cells(full, ~test, 0.25, seed=args.seed)
        elif name == "bandit":
            log, propensity = one_per_query(full, ~test, seed=args.seed)
            extra["mean_propensity"] = float(np.nanmean(propensity))
        else:
            log = full
        train_rows = int((~test[log.row_query]).sum())
        cells = log.outcomes(np.flatnonzero(~test[log.row_query])).n_cells
        print(f"== {name}: {train_rows} training rows, {cells} training cells", file=sys.stderr, flush=True)
        variants = [v for v in args.variants.split(",") if v]
        predictors, seconds = train_variants(log, encoder, features, ~test, router_cfg, training, variants)
        routers = {**baselines(args.seed, args.quick), **predictors}
        others = ("linear", "knn", "flat", "no-pgn", "constant")
        compare = [("haps", n) for n in others if n in routers] if "haps" in routers else []
        report = run_evaluation(
            log, embeddings, test, routers, model_only=["knn"], compare=compare, n_boot=n_boot, seed=args.seed
        )
        print(f"\n#### {name} ({train_rows} training rows, {cells} cells)")
        print(format_report(report), flush=True)
        results[name] = {
            "train_rows": train_rows,
            "train_cells": int(cells),
            "seconds": seconds,
            "pooled": report.pooled,
            "comparisons": report.pooled_comparisons,
            **extra,
        }
    table = summary_table(results)
    print("\n#### summary (pooled over the dev blocks)\n" + table)
    if args.json:
        settings = {"members": members, "training": training_kw, "router": json.loads(args.router)}
        Path(args.json).write_text(json.dumps({"settings": settings, "results": results}, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
