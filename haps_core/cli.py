"""The `haps` command line: train, route, eval, push (ARCHITECTURE section 4).

Every sub-command returns an exit code: 0 on success, 2 on bad input (one clear message on
stderr, nothing half-written), 1 on an unexpected failure.
"""

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("haps_core.cli")


class UsageError(ValueError):
    """Bad input on the command line: reported as one line, exit code 2."""


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
    from haps_core.embedding import embed_texts, embedding_encoder
    from haps_core.evaluation import format_report, plot_report, run_evaluation
    from haps_core.logs import read_logs, split_queries

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
    encoder = embedding_encoder(args.encoder, device=args.device, cache=not args.no_cache)
    embeddings = embed_texts(encoder, log.queries)
    dev_fraction, seed = args.dev_fraction, args.seed
    routers: dict[str, Any] = {
        n: BASELINES[n](seed=args.seed) if n != "constant" else BASELINES[n]() for n in names
    }
    model_only = ["knn"]
    router = None
    if args.router:
        router, dev_fraction, seed = _load_router_for_eval(args, log)
        test_mask = split_queries(log.query_ids, dev_fraction, seed=seed)
        routers.update(_router_predictors(router, log, ~test_mask, args))
        others = [n for n in routers if n != "haps"]
        compare = compare or [("haps", n) for n in others if n not in ("random", "constant")]
    else:
        compare = compare or [("linear", "knn")]
        test_mask = split_queries(log.query_ids, dev_fraction, seed=seed)
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
    print(
        f"logs: {', '.join(s['files'])}: {s['rows']} rows, {s['queries']} queries, "
        f"{s['actions']} actions of {s['backends']} backends; train {s['train_queries']} / "
        f"test {s['test_queries']} queries (dev fraction {dev_fraction}, seed {seed})"
    )
    print(format_report(report))
    print(f"\n(took {s['seconds']} s)")
    if args.json:
        _write_atomic(Path(args.json), json.dumps(report.to_dict(), indent=2, default=_json_default))
    if args.plot:
        plot_report(report, args.plot)
        logger.info("wrote %s", args.plot)
    if args.record and router is not None:
        _record_evaluation(router, report, args)
    return 0


def _load_router_for_eval(args: argparse.Namespace, log: Any) -> tuple[Any, float, int]:
    """Loads the router and picks the split it held out when it was trained, if any."""
    from haps_core.encoders import CachedEncoder
    from haps_core.model import HAPSRouter
    from haps_core.paths import default_cache_dir

    router = HAPSRouter.from_pretrained(args.router)
    if not args.no_cache and not isinstance(router.encoder, CachedEncoder):
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


def _router_predictors(router: Any, log: Any, train_mask: Any, args: argparse.Namespace) -> dict[str, Any]:
    from haps_core.pipeline import ablations, aligned_predictor

    features = router.featurize(log.queries)
    out = {"haps": aligned_predictor(router, log, features)}
    if not args.no_ablations:
        if router.space != log.space:
            logger.warning("the log's catalog differs from the router's: ablations skipped")
        else:
            out.update(ablations(router, log, router.encoder, features, train_mask))
    return out


def _record_evaluation(router: Any, report: Any, args: argparse.Namespace) -> None:
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


def _router_config_from_args(args: argparse.Namespace, embed_dim: int) -> "Any":
    from haps_core.model import RouterConfig

    return RouterConfig(
        embed_dim=embed_dim,
        use_structural=not args.no_structural,
        architecture=args.architecture,
        members=args.members,
    )


def cmd_train(args: argparse.Namespace) -> int:
    """`haps train`; under ``torchrun --nproc-per-node N -m haps_core.cli train ...`` every rank
    trains on its shard of each batch (haps_core.distributed) and rank 0 embeds first (the
    others read its cache), saves and reports."""
    from haps_core import distributed as ddp

    output = Path(args.output)
    if output.exists() and not output.is_dir():
        msg = f"`--output` {str(output)!r} exists and is not a folder"
        raise UsageError(msg)
    if args.processes < 1:
        msg = f"`--processes` must be a positive integer, got {args.processes}"
        raise UsageError(msg)
    if args.processes > 1:
        if ddp.launched_by_torchrun():
            msg = "`--processes` launches its own workers: do not combine it with torchrun"
            raise UsageError(msg)
        return _launch_workers(args)
    if not ddp.launched_by_torchrun():
        return _train(args, output)
    ddp.init_distributed(args.device)
    try:
        return _train(args, output)
    finally:
        ddp.cleanup()


