"""`haps route`: decisions for one query or a queries file, at cost weights or a budget."""

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from haps_core.cli.io import STDIO, UsageError, read_queries, write_output

if TYPE_CHECKING:
    from haps_core.decision import RoutingDecision


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
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
    p.add_argument("--query", default=None, help="one query text; - reads it from stdin")
    p.add_argument(
        "--input",
        default=None,
        metavar="JSONL",
        help='queries: {"id": ..., "query": ...} per line; - reads stdin',
    )
    p.add_argument(
        "--output", default=None, metavar="JSONL", help="decisions file to write; - or omitted: stdout"
    )
    p.add_argument("--cost-weight", default=None, metavar="L[,L2,...]", help="cost weight(s) >= 0")
    p.add_argument(
        "--max-cost-per-query",
        type=float,
        default=None,
        metavar="USD",
        help="budget: the cost weight is calibrated so the mean predicted cost fits "
        "(an error for a router trained without cost, as in Python)",
    )
    p.set_defaults(func=cmd_route)


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


def decision_record(qid: Any, decision: "RoutingDecision") -> dict[str, Any]:
    """One line of decisions.jsonl."""
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
    from haps_core.decision import route_from_predictions
    from haps_core.model import HAPSRouter

    if (args.query is None) == (args.input is None):
        msg = "give exactly one of `--query TEXT` or `--input queries.jsonl` (`-` for either: stdin)"
        raise UsageError(msg)
    if args.query == STDIO and args.input == STDIO:
        msg = "`--query -` and `--input -` both read stdin: give one"
        raise UsageError(msg)
    query: str | None = sys.stdin.read().strip("\n") if args.query == STDIO else args.query
    if query is not None and not query.strip():
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
    items: list[dict[str, Any]] = (
        [{"id": "query", "query": query, "backends": None}]
        if query is not None
        else read_queries(args.input, backends)
    )
    if args.max_cost_per_query is not None and not router.has_cost:
        # as HAPSRouter.route: the same message, exit code 2
        router.calibrate_cost_weight(args.max_cost_per_query)
    if not router.has_cost and weights:
        # one line per requested weight all the same, stamped with it, as Python's route does
        print(
            "haps route: this router was trained without cost information: the cost weight has "
            "no effect (routing by quality alone)",
            file=sys.stderr,
        )
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
            # one query per call: the tie-break towards cheaper actions scales with the costs of
            # a call's rows, so a decision never depends on the other queries of the file
            allowed = None
            if it["backends"] is not None:
                allowed = np.array([a.backend in it["backends"] for a in router.space.actions])
            (decision,) = route_from_predictions(
                router.space, quality[i : i + 1], cost[i : i + 1], cost_weight=w, allowed=allowed
            )
            lines.append(json.dumps(decision_record(it["id"], decision)))
    text = "\n".join(lines) + "\n"
    write_output(args.output or STDIO, text)
    if args.output not in (None, STDIO) and not args.quiet:
        print(f"wrote {len(lines)} decisions to {args.output}", file=sys.stderr)
    return 0
