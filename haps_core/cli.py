"""The `haps` command line: eval (train, route and push follow the router).

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
    from haps_core.data import bench_logs, bench_prices

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
    encoder = embedding_encoder(args.encoder, device=args.device, cache=not args.no_cache)
    embeddings = embed_texts(encoder, log.queries)
    test_mask = split_queries(log.query_ids, args.dev_fraction, seed=args.seed)
    routers = {n: BASELINES[n](seed=args.seed) if n != "constant" else BASELINES[n]() for n in names}
    report = run_evaluation(
        log, embeddings, test_mask, routers, compare=compare, n_boot=args.n_boot, seed=args.seed
    )
    report.summary["encoder"] = encoder.encoder_id
    report.summary["seconds"] = round(time.perf_counter() - start, 1)
    s = report.summary
    print(
        f"logs: {', '.join(s['files'])}: {s['rows']} rows, {s['queries']} queries, "
        f"{s['actions']} actions of {s['backends']} backends; train {s['train_queries']} / "
        f"test {s['test_queries']} queries (dev fraction {args.dev_fraction}, seed {args.seed})"
    )
    print(format_report(report))
    print(f"\n(took {s['seconds']} s)")
    if args.json:
        _write_atomic(Path(args.json), json.dumps(report.to_dict(), indent=2, default=_json_default))
    if args.plot:
        plot_report(report, args.plot)
        logger.info("wrote %s", args.plot)
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
        "--compare", default="linear:knn", help="comma-separated A:B pairs for the paired bootstrap"
    )
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--no-cache", action="store_true", help="do not use the embedding cache")
    p.add_argument("--plot", default=None, metavar="PNG", help="write the frontiers plot here")
    p.add_argument("--json", default=None, metavar="FILE", help="write all metrics as JSON")
    p.set_defaults(func=cmd_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `haps` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (UsageError, ValueError, FileNotFoundError, KeyError, TypeError) as exc:
        print(f"haps {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
