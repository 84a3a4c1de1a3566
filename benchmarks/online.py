"""Learning from production, simulated on real data: exploration, warm-start updates, a new backend.

The world is haps-bench. Its TRAIN split (dev fraction 0.2, seed 0: the split `haps eval` uses)
is the traffic; its dev blocks are the yardstick. A router is trained on 10% of the train
queries (every observed cell of them). The other train queries arrive in rounds of `--batch`
(100): each query is routed at `--cost-weight` with an exploration policy on, among the actions
haps-bench observed for it (every query was run on its block's action set only); the observed
score and cost of the served cell are the feedback, recorded with the policy's propensity. After
each round the router is warm-started (`haps_core.training.warmstart.warm_start`) on all the
records so far. Per round: the dev AIQ (pooled over the dev blocks, as `haps eval`), the
cumulative regret of the served calls (the best observed utility of the query minus the served
one's) and the share of exploratory calls.

At the end, on the dev blocks with paired bootstraps: the updated router against the starting
router, against a per-action logistic regression (`LinearRouter`) refitted on the same records,
and the router trained on the complete train log; and the share of the start-to-complete AIQ
gap the updates recovered.

``--scenario add``: the start router is trained without backend `--held-out`; it is added with
`HAPSRouter.add_backend` and a neutral prior before the first round (served only by exploration
until `--min-observations` rows of it are trained on), and its final greedy traffic share on the
dev queries is reported beside the complete-data router's.

Usage:
    python benchmarks/online.py [--rounds 9] [--seed 0] [--scenario main|add|both] [--json out.json]
    python benchmarks/online.py --quick   # a smoke test: 2 rounds, tiny training
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

from haps_core import RouterConfig
from haps_core.baselines import LinearRouter
from haps_core.decision import route_from_predictions
from haps_core.encoders import embed_texts, embedding_encoder
from haps_core.evaluation import run_evaluation
from haps_core.evaluation.blocks import training_set
from haps_core.exploration import Exploration
from haps_core.logs import RoutingLog, read_logs, split_queries
from haps_core.model.extend import explore_only_mask
from haps_core.model.input_cost import text_counts
from haps_core.paths import bench_logs, bench_prices
from haps_core.training import TrainingConfig, aligned_predictor, features_for, fit_router
from haps_core.training.warmstart import warm_config, warm_start

sys.path.insert(0, str(Path(__file__).resolve().parent))
from thin_logs import LINEAR_CANDIDATES, select_rows


def without_backend(log: RoutingLog, backend: str) -> RoutingLog:
    """The log without `backend`: its rows dropped and its actions out of the space."""
    keep = [i for i, a in enumerate(log.space.actions) if a.backend != backend]
    space = log.space.subset(keep)
    sub = select_rows(log, np.flatnonzero(np.isin(log.row_action, keep)))
    mapping = np.full(len(log.space), -1, dtype=np.int64)
    mapping[keep] = np.arange(len(keep))
    return dataclasses.replace(
        sub, space=space, row_action=mapping[sub.row_action].astype(sub.row_action.dtype)
    )


def records_log(
    full: RoutingLog, start_q: np.ndarray, served: list[tuple[int, int, float, float, float]]
) -> RoutingLog:
    """The records so far: every row of the start queries (no propensity) + the served calls."""
    start_rows = np.flatnonzero(np.isin(full.row_query, start_q))
    base = select_rows(full, start_rows)
    q, a, s, c, p = (np.array(x) for x in zip(*served, strict=True)) if served else [np.zeros(0)] * 5
    cat = lambda x, y, t: np.concatenate([x, y.astype(t)])  # noqa: E731
    return dataclasses.replace(
        base,
        row_query=cat(base.row_query, q, base.row_query.dtype),
        row_action=cat(base.row_action, a, base.row_action.dtype),
        score=cat(base.score, s, float),
        cost=cat(base.cost, c, float),
        groups=np.concatenate([base.groups, full.groups[q.astype(np.int64)] if len(q) else base.groups[:0]]),
        input_tokens=None,
        propensity=np.concatenate([np.full(len(start_rows), np.nan), p.astype(float)]),
    )


def cells(log: RoutingLog) -> tuple[dict[tuple[int, int], tuple[float, float]], np.ndarray]:
    """(query, action) -> mean observed (score, cost), and the [n_queries, A] observed mask."""
    table = log.outcomes()
    out = {
        (int(q), int(a)): (float(s), float(c))
        for q, a, s, c in zip(table.cell_query, table.cell_action, table.score, table.cost, strict=True)
    }
    mask = np.zeros((log.n_queries, len(log.space)), dtype=bool)
    mask[table.cell_query, table.cell_action] = True
    return out, mask


def serve(
    router: Any,
    full: RoutingLog,
    features: Any,
    batch: np.ndarray,
    observed: np.ndarray,
    weight: float,
    policy: Exploration,
) -> list[Any]:
    """Routes a batch among each query's observed actions, with exploration: the decisions
    (action indices in the LOG's space)."""
    q, c = router.predict_features(features[batch], text_counts([full.queries[i] for i in batch]))
    pos = np.array([router.space._index.get(a, -1) for a in full.space.actions])
    allowed = np.zeros((len(batch), len(router.space)), dtype=bool)
    for r, i in enumerate(batch):
        allowed[r, pos[observed[i] & (pos >= 0)]] = True
    held = explore_only_mask(router)
    out = route_from_predictions(
        router.space,
        q,
        c,
        cost_weight=weight,
        allowed=allowed,
        exploration=policy,
        explore_only=held,
        n_alternatives=0,
    )
    back = {j: k for k, j in enumerate(pos) if j >= 0}
    return [dataclasses.replace(d, action_index=back[d.action_index]) for d in out]


def dev_aiq(
    full: RoutingLog,
    embeddings: np.ndarray,
    test: np.ndarray,
    predictors: dict[str, Any],
    compare: list[tuple[str, str]] = (),
    n_boot: int = 0,
    seed: int = 0,
) -> Any:
    return run_evaluation(
        full, embeddings, test, predictors, model_only=[], compare=compare, n_boot=max(n_boot, 1), seed=seed
    )


def backend_share(
    router: Any,
    full: RoutingLog,
    features: Any,
    test: np.ndarray,
    observed: np.ndarray,
    weight: float,
    backend: str,
) -> float:
    """Greedy share of the dev queries routed to `backend` (among their observed actions)."""
    dev = np.flatnonzero(test)
    decisions = serve(router, full, features, dev, observed, weight, Exploration(epsilon=0.0, seed=0))
    return float(np.mean([full.space.actions[d.action_index].backend == backend for d in decisions]))


def simulate(args: argparse.Namespace, ctx: dict[str, Any], scenario: str) -> dict[str, Any]:
    full, features, embeddings, test = ctx["full"], ctx["features"], ctx["embeddings"], ctx["test"]
    cell, observed = ctx["cells"], ctx["observed"]
    rng = np.random.default_rng(args.seed)
    train_q = rng.permutation(np.flatnonzero(~test))
    n_start = max(round(0.1 * len(train_q)), 20)
    start_q, stream = np.sort(train_q[:n_start]), train_q[n_start:]
    n_rounds = min(args.rounds, int(np.ceil(len(stream) / args.batch)))
    mask = np.zeros(full.n_queries, dtype=bool)
    mask[start_q] = True
    start_log = full if scenario == "main" else without_backend(full, args.held_out)
    t0 = time.perf_counter()
    start = fit_router(start_log, ctx["encoder"], features, mask, ctx["router_cfg"], ctx["training"])
    if scenario == "add":
        b = full.space.backend(args.held_out)
        start = start.add_backend(
            b.name, (b.input_price, b.output_price), b.parameters, min_observations=args.min_observations
        )
    print(
        f"[{scenario}] start router on {n_start} queries in {time.perf_counter() - t0:.0f} s", file=sys.stderr
    )
    policy = Exploration(kind=args.kind, epsilon=args.epsilon, temperature=args.temperature, seed=args.seed)
    router, served, rounds, regret = start, [], [], 0.0
    warm = warm_config(epochs=args.warm_epochs, seed=args.seed, device="cpu")
    for r in range(n_rounds):
        batch = stream[r * args.batch : (r + 1) * args.batch]
        decisions = serve(router, full, features, batch, observed, args.cost_weight, policy)
        round_regret, explored, new_calls = 0.0, 0, 0
        for i, d in zip(batch, decisions, strict=True):
            s, c = cell[(int(i), d.action_index)]
            best = max(sv - args.cost_weight * cv for (qq, _), (sv, cv) in ctx["by_query"][int(i)])
            round_regret += best - (s - args.cost_weight * c)
            explored += d.explored
            new_calls += full.space.actions[d.action_index].backend == args.held_out
            served.append((int(i), d.action_index, s, c, d.propensity))
        regret += round_regret
        records = records_log(full, start_q, served)
        seen = mask.copy()
        seen[[q for q, *_ in served]] = True
        t1 = time.perf_counter()
        router = warm_start(
            router, records, features=features, train_mask=seen, training_config=warm, refit_statistics=False
        )
        pred = {"online": aligned_predictor(router, full, features)}
        aiq = dev_aiq(full, embeddings, test, pred).pooled["online"]["aiq"]
        row = {
            "round": r + 1,
            "served": len(served),
            "dev_aiq": aiq,
            "round_regret": round_regret / len(batch),
            "cumulative_regret": regret,
            "explored_share": explored / len(batch),
            "held_out_calls": new_calls,
            "update_s": round(time.perf_counter() - t1, 1),
        }
        rounds.append(row)
        print(
            f"[{scenario}] round {r + 1}/{n_rounds}: dev AIQ {aiq:.4f}, "
            f"mean regret {row['round_regret']:.4f}, "
            f"cumulative {regret:.2f}, explored {row['explored_share']:.0%}, update {row['update_s']} s",
            file=sys.stderr,
            flush=True,
        )
    records = records_log(full, start_q, served)
    seen = mask.copy()
    seen[[q for q, *_ in served]] = True
    linear = LinearRouter(candidates=LINEAR_CANDIDATES, steps=30 if args.quick else 300, seed=args.seed)
    linear.fit(training_set(records, seen, embeddings))
    predictors = {
        "online": aligned_predictor(router, full, features),
        "start": aligned_predictor(start, full, features),
        "linear-records": lambda e, t: linear.predict(e, t),
        "complete": ctx["complete"],
    }
    compare = [("online", "start"), ("online", "linear-records"), ("complete", "online")]
    report = dev_aiq(full, embeddings, test, predictors, compare, args.n_boot, args.seed)
    pooled = {k: report.pooled[k]["aiq"] for k in predictors}
    comps = {k: {"diff": v["diff"], "se": v["se"]} for k, v in report.pooled_comparisons.items()}
    gap = (pooled["online"] - pooled["start"]) / (pooled["complete"] - pooled["start"])
    half = len(rounds) // 2
    out: dict[str, Any] = {
        "scenario": scenario,
        "start_queries": n_start,
        "rounds": rounds,
        "aiq": pooled,
        "comparisons": comps,
        "gap_recovered": gap,
        "regret_first_half": float(np.mean([x["round_regret"] for x in rounds[:half]])) if half else None,
        "regret_second_half": float(np.mean([x["round_regret"] for x in rounds[half:]])) if half else None,
    }
    if scenario == "add":
        out["held_out"] = args.held_out
        out["share_online"] = backend_share(
            router, full, features, test, observed, args.cost_weight, args.held_out
        )
        out["share_complete"] = backend_share(
            ctx["complete_router"], full, features, test, observed, args.cost_weight, args.held_out
        )
        out["still_held"] = bool((router.config.extra.get("explore_only") or {}).get(args.held_out))
    return out


def report_text(res: dict[str, Any]) -> str:
    lines = [
        f"#### scenario {res['scenario']} (start: {res['start_queries']} queries)",
        "| round | served | dev AIQ | mean regret | cumulative regret | explored |",
        "|---|---|---|---|---|---|",
    ]
    for r in res["rounds"]:
        lines.append(
            f"| {r['round']} | {r['served']} | {r['dev_aiq']:.4f} | {r['round_regret']:.4f} | "
            f"{r['cumulative_regret']:.2f} | {r['explored_share']:.0%} |"
        )
    lines.append("\n| router | dev AIQ |\n|---|---|")
    lines += [f"| {k} | {v:.4f} |" for k, v in res["aiq"].items()]
    lines.append("\n| paired bootstrap | diff | se |\n|---|---|---|")
    lines += [f"| {k} | {v['diff']:+.4f} | {v['se']:.4f} |" for k, v in res["comparisons"].items()]
    lines.append(f"\ngap to the complete-log router recovered: {res['gap_recovered']:.1%}")
    if res["regret_first_half"] is not None:
        lines.append(
            f"mean regret per call: first half {res['regret_first_half']:.4f}, "
            f"second half {res['regret_second_half']:.4f}"
        )
    if "share_online" in res:
        lines.append(
            f"{res['held_out']}: greedy dev traffic share {res['share_online']:.1%} (updated) vs "
            f"{res['share_complete']:.1%} (complete-data router); still held to exploration: "
            f"{res['still_held']}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=9, help="rounds of `--batch` queries (at most the stream)")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scenario", default="both", choices=["main", "add", "both"])
    p.add_argument("--cost-weight", type=float, default=20.0, help="serving cost weight (quality per USD)")
    p.add_argument("--kind", default="epsilon", choices=["epsilon", "softmax"])
    p.add_argument("--epsilon", type=float, default=0.2)
    p.add_argument("--temperature", type=float, default=0.05)
    p.add_argument("--held-out", default="mistral-large", help="the backend of `--scenario add`")
    p.add_argument("--min-observations", type=int, default=10)
    p.add_argument("--members", type=int, default=2)
    p.add_argument("--epochs", type=int, default=30, help="epochs of the start and complete routers")
    p.add_argument("--warm-epochs", type=int, default=8)
    p.add_argument("--n-boot", type=int, default=500)
    p.add_argument("--quick", action="store_true", help="a smoke test: 2 rounds, 1 member, tiny training")
    p.add_argument("--json", default=None, metavar="FILE")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    training_kw: dict[str, Any] = {"epochs": args.epochs}
    if args.quick:
        args.rounds, args.members, args.n_boot, args.warm_epochs = min(args.rounds, 2), 1, 50, 2
        training_kw = {"epochs": 2, "skip_warmup_steps": 30, "skip_l2": 1e-3}
    full = read_logs(bench_logs(), prices=bench_prices())
    test = split_queries(full.query_ids, 0.2, seed=0)
    encoder = embedding_encoder()
    router_cfg = RouterConfig(embed_dim=encoder.dim, members=args.members)
    features = features_for(encoder, full.queries, router_cfg.use_structural)
    cell, observed = cells(full)
    by_query: dict[int, list[Any]] = {}
    for key, value in cell.items():
        by_query.setdefault(key[0], []).append((key, value))
    training = TrainingConfig(progress=False, seed=args.seed, device="cpu", **training_kw)
    t0 = time.perf_counter()
    complete_router = fit_router(full, encoder, features, ~test, router_cfg, training)
    print(f"complete router in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    ctx = {
        "full": full,
        "features": features,
        "embeddings": embed_texts(encoder, full.queries),
        "test": test,
        "cells": cell,
        "observed": observed,
        "by_query": by_query,
        "encoder": encoder,
        "router_cfg": router_cfg,
        "training": training,
        "complete_router": complete_router,
        "complete": aligned_predictor(complete_router, full, features),
    }
    results = {}
    for scenario in ("main", "add") if args.scenario == "both" else (args.scenario,):
        results[scenario] = simulate(args, ctx, scenario)
        print("\n" + report_text(results[scenario]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": vars(args), "results": results}, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