def _launch_workers(args: argparse.Namespace) -> int:
    """Runs `haps train` (these arguments, less ``--processes``) in N local torchrun workers.

    Through torch.distributed.run's own launcher, so rendezvous, environment and failure
    handling are torchrun's; the workers' argument list is set after parsing because some of
    ours (``--logs``) are prefixes of torchrun options and would be taken for them.
    """
    import socket

    from torch.distributed.run import get_args_parser, run

    child: list[str] = []
    skip = False
    for item in args.argv:
        if skip:
            skip = False
        elif item == "--processes":
            skip = True
        elif not item.startswith("--processes="):
            child.append(item)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    launch = get_args_parser().parse_args(
        ["--nnodes", "1", "--nproc-per-node", str(args.processes), "--master-addr", "127.0.0.1",
         "--master-port", str(port), "-m", "haps_core.cli"]
    )  # fmt: skip
    launch.training_script_args = child
    try:
        run(launch)
    except Exception as exc:  # torchrun's ChildFailedError names the failed rank and its error
        print(f"haps train: error: a worker failed: {exc}", file=sys.stderr)
        return 1
    return 0


def _train(args: argparse.Namespace, output: Path) -> int:
    from haps_core import distributed as ddp
    from haps_core.embedding import embedding_encoder
    from haps_core.logs import read_logs, split_queries
    from haps_core.pipeline import features_for, fit_router
    from haps_core.training import TrainingConfig

    main = ddp.is_main_process()
    training = TrainingConfig(epochs=args.epochs, seed=args.seed, device=args.device)
    start = time.perf_counter()
    log = read_logs(args.logs, prices=args.prices, skip_invalid=args.skip_invalid)
    if log.n_skipped and main:
        print(f"skipped {log.n_skipped} invalid row(s)", file=sys.stderr)
    # a fine-tuned encoder's weights change: no embedding cache for it
    cache = not (args.no_cache or args.fine_tune_encoder)
    with ddp.main_process_first():  # rank 0 fills the embedding cache, the others read it
        encoder = embedding_encoder(args.encoder, device=args.device, cache=cache)
        rconfig = _router_config_from_args(args, encoder.dim)
        features = features_for(encoder, log.queries, rconfig.use_structural)
    train_mask = np.ones(log.n_queries, dtype=bool)
    heldout = None
    if args.holdout_fraction:
        train_mask = ~split_queries(log.query_ids, args.holdout_fraction, seed=args.holdout_seed)
        heldout = {"fraction": args.holdout_fraction, "seed": args.holdout_seed}
    router = fit_router(
        log,
        encoder,
        features,
        train_mask,
        rconfig,
        training,
        heldout,
        fine_tune=args.fine_tune_encoder,
        encoder_lr=args.encoder_lr,
    )
    if not log.has_cost:
        router.default_cost_weight = 0.0
    ddp.save_on_main(router, output)
    took = time.perf_counter() - start
    s = router.training_summary
    if main:
        world = ddp.get_world_size()
        print(
            f"trained a {rconfig.architecture} router ({s['parameters']} parameters, {rconfig.members} "
            f"members) on {s['train_queries']} queries x {len(log.space)} actions in {took:.1f} s "
            f"on {s['device']}{f' x {world} processes' if world > 1 else ''}; "
            f"held-out regret {s['heldout_regret']:.4f}; saved to {output}"
        )
    return 0


def _parse_weights(text: str | None) -> list[float] | None:
    if text is None:
        return None
    from haps_core.decision import check_cost_weight

    weights = []
    for item in text.split(","):
        try:
            value = float(item)
        except ValueError:
            msg = f"`--cost-weight` must be numbers separated by commas, got {item!r}"
            raise UsageError(msg) from None
        try:
            weights.append(check_cost_weight(value, "--cost-weight"))
        except (TypeError, ValueError) as exc:
            raise UsageError(str(exc)) from None
    return weights


