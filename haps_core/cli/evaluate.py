"""`haps eval`: the baselines (and a trained router with its ablations) on a routing log."""

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from haps_core.cli.io import STDIO, UsageError, json_default, write_output
from haps_core.cli.offpolicy import add_arguments as add_offpolicy_arguments
from haps_core.cli.offpolicy import cmd_offpolicy

if TYPE_CHECKING:
    import numpy as np

    from haps_core.evaluation import EvaluationReport
    from haps_core.logs import RoutingLog
    from haps_core.model import HAPSRouter
    from haps_core.training import Predictor

logger = logging.getLogger("haps_core.cli")  # the name shown in log lines, as for every command


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("eval", help="evaluate routers against the baselines on a routing log")
    _add_log_args(p)
    p.add_argument("--encoder", default=None, help="query encoder (HF name or path); default MiniLM")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument(
        "--dev-fraction",
        type=float,
        default=0.2,
        help="share of queries held out (without --router, or for a router trained on all queries)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--baselines", default="random,constant,knn,linear", help="comma-separated baselines to report"
    )
    p.add_argument(
        "--compare",
        default="",
        help="A:B pairs for the paired bootstrap (default: haps vs each, or linear:knn)",
    )
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--no-cache", action="store_true", help="do not use the embedding cache")
    p.add_argument("--router", default=None, help="a trained router (folder, Hub id, haps-default)")
    p.add_argument("--no-ablations", action="store_true", help="with --router: skip the ablations")
    p.add_argument(
        "--record",
        action="store_true",
        help="with --router (a folder): store the table in its config and model card",
    )
    p.add_argument("--plot", default=None, metavar="PNG", help="write the frontiers plot here")
    p.add_argument(
        "--json",
        default=None,
        metavar="FILE",
        help="write all metrics as JSON; - writes them to stdout (the table then goes to stderr)",
    )
    add_offpolicy_arguments(p)
    p.set_defaults(func=cmd_eval)


def _add_log_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--logs",
        action="append",
        default=None,
        metavar="FILE",
        help="routing log in format v1 (JSONL[.gz], CSV, Parquet); repeatable. "
        "Default: the haps-bench data ($HAPS_DATA_DIR).",
    )
    p.add_argument(
        "--prices",
        default=None,
        metavar="JSON",
        help="price table (USD per 1M tokens) for rows without `cost`",
    )
    p.add_argument(
        "--skip-invalid",
        action="store_true",
        help="drop invalid rows (and report how many) instead of failing",
    )


def _resolve_logs(args: argparse.Namespace) -> tuple[list[str], str | None]:
    from haps_core.paths import bench_logs, bench_prices

    if args.logs:
        return args.logs, args.prices
    return [str(bench_logs())], args.prices or str(bench_prices())


def _parse_pairs(text: str) -> list[tuple[str, str]]:
    pairs = []
    for item in filter(None, text.split(",")):
        if ":" not in item:
            msg = f"`--compare` items must look like A:B, got {item!r}"
            raise UsageError(msg)
        a, b = item.split(":", 1)
        pairs.append((a, b))
    return pairs


