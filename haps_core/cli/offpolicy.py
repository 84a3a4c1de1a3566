"""`haps eval --off-policy`: a trained router's mean quality and cost estimated on a bandit log.

A bandit log observes one action per query, with the logging policy's `propensity` of it; the
estimates (IPS, self-normalised IPS, doubly robust, each with a 95% interval) say what the
router would have achieved had it chosen instead (`haps_core.evaluation.offpolicy`).
"""

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from haps_core.cli.io import STDIO, UsageError, json_default, write_output

if TYPE_CHECKING:
    from haps_core.evaluation import OffPolicyResult

NAMES = {"ips": "IPS", "snips": "SNIPS", "dr": "DR"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options `haps eval` takes for off-policy evaluation."""
    p.add_argument(
        "--off-policy",
        action="store_true",
        help="with --router and --logs: estimate the router's mean quality and cost on a bandit log "
        "(rows with a `propensity` column) by IPS, self-normalised IPS and doubly robust estimators",
    )
    p.add_argument(
        "--cost-weight",
        default="0",
        metavar="L[,L2,...]",
        help="with --off-policy: the cost weight(s) the router decides at (default 0)",
    )


def _weights(text: str) -> list[float]:
    from haps_core.cli.route import _parse_weights

    weights = _parse_weights(text)
    assert weights is not None
    return weights


def format_results(results: "list[OffPolicyResult]") -> str:
    """The estimates as a readable table, one block per cost weight."""
    lines = []
    for res in results:
        lines.append(
            f"\ncost weight {res.cost_weight:g}: {res.matches} of {res.n_rows} rows match the router's "
            f"choice; effective sample size {res.ess:.1f}"
        )
        lines.append(f"  {'estimator':<10} {'mean quality [95% CI]':<28} {'mean cost USD [95% CI]'}")
        for key, name in NAMES.items():
            q, c = res.quality[key], res.cost[key]
            quality = f"{q.value:.4f} [{q.low:.4f}, {q.high:.4f}]"
            cost = f"{c.value:.4g} [{c.low:.4g}, {c.high:.4g}]"
            lines.append(f"  {name:<10} {quality:<28} {cost}")
    return "\n".join(lines)


def cmd_offpolicy(args: argparse.Namespace) -> int:
    """`haps eval --off-policy --router R --logs BANDIT_LOG [--cost-weight W,...] [--json FILE]`."""
    import numpy as np

    from haps_core.encoders import CachedEncoder, embed_texts, embedding_encoder
    from haps_core.evaluation import bandit_rows, fit_reward_model, offpolicy_evaluate
    from haps_core.logs import read_logs
    from haps_core.model import HAPSRouter
    from haps_core.paths import default_cache_dir
    from haps_core.training import aligned_predictor

    if not args.router:
        msg = "`--off-policy` needs `--router ROUTER` (the router to evaluate)"
        raise UsageError(msg)
    if not args.logs:
        msg = "`--off-policy` needs `--logs BANDIT_LOG` (a log with a `propensity` column)"
        raise UsageError(msg)
    weights = _weights(args.cost_weight)
    log = read_logs(args.logs, prices=args.prices, skip_invalid=args.skip_invalid)
    rows = bandit_rows(log)  # a log without propensities fails here, before any model loads
    router = HAPSRouter.from_pretrained(args.router)
    if not args.no_cache and router.encoder is not None and not isinstance(router.encoder, CachedEncoder):
        router.encoder = CachedEncoder(router.encoder, default_cache_dir() / "embeddings")
    known = [a in router.space._index for a in log.space.actions]
    if not any(known):
        msg = f"none of the log's {len(known)} actions is in the router's catalog: nothing to evaluate"
        raise UsageError(msg)
    predict = aligned_predictor(router, log, router.featurize(log.queries))
    quality, cost = predict(np.zeros((log.n_queries, 0)), log.queries)
    encoder = embedding_encoder(args.encoder, device=args.device, cache=not args.no_cache)
    reward_model = fit_reward_model(log, embed_texts(encoder, log.queries), seed=args.seed)
    results = offpolicy_evaluate(log, quality, cost, weights, reward_model=reward_model)
    out = sys.stderr if args.json == STDIO else sys.stdout
    files = ", ".join(Path(f).name for f in log.files)
    print(
        f"off-policy evaluation of {args.router} on {files}: {len(rows)} bandit rows of {log.n_rows}, "
        f"{log.n_queries} queries, {len(log.space)} actions ({sum(known)} known to the router); "
        "DR reward model: per-action ridge regression on the query embeddings, cross-fitted",
        file=out,
    )
    print(format_results(results), file=out)
    if args.json:
        data: dict[str, Any] = {
            "router": args.router,
            "files": log.files,
            "rows": log.n_rows,
            "bandit_rows": len(rows),
            "results": [r.to_dict() for r in results],
        }
        write_output(args.json, json.dumps(data, indent=2, default=json_default) + "\n")
    return 0