def _read_queries(path: Path, backends: list[str]) -> list[dict[str, Any]]:
    if not path.is_file():
        msg = f"`--input` file {str(path)!r} does not exist"
        raise UsageError(msg)
    items, errors = [], []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"{path}:{i}: not JSON ({exc})")
            continue
        if not isinstance(row, dict) or not isinstance(row.get("query"), str) or not row["query"].strip():
            errors.append(f"{path}:{i}: needs a non-empty string `query`")
            continue
        allowed = row.get("backends")
        if allowed is not None:
            unknown = sorted(set(allowed) - set(backends)) if isinstance(allowed, list) else [allowed]
            if unknown:
                errors.append(f"{path}:{i}: `backends` names unknown backend(s) {unknown}; known: {backends}")
                continue
        items.append({"id": row.get("id", i), "query": row["query"], "backends": allowed})
    if errors:
        raise UsageError("invalid queries file:\n  " + "\n  ".join(errors))
    if not items:
        msg = f"`--input` file {str(path)!r} holds no queries"
        raise UsageError(msg)
    return items


def decision_record(qid: Any, decision: Any) -> dict[str, Any]:
    """One line of decisions.jsonl (ARCHITECTURE section 4)."""
    return {
        "id": qid,
        "cost_weight": decision.cost_weight,
        "backend": decision.backend,
        "temperature": decision.temperature,
        "prompt_style": decision.prompt_style,
        "parameters": decision.parameters,
        "predicted_quality": round(decision.predicted_quality, 6),
        "predicted_cost": decision.predicted_cost,
    }


def cmd_route(args: argparse.Namespace) -> int:
    from haps_core.model import HAPSRouter

    if (args.query is None) == (args.input is None):
        msg = "give exactly one of `--query TEXT` or `--input queries.jsonl`"
        raise UsageError(msg)
    if args.input is not None and args.output is None:
        msg = "`--input` needs `--output decisions.jsonl`"
        raise UsageError(msg)
    if args.query is not None and not args.query.strip():
        msg = "`--query` is empty: there is nothing to route on"
        raise UsageError(msg)
    weights = _parse_weights(args.cost_weight)
    if weights is not None and args.max_cost_per_query is not None:
        msg = "give either `--cost-weight` or `--max-cost-per-query`, not both"
        raise UsageError(msg)
    router = HAPSRouter.from_pretrained(args.router, revision=args.revision)
    if args.encoder_precision != "fp32":
        router.set_encoder_precision(args.encoder_precision)
    backends = router.space.backend_names
    items = (
        [{"id": "query", "query": args.query, "backends": None}]
        if args.query is not None
        else _read_queries(Path(args.input), backends)
    )
    if not router.has_cost and (weights or args.max_cost_per_query is not None):
        print(
            "haps route: this router was trained without cost information: the cost weight has "
            "no effect (routing by quality alone)",
            file=sys.stderr,
        )
        weights = [0.0]
    if args.max_cost_per_query is not None and not router.has_cost:
        args.max_cost_per_query = None
    texts = [it["query"] for it in items]
    features = router.featurize(texts)
    quality, cost = router.predict_features(features)
    if args.max_cost_per_query is not None:
        ref = features if len(texts) > 1 else None
        weights = [router.calibrate_cost_weight(args.max_cost_per_query, ref)]
    if weights is None:
        weights = [router.default_cost_weight]
    lines = []
    for w in weights:
        for i, it in enumerate(items):
            q, c = quality[i : i + 1].copy(), cost[i : i + 1].copy()
            if it["backends"] is not None:
                allowed = np.array([a.backend in it["backends"] for a in router.space.actions])
                q[:, ~allowed] = -np.inf
            (decision,) = router.decide(q, c, w)
            lines.append(json.dumps(decision_record(it["id"], decision)))
    if args.output:
        _write_atomic(Path(args.output), "\n".join(lines) + "\n")
        print(f"wrote {len(lines)} decisions to {args.output}", file=sys.stderr)
    else:
        print("\n".join(lines))
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from haps_core.model import HAPSRouter

    router = HAPSRouter.from_pretrained(args.router)
    url = router.push_to_hub(
        args.repo_id, revision=args.revision, private=args.private or None, commit_message=args.commit_message
    )
    print(url)
    return 0