def cmd_eval(args: argparse.Namespace) -> int:
    from haps_core.baselines import BASELINES
    from haps_core.encoders import embed_texts, embedding_encoder
    from haps_core.evaluation import format_report, plot_report, run_evaluation
    from haps_core.logs import read_logs, split_queries

    if args.off_policy:
        return cmd_offpolicy(args)
    names = [b for b in args.baselines.split(",") if b]
    unknown = sorted(set(names) - set(BASELINES))
    if unknown:
        msg = f"`--baselines` has unknown names {unknown}; allowed: {sorted(BASELINES)}"
        raise UsageError(msg)
    compare = _parse_pairs(args.compare)
    start = time.perf_counter()
    files, prices = _resolve_logs(args)
    log = read_logs(files, prices=prices, skip_invalid=args.skip_invalid)
    if log.n_skipped:
        print(f"skipped {log.n_skipped} invalid row(s)", file=sys.stderr)
    router = None
    if args.router:
        router, dev_fraction, seed = _load_router_for_eval(args, log)
    else:
        dev_fraction, seed = args.dev_fraction, args.seed
    test_mask = split_queries(log.query_ids, dev_fraction, seed=seed)
    # before any embedding or training: a log too small for the split fails in seconds
    check_blocks(log, test_mask, dev_fraction, seed, from_router=router is not None and _heldout(router))
    encoder = embedding_encoder(args.encoder, device=args.device, cache=not args.no_cache)
    embeddings = embed_texts(encoder, log.queries)
    routers: dict[str, Any] = {
        n: BASELINES[n](seed=args.seed) if n != "constant" else BASELINES[n]() for n in names
    }
    model_only = ["knn"]
    if router is not None:
        routers.update(_router_predictors(router, log, ~test_mask, args))
        others = [n for n in routers if n != "haps"]
        compare = compare or [("haps", n) for n in others if n not in ("random", "constant")]
    else:
        compare = compare or [("linear", "knn")]
    report = run_evaluation(
        log,
        embeddings,
        test_mask,
        routers,
        model_only=model_only,
        compare=compare,
        n_boot=args.n_boot,
        seed=args.seed,
    )
    report.summary["encoder"] = encoder.encoder_id
    report.summary["seconds"] = round(time.perf_counter() - start, 1)
    s = report.summary
    table = sys.stderr if args.json == STDIO else sys.stdout  # stdout then carries the JSON alone
    print(
        f"logs: {', '.join(s['files'])}: {s['rows']} rows, {s['queries']} queries, "
        f"{s['actions']} actions of {s['backends']} backends; train {s['train_queries']} / "
        f"test {s['test_queries']} queries (dev fraction {dev_fraction}, seed {seed})",
        file=table,
    )
    print(format_report(report), file=table)
    print(f"\n(took {s['seconds']} s)", file=table)
    if args.json:
        write_output(args.json, json.dumps(report.to_dict(), indent=2, default=json_default) + "\n")
    if args.plot:
        plot_report(report, args.plot)
        logger.info("wrote %s", args.plot)
    if args.record and router is not None:
        _record_evaluation(router, report, args)
    return 0


MIN_BLOCK_QUERIES = 20  # run_evaluation's default: the fewest test queries an evaluation block has


def _heldout(router: "HAPSRouter") -> bool:
    return bool(router.training_summary.get("heldout"))


def _has_block(log: "RoutingLog", test_mask: "np.ndarray") -> bool:
    from haps_core.evaluation import find_blocks

    blocks_logger = logging.getLogger("haps_core.evaluation.blocks")
    level = blocks_logger.level
    blocks_logger.setLevel(logging.ERROR)  # the trial splits' skipped groups are not news
    try:
        return bool(find_blocks(log, test_mask, min_queries=MIN_BLOCK_QUERIES))
    finally:
        blocks_logger.setLevel(level)


def check_blocks(
    log: "RoutingLog", test_mask: "np.ndarray", dev_fraction: float, seed: int, from_router: bool
) -> None:
    """Raises UsageError, naming the cause and a remedy that works, when the test split has no
    evaluation block (>= MIN_BLOCK_QUERIES queries of one `dataset` group observed on the same
    >= 2 actions); `from_router`: the split is the one a router held out in training."""
    from haps_core.evaluation import find_blocks
    from haps_core.logs import split_queries

    if find_blocks(log, test_mask, min_queries=MIN_BLOCK_QUERIES):  # logs each skipped group
        return
    cause = (
        f"no evaluation block: the test split (fraction {dev_fraction}, seed {seed}) holds "
        f"{int(test_mask.sum())} of the log's {len(test_mask)} queries, and no `dataset` group of "
        f"them has >= {MIN_BLOCK_QUERIES} queries observed on the same >= 2 actions"
    )
    works = next(
        (
            f
            for f in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
            if f > dev_fraction and _has_block(log, split_queries(log.query_ids, f, seed=seed))
        ),
        None,
    )
    if from_router:
        flag = f"`haps train --holdout-fraction {works}`" if works else "a larger `--holdout-fraction`"
        remedy = (
            "the split is the router's own (`--dev-fraction` does not apply): evaluate on a larger "
            f"log, or on a router trained with {flag}"
        )
    elif works:
        remedy = f"use `--dev-fraction {works}` or a larger log"
    else:
        remedy = "the log is too small for any dev fraction: use a larger (or denser) log"
    msg = f"{cause}; {remedy}"
    raise UsageError(msg)


