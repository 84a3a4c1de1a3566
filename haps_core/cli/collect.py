"""`haps collect`: collect a routing log over your backends and settings on a budget (a thin
wrapper of `haps_core.collect`), and optionally train a router on it (``--train``)."""

import argparse
import sys

from haps_core.cli.io import UsageError, is_stdout, write_output


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("collect", help="collect a routing log over backends and settings, on a budget")
    p.add_argument(
        "--questions", default=None, metavar="FILE", help="questions: JSONL, CSV, Parquet or a HF folder"
    )
    p.add_argument(
        "--backends", default=None, metavar="FILE", help="backends file (Python defining BACKENDS, or YAML)"
    )
    p.add_argument(
        "--replay", default=None, metavar="LOG", help="answer from this complete log instead of backends"
    )
    p.add_argument(
        "--prices",
        default=None,
        metavar="JSON",
        help="prices of a replay log (default: prices.json beside it)",
    )
    p.add_argument(
        "--scorer",
        default="exact_match",
        help="exact_match, multiple_choice, numeric, contains, regex, token_f1",
    )
    p.add_argument(
        "--budget-usd",
        type=float,
        default=None,
        metavar="USD",
        help="spend at most this (in-flight calls included)",
    )
    p.add_argument(
        "--budget-calls", type=int, default=None, metavar="N", help="make at most N calls (retries included)"
    )
    p.add_argument(
        "--strategy",
        default="full",
        choices=["full", "uniform", "adaptive", "thompson"],
        help="full: every cell; uniform: random cells; adaptive: the most informative cells per dollar; "
        "thompson: the earlier adaptive strategy",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=None, metavar="LOG", help="the .jsonl log to write; rerun to resume")
    p.add_argument("--dry-run", action="store_true", help="print the plan's estimated spend and call nothing")
    p.add_argument("--concurrency", type=int, default=8, metavar="N", help="calls in flight at once")
    p.add_argument(
        "--batch-size", type=int, default=64, metavar="N", help="cells per round (keep it to resume)"
    )
    p.add_argument("--retries", type=int, default=3, help="retries of a transient error")
    p.add_argument("--backoff", type=float, default=1.0, metavar="SECONDS", help="first retry wait (doubles)")
    p.add_argument("--no-outputs", action="store_true", help="do not keep the raw outputs in the log")
    p.add_argument(
        "--summary", default="-", metavar="FILE", help="where the summary table goes ('-': stdout)"
    )
    p.add_argument("--train", default=None, metavar="DIR", help="then train a router on the log, saved here")
    p.add_argument("--epochs", type=int, default=60, help="training epochs with --train")
    p.add_argument("--members", type=int, default=None, help="ensemble members with --train (default 5)")
    p.add_argument("--device", default="auto", help="training device with --train")
    p.set_defaults(func=cmd_collect)


def cmd_collect(args: argparse.Namespace) -> int:
    from haps_core.collect import Plan, collect, read_collected

    if args.replay is None and args.backends is None:
        msg = "give --backends FILE (real calls) or --replay LOG (answers from a complete log)"
        raise UsageError(msg)
    if not args.dry_run and args.output is None:
        msg = "--output LOG is required (or give --dry-run)"
        raise UsageError(msg)
    if args.output is not None and is_stdout(args.output):
        msg = "--output must be a file: the log is appended to and resumed, so it cannot be stdout"
        raise UsageError(msg)
    if args.train is not None and args.dry_run:
        msg = "--train needs a collection, not --dry-run"
        raise UsageError(msg)
    progress = not args.quiet and sys.stderr.isatty()
    result = collect(
        args.questions,
        args.backends,
        args.scorer,
        output=args.output,
        budget_usd=args.budget_usd,
        budget_calls=args.budget_calls,
        strategy=args.strategy,
        seed=args.seed,
        replay=args.replay,
        prices=args.prices,
        concurrency=args.concurrency,
        batch_size=args.batch_size,
        dry_run=args.dry_run,
        retries=args.retries,
        backoff_s=args.backoff,
        keep_outputs=not args.no_outputs,
        progress=progress,
    )
    if not args.quiet or not is_stdout(args.summary):
        write_output(args.summary, result.table() + "\n")
    if isinstance(result, Plan):
        return 0
    if result.cells == 0:
        print("haps collect: error: no cell was collected (see the failures above)", file=sys.stderr)
        return 2
    if args.train is not None:
        from haps_core.model import RouterConfig
        from haps_core.training import TrainingConfig, fit

        if args.members is not None and args.members < 1:
            msg = f"`--members` must be an integer >= 1, got {args.members}"
            raise UsageError(msg)
        router = fit(
            read_collected(result.output),
            router_config=None if args.members is None else RouterConfig(members=args.members),
            training_config=TrainingConfig(epochs=args.epochs, seed=args.seed, device=args.device),
            device=args.device,
        )
        path = router.save_pretrained(args.train)
        if not args.quiet:
            print(f"haps collect: trained a router on {result.cells} cells; saved to {path}", file=sys.stderr)
    return 0
