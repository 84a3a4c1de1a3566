"""`haps route`: decisions for one query or a queries file, at cost weights or budgets."""

import argparse
import json
import math
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from haps_core.cli.io import STDIO, UsageError, read_queries, write_output
from haps_core.decision import EVIDENCE_FIELDS

if TYPE_CHECKING:
    from haps_core.decision import RoutingDecision


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("route", help="route queries with a trained router")
    p.add_argument("--router", default="haps-default", help="checkpoint folder, Hub id or haps-default")
    p.add_argument("--revision", default=None, help="Hub revision of the router")
    p.add_argument(
        "--encoder-precision",
        default="fp32",
        choices=["fp32", "bf16", "int8", "onnx-fp32", "onnx-int8"],
        help="run a transformer query encoder faster on CPU (int8: ~2.5x, a few percent of "
        "decisions change; bf16 needs native CPU support; onnx-*: on ONNX Runtime, exported "
        "once into the cache, needs the onnx extra)",
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
        help="hard cap on each query's predicted cost (the cheapest action where none fits)",
    )
    p.add_argument(
        "--target-mean-cost",
        type=float,
        default=None,
        metavar="USD",
        help="mean predicted cost per query over the router's fixed reference set (calibrates the "
        "cost weight; not with --cost-weight)",
    )
    p.add_argument(
        "--backends",
        default=None,
        metavar="A,B,...",
        help="route only among these backends of the router's catalog",
    )
    p.add_argument(
        "--explain",
        action="store_true",
        help="explain each decision (top actions, margin, uncertainty, OOD score, nearest training "
        "queries): as text on stdout, and in each line of --output",
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
        **({"over_budget": True} if decision.over_budget else {}),
        **{k: v for k, v in decision.to_dict().items() if k in EVIDENCE_FIELDS},
        **({"explanation": decision.explanation.to_dict()} if decision.explanation is not None else {}),
    }


def cmd_route(args: argparse.Namespace) -> int:
    from haps_core.decision import pool_mask, route_from_predictions
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
    if weights is not None and args.target_mean_cost is not None:
        msg = "give either `--cost-weight` or `--target-mean-cost`, not both"
        raise UsageError(msg)
    for flag, value in (
        ("--max-cost-per-query", args.max_cost_per_query),
        ("--target-mean-cost", args.target_mean_cost),
    ):
        if value is not None and not (math.isfinite(value) and value > 0):
            msg = f"`{flag}` must be a positive number of USD, got {value!r}"
            raise UsageError(msg)
    router = HAPSRouter.from_pretrained(args.router, revision=args.revision)
    if args.encoder_precision != "fp32":
        router.set_encoder_precision(args.encoder_precision)
    backends = router.space.backend_names
    pool = None
    if args.backends is not None:
        try:
            pool = pool_mask(router.space, [b.strip() for b in args.backends.split(",") if b.strip()])
        except ValueError as exc:
            msg = f"`--backends`: {exc}"
            raise UsageError(msg) from None
    items: list[dict[str, Any]] = (
        [{"id": "query", "query": query, "backends": None}]
        if query is not None
        else read_queries(args.input, backends)
    )
    for name, value in (
        ("max_cost_per_query", args.max_cost_per_query),
        ("target_mean_cost", args.target_mean_cost),
    ):
        if value is not None and not router.has_cost:  # as HAPSRouter.route: the same message
            msg = f"this router was trained on logs without cost: `{name}` cannot be applied"
            raise UsageError(msg)
    if not router.has_cost and weights:
        # one line per requested weight all the same, stamped with it, as Python's route does
        print(
            "haps route: this router was trained without cost information: the cost weight has "
            "no effect (routing by quality alone)",
            file=sys.stderr,
        )
    cap, target = args.max_cost_per_query, args.target_mean_cost
    texts = [it["query"] for it in items]
    guarded = args.explain or router.ood_stats is not None  # routes through router.route
    quality, cost = router.predict(texts) if not guarded else (None, None)
    reference = router.reference_predictions() if target is not None and not guarded else None
    lines, explanations = [], []
    pools = [_item_pool(router, it, pool) for it in items]
    for w in weights if weights is not None else [None if target is not None else router.default_cost_weight]:
        batched = _guarded_batches(router, items, pools, w, cap, target, args.explain) if guarded else None
        for i, it in enumerate(items):
            # a decision never depends on the other queries of the file (per-row tie-breaks)
            allowed = pools[i]
            if batched is not None:  # OOD policy, evidence and explanations (haps_core.model.guarded)
                decision = batched[i]
            else:
                assert quality is not None and cost is not None
                (decision,) = route_from_predictions(
                    router.space,
                    quality[i : i + 1],
                    cost[i : i + 1],
                    cost_weight=w,
                    max_cost_per_query=cap,
                    target_mean_cost=target,
                    reference=reference,
                    allowed=allowed,
                )
            lines.append(json.dumps(decision_record(it["id"], decision)))
            if args.explain:
                explanations.append(f"[{it['id']}] {decision.explain()}")
    if args.explain:
        print("\n\n".join(explanations))
        if args.output is None:
            return 0
    text = "\n".join(lines) + "\n"
    write_output(args.output or STDIO, text)
    if args.output not in (None, STDIO) and not args.quiet:
        print(f"wrote {len(lines)} decisions to {args.output}", file=sys.stderr)
    return 0


def _item_pool(router: Any, item: dict[str, Any], pool: np.ndarray | None) -> np.ndarray | None:
    """The actions one query may get: `--backends` and the query's own `backends` (None: all)."""
    if item["backends"] is None:
        return pool
    mine = np.array([a.backend in item["backends"] for a in router.space.actions])
    allowed = mine if pool is None else mine & pool
    if not allowed.any():
        msg = f"query {item['id']!r}: none of its `backends` is in `--backends`"
        raise UsageError(msg)
    return allowed


def _guarded_batches(
    router: Any,
    items: list[dict[str, Any]],
    pools: list[np.ndarray | None],
    w: Any,
    cap: Any,
    target: Any,
    explain: bool,
) -> list[Any]:
    """Each item's decision through `HAPSRouter.route` (OOD policy, evidence, explanations): one
    call per distinct backend pool, which `route` keeps independent of the other queries."""
    groups: dict[tuple[str, ...] | None, list[int]] = {}
    for i, allowed in enumerate(pools):
        key = None
        if allowed is not None:
            key = tuple(sorted({a.backend for a, k in zip(router.space.actions, allowed) if k}))
        groups.setdefault(key, []).append(i)
    out: list[Any] = [None] * len(items)
    for key, rows in groups.items():
        texts = [items[i]["query"] for i in rows]
        names = None if key is None else list(key)
        decisions = router.route(texts, w, cap, target_mean_cost=target, backends=names, explain=explain)
        for i, d in zip(rows, decisions):
            out[i] = d
    return out