def _load_router_for_eval(args: argparse.Namespace, log: "RoutingLog") -> tuple["HAPSRouter", float, int]:
    """Loads the router and picks the split it held out when it was trained, if any."""
    from haps_core.encoders import CachedEncoder
    from haps_core.model import HAPSRouter
    from haps_core.paths import default_cache_dir

    router = HAPSRouter.from_pretrained(args.router)
    if not args.no_cache and router.encoder is not None and not isinstance(router.encoder, CachedEncoder):
        router.encoder = CachedEncoder(router.encoder, default_cache_dir() / "embeddings")
    heldout = router.training_summary.get("heldout") or {}
    trained_on = set(router.training_summary.get("files", []))
    if heldout:
        dev_fraction, seed = float(heldout["fraction"]), int(heldout["seed"])
        if (dev_fraction, seed) != (args.dev_fraction, args.seed):
            logger.warning(
                "evaluating on the split the router held out in training: dev fraction %s, seed %s",
                dev_fraction,
                seed,
            )
        return router, dev_fraction, seed
    if trained_on & {Path(f).name for f in log.files}:
        logger.warning(
            "the router was trained on ALL queries of %s: its numbers on this log are "
            "optimistic (train it with --holdout-fraction to evaluate fairly)",
            sorted(trained_on),
        )
    return router, args.dev_fraction, args.seed


def _router_predictors(
    router: "HAPSRouter", log: "RoutingLog", train_mask: "np.ndarray", args: argparse.Namespace
) -> dict[str, "Predictor"]:
    from haps_core.training import ablations, aligned_predictor

    features = router.featurize(log.queries)
    assert router.encoder is not None  # loaded with the router (featurize needs it)
    out = {"haps": aligned_predictor(router, log, features)}
    if not args.no_ablations:
        same = (router.space.backends, router.space.actions) == (log.space.backends, log.space.actions)
        if not same:
            logger.warning("the log's catalog differs from the router's: ablations skipped")
        else:  # the same actions: the ablations train with the router's prompt-style texts
            log = dataclasses.replace(log, space=router.space)
            out.update(ablations(router, log, router.encoder, features, train_mask))
    return out


def _record_evaluation(router: "HAPSRouter", report: "EvaluationReport", args: argparse.Namespace) -> None:
    """Stores the pooled table in the router's checkpoint (config and model card)."""
    keys = ["aiq", "q_at_c_best", "gap_recovered", "saving", "saving95"]
    rows = []
    for name, metrics in report.pooled.items():
        if name in ("oracle", "best-single"):
            continue
        rows.append({"router": name, **{k: round(metrics.get(k, float("nan")), 4) for k in keys}})
    s = report.summary
    router.evaluation = {
        "description": (
            f"`haps eval` on {', '.join(s['files'])}: {s['test_queries']} held-out test queries, "
            f"pooled over {len(report.blocks)} blocks (query-weighted); AIQ = area under the "
            "cost-quality frontier on a log cost axis."
        ),
        "columns": ["router", *keys],
        "rows": rows,
    }
    router.save_pretrained(args.router)
    print(f"recorded the evaluation in {args.router}", file=sys.stderr)