def _json_default(obj: object) -> object:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    msg = f"not JSON serialisable: {type(obj).__name__}"
    raise TypeError(msg)


def _write_atomic(path: Path, text: str) -> None:
    """Writes through a temporary file, so a failure never leaves a half-written output."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="haps", description="Hierarchical LLM routing (HAPS).")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a HAPS router on routing logs")
    p.add_argument(
        "--logs",
        action="append",
        required=True,
        metavar="FILE",
        help="routing log in format v1 (JSONL[.gz], CSV, Parquet); repeatable",
    )
    p.add_argument("--prices", default=None, metavar="JSON", help="price table for rows without cost")
    p.add_argument("--skip-invalid", action="store_true", help="drop invalid rows instead of failing")
    p.add_argument("--output", required=True, metavar="DIR", help="checkpoint folder to write")
    p.add_argument("--encoder", default=None, help="query encoder (HF name or path); default MiniLM")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--members", type=int, default=5, help="ensemble size")
    p.add_argument("--architecture", default="haps", choices=["haps", "flat", "no_pgn"])
    p.add_argument("--no-structural", action="store_true", help="embedding only, no text features")
    p.add_argument(
        "--fine-tune-encoder",
        action="store_true",
        help="train the encoder end to end with the routing objective (GPU advised)",
    )
    p.add_argument("--encoder-lr", type=float, default=2e-5, help="encoder learning rate when fine-tuning")
    p.add_argument(
        "--holdout-fraction",
        type=float,
        default=0.0,
        help="leave this share of queries out (for a later `haps eval --router`)",
    )
    p.add_argument("--holdout-seed", type=int, default=0)
    p.add_argument("--no-cache", action="store_true", help="do not use the embedding cache")
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="data-parallel training in N local processes (torch.distributed, gloo on CPU, "
        "NCCL on GPU: one per GPU); for several machines launch `haps train` under torchrun",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("route", help="route queries with a trained router")
    p.add_argument("--router", default="haps-default", help="checkpoint folder, Hub id or haps-default")
    p.add_argument("--revision", default=None, help="Hub revision of the router")
    p.add_argument(
        "--encoder-precision",
        default="fp32",
        choices=["fp32", "bf16", "int8"],
        help="run the query encoder faster at lower precision on CPU (int8: ~2.5x, a few "
        "percent of decisions change; bf16 needs native CPU support)",
    )
    p.add_argument("--query", default=None, help="one query text")
    p.add_argument(
        "--input", default=None, metavar="JSONL", help='queries: {"id": ..., "query": ...} per line'
    )
    p.add_argument("--output", default=None, metavar="JSONL", help="decisions file to write")
    p.add_argument("--cost-weight", default=None, metavar="L[,L2,...]", help="cost weight(s) >= 0")
    p.add_argument(
        "--max-cost-per-query",
        type=float,
        default=None,
        metavar="USD",
        help="budget: the cost weight is calibrated so the mean predicted cost fits",
    )
    p.set_defaults(func=cmd_route)

    p = sub.add_parser("push", help="upload a router checkpoint to the Hugging Face Hub")
    p.add_argument("--router", required=True, metavar="DIR")
    p.add_argument("--repo-id", required=True, metavar="ORG/NAME")
    p.add_argument("--revision", default=None, metavar="BRANCH")
    p.add_argument("--private", action="store_true")
    p.add_argument("--commit-message", default="Upload HAPS router")
    p.set_defaults(func=cmd_push)

    p = sub.add_parser("eval", help="evaluate routers against the baselines on a routing log")
    _add_log_args(p)
    p.add_argument("--encoder", default=None, help="query encoder (HF name or path); default MiniLM")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--dev-fraction", type=float, default=0.2, help="share of queries held out")
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
    p.add_argument("--json", default=None, metavar="FILE", help="write all metrics as JSON")
    p.set_defaults(func=cmd_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `haps` console script."""
    from haps_core.errors import HAPSError

    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # `haps train --processes N` relaunches itself with these arguments
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (UsageError, ValueError, FileNotFoundError, KeyError, TypeError, HAPSError) as exc:
        print(f"haps {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
